"""If/Loop/Scan bodies are optimized like the main graph, with the parent's constants as constants."""
import numpy as np
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ortlite

CPU = ["CPUExecutionProvider"]


def _model():
    # the parent folds WT = Transpose(W) into a constant (not an initializer); the then-branch reads it:
    # shape math on it folds, and Transpose(Transpose(WT)) folds, only when the body knows WT's value
    then = h.make_graph([
        h.make_node("Shape", ["WT"], ["ws"]),
        h.make_node("ReduceProd", ["ws"], ["n"], keepdims=1),
        h.make_node("Reshape", ["WT", "n"], ["flat"]),
        h.make_node("Transpose", ["WT"], ["wt"], perm=[1, 0]),
        h.make_node("Transpose", ["wt"], ["wtt"], perm=[1, 0]),
        h.make_node("MatMul", ["x", "wtt"], ["xm"]),
        h.make_node("ReduceSum", ["xm"], ["t"], keepdims=0),
    ], "then", [], [h.make_tensor_value_info("t", T.FLOAT, [])])
    els = h.make_graph([h.make_node("ReduceSum", ["x"], ["e"], keepdims=0)], "else", [],
                       [h.make_tensor_value_info("e", T.FLOAT, [])])
    g = h.make_graph([
        h.make_node("Transpose", ["W"], ["WT"], perm=[1, 0], name="parent_transpose"),
        h.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        h.make_node("Greater", ["s", "zero"], ["c"]),
        h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=els, name="if"),
    ], "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 3])], [h.make_tensor_value_info("y", T.FLOAT, [])],
        [nh.from_array(np.arange(9, dtype=np.float32).reshape(3, 3), "W"), nh.from_array(np.float32(0), "zero")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_body_folds_the_parents_constants():
    m = _model()
    sess = ortlite.InferenceSession(m.SerializeToString(), providers=CPU)
    ops = sorted(n.op_type for n in sess.get_placement())
    # Shape/ReduceProd/Reshape of W folded away, the Transpose pair eliminated
    assert "Shape" not in ops and "Transpose" not in ops, ops
    plain = ortlite.InferenceSession(m.SerializeToString(), ortlite.SessionOptions(), providers=CPU)
    for sign in (1, -1):
        x = sign * np.abs(np.random.default_rng(0).standard_normal((2, 3))).astype(np.float32)
        got = sess.run(None, {"x": x})[0]
        ref = float((x @ np.arange(9, dtype=np.float32).reshape(3, 3).T).sum()) if sign > 0 else float(x.sum())
        np.testing.assert_allclose(got, ref, rtol=1e-5)
        np.testing.assert_allclose(plain.run(None, {"x": x})[0], ref, rtol=1e-5)


def test_body_without_optimization_keeps_its_nodes():
    so = ortlite.SessionOptions()
    so.graph_optimization_level = ortlite.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ortlite.InferenceSession(_model().SerializeToString(), so, providers=CPU)
    assert "Transpose" in [n.op_type for n in sess.get_placement()]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], float((x @ np.arange(9, dtype=np.float32).reshape(3, 3).T).sum()))

