"""The CNN fast paths of kernels/conv.py, pool.py and contrib.py (FusedConv) against onnxruntime.

Each path is picked by shape and attributes, so every case here is chosen to land on one:
depthwise (strides, dilations, asymmetric and "valid" padding, odd widths, batch > 1, 1-D),
1x1 (strided, batch > 1 with one GEMM over the batch), im2col at stride 1 (the flat copy)
and strided (the rectangle copy), grouped convolutions, FusedConv with Z and activations,
and the pooling variants (MaxPool / AveragePool with pads, strides, dilations, ceil_mode,
count_include_pad; Global pools).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(2024)


def randn(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(op, inputs, consts, n_out=1, domain="", dynamic_batch=False, **attrs):
    names = [n for n, _ in inputs] + list(consts)
    node = helper.make_node(op, names, [f"y{i}" for i in range(n_out)], domain=domain, **attrs)
    g = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, (["N"] if dynamic_batch else []) + list(a.shape)[
            int(dynamic_batch):]) for n, a in inputs],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT if i == 0 else TensorProto.INT64, None)
         for i in range(n_out)],
        [numpy_helper.from_array(v, n) for n, v in consts.items()])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    m = helper.make_model(g, opset_imports=opsets)
    m.ir_version = 8
    return m.SerializeToString()


def run_both(op, inputs, consts=None, n_out=1, domain="", **attrs):
    m = _model(op, inputs, consts or {}, n_out, domain, **attrs)
    feeds = dict(inputs)
    ours = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(m, so, providers=["CPUExecutionProvider"]).run(None, feeds)
    return ours, ref


def check(ours, ref, tol=1e-4):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        if a.dtype.kind in "iu":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------ depthwise

DEPTHWISE = [
    # (N, C, H, W, kernel, strides, dilations, pads)
    (1, 8, 12, 12, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 8, 12, 12, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    (1, 6, 13, 11, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # odd sizes, stride 2
    (3, 6, 14, 14, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    (1, 5, 10, 9, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    (2, 5, 15, 16, (5, 5), (2, 2), (1, 1), (2, 2, 2, 2)),
    (1, 4, 11, 12, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),  # dilated "same"
    (1, 4, 11, 12, (3, 3), (1, 2), (2, 1), (1, 0, 2, 3)),  # asymmetric pads, mixed strides
    (2, 4, 9, 10, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)),  # valid: output narrower than input
    (1, 4, 9, 10, (3, 2), (3, 1), (1, 1), (1, 0, 1, 1)),
    (1, 7, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # small image, many channels per block
    (1, 3, 4, 5, (7, 7), (1, 1), (1, 1), (3, 3, 3, 3)),  # kernel larger than the image
]


@pytest.mark.parametrize("n,c,h,w,k,s,d,p", DEPTHWISE)
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise(n, c, h, w, k, s, d, p, bias, jit_path):
    x, wt = randn(n, c, h, w), randn(c, 1, *k)
    consts = {"W": wt, "B": randn(c)} if bias else {"W": wt}
    ours, ref = run_both("Conv", [("X", x)], consts, group=c, kernel_shape=list(k), strides=list(s),
                         dilations=list(d), pads=list(p))
    check(ours, ref)


def test_depthwise_runtime_weights_and_batch_change(jit_path):
    """Weights fed at run time (no packing), and one session run at two batch sizes."""
    c = 6
    m = _model("Conv", [("X", randn(1, c, 10, 10)), ("W", randn(c, 1, 3, 3))], {}, dynamic_batch=True, group=c,
               pads=[1, 1, 1, 1], strides=[2, 2])
    ours_s = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"])
    ref_s = ort.InferenceSession(m, providers=["CPUExecutionProvider"])
    for n in (1, 3, 1):
        feeds = {"X": randn(n, c, 10, 10), "W": randn(c, 1, 3, 3)}
        check(ours_s.run(None, feeds), ref_s.run(None, feeds))


def test_depthwise_1d_and_multiplier(jit_path):
    x = randn(2, 4, 17)
    ours, ref = run_both("Conv", [("X", x)], {"W": randn(4, 1, 5), "B": randn(4)}, group=4, pads=[2, 2], strides=[2])
    check(ours, ref)
    ours, ref = run_both("Conv", [("X", randn(2, 4, 9, 9))], {"W": randn(8, 1, 3, 3)}, group=4, pads=[1, 1, 1, 1])
    check(ours, ref)


def test_depthwise_large_blocks(jit_path):
    """Enough channels that the depthwise path runs several channel blocks."""
    x = randn(2, 64, 40, 40)
    ours, ref = run_both("Conv", [("X", x)], {"W": randn(64, 1, 3, 3), "B": randn(64)}, group=64,
                         pads=[1, 1, 1, 1])
    check(ours, ref)
    ours, ref = run_both("Conv", [("X", x)], {"W": randn(64, 1, 3, 3), "B": randn(64)}, group=64,
                         pads=[1, 1, 1, 1], strides=[2, 2])
    check(ours, ref)


# ------------------------------------------------------------------------------ dense / grouped

DENSE = [
    # (x shape, w shape, attrs)
    ((1, 16, 9, 9), (8, 16, 1, 1), {}),  # 1x1
    ((3, 16, 9, 9), (8, 16, 1, 1), {}),  # 1x1, batch > 1, small image: one GEMM over the batch
    ((2, 16, 30, 30), (8, 16, 1, 1), {}),  # 1x1, batch > 1, per-image GEMMs
    ((2, 16, 9, 10), (8, 16, 1, 1), {"strides": [2, 2]}),  # 1x1 strided
    ((1, 16, 9, 10), (8, 16, 1, 1), {"strides": [2, 3]}),
    ((1, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),  # flat im2col
    ((2, 32, 12, 11), (4, 32, 3, 3), {"pads": [1, 1, 1, 1]}),  # few outputs: shift-GEMM over the tap planes
    ((1, 32, 12, 11), (4, 32, 3, 3), {"pads": [2, 1, 2, 1]}),  # ... taller output than input
    ((1, 32, 12, 11), (4, 32, 3, 5), {"pads": [2, 2, 2, 2], "dilations": [2, 1]}),
    ((2, 16, 10, 12), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}),  # as many outputs: shift-GEMM over column taps
    ((1, 16, 10, 12), (16, 16, 3, 3), {"pads": [2, 1, 0, 1]}),
    ((1, 16, 10, 12), (16, 16, 5, 5), {"pads": [2, 2, 2, 2]}),
    ((1, 16, 4, 3), (16, 16, 5, 5), {"pads": [2, 2, 2, 2]}),  # kernel wider than the image
    ((4, 8, 7, 7), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),  # flat im2col, batch GEMM
    ((2, 8, 25, 25), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 8, 12, 13), (16, 8, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}),
    ((2, 8, 12, 13), (16, 8, 3, 3), {"pads": [0, 0, 0, 0]}),  # valid
    ((2, 3, 23, 22), (8, 3, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}),  # stem-like
    ((1, 8, 14, 14), (16, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((3, 8, 11, 11), (16, 8, 3, 3), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ((1, 4, 9, 9), (6, 4, 5, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 4, 9, 9), (6, 4, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [1, 2]}),
    ((2, 4, 6, 6), (5, 4, 3, 3), {"pads": [4, 4, 4, 4]}),  # pads larger than the kernel reach
    # im2col rows as wide as the source, the extra columns cropped: "valid" at stride 1 ...
    ((1, 8, 20, 20), (6, 8, 3, 3), {}),
    ((3, 8, 18, 18), (6, 8, 3, 3), {}),  # ... with the batch GEMM
    ((1, 3, 40, 40), (6, 3, 7, 7), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # ZFNet's stem: on the phases
    ((1, 3, 99, 99), (6, 3, 11, 11), {"strides": [4, 4]}),  # AlexNet's stem
    ((1, 3, 24, 24), (6, 3, 3, 3), {"strides": [2, 2]}),  # SqueezeNet's stem
    ((2, 12, 20, 20), (12, 4, 3, 3), {"group": 3}),  # grouped
    ((2, 12, 10, 10), (12, 4, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}),  # grouped
    ((2, 12, 10, 10), (6, 4, 1, 1), {"group": 3}),  # grouped 1x1 (ShuffleNet)
    ((1, 8, 13, 13), (8, 4, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 5, 17), (6, 5, 3), {"pads": [1, 1]}),  # 1-D
    ((3, 5, 17), (6, 5, 4), {"strides": [2], "dilations": [2]}),
]


@pytest.mark.parametrize("xs,ws,attrs", DENSE)
@pytest.mark.parametrize("bias", [True, False])
def test_dense_and_grouped(xs, ws, attrs, bias, jit_path):
    consts = {"W": randn(*ws), "B": randn(ws[0])} if bias else {"W": randn(*ws)}
    ours, ref = run_both("Conv", [("X", randn(*xs))], consts, **attrs)
    check(ours, ref)


def test_float64_and_float16_keep_their_type(jit_path):
    for dt in (np.float64, np.float16):
        x, w = randn(2, 6, 8, 8).astype(dt), randn(6, 1, 3, 3).astype(dt)
        g = helper.make_graph(
            [helper.make_node("Conv", ["X", "W"], ["Y"], group=6, pads=[1, 1, 1, 1], strides=[2, 2])], "g",
            [helper.make_tensor_value_info("X", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)],
            [helper.make_tensor_value_info("Y", helper.np_dtype_to_tensor_dtype(x.dtype), None)],
            [numpy_helper.from_array(w, "W")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        y = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
        assert y.dtype == dt
        ref, _ = run_both("Conv", [("X", x.astype(np.float32))], {"W": w.astype(np.float32)}, group=6,
                          pads=[1, 1, 1, 1], strides=[2, 2])
        np.testing.assert_allclose(y.astype(np.float32), ref[0], rtol=2e-2 if dt == np.float16 else 1e-5,
                                   atol=2e-2 if dt == np.float16 else 1e-5)


# ------------------------------------------------------------------------------ FusedConv

FUSED = [
    ((1, 8, 12, 12), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),  # depthwise
    ((2, 8, 12, 12), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 8, 12, 12), (16, 8, 1, 1), {}),  # 1x1
    ((3, 8, 6, 6), (16, 8, 1, 1), {}),  # 1x1, batch GEMM
    ((2, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((2, 12, 8, 8), (12, 4, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}),
]
ACTS = [("", None), ("Relu", None), ("Clip", [0.0, 6.0]), ("Sigmoid", None), ("LeakyRelu", [0.1]),
        ("HardSigmoid", [0.2, 0.5]), ("Tanh", None)]


def _out_shape(xs, ws, attrs):
    n, _, *sp = xs
    s = attrs.get("strides", [1] * len(sp))
    p = attrs.get("pads", [0] * 2 * len(sp))
    k = ws[2:]
    return (n, ws[0]) + tuple((sp[i] + p[i] + p[i + len(sp)] - k[i]) // s[i] + 1 for i in range(len(sp)))


@pytest.mark.parametrize("xs,ws,attrs", FUSED)
@pytest.mark.parametrize("act,params", ACTS)
@pytest.mark.parametrize("with_z", [False, True])
def test_fused_conv(xs, ws, attrs, act, params, with_z, jit_path):
    attrs = dict(attrs)
    if act:
        attrs["activation"] = act
    if params:
        attrs["activation_params"] = params
    inputs = [("X", randn(*xs))]
    consts = {"W": randn(*ws, scale=0.3), "B": randn(ws[0])}
    if with_z:
        # Z is the fourth input: feed it, with the weights and bias as initializers in between
        m_inputs = inputs + [("Z", randn(*_out_shape(xs, ws, attrs)))]
        node = helper.make_node("FusedConv", ["X", "W", "B", "Z"], ["y0"], domain="com.microsoft", **attrs)
        g = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in m_inputs],
            [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, n) for n, v in consts.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        m.ir_version = 8
        feeds = dict(m_inputs)
        ours = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    else:
        ours, ref = run_both("FusedConv", inputs, consts, domain="com.microsoft", **attrs)
    check(ours, ref)


def test_fused_conv_does_not_touch_z():
    x, z = randn(1, 4, 6, 6), randn(1, 4, 6, 6)
    z0 = z.copy()
    node = helper.make_node("FusedConv", ["X", "W", "B", "Z"], ["Y"], domain="com.microsoft", activation="Relu",
                            pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 6, 6]),
                                        helper.make_tensor_value_info("Z", TensorProto.FLOAT, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(randn(4, 4, 3, 3), "W"), numpy_helper.from_array(randn(4), "B")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x, "Z": z})
    np.testing.assert_array_equal(z, z0)


def test_compiled_depthwise_is_prepared_and_used(monkeypatch):
    """With numba, the depthwise loop is compiled at session creation (not on the first run) and
    the run goes through it, never through the numpy depthwise path."""
    from ortlite.kernels import _jit
    from ortlite.kernels.conv import _ConvCore

    if not _jit.available():
        pytest.skip(f"compiled kernels unavailable: {_jit.unavailable_reason()}")
    c = 5
    m = _model("FusedConv", [("X", randn(1, c, 9, 9))], {"W": randn(c, 1, 5, 3), "B": randn(c)},
               domain="com.microsoft", group=c, pads=[2, 1, 2, 1], strides=[1, 2], activation="Clip",
               activation_params=[-0.5, 0.5])
    key = ("depthwise2d", "<f4", 5, 3, 1, 2, 1, 1, _jit.ACT_CLIP, False)
    _jit._state["fns"].pop(key, None)
    sess = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"])
    assert _jit._state["fns"].get(key) is not None

    def numpy_path(*a, **k):
        raise AssertionError("the numpy depthwise path ran")

    monkeypatch.setattr(_ConvCore, "_depthwise_gemm", numpy_path)
    monkeypatch.setattr(_ConvCore, "_depthwise", numpy_path)
    x = randn(1, c, 9, 9)
    ref = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    check(sess.run(None, {"X": x}), ref)


def test_jit_can_be_switched_off(monkeypatch):
    """ORTLITE_JIT=0 keeps numba out (the numpy paths run) and says so."""
    from ortlite.kernels import _jit

    monkeypatch.setattr(_jit, "_state", {})
    monkeypatch.setenv("ORTLITE_JIT", "0")
    assert not _jit.available()
    assert _jit.unavailable_reason() == "ORTLITE_JIT=0"
    assert _jit.depthwise2d(np.float32, (3, 3), (1, 1), (1, 1), 0, False) is None
    ours, ref = run_both("Conv", [("X", randn(1, 4, 8, 8))], {"W": randn(4, 1, 3, 3)}, group=4, pads=[1, 1, 1, 1])
    check(ours, ref)


# ------------------------------------------------------------------------------ pooling

POOLS = [
    ((1, 3, 12, 12), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),  # ResNet
    ((2, 3, 13, 13), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ((2, 3, 13, 13), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),  # SqueezeNet, GoogLeNet
    ((1, 3, 14, 15), {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),  # Inception branch
    ((2, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),  # VGG
    ((1, 3, 11, 10), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1]}),
    ((1, 3, 11, 10), {"kernel_shape": [3, 3], "strides": [1, 2], "dilations": [2, 1], "pads": [2, 1, 2, 1]}),
    ((1, 3, 9, 9), {"kernel_shape": [2, 2], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((2, 3, 17), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),  # 1-D
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 2, 2], "strides": [2, 1, 2]}),  # 3-D
    ((1, 3, 5, 5), {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]}),  # window larger than the valid part
]


@pytest.mark.parametrize("xs,attrs", POOLS)
def test_maxpool(xs, attrs):
    ours, ref = run_both("MaxPool", [("X", randn(*xs))], **attrs)
    check(ours, ref, tol=0)


@pytest.mark.parametrize("xs,attrs", [p for p in POOLS if "dilations" not in p[1]])
@pytest.mark.parametrize("include_pad", [0, 1])
def test_averagepool(xs, attrs, include_pad):
    ours, ref = run_both("AveragePool", [("X", randn(*xs))], count_include_pad=include_pad, **attrs)
    check(ours, ref, tol=1e-5)


def test_maxpool_indices_still_right():
    ours, ref = run_both("MaxPool", [("X", randn(2, 3, 9, 9))], n_out=2, kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1])
    check(ours, ref, tol=0)


def test_maxpool_negative_inputs_and_infinities():
    """Padding must never win a window of negative values, and -inf / +inf pass through."""
    x = -np.abs(randn(1, 2, 7, 7)) - 10
    x[0, 0, 0, 0] = -np.inf
    x[0, 1, 3, 3] = np.inf
    ours, ref = run_both("MaxPool", [("X", x)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    check(ours, ref, tol=0)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xs", [(2, 5, 7, 7), (1, 3, 1, 1), (2, 3, 9), (1, 2, 3, 4, 5)])
def test_global_pools(op, xs):
    ours, ref = run_both(op, [("X", randn(*xs))])
    check(ours, ref, tol=1e-5)


# ------------------------------------------------------------------------------ threaded parts

@pytest.fixture
def split_everything(monkeypatch):
    """Make every pass split over three parts, whatever the machine (the parts then run on the
    kernels' thread pool): the split must not change a single value."""
    import os

    from ortlite.kernels import _nn_util

    monkeypatch.setattr(_nn_util, "_SPLIT_MIN", 8)
    monkeypatch.setattr(_nn_util, "_blas_threads", lambda: 3)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)


