"""The channel-blocked depthwise loop (kernels/_conv_jit.py, small planes) against onnxruntime,
and against the numpy paths (ORTLITE_JIT=0 equivalent): channel counts that are and are not
multiples of the block, strides, dilations, asymmetric / "same" / "valid" padding, batch 1 and 8,
Z and the fused activations, NaN propagation."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite.kernels import _conv_jit, _jit, conv

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(7)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _conv_model(x_shape, w, b, act=None, z_shape=None, **attrs):
    ins = ["X", "W"] + (["B"] if b is not None else [])
    inits = [numpy_helper.from_array(w, "W")] + ([numpy_helper.from_array(b, "B")] if b is not None else [])
    if z_shape is not None:  # FusedConv with Z, the activation fused in
        if act:
            attrs["activation"] = act[0]
            if act[1]:
                attrs["activation_params"] = act[1]
        node = helper.make_node("FusedConv", ins + (["B"] if b is None else []) + ["Z"], ["Y"],
                                domain="com.microsoft", **attrs)
        if b is None:
            inits.append(numpy_helper.from_array(np.zeros(w.shape[0], np.float32), "B"))
        nodes = [node]
    else:
        nodes = [helper.make_node("Conv", ins, ["c" if act else "Y"], **attrs)]
        if act == "Relu":
            nodes.append(helper.make_node("Relu", ["c"], ["Y"]))
        elif act == "Clip":
            inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                      numpy_helper.from_array(np.array(6, np.float32), "hi")]
            nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["Y"]))
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    if z_shape is not None:
        inputs.append(helper.make_tensor_value_info("Z", TensorProto.FLOAT, z_shape))
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    m = helper.make_model(g, opset_imports=opsets)
    m.ir_version = 8
    return m.SerializeToString()


def _run(m, feeds):
    ours = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    ref = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    return ours, ref


CASES = [
    # (N, C, H, W, kernel, strides, dilations, pads or auto_pad)
    (1, 24, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    (1, 20, 14, 14, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # C not a multiple of the block
    (8, 13, 7, 9, (3, 3), (1, 1), (1, 1), (0, 1, 2, 1)),  # batch, asymmetric pads, odd width
    (2, 16, 10, 10, (5, 5), (2, 1), (1, 1), (2, 2, 2, 2)),
    (1, 9, 9, 11, (3, 3), (1, 2), (2, 2), (2, 2, 2, 2)),  # dilations
    (1, 8, 6, 6, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)),  # no padding
    (1, 5, 8, 8, (3, 3), (2, 2), (1, 1), "SAME_UPPER"),
    (1, 5, 9, 9, (3, 3), (2, 2), (1, 1), "SAME_LOWER"),
    (1, 12, 8, 8, (1, 3), (1, 1), (1, 1), "VALID"),
    (3, 7, 5, 5, (3, 3), (3, 3), (1, 1), (1, 0, 0, 1)),  # stride past the window
]


def _attrs(kernel, strides, dilations, pads, c):
    a = dict(group=c, kernel_shape=list(kernel), strides=list(strides), dilations=list(dilations))
    if isinstance(pads, str):
        a["auto_pad"] = pads
    else:
        a["pads"] = list(pads)
    return a


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("act", [None, "Relu", "Clip"])
def test_depthwise_small_planes(jit_path, case, act):
    n, c, h, w, kernel, strides, dilations, pads = case
    wt, b = randn(c, 1, *kernel), randn(c)
    m = _conv_model([n, c, h, w], wt, b, act, **_attrs(kernel, strides, dilations, pads, c))
    ours, ref = _run(m, {"X": randn(n, c, h, w) * 3})
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", [("Relu", None), ("Clip", [-1.0, 2.0]), ("LeakyRelu", [0.1]),
                                 ("HardSigmoid", [0.2, 0.5]), ("Sigmoid", None)])
def test_fused_z_and_activation(jit_path, act):
    n, c, h, w = 2, 19, 7, 7
    wt = randn(c, 1, 3, 3)
    m = _conv_model([n, c, h, w], wt, None, act, z_shape=[n, c, 4, 4], group=c, kernel_shape=[3, 3],
                    strides=[2, 2], pads=[1, 1, 1, 1])
    ours, ref = _run(m, {"X": randn(n, c, h, w), "Z": randn(n, c, 4, 4)})
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", [None, "Relu", "Clip"])
def test_nan_propagates(jit_path, act):
    """Relu(NaN) = Clip(NaN) = NaN, in the compiled loop as in numpy."""
    c = 10
    x = randn(1, c, 6, 6)
    x[0, 3, 2, 2] = np.nan
    m = _conv_model([1, c, 6, 6], randn(c, 1, 3, 3), randn(c), act, group=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    nan = np.isnan(y)
    assert nan[0, 3, 1:4, 1:4].all() and nan.sum() == 9


def test_blocked_loop_is_taken():
    """Small planes land on the channel-blocked loop when numba is there (not the row loop), and it
    agrees with the numpy depthwise path."""
    if not _jit.available():
        pytest.skip(f"compiled kernels unavailable: {_jit.unavailable_reason()}")
    c = 12
    w = randn(c, 1, 3, 3)
    core = conv._ConvCore("Conv", np, w, "NOTSET", None, c, [3, 3], [1, 1, 1, 1], None)
    x = randn(1, c, 7, 7)
    called = []
    orig = core._depthwise_blocked
    core._depthwise_blocked = lambda *a: called.append(1) or orig(*a)
    y = core.run(x, w)
    assert called and y.shape == (1, c, 7, 7)
    plan = core.geometry(x.shape, w.shape)[-1]
    ref = core._depthwise_gemm(x, core.packed, None, None, None, plan).reshape(y.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_pack_depthwise_layout():
    w = np.arange(10 * 9, dtype=np.float32).reshape(10, 3, 3)
    p = _conv_jit.pack_depthwise(w, 4, np.float32)
    assert p.shape == (2, 9, 4 * _conv_jit.CB)
    # block 1, tap 4, output column 2, lane 1 -> channel 9
    assert p[1, 4, 2 * _conv_jit.CB + 1] == w[9, 1, 1]
    assert p[1, 4, 2 * _conv_jit.CB + 2] == 0  # past the last channel
