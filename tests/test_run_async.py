"""run_async (onnxruntime's callback form), arun (asyncio), and the BLAS threads shared by runs in
flight (issue 17)."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto
from onnx import helper as h

import ortlite
from ortlite import blas
from ortlite.errors import InvalidArgument


def _relu_model():
    g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
                     [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def _long_loop_model():
    """A Loop of n iterations adding 1 to a scalar: long enough to be stopped midway."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond"], ["cond_out"]), h.make_node("Add", ["acc", "one"], ["acc_out"])],
        "body", [h.make_tensor_value_info("i", TensorProto.INT64, []),
                 h.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 h.make_tensor_value_info("acc", TensorProto.FLOAT, [])],
        [h.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         h.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        [h.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    g = h.make_graph([h.make_node("Loop", ["n", "", "a"], ["y"], body=body)], "g",
                     [h.make_tensor_value_info("n", TensorProto.INT64, []),
                      h.make_tensor_value_info("a", TensorProto.FLOAT, [])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def sess():
    return ortlite.InferenceSession(_relu_model(), providers=["CPUExecutionProvider"])


def test_run_async_calls_back_with_results(sess):
    x = np.array([[-1, 2, -3, 4]], np.float32)
    done = threading.Event()
    got = {}

    def callback(results, user_data, err):
        got.update(results=results, user_data=user_data, err=err, thread=threading.current_thread().name)
        done.set()

    assert sess.run_async(None, {"x": x}, callback, "tag") is None
    assert done.wait(10)
    assert got["err"] == "" and got["user_data"] == "tag"
    assert got["thread"].startswith("ortlite-async")
    np.testing.assert_array_equal(got["results"][0], np.maximum(x, 0))


def test_run_async_reports_a_bad_feed_through_err(sess):
    done = threading.Event()
    got = {}

    def callback(results, user_data, err):
        got.update(results=results, err=err)
        done.set()

    sess.run_async(["y"], {"x": np.zeros((1, 4), np.float64)}, callback, None)
    assert done.wait(10)
    assert got["results"] == []
    assert "float" in got["err"] and "x" in got["err"]


@pytest.mark.parametrize("feed, words", [({"z": np.zeros((1, 4), np.float32)}, "Invalid input name: 'z'"),
                                         ({}, "Required inputs (['x']) are missing")])
def test_run_async_checks_names_before_returning(sess, feed, words):
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        sess.run_async(None, feed, lambda *a: None, None)
    with pytest.raises(TypeError, match="callback must be callable"):
        sess.run_async(None, {"x": np.zeros((1, 4), np.float32)}, None, None)


def test_run_async_many_in_flight(sess):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((k % 5 + 1, 4)).astype(np.float32) for k in range(200)]
    results = [None] * len(xs)
    left = threading.Semaphore(0)

    def callback(res, k, err):
        assert err == ""
        results[k] = res[0]
        left.release()

    for k, x in enumerate(xs):
        sess.run_async(None, {"x": x}, callback, k)
    for _ in xs:
        assert left.acquire(timeout=20)
    for x, y in zip(xs, results):
        np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_run_async_callback_error_is_logged_not_fatal(sess, caplog):
    done = threading.Event()

    def bad(results, user_data, err):
        raise RuntimeError("caller's bug")

    sess.run_async(None, {"x": np.ones((1, 4), np.float32)}, bad, None)
    sess.run_async(None, {"x": np.ones((1, 4), np.float32)}, lambda *a: done.set(), None)
    assert done.wait(10)


def test_arun_gathers_and_raises(sess):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(32)]

    async def main():
        outs = await asyncio.gather(*(sess.arun(None, {"x": x}) for x in xs))
        with pytest.raises(ortlite.errors.OrtliteError, match="float"):
            await sess.arun(None, {"x": np.zeros((1, 4), np.int32)})
        with pytest.raises(InvalidArgument, match="Invalid input name"):
            await sess.arun(None, {"q": xs[0]})
        return outs

    for x, (y,) in zip(xs, asyncio.run(main())):
        np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_arun_cancel_stops_the_run_and_keeps_the_callers_options():
    s = ortlite.InferenceSession(_long_loop_model(), providers=["CPUExecutionProvider"])
    feed = {"n": np.array(50_000_000, np.int64), "a": np.array(0, np.float32)}
    ro = ortlite.RunOptions()
    ro.logid = "mine"

    async def main():
        task = asyncio.ensure_future(s.arun(None, feed, ro))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t0 = time.perf_counter()
        # the workers are free again soon: the cancelled run stopped at its next iteration
        (y,) = await asyncio.wait_for(s.arun(None, {"n": np.array(3, np.int64), "a": np.array(1, np.float32)}), 30)
        return y, time.perf_counter() - t0

    y, waited = asyncio.run(main())
    assert float(y) == 4.0
    assert waited < 10
    assert ro.terminate is False and ro.logid == "mine"


class _FakeBlas:
    def __init__(self, n):
        self.n, self.sets = n, []

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.n = n
        self.sets.append(n)


def test_runs_in_flight_share_the_cores(monkeypatch):
    lib = _FakeBlas(7)
    monkeypatch.setattr(blas, "_libs", [lib])
    monkeypatch.setattr(blas, "_CORES", 4)
    blas.run_begin(0)  # alone: every core
    assert lib.n == 4
    blas.run_begin(0)  # two: half each
    assert lib.n == 2
    blas.run_begin(1)  # a session of one thread among them: never more than its budget, nor cores // 3
    assert lib.n == 1
    blas.run_end(1)
    assert lib.n == 2
    blas.run_end(0)
    assert lib.n == 4
    blas.run_end(0)  # the last one out: what the library had before
    assert lib.n == 7
    blas.run_begin(3)
    assert lib.n == 3
    with blas.Threads(1):  # a recurrence's single-threaded block inside the run
        assert lib.n == 1
    assert lib.n == 3
    blas.run_end(3)
    assert lib.n == 7


def test_concurrent_runs_never_exceed_the_cores(monkeypatch):
    """Threads running one session at once: the count BLAS sees never times the runs exceeds the cores."""
    lib = _FakeBlas(2)
    monkeypatch.setattr(blas, "_libs", [lib])
    monkeypatch.setattr(blas, "_CORES", 2)
    w = np.eye(64, dtype=np.float32)
    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"])], "g",
                     [h.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
                     [h.make_tensor("w", TensorProto.FLOAT, [64, 64], w.ravel())])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    monkeypatch.setattr(blas, "_libs", [lib])  # the session's creation looked the libraries up again
    seen = []
    orig = blas._share

    def spy():
        n = orig()
        seen.append((n, blas._in_flight))
        return n

    monkeypatch.setattr(blas, "_share", spy)
    x = np.ones((64, 64), np.float32)

    def work():
        for _ in range(50):
            np.testing.assert_array_equal(s.run(None, {"x": x})[0], x)

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen and all(n * k <= 2 or n == 1 for n, k in seen)
    assert blas._in_flight == 0 and lib.n == 2


def test_runs_past_the_limit_wait_in_order(monkeypatch):
    """At most LIMIT CPU runs run at once; the others are let in first come, first served; a run begun
    inside a run on the same thread is never held (it would wait on itself)."""
    monkeypatch.setattr(blas, "_libs", [])
    monkeypatch.setattr(blas, "LIMIT", 1)
    order, running, peak = [], [0], [0]
    gate = threading.Event()
    blas.run_begin(0)  # the slot is taken: every thread below queues
    started = []

    def work(k):
        started.append(k)
        blas.run_begin(0)
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        order.append(k)
        blas.run_begin(0)  # nested on this thread: let in at once
        blas.run_end(0)
        running[0] -= 1
        blas.run_end(0)

    ts = []
    for k in range(5):
        t = threading.Thread(target=work, args=(k,))
        t.start()
        ts.append(t)
        while len(blas._waiting) < k + 1:  # each is queued before the next starts
            time.sleep(0.001)
    assert order == []
    gate.set()
    blas.run_end(0)
    for t in ts:
        t.join(10)
    assert order == [0, 1, 2, 3, 4] and peak[0] == 1
    assert blas._in_flight == 0 and not blas._waiting


def test_device_runs_are_not_held(monkeypatch):
    monkeypatch.setattr(blas, "_libs", [])
    monkeypatch.setattr(blas, "LIMIT", 1)
    blas.run_begin(0)
    done = threading.Event()

    def device_run():
        blas.run_begin(0, admit=False)
        blas.run_end(0)
        done.set()

    threading.Thread(target=device_run).start()
    assert done.wait(5)
    blas.run_end(0)
    assert blas._in_flight == 0
