"""Focused tests for the nn kernels (kernels/conv.py, pool.py, norm.py, resize.py, vision.py).

The ONNX node suite checks each op on a few float32 cases; these add what it
misses: float16 / float64 / integer dtypes, constant (pre-packed) vs runtime
weights, the depthwise and 1x1 fast paths, groups with dilations and strides,
MaxPool's Indices with storage_order and ceil_mode, per-channel QLinearConv,
older opsets (Resize-10, Upsample-9, BatchNormalization spatial), antialiased
resizing and LayerNormalization's optional outputs - each against onnxruntime (the integer
convolutions also against exact integer math, tests/exact_int.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import exact_int
import ortlite
from exact_int import require_exact_onnxruntime
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(1234)


def _model(op, feeds, outputs, opset, consts=None, **attrs):
    """One-node model: ``feeds`` become graph inputs, ``consts`` initializers (in input order)."""
    consts = consts or {}
    names = list(feeds) + list(consts)
    order = attrs.pop("_order", None) or names
    node = helper.make_node(op, order, list(outputs), **attrs)
    inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape)) for n, a in feeds.items()]
    outs = [helper.make_tensor_value_info(n, onnx_elem_type(dt), None) for n, dt in outputs.items()]
    inits = [numpy_helper.from_array(v, n) for n, v in consts.items()]
    m = helper.make_model(helper.make_graph([node], "g", inputs, outs, inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 9)
    return m.SerializeToString()


def run_both(op, feeds, outputs, opset=17, consts=None, **attrs):
    m = _model(op, feeds, outputs, opset, consts, **attrs)
    ours = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    ref = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    return ours, ref


def check(ours, ref, rtol=1e-5, atol=1e-5):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        assert a.shape == b.shape, (a.shape, b.shape)
        if a.dtype.kind in "iub":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------- Conv

CONV_CASES = [
    # (x shape, w shape, attrs)
    ((2, 4, 9, 10), (6, 4, 3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1])),
    ((1, 6, 11, 11), (6, 2, 3, 3), dict(group=3, dilations=[2, 2], pads=[2, 2, 2, 2])),
    ((1, 8, 12, 12), (8, 1, 3, 3), dict(group=8, pads=[1, 1, 1, 1])),  # depthwise, stride 1
    ((2, 8, 13, 12), (8, 1, 5, 5), dict(group=8, strides=[2, 2], auto_pad="SAME_LOWER")),  # depthwise, strided
    ((1, 4, 10, 10), (16, 1, 3, 3), dict(group=4, pads=[1, 1, 1, 1])),  # depth multiplier 4
    ((1, 16, 7, 9), (8, 16, 1, 1), dict()),  # 1x1
    ((2, 16, 7, 9), (8, 16, 1, 1), dict(strides=[2, 2])),  # 1x1 strided
    ((2, 3, 17), (5, 3, 4), dict(auto_pad="SAME_UPPER", strides=[3])),  # 1-D
    ((1, 2, 5, 6, 7), (4, 2, 3, 2, 3), dict(pads=[1, 0, 1, 1, 0, 1], dilations=[1, 2, 1])),  # 3-D
]


@pytest.mark.parametrize("const_w", [True, False])
@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
def test_conv_against_onnxruntime(xs, ws, attrs, const_w):
    x, w, b = randn(*xs), randn(*ws), randn(ws[0])
    if const_w:
        ours, ref = run_both("Conv", {"X": x}, {"Y": np.float32}, consts={"W": w, "B": b}, **attrs)
    else:
        ours, ref = run_both("Conv", {"X": x, "W": w, "B": b}, {"Y": np.float32}, **attrs)
    check(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_conv_keeps_dtype(dtype):
    """float16 / float64 stay in their type (onnxruntime has no float64 Conv: compare with its float32)."""
    x, w = randn(1, 4, 8, 8, dtype=dtype), randn(3, 4, 3, 3, dtype=dtype)
    ours = ortlite.InferenceSession(_model("Conv", {"X": x, "W": w}, {"Y": dtype}, 17, pads=[1, 1, 1, 1]),
                                    providers=["CPUExecutionProvider"]).run(None, {"X": x, "W": w})[0]
    f32 = {"X": x.astype(np.float32), "W": w.astype(np.float32)}
    ref = ort.InferenceSession(_model("Conv", f32, {"Y": np.float32}, 17, pads=[1, 1, 1, 1]),
                               providers=["CPUExecutionProvider"]).run(None, f32)[0]
    assert ours.dtype == dtype and ours.shape == ref.shape
    tol = 2e-2 if dtype == np.float16 else 1e-4
    np.testing.assert_allclose(ours.astype(np.float32), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2], output_padding=[1, 0], pads=[1, 0, 0, 1]),
    dict(group=2, dilations=[2, 1], strides=[1, 2]),
    dict(strides=[2, 2], output_shape=[11, 12]),
    dict(strides=[2, 2], auto_pad="SAME_LOWER"),
])
def test_conv_transpose(attrs):
    x, w, b = randn(2, 4, 5, 6), randn(4, 3, 3, 3), randn(3 * attrs.get("group", 1))
    ours, ref = run_both("ConvTranspose", {"X": x}, {"Y": np.float32}, consts={"W": w, "B": b}, **attrs)
    check(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("oracle", ["exact", "onnxruntime"])
@pytest.mark.parametrize("x_dtype", [np.int8, np.uint8])
def test_qlinearconv_per_channel(x_dtype, oracle):
    xi = np.iinfo(x_dtype)
    x = RNG.integers(xi.min, xi.max + 1, (1, 4, 7, 7)).astype(x_dtype)
    x[0, :, :3] = RNG.integers(xi.max - 40, xi.max + 1, (4, 3, 7))  # large activations
    w = RNG.integers(-128, 128, (6, 4, 3, 3)).astype(np.int8)
    consts = {
        "x_scale": np.array(0.02, np.float32), "x_zp": np.array(3, x_dtype),
        "w": w, "w_scale": RNG.uniform(0.001, 0.01, 6).astype(np.float32), "w_zp": np.zeros(6, np.int8),
        "y_scale": np.array(0.5, np.float32), "y_zp": np.array(-5 if x_dtype == np.int8 else 120, x_dtype),
        "B": RNG.integers(-500, 500, 6).astype(np.int32),
    }
    if oracle == "onnxruntime":
        require_exact_onnxruntime("QLinearConv", x_dtype, np.int8)
        ours, ref = run_both("QLinearConv", {"x": x}, {"y": x_dtype}, opset=13, consts=consts, pads=[1, 1, 1, 1])
        assert ours[0].dtype == x_dtype
        # onnxruntime's fixed-point requantization may differ by one unit
        assert np.abs(ours[0].astype(np.int32) - ref[0].astype(np.int32)).max() <= 1
        return
    m = _model("QLinearConv", {"x": x}, {"y": x_dtype}, 13, consts, pads=[1, 1, 1, 1])
    (y,) = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    acc = exact_int.conv_integer(x, w, consts["x_zp"], consts["w_zp"], pads=(1, 1, 1, 1)) + \
        consts["B"].reshape(1, 6, 1, 1)
    mult = np.float64(consts["x_scale"]) * consts["w_scale"].astype(np.float64) / np.float64(consts["y_scale"])
    exact_int.assert_requantized(y, acc * mult.reshape(1, 6, 1, 1), consts["y_zp"], x_dtype)


@pytest.mark.parametrize("oracle", ["exact", "onnxruntime"])
@pytest.mark.parametrize("w_dtype", [np.uint8, np.int8])
def test_conv_integer_zero_point(w_dtype, oracle):
    wi = np.iinfo(w_dtype)
    x = RNG.integers(0, 256, (1, 2, 6, 6)).astype(np.uint8)
    w = RNG.integers(wi.min, wi.max + 1, (3, 2, 3, 3)).astype(w_dtype)
    feeds = {"x": x, "w": w, "xz": np.array(128, np.uint8), "wz": np.array(7, w_dtype)}
    attrs = dict(pads=[1, 1, 2, 0], strides=[1, 2])
    if oracle == "onnxruntime":
        require_exact_onnxruntime("ConvInteger", np.uint8, w_dtype)
        ours, ref = run_both("ConvInteger", feeds, {"y": np.int32}, opset=13, **attrs)
        check(ours, ref)
        return
    m = _model("ConvInteger", feeds, {"y": np.int32}, 13, **attrs)
    (y,) = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, exact_int.conv_integer(x, w, 128, 7, pads=(1, 1, 2, 0), strides=(1, 2)))


# ---------------------------------------------------------------------------------- pools

@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 0, 1, 0], storage_order=1),
    dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2], storage_order=1),
])
def test_maxpool_indices(attrs):
    x = randn(2, 3, 9, 8)
    ours, ref = run_both("MaxPool", {"X": x}, {"Y": np.float32, "I": np.int64}, opset=12, **attrs)
    check(ours, ref)


@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.uint8])
def test_maxpool_dtypes(dtype):
    x = (randn(1, 2, 7, 7) * 40).astype(dtype)
    ours, ref = run_both("MaxPool", {"X": x}, {"Y": dtype}, opset=12, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    check(ours, ref)


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1, ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0, ceil_mode=1),
    dict(kernel_shape=[2, 3], auto_pad="SAME_LOWER", count_include_pad=1),
])
def test_averagepool(attrs):
    x = randn(1, 3, 8, 9)
    ours, ref = run_both("AveragePool", {"X": x}, {"Y": np.float32}, opset=17, **attrs)
    check(ours, ref)


def test_averagepool_float16_and_global():
    x = randn(2, 3, 6, 6, dtype=np.float16)
    ours, ref = run_both("AveragePool", {"X": x}, {"Y": np.float16}, kernel_shape=[2, 2], strides=[2, 2])
    check(ours, ref, rtol=1e-3, atol=1e-3)
    for op in ("GlobalAveragePool", "GlobalMaxPool"):
        ours, ref = run_both(op, {"X": x}, {"Y": np.float16})
        check(ours, ref, rtol=1e-3, atol=1e-3)
    ours, ref = run_both("GlobalLpPool", {"X": randn(2, 3, 5)}, {"Y": np.float32}, p=3)
    check(ours, ref, rtol=1e-4)


def test_lppool_and_maxunpool():
    x = randn(1, 2, 6, 6)
    ours, ref = run_both("LpPool", {"X": x}, {"Y": np.float32}, opset=18, kernel_shape=[2, 2], strides=[2, 2], p=3)
    check(ours, ref, rtol=1e-4)
    y, idx = ortlite.InferenceSession(
        _model("MaxPool", {"X": x}, {"Y": np.float32, "I": np.int64}, 12, kernel_shape=[2, 2], strides=[2, 2]),
        providers=["CPUExecutionProvider"]).run(None, {"X": x})
    ours, ref = run_both("MaxUnpool", {"y": y, "i": idx}, {"Z": np.float32}, opset=11, kernel_shape=[2, 2], strides=[2, 2])
    check(ours, ref)


# ---------------------------------------------------------------------------------- norms

def test_batchnorm_float16_and_old_spatial():
    x = randn(2, 3, 4, 5, dtype=np.float16)
    p = {k: RNG.uniform(0.5, 1.5, 3).astype(np.float16) for k in ("s", "b", "m", "v")}
    ours, ref = run_both("BatchNormalization", {"X": x}, {"Y": np.float16}, opset=15, consts=p)
    check(ours, ref, rtol=1e-3, atol=1e-3)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    ours, ref = run_both("BatchNormalization", {"X": x.astype(np.float32)}, {"Y": np.float32}, opset=7,
                         consts=p32, spatial=1, epsilon=1e-3)
    check(ours, ref, rtol=1e-5)


def test_layernorm_optional_outputs():
    x, s, b = randn(2, 3, 8), randn(3, 8), randn(3, 8)
    ours, ref = run_both("LayerNormalization", {"X": x, "S": s, "B": b},
                         {"Y": np.float32, "Mean": np.float32, "Inv": np.float32}, axis=-2, epsilon=1e-3)
    check(ours, ref, rtol=1e-4, atol=1e-5)


def test_instancenorm_lrn_lpnorm_mvn():
    x = randn(2, 5, 4, 3)
    ours, ref = run_both("InstanceNormalization", {"X": x}, {"Y": np.float32},
                         consts={"s": randn(5), "b": randn(5)}, epsilon=1e-3)
    check(ours, ref, rtol=1e-4, atol=1e-5)
    ours, ref = run_both("LRN", {"X": x}, {"Y": np.float32}, size=5, alpha=0.01, beta=0.6, bias=2.0)
    check(ours, ref, rtol=1e-5)
    ours, ref = run_both("LpNormalization", {"X": x}, {"Y": np.float32}, axis=1, p=1)
    check(ours, ref)
    ours, ref = run_both("MeanVarianceNormalization", {"X": x}, {"Y": np.float32}, axes=[0, 2, 3])
    check(ours, ref, rtol=1e-4, atol=1e-5)


def test_dropout_training_mask_and_scale():
    x = np.ones((64, 64), np.float32)
    m = _model("Dropout", {"x": x, "r": np.array(0.25, np.float32), "t": np.array(True)},
               {"y": np.float32, "mask": np.bool_}, 13)
    y, mask = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "r": np.array(0.25, np.float32), "t": np.array(True)})
    assert mask.dtype == np.bool_ and 0.65 < mask.mean() < 0.85
    np.testing.assert_allclose(y, np.where(mask, 1 / 0.75, 0).astype(np.float32), rtol=1e-6)
    y, mask = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "r": np.array(0.25, np.float32), "t": np.array(False)})
    assert mask.all() and (y == x).all()


# ---------------------------------------------------------------------------------- resize

@pytest.mark.parametrize("attrs,sizes", [
    (dict(mode="linear", antialias=1), [1, 2, 7, 5]),
    (dict(mode="cubic", antialias=1, exclude_outside=1, cubic_coeff_a=-0.5), [1, 2, 6, 9]),
    (dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"), [1, 2, 25, 7]),
    (dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric"), [1, 2, 20, 30]),
])
def test_resize18(attrs, sizes):
    x = randn(1, 2, 13, 17)
    ours, ref = run_both("Resize", {"X": x}, {"Y": np.float32}, opset=19, _order=["X", "", "", "sizes"],
                         consts={"sizes": np.array(sizes, np.int64)}, **attrs)
    check(ours, ref, rtol=1e-4, atol=1e-5)


def test_resize_uint8_and_float16():
    x = RNG.integers(0, 255, (1, 3, 8, 8)).astype(np.uint8)
    ours, ref = run_both("Resize", {"X": x}, {"Y": np.uint8}, opset=13, _order=["X", "", "scales"],
                         consts={"scales": np.array([1, 1, 2.5, 1.5], np.float32)}, mode="nearest")
    check(ours, ref)
    xh = randn(1, 3, 8, 8, dtype=np.float16)
    ours, ref = run_both("Resize", {"X": xh}, {"Y": np.float16}, opset=13, _order=["X", "", "scales"],
                         consts={"scales": np.array([1, 1, 0.5, 1.75], np.float32)}, mode="linear")
    check(ours, ref, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.6]])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize10_and_upsample9(scales, mode):
    x = randn(1, 2, 6, 10)
    s = np.array(scales, np.float32)
    ours, ref = run_both("Resize", {"X": x}, {"Y": np.float32}, opset=10, consts={"scales": s}, mode=mode)
    check(ours, ref, rtol=1e-5)
    if scales[2] >= 1:
        ours, ref = run_both("Upsample", {"X": x}, {"Y": np.float32}, opset=9, consts={"scales": s}, mode=mode)
        check(ours, ref, rtol=1e-5)


# ---------------------------------------------------------------------------------- vision

@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_gridsample16(mode, padding_mode):
    x = randn(2, 3, 5, 6)
    grid = RNG.uniform(-1.3, 1.3, (2, 4, 7, 2)).astype(np.float32)
    ours, ref = run_both("GridSample", {"X": x, "grid": grid}, {"Y": np.float32}, opset=16,
                         mode=mode, padding_mode=padding_mode, align_corners=0)
    check(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roialign(mode):
    x = randn(2, 3, 10, 12)
    rois = np.array([[1.2, 0.5, 7.7, 8.1], [0, 0, 11, 9], [3, 3, 3.5, 4]], np.float32)
    bi = np.array([0, 1, 1], np.int64)
    ours, ref = run_both("RoiAlign", {"X": x, "rois": rois, "bi": bi}, {"Y": np.float32}, opset=16,
                         mode=mode, output_height=3, output_width=4, sampling_ratio=0, spatial_scale=0.9)
    check(ours, ref, rtol=1e-4, atol=1e-5)


def test_depth_space_round_trip():
    x = randn(2, 12, 3, 4)
    for mode in ("DCR", "CRD"):
        ours, ref = run_both("DepthToSpace", {"X": x}, {"Y": np.float32}, opset=13, blocksize=2, mode=mode)
        check(ours, ref)
    ours, ref = run_both("SpaceToDepth", {"X": randn(1, 3, 4, 6)}, {"Y": np.float32}, opset=13, blocksize=2)
    check(ours, ref)
