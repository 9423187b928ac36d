"""log_severity_level / log_verbosity_level of SessionOptions and RunOptions (issue 16, item 5): onnxruntime's
severities (0 verbose .. 4 fatal) on the 'ortlite' logger, for that session's or run's messages only."""
import logging

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

import ortlite

CPU = ["CPUExecutionProvider"]


def _zero_trip_loop():
    """A Loop whose zero-trip scan output has no known rank: onnxruntime's warning at run time."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Expand", ["x_in", "shp"], ["scan"])], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("x_in", T.FLOAT, [])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("x_out", T.FLOAT, []),
         h.make_tensor_value_info("scan", T.FLOAT, None)])
    body.node.append(h.make_node("Identity", ["x_in"], ["x_out"]))
    g = h.make_graph([h.make_node("Loop", ["M", "", "x0"], ["x", "s"], body=body)], "g",
                     [h.make_tensor_value_info("M", T.INT64, []), h.make_tensor_value_info("x0", T.FLOAT, []),
                      h.make_tensor_value_info("shp", T.INT64, [None])],
                     [h.make_tensor_value_info("x", T.FLOAT, None), h.make_tensor_value_info("s", T.FLOAT, None)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


FEED = {"M": np.array(0, np.int64), "x0": np.array(1, np.float32), "shp": np.array([2], np.int64)}


def _warnings(caplog):
    n = sum(1 for r in caplog.records if r.name == "ortlite" and "zero iterations" in r.getMessage())
    caplog.clear()
    return n


def test_defaults_match_onnxruntime():
    assert ortlite.SessionOptions().log_severity_level == -1
    assert ortlite.RunOptions().log_severity_level == -1


def test_run_severity_filters_only_that_run(caplog):
    sess = ortlite.InferenceSession(_zero_trip_loop(), providers=CPU)
    sess.run(None, FEED)
    assert _warnings(caplog) == 1
    ro = ortlite.RunOptions()
    ro.log_severity_level = 3
    sess.run(None, FEED, ro)
    assert _warnings(caplog) == 0
    sess.run(None, FEED)  # nothing leaked: the next run warns again
    assert _warnings(caplog) == 1


def test_session_severity_filters_only_that_session(caplog):
    so = ortlite.SessionOptions()
    so.log_severity_level = 3
    quiet = ortlite.InferenceSession(_zero_trip_loop(), so, providers=CPU)
    loud = ortlite.InferenceSession(_zero_trip_loop(), providers=CPU)
    quiet.run(None, FEED)
    assert _warnings(caplog) == 0
    loud.run(None, FEED)
    assert _warnings(caplog) == 1
    ro = ortlite.RunOptions()
    ro.log_severity_level = 2  # the run's severity overrides the session's
    quiet.run(None, FEED, ro)
    assert _warnings(caplog) == 1


def test_verbose_session_creation_and_node_trace(caplog):
    assert not logging.getLogger("ortlite").isEnabledFor(logging.INFO)  # the global level is untouched
    so = ortlite.SessionOptions()
    so.log_severity_level = 0
    caplog.clear()
    sess = ortlite.InferenceSession(_zero_trip_loop(), so, providers=CPU)
    assert any(r.name == "ortlite" and r.levelno < logging.WARNING for r in caplog.records)
    caplog.clear()
    ro = ortlite.RunOptions()
    ro.log_severity_level = 0
    ro.log_verbosity_level = 1
    sess.run(None, FEED, ro)
    assert any("[trace]" in r.getMessage() and r.levelno < logging.DEBUG for r in caplog.records)
    caplog.clear()
    ro.log_verbosity_level = 0
    sess.run(None, FEED, ro)
    assert not any("[trace]" in r.getMessage() for r in caplog.records)
    assert not logging.getLogger("ortlite").isEnabledFor(logging.INFO)