SPLIT_CASES = [
    ("Conv", (2, 8, 12, 12), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
    ("Conv", (2, 8, 13, 12), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("Conv", (1, 32, 12, 11), (4, 32, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("Conv", (2, 16, 10, 12), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("Conv", (2, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("Conv", (2, 3, 23, 22), (8, 3, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}),
    ("Conv", (3, 8, 11, 11), (16, 8, 3, 3), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ("Conv", (3, 16, 5, 5), (8, 16, 1, 1), {}),
    ("FusedConv", (2, 8, 12, 12), (16, 8, 1, 1), {"activation": "Relu"}),
]


@pytest.mark.parametrize("op,xs,ws,attrs", SPLIT_CASES)
def test_split_conv(split_everything, op, xs, ws, attrs):
    ours, ref = run_both(op, [("X", randn(*xs))], {"W": randn(*ws), "B": randn(ws[0])},
                         domain="com.microsoft" if op == "FusedConv" else "", **attrs)
    check(ours, ref)


@pytest.mark.parametrize("xs,attrs", POOLS[:8])
def test_split_pools(split_everything, xs, attrs):
    x = randn(*xs)
    check(*run_both("MaxPool", [("X", x)], **attrs), tol=0)
    if "dilations" not in attrs:  # AveragePool-17 has none
        check(*run_both("AveragePool", [("X", x)], **attrs), tol=1e-5)


def test_split_batchnorm(split_everything):
    c = 6
    x = randn(2, c, 9, 9)
    consts = {"s": randn(c), "b": randn(c), "m": randn(c), "v": np.abs(randn(c)) + 0.1}
    check(*run_both("BatchNormalization", [("X", x)], consts))
