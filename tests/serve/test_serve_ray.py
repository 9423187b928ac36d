"""ortlite.serve on a local Ray Serve (2 replicas): tritonclient traffic, batching, a replica killed mid-load,
clean shutdown. One Ray instance for the module (num_cpus=2, no dashboard), HTTP on 127.0.0.1."""
import concurrent.futures
import json
import os
import time
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest
from conftest import alive, descendants, free_port, ray_or_skip
from onnx import TensorProto, helper

ray_or_skip()

import ray  # noqa: E402
import tritonclient.http as tc  # noqa: E402
from ray import serve  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

import ortlite  # noqa: E402
import ortlite.serve  # noqa: E402
from ortlite import zoo  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    # num_cpus 4 (logical): two apps of 2 + 1 one-CPU replicas run at once on a 2-core machine
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def demo(cluster):
    srv = ortlite.serve.start(None, replicas=2, port=cluster, route_prefix="/demo", max_batch_size=8,
                              batch_wait_ms=5)
    yield srv
    srv.shutdown()


def seq_model():
    """y = relu(x) * 2 and s = reduce_sum(x, axis 1): x [N, L] float, L symbolic too (batches must not mix L)."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["y"]),
         helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
        "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"])], [two, axes])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def triton_infer(client, name, x, input_name="input"):
    i = tc.InferInput(input_name, list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return client.infer(name, [i])


# first: the deletion of the never-placed replica runs on in the background while the tests below do
def test_too_few_cpus_or_gpus_fails_at_once_instead_of_waiting_forever(cluster):
    t0 = time.monotonic()
    with pytest.raises(ortlite.serve.InsufficientResources) as e:
        ortlite.serve.start(None, name="wide", replicas=12, port=cluster, route_prefix="/wide")
    msg = str(e.value)
    assert "cannot place 12 replica(s) of 'wide' (CPU 1 each)" in msg and "CPU: 12 needed (12 x 1)" in msg, msg
    assert "of 4 in the cluster" in msg and "ray.init(num_cpus=N)" in msg, msg
    with pytest.raises(ortlite.serve.InsufficientResources, match=r"GPU: 1 needed \(1 x 1\), 0 available of 0"):
        ortlite.serve.start(None, name="gpu", num_gpus=1, port=cluster, route_prefix="/gpu")
    assert time.monotonic() - t0 < 30
    assert not {"ortlite-wide", "ortlite-gpu"} & set(serve.status().applications)  # nothing was deployed
    assert ray.is_initialized()  # the caller's Ray is left alone


def test_unschedulable_replica_without_the_check_hits_the_deadline_and_is_deleted(cluster):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        ortlite.serve.start(None, name="huge", num_cpus=64, port=cluster, route_prefix="/huge",
                            check_resources=False, start_timeout_s=4)
    msg = str(e.value)
    assert "application ortlite-huge was not running after 4s" in msg and "ortlite-huge: UPDATING" in msg, msg
    assert "CPUs / GPUs" in msg, msg
    assert time.monotonic() - t0 < 15
    deadline = time.monotonic() + 10
    while True:  # deleted in the background (Serve waits its graceful-shutdown timeout for a replica never placed)
        app = serve.status().applications.get("ortlite-huge")
        if app is None or str(app.status).endswith("DELETING") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert app is None or str(app.status).endswith("DELETING"), app


def test_tritonclient_1000_requests_two_replicas(demo):
    sess = ortlite.InferenceSession(zoo.demo().SerializeToString())
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1 + k % 2, 3, 64, 64)).astype(np.float32) for k in range(16)]
    refs = [sess.run(None, {"input": x})[0] for x in xs]
    meta = tc.InferenceServerClient(demo.triton_url).get_model_metadata("demo")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 64, 64]}]

    def worker(t):
        client = tc.InferenceServerClient(demo.triton_url, network_timeout=60)
        bad = 0
        for k in range(125):
            j = (t * 125 + k) % len(xs)
            out = triton_infer(client, "demo", xs[j]).as_numpy("output")
            bad += not np.allclose(out, refs[j], rtol=1e-4, atol=1e-5)
        return bad

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(worker, range(8))) == 0  # 1,000 answers, none lost (a failure raises), all equal
    stats = demo.stats()
    assert len(stats) == 2  # both replicas answered
    assert sum(s["requests"] for s in stats.values()) >= 1000
    sizes = [b["size"] for s in stats.values() for b in s["batches"]]
    assert max(sizes) > 1, sizes[:50]
    assert all(s["threads"] == 1 for s in stats.values())  # intra-op threads = the replica's num_cpus


def test_batches_never_mix_other_dims_and_errors_stay_with_their_request(cluster):
    srv = ortlite.serve.start(seq_model(), name="seq", replicas=1, port=cluster, route_prefix="/seq",
                              max_batch_size=8, batch_wait_ms=20)
    try:
        rng = np.random.default_rng(1)

        def one(k):
            client = tc.InferenceServerClient(srv.triton_url, network_timeout=60)
            if k % 10 == 9:  # a wrong dtype among the batched requests: 400 with ortlite's message
                i = tc.InferInput("x", [1, 4], "FP64")
                i.set_data_from_numpy(np.zeros((1, 4)))
                with pytest.raises(InferenceServerException) as e:
                    client.infer("seq", [i])
                assert e.value.status() == "400" and "Unexpected input data type for input 'x'" in e.value.message()
                return True
            x = rng.standard_normal((1 + k % 3, 4 if k % 2 else 8)).astype(np.float32)
            r = triton_infer(client, "seq", x, "x")
            return (np.allclose(r.as_numpy("y"), np.maximum(x, 0) * 2)
                    and np.allclose(r.as_numpy("s"), x.sum(1), atol=1e-5))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert all(pool.map(one, range(200)))
        (stats,) = srv.stats().values()
        merged = [b for b in stats["batches"] if b["size"] > 1]
        assert merged, "no request was batched"
        for b in merged:
            assert len({tuple(s["x"][1:]) for s in b["shapes"]}) == 1, b  # one L per batch
            assert b["rows"] == sum(s["x"][0] for s in b["shapes"])
        # bad requests over plain HTTP: 400 and {"error": ...} with a clear message
        base = f"{srv.url}/v2/models/seq/infer"
        for body, msg in [({"inputs": [{"name": "z", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
                           "Invalid input name: 'z'"),
                          ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
                           "Invalid rank for input: x"),
                          ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1]}]},
                           "needs 2 elements"),
                          ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
                            "outputs": [{"name": "nope"}]}, "unexpected inference output 'nope'")]:
            req = urllib.request.Request(base, json.dumps(body).encode(), {"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=30)
            assert e.value.code == 400
            assert msg in json.loads(e.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{srv.url}/v2/models/other/ready", timeout=30)
        assert e.value.code == 404 and "unknown model" in json.loads(e.value.read())["error"]
        # JSON in, JSON out
        req = urllib.request.Request(base, json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                                                   "data": [-1, 3]}]}).encode())
        out = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert {o["name"]: o["data"] for o in out["outputs"]} == {"y": [0, 6], "s": [2]}
    finally:
        srv.shutdown()


def test_killing_a_replica_mid_load_fails_clearly_and_loses_nothing_accepted(demo):
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = ortlite.InferenceSession(zoo.demo().SerializeToString()).run(None, {"input": x})[0]
    done, t_end = [], time.monotonic() + 6

    def worker(_):
        client = tc.InferenceServerClient(demo.triton_url, network_timeout=60, connection_timeout=60)
        res = []
        while time.monotonic() < t_end:
            try:
                out = triton_infer(client, "demo", x).as_numpy("output")
                res.append(("ok", bool(np.allclose(out, ref, rtol=1e-4, atol=1e-5))))
            except InferenceServerException as e:
                res.append(("error", e.status(), e.message()))
                client = tc.InferenceServerClient(demo.triton_url, network_timeout=60, connection_timeout=60)
        return res

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker, k) for k in range(4)]
        time.sleep(1.5)
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("SERVE_REPLICA::ortlite-demo#")]
        assert len(names) == 2
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        for f in futures:
            done += f.result(timeout=120)  # nothing hangs
    ok = [r for r in done if r[0] == "ok"]
    failed = [r for r in done if r[0] == "error"]
    assert ok and all(r[1] for r in ok)  # every answered request is right
    for r in failed:  # each failure says what happened (status and a message), none is silent
        assert r[1] and r[1] != "None" and r[2], r
    assert len(failed) <= 8, failed  # at most the requests in flight on the killed replica
    # Serve replaces the replica: the deployment serves again
    client = tc.InferenceServerClient(demo.triton_url, network_timeout=60)
    assert np.allclose(triton_infer(client, "demo", x).as_numpy("output"), ref, rtol=1e-4, atol=1e-5)
    print(f"replica killed mid-load: {len(ok)} answered, {len(failed)} failed: {failed[:2]}")


def test_zz_shutdown_leaves_no_process(cluster):
    ray_pids = {p: n for p, n in descendants(os.getpid()).items()
                if n in ("raylet", "gcs_server") or n.startswith("ray::") or "ray" in n.lower()}
    assert any(n == "raylet" for n in ray_pids.values()) and any(n == "gcs_server" for n in ray_pids.values())
    serve.shutdown()
    ray.shutdown()
    deadline = time.monotonic() + 30
    while alive(ray_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(ray_pids)
    assert not {p: n for p, n in descendants(os.getpid()).items() if "ray" in n.lower() or n == "gcs_server"}
