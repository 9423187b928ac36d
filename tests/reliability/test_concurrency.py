"""16 threads on one session, each with its own inputs, give the single-threaded results: a CNN, a
transformer block and a Loop/If model (mutator.py's seed models), through run(), IOBinding and an
ORT_PARALLEL session."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import ortlite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutator import SEEDS  # noqa: E402

THREADS = 16
RUNS = 50  # per thread


def _inputs(name, feeds, k):
    """Feeds of thread ``k``: the seed feeds scaled and shifted so each thread's results differ."""
    out = {}
    for n, v in feeds.items():
        if v.dtype.kind == "f":
            out[n] = (np.nan_to_num(v) * (1 + 0.1 * k) + 0.01 * k).astype(v.dtype)
        else:
            out[n] = v + (k % 3)  # Loop trip counts 4..6
    return out


def _session(model, mode):
    so = ortlite.SessionOptions()
    if mode == "parallel":
        so.execution_mode = ortlite.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = 4
    return ortlite.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _run(sess, feeds, mode):
    if mode != "iobinding":
        return sess.run(None, feeds)
    b = sess.io_binding()
    for n, v in feeds.items():
        b.bind_cpu_input(n, v)
    for o in sess.get_outputs():
        b.bind_output(o.name)
    sess.run_with_iobinding(b)
    return b.copy_outputs_to_cpu()


@pytest.mark.parametrize("mode", ["run", "iobinding", "parallel"])
@pytest.mark.parametrize("seed", ["conv", "attention", "control_flow"])
def test_threads_match_single_thread(seed, mode):
    model, base = SEEDS[seed]()
    sess = _session(model.SerializeToString(), mode)
    feeds = [_inputs(seed, base, k) for k in range(THREADS)]
    expected = [_run(sess, f, mode) for f in feeds]
    errors, mismatches = [], []
    start = threading.Barrier(THREADS)

    def work(k):
        try:
            start.wait()
            for i in range(RUNS):
                got = _run(sess, feeds[k], mode)
                for g, e in zip(got, expected[k]):
                    if g.shape != e.shape or not np.array_equal(g, e, equal_nan=True):
                        mismatches.append((k, i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[:3]
    assert not mismatches, f"{len(mismatches)} runs differ from the single-threaded result, first {mismatches[:5]}"
    # the threads' results really differ from each other (the test would not notice a shared buffer otherwise)
    assert not np.array_equal(expected[0][0], expected[1][0])
