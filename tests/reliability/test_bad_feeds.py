"""Bad feeds: each is refused with an ortlite error whose message names the input and what was
expected, or - where onnxruntime runs it (lists, NaN, zero-size, non-contiguous, read-only) - runs
with onnxruntime's result."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ortlite

CPU = ["CPUExecutionProvider"]


def _model():
    """Y = X + B (X float [N, 3], B float [3]); C = Cast(I) (I int64 [2])."""
    nodes = [helper.make_node("Add", ["X", "B"], ["Y"], name="add"),
             helper.make_node("Cast", ["I"], ["C"], name="cast", to=TP.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TP.FLOAT, ["N", 3]),
                                           helper.make_tensor_value_info("B", TP.FLOAT, [3]),
                                           helper.make_tensor_value_info("I", TP.INT64, [2])],
                              [helper.make_tensor_value_info("Y", TP.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("C", TP.FLOAT, [2])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


MODEL = _model()
X = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.ones(3, np.float32)
I = np.array([1, 2], np.int64)  # noqa: E741


def feeds(**over):
    f = {"X": X, "B": B, "I": I}
    f.update(over)
    return {k: v for k, v in f.items() if v is not ...}


# name, feeds, error class, words the message must hold (the input's name and what was expected)
REFUSED = [
    ("dtype", feeds(X=X.astype(np.float64)), ortlite.InvalidArgument, ["'X'", "tensor(float)", "tensor(double)"]),
    ("int_dtype", feeds(I=I.astype(np.int32)), ortlite.InvalidArgument, ["'I'", "tensor(int64)", "tensor(int32)"]),
    ("rank_up", feeds(X=X[None]), ortlite.InvalidArgument, ["X", "Expected: 2", "[N, 3]"]),
    ("rank_down", feeds(B=np.float32(1)), ortlite.InvalidArgument, ["B", "Expected: 1", "[3]"]),
    ("dims", feeds(X=np.ones((2, 4), np.float32)), ortlite.InvalidArgument, ["X", "index: 1", "Expected: 3"]),
    ("missing", feeds(B=...), ortlite.InvalidArgument, ["'B'", "missing"]),
    ("unknown", feeds(Z=X), ortlite.InvalidArgument, ["'Z'", "'X', 'B', 'I'"]),
    ("none", feeds(X=None), ortlite.InvalidArgument, ["'X'", "tensor(float)", "NoneType"]),
    ("strings_for_float", feeds(X=np.array([["a", "b", "c"]], dtype=object)), ortlite.InvalidArgument,
     ["'X'", "tensor(float)", "tensor(string)"]),
    ("dict", feeds(X={"a": 1.0}), ortlite.InvalidArgument, ["'X'", "tensor(float)"]),
    ("big_endian", feeds(X=X.astype(">f4")), ortlite.InvalidArgument, ["'X'", "tensor(float)"]),
    ("str", feeds(X="abc"), ortlite.InvalidArgument, ["'X'", "tensor(float)"]),
    ("ragged_list", feeds(X=[[1.0, 2.0, 3.0], [1.0]]), ortlite.InvalidArgument, ["'X'"]),
]


@pytest.mark.parametrize("name, f, cls, words", REFUSED, ids=[getattr(p, "values", p)[0] for p in REFUSED])
def test_refused(name, f, cls, words):
    sess = ortlite.InferenceSession(MODEL, providers=CPU)
    with pytest.raises(cls) as e:
        sess.run(None, f)
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{name}: {w!r} not in {msg!r}"
    assert "Traceback" not in msg


RUN = {
    "list": feeds(X=[[1.0, 2.0, 3.0]]),
    "int_list": feeds(X=[[1, 2, 3]]),
    "nan_inf": feeds(X=np.array([[np.nan, np.inf, -np.inf]], np.float32)),
    "zero_size": feeds(X=np.ones((0, 3), np.float32)),
    "non_contiguous": feeds(X=np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2]),
    "transposed": feeds(X=np.asfortranarray(X)),
    "read_only": feeds(X=np.frombuffer(X.tobytes(), np.float32).reshape(2, 3)),
}


@pytest.mark.parametrize("name", sorted(RUN))
def test_runs_like_onnxruntime(name):
    f = RUN[name]
    ref = ort.InferenceSession(MODEL, providers=CPU).run(None, f)
    got = ortlite.InferenceSession(MODEL, providers=CPU).run(None, f)
    for r, g in zip(ref, got):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_array_equal(g, r)


def test_feed_left_unchanged():
    """A read-only or shared feed is not written into (outputs do not alias it)."""
    x = X.copy()
    x.flags.writeable = False
    out = ortlite.InferenceSession(MODEL, providers=CPU).run(None, feeds(X=x))
    np.testing.assert_array_equal(x, X)
    out[0][...] = -1
    np.testing.assert_array_equal(x, X)
