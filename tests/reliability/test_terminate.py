"""RunOptions.terminate stops a run in progress (issue 16, item 5): read between plan steps, at every
Loop/Scan iteration and inside bodies; onnxruntime's Fail "Exiting due to terminate flag being set to true."."""
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortlite
from ortlite.errors import Fail

CPU = ["CPUExecutionProvider"]


def _loop_model(nested=False):
    """Loop M times: x += 1 (the body an If when ``nested``, its branch the Add)."""
    add = h.make_node("Add", ["x_in", "one"], ["x_out"])
    if nested:
        branch = h.make_graph([h.make_node("Add", ["x_in", "one"], ["b_out"])], "then", [],
                              [h.make_tensor_value_info("b_out", T.FLOAT, [])])
        add = h.make_node("If", ["cond_in"], ["x_out"], then_branch=branch, else_branch=branch)
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), add], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("x_in", T.FLOAT, [])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("x_out", T.FLOAT, [])],
        [h.make_tensor("one", T.FLOAT, [], [1.0])])
    g = h.make_graph([h.make_node("Loop", ["M", "", "x0"], ["x"], body=body)], "g",
                     [h.make_tensor_value_info("M", T.INT64, []), h.make_tensor_value_info("x0", T.FLOAT, [])],
                     [h.make_tensor_value_info("x", T.FLOAT, [])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def _feed(n):
    return {"M": np.array(n, np.int64), "x0": np.array(0, np.float32)}


@pytest.mark.parametrize("nested", [False, True])
def test_terminate_from_another_thread_stops_a_long_loop(nested):
    sess = ortlite.InferenceSession(_loop_model(nested), providers=CPU)
    ro = ortlite.RunOptions()
    timer = threading.Timer(0.2, lambda: setattr(ro, "terminate", True))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(Fail, match="Exiting due to terminate flag being set to true"):
        sess.run(None, _feed(10**6), ro)
    assert time.perf_counter() - t0 < 0.5
    timer.join()
    # the session runs normally afterwards, without and with (reset) run options
    assert sess.run(None, _feed(3))[0] == 3
    with pytest.raises(Fail, match="terminate flag"):
        sess.run(None, _feed(3), ro)
    ro.terminate = False
    assert sess.run(None, _feed(5), ro)[0] == 5


def test_terminate_between_plan_steps():
    """The checked plan function reads the flag before every step: a kernel that sets it stops the run."""
    sess = ortlite.InferenceSession(_loop_model(), providers=CPU)
    plan = sess._plan
    ro = ortlite.RunOptions()
    plan.run([np.array(2, np.int64), np.array(0, np.float32)], run_options=ro)
    assert plan._checked is not None and plan.source.count("_ro.terminate") == 0
    ro.terminate = True
    with pytest.raises(Fail, match="terminate flag"):
        plan.run([np.array(2, np.int64), np.array(0, np.float32)], run_options=ro)
    with pytest.raises(Fail, match="terminate flag"):
        plan.run_slots([np.array(2, np.int64), np.array(0, np.float32)], run_options=ro)


def test_terminate_with_profiling_and_parallel():
    for opts in ("profiling", "parallel"):
        so = ortlite.SessionOptions()
        if opts == "profiling":
            so.enable_profiling = True
        else:
            so.execution_mode = ortlite.ExecutionMode.ORT_PARALLEL
        sess = ortlite.InferenceSession(_loop_model(), so, providers=CPU)
        ro = ortlite.RunOptions()
        threading.Timer(0.1, lambda: setattr(ro, "terminate", True)).start()
        t0 = time.perf_counter()
        with pytest.raises(Fail, match="terminate flag"):
            sess.run(None, _feed(10**6), ro)
        assert time.perf_counter() - t0 < 0.5, opts
        assert sess.run(None, _feed(4))[0] == 4
        if opts == "profiling":
            import os

            os.remove(sess.end_profiling())
