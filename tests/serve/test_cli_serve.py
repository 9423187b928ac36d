"""`ortlite serve` as a user runs it: a subprocess on a local Ray instance, one tritonclient request, SIGINT, exit 0
and no Ray process left; and too many replicas for the machine fail at once with the reason."""
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from conftest import alive, descendants, free_port, ray_or_skip

ray_or_skip()

import tritonclient.http as tc  # noqa: E402

import ortlite  # noqa: E402
from ortlite import zoo  # noqa: E402


def ortlite_command():
    script = os.path.join(os.path.dirname(sys.executable), "ortlite")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "ortlite.cli"]


class Cli:
    """`ortlite ARGS` in its own session, stdout read line by line on a thread, stderr in a file."""

    def __init__(self, args, tmp_path):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray instance of its own
        self.err_path = tmp_path / "stderr.txt"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(ortlite_command() + args, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=env, start_new_session=True)
        self.lines, self.out = queue.Queue(), []
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout], daemon=True).start()

    def wait_line(self, prefix, deadline):
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.out.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; stdout {self.out}; stderr:\n{self.stderr()[-3000:]}")

    def stderr(self):
        self.err.flush()
        return self.err_path.read_text()

    def kill(self):
        """Cleanup after a failure: the process and everything below it, by pid."""
        pids = {self.proc.pid: "ortlite", **descendants(self.proc.pid)}
        for p in alive(pids):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(10)
        self.err.close()


def test_serve_default_answers_then_sigint_exits_0_leaving_no_ray_process(tmp_path):
    port = free_port()
    t0 = time.monotonic()
    cli = Cli(["serve", "default", "--port", str(port), "--host", "127.0.0.1"], tmp_path)
    try:
        line = cli.wait_line("serving model ", t0 + 60)
        url = f"http://127.0.0.1:{port}"
        assert f"'demo' at {url}" in line and f"InferenceServerClient('127.0.0.1:{port}')" in line, line
        x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
        ref = ortlite.InferenceSession(zoo.demo().SerializeToString()).run(None, {"input": x})[0]
        client = tc.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)
        assert client.is_model_ready("demo")
        i = tc.InferInput("input", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        out = client.infer("demo", [i]).as_numpy("output")
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)

        ray_pids = {p: n for p, n in descendants(cli.proc.pid).items()
                    if n in ("raylet", "gcs_server") or n.startswith("ray::")}
        assert {"raylet", "gcs_server"} <= set(ray_pids.values()), ray_pids
        cli.proc.send_signal(signal.SIGINT)
        rc = cli.proc.wait(timeout=45)
        assert rc == 0, cli.stderr()[-3000:]
        cli.wait_line("stopped", time.monotonic() + 5)
        deadline = time.monotonic() + 20
        while alive(ray_pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(ray_pids), alive(ray_pids)
    finally:
        cli.kill()
    assert time.monotonic() - t0 < 90


def test_serve_more_replicas_than_cpus_fails_at_once_naming_what_is_missing(tmp_path):
    cpus = os.cpu_count() or 1
    t0 = time.monotonic()
    cli = Cli(["serve", "default", "--replicas", str(cpus + 8), "--port", str(free_port())], tmp_path)
    try:
        rc = cli.proc.wait(timeout=60)
        err = cli.stderr()
        assert rc == 2, err[-3000:]
        assert f"cannot place {cpus + 8} replica(s) of 'demo'" in err and "CPU:" in err and "needed" in err, err
        assert "Traceback" not in err, err
    finally:
        cli.kill()
    assert time.monotonic() - t0 < 60
