"""FuseShapeChains: shape math evaluated once per input-shape signature."""
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ortlite

CPU = ["CPUExecutionProvider"]


def _model():
    # y = Reshape(x, [N, -1]) with N = Shape(x)[0], and pos = Range(0, Shape(x)[1]) as a second output:
    # the usual export shape math around a flatten and position ids
    nodes = [
        h.make_node("Shape", ["x"], ["s"], name="shape"),
        h.make_node("Gather", ["s", "zero"], ["n"], axis=0, name="gather_n"),
        h.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        h.make_node("Concat", ["n1", "minus1"], ["target"], axis=0, name="concat"),
        h.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
        h.make_node("Gather", ["s", "one"], ["len"], axis=0, name="gather_len"),
        h.make_node("Range", ["zero", "len", "one"], ["pos"], name="range"),
        h.make_node("Relu", ["flat"], ["y"], name="relu"),
    ]
    g = h.make_graph(nodes, "chains", [h.make_tensor_value_info("x", T.FLOAT, ["N", "S", 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, None), h.make_tensor_value_info("pos", T.INT64, None)],
                     [nh.from_array(np.int64(0), "zero"), nh.from_array(np.int64(1), "one"),
                      nh.from_array(np.array([0], np.int64), "ax0"), nh.from_array(np.array([-1], np.int64), "minus1")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_chain_is_one_node_evaluated_once_per_shape(monkeypatch):
    sess = ortlite.InferenceSession(_model().SerializeToString(), providers=CPU)
    ops = [n.op_type for n in sess.get_placement()]
    assert ops.count("ShapeChain") == 1 and "Shape" not in ops and "Concat" not in ops, ops
    from ortlite.kernels.shape_chain import ChainProgram

    calls = []
    real = ChainProgram.evaluate
    monkeypatch.setattr(ChainProgram, "evaluate", lambda self, v: calls.append(1) or real(self, v))
    for shape in [(2, 3, 4), (2, 3, 4), (5, 7, 4), (2, 3, 4)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        y, pos = sess.run(None, {"x": x})
        np.testing.assert_array_equal(y, np.maximum(x.reshape(shape[0], -1), 0))
        np.testing.assert_array_equal(pos, np.arange(shape[1]))
        pos[:] = -1  # a caller changing an output must not change what later runs get
    assert len(calls) == 2  # two distinct shapes


def test_saved_model_holds_the_original_nodes(tmp_path):
    so = ortlite.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ortlite.InferenceSession(_model().SerializeToString(), so, providers=CPU)
    saved = onnx.load(str(tmp_path / "opt.onnx"))
    assert "ShapeChain" not in [n.op_type for n in saved.graph.node]
    assert "ortlite" not in [o.domain for o in saved.opset_import]
    x = np.ones((3, 2, 4), np.float32)
    y, pos = onnxruntime.InferenceSession(str(tmp_path / "opt.onnx"), providers=CPU).run(None, {"x": x})
    np.testing.assert_array_equal(y, x.reshape(3, -1))
    np.testing.assert_array_equal(pos, np.arange(2))


def test_not_applied_with_other_providers_or_when_disabled():
    sess = ortlite.InferenceSession(_model().SerializeToString(), providers=CPU, disabled_optimizers=["FuseShapeChains"])
    assert "ShapeChain" not in [n.op_type for n in sess.get_placement()]
    import pytest

    pytest.importorskip("openvino")
    sess = ortlite.InferenceSession(_model().SerializeToString(),
                                    providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"])
    assert "ShapeChain" not in [n.op_type for n in sess.get_placement()]
