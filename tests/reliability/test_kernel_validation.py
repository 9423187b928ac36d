"""Attributes validated at the prepare step, empty batches and bounded scratch buffers (issue 16,
items 7 and 8), side by side with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h

import ortlite
from ortlite.errors import Fail, InvalidGraph, OrtliteError
from ortlite.kernels import _common

ort = pytest.importorskip("onnxruntime")


def _model(op, attrs, x_shape, w_shape=None, n_sym=False):
    ins = ["x", "w"] if w_shape else ["x"]
    inits = [h.make_tensor("w", TensorProto.FLOAT, w_shape, np.ones(int(np.prod(w_shape)), np.float32))] if w_shape else []
    node = h.make_node(op, ins, ["y"], **{k: v for k, v in attrs.items() if v != []})
    node.attribute.extend(h.make_attribute(k, v, attr_type=onnx.AttributeProto.INTS) for k, v in attrs.items() if v == [])
    xs = (["N"] + list(x_shape[1:])) if n_sym else list(x_shape)
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


BAD = [
    ("Conv", {"strides": []}), ("Conv", {"strides": [1]}), ("Conv", {"strides": [0, 1]}), ("Conv", {"dilations": [0, 1]}),
    ("Conv", {"pads": [1, 1]}), ("Conv", {"pads": [-1, -1, 0, 0]}), ("Conv", {"kernel_shape": [3]}), ("Conv", {"group": 0}),
    ("ConvTranspose", {"strides": [0, 1]}), ("ConvTranspose", {"dilations": [0, 1]}), ("ConvTranspose", {"group": 0}),
    ("MaxPool", {"kernel_shape": [-2**31, 2]}), ("MaxPool", {"kernel_shape": [2]}), ("MaxPool", {"kernel_shape": [0, 2]}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [0, 1]}), ("MaxPool", {"kernel_shape": [2, 2], "pads": [2, 2, 2, 2]}),
    ("AveragePool", {"kernel_shape": [-2**31, 2]}), ("AveragePool", {"kernel_shape": [2, 2], "strides": [1, 0]}),
    ("LpPool", {"kernel_shape": [0, 2]}),
]


def _w(op):
    return None if "Pool" in op else ((2, 4, 3, 3) if op == "ConvTranspose" else (4, 2, 3, 3))


@pytest.mark.parametrize("op,attrs", BAD, ids=[f"{op}-{a}" for op, a in BAD])
def test_bad_attribute_refused_at_creation(op, attrs):
    mb = _model(op, attrs, (1, 2, 6, 6), _w(op))
    with pytest.raises(Exception):  # onnxruntime refuses it too (at creation, or at run for group=0)
        ort.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": np.ones((1, 2, 6, 6), np.float32)})
    with pytest.raises(OrtliteError) as ei:
        ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"])
    name = list(attrs)[-1]
    assert name in str(ei.value) and op in str(ei.value)
    assert isinstance(ei.value, InvalidGraph) or isinstance(ei.value.__cause__, InvalidGraph)


@pytest.mark.parametrize("op,attrs", [("Conv", {"strides": [0, 1]}), ("MaxPool", {"kernel_shape": [-2**31, 2]})])
def test_bad_attribute_with_unknown_rank_fails_at_run(op, attrs):
    """Without a static rank the values are still checked at creation."""
    node = h.make_node(op, ["x", "w"] if _w(op) else ["x"], ["y"], **attrs)
    inits = [h.make_tensor("w", TensorProto.FLOAT, (4, 2, 3, 3), np.ones(72, np.float32))] if _w(op) else []
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    mb = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(OrtliteError, match="must hold values >= 1"):
        ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"])


EMPTY = [("Conv", {"pads": [1] * 4}, (0, 2, 6, 6), (4, 2, 3, 3)), ("Conv", {}, (0, 2, 6, 6), (4, 2, 1, 1)),
         ("Conv", {"group": 2}, (0, 2, 6, 6), (2, 1, 3, 3)), ("ConvTranspose", {"strides": [2, 2]}, (0, 2, 5, 5), (2, 3, 3, 3)),
         ("MaxPool", {"kernel_shape": [2, 2]}, (0, 2, 6, 6), None), ("AveragePool", {"kernel_shape": [3, 3]}, (0, 2, 6, 6), None),
         ("Gemm", {"transB": 1}, (0, 3), (5, 3)), ("MatMul", {}, (0, 3), (3, 5))]


@pytest.mark.parametrize("op,attrs,x_shape,w_shape", EMPTY, ids=[f"{e[0]}-{i}" for i, e in enumerate(EMPTY)])
def test_empty_batch_like_onnxruntime(op, attrs, x_shape, w_shape):
    mb = _model(op, attrs, x_shape, w_shape, n_sym=True)
    x = np.zeros(x_shape, np.float32)
    ref = ort.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == ref.shape and got.dtype == ref.dtype


def test_fused_conv_empty_batch():
    w = np.ones((8, 8, 3, 3), np.float32)
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4), h.make_node("Relu", ["c"], ["y"])]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 8])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], [onnx.numpy_helper.from_array(w, "w")])
    mb = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": np.zeros((0, 8, 8, 8), np.float32)})[0]
    assert got.shape == (0, 8, 8, 8)


def test_im2col_over_the_limit_is_refused(monkeypatch):
    """A scratch buffer far larger than the output is refused with Fail (limits lowered for the test)."""
    monkeypatch.setattr(_common, "SCRATCH_BYTES", 1 << 16)
    mb = _model("Conv", {"pads": [1] * 4, "strides": [2, 2]}, (1, 64, 32, 32), (1, 64, 3, 3))
    sess = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"])
    with pytest.raises(Fail, match="scratch buffer"):
        sess.run(None, {"x": np.ones((1, 64, 32, 32), np.float32)})


def test_check_ints():
    assert _common.check_ints(None, "strides", (1, 2), length=2, min=1) == [1, 2]
    with pytest.raises(InvalidGraph, match="'strides'=\\[1\\] has 1 values, expected 2"):
        _common.check_ints(None, "strides", [1], length=2, min=1)
    with pytest.raises(InvalidGraph, match="must hold values >= 0"):
        _common.check_ints(None, "pads", [-1, 0], min=0)


def test_batch_norm_empty_batch_like_onnxruntime():
    c = 3
    inits = [onnx.numpy_helper.from_array(np.ones(c, np.float32), n) for n in "sbmv"]
    g = h.make_graph([h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], "g",
                     [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 4, 4])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    mb = h.make_model(g, opset_imports=[h.make_opsetid("", 15)]).SerializeToString()
    x = np.zeros((0, c, 4, 4), np.float32)
    ref = ort.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == ref.shape == (0, c, 4, 4) and got.dtype == ref.dtype
