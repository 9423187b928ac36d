"""Focused tests for the elementwise and cast kernels (kernels/elementwise.py, kernels/cast.py).

The ONNX node suite covers the newest opset of each op on a few float32 inputs; these tests
add dtype preservation (float16, float64, bfloat16, integers), broadcasting, the opset 1-6
'broadcast'/'axis' attributes, integer division and Pow type mixes, erf accuracy, BitShift
out-of-range amounts, and string / float8 casts - against onnxruntime where it implements
the case, against numpy or math otherwise.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ortlite
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")

BF16 = np.dtype(ml_dtypes.bfloat16)
F8 = np.dtype(ml_dtypes.float8_e4m3fn)


# ---------------------------------------------------------------------------
# helpers


def _model(op, feeds, opset, out_dtype, out_shape, ir_version=None, **attrs):
    names = list(feeds)
    node = helper.make_node(op, names, ["out"], **attrs)
    inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape)) for n, a in feeds.items()]
    outputs = [helper.make_tensor_value_info("out", onnx_elem_type(out_dtype), list(out_shape))]
    model = helper.make_model(helper.make_graph([node], "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version or min(model.ir_version, 10)
    return model.SerializeToString()


def run_both(op, feeds, opset, out_dtype, out_shape, **attrs):
    """(ortlite result, onnxruntime result) for a one-node model."""
    m = _model(op, feeds, opset, out_dtype, out_shape, **attrs)
    ours = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    ref = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    return ours, ref


def run_ours(op, feeds, opset, out_dtype, out_shape, **attrs):
    m = _model(op, feeds, opset, out_dtype, out_shape, ir_version=3 if opset < 7 else None, **attrs)
    return ortlite.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


RNG = np.random.default_rng(1234)


def _rand(shape, dtype, scale=3.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


# ---------------------------------------------------------------------------
# unary ops: dtype preserved, values match onnxruntime

UNARY = ["Abs", "Atan", "Ceil", "Cos", "Erf", "Exp", "Floor", "Neg", "Reciprocal", "Relu", "Round",
         "Sigmoid", "Sign", "Sin", "Softplus", "Softsign", "Tanh", "Elu", "Selu", "LeakyRelu",
         "HardSigmoid", "HardSwish", "Mish", "Celu", "ThresholdedRelu", "Shrink"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", UNARY)
def test_unary_matches_ort(op, dtype):
    x = _rand((3, 4, 5), dtype)
    x.flat[:6] = [0.5, -0.5, 2.5, -1.5, 40.0, -40.0]  # halfway rounding, exp overflow region
    try:
        ours = run_ours(op, {"x": x}, 18, dtype, x.shape)
    except ortlite.InvalidGraph as e:  # a type the schema does not allow (Celu: float only): as onnxruntime
        with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidGraph):
            ort.InferenceSession(_model(op, {"x": x}, 18, dtype, x.shape),
                                 providers=["CPUExecutionProvider"])
        assert "expects tensor(float)" in str(e)
        return
    assert ours.dtype == np.dtype(dtype)
    try:
        _, ref = run_both(op, {"x": x}, 18, dtype, x.shape)
    except (ort.capi.onnxruntime_pybind11_state.NotImplemented, ort.capi.onnxruntime_pybind11_state.InvalidGraph):
        # onnxruntime lacks some double kernels: compare with its float32 result
        x32 = x.astype(np.float32)
        _, ref = run_both(op, {"x": x32}, 18, np.float32, x.shape)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Exp", "Erf", "LeakyRelu", "Softplus", "Gelu"])
def test_unary_float16_and_bfloat16_keep_dtype(op):
    x32 = _rand((4, 7), np.float32)
    opset = 22  # Softplus takes bfloat16 from opset 22
    for dt in (np.dtype(np.float16), BF16):
        x = x32.astype(dt)
        got = run_ours(op, {"x": x}, opset, dt, x.shape)
        assert got.dtype == dt
        want = run_ours(op, {"x": x.astype(np.float32)}, opset, np.float32, x.shape)
        np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-2, atol=2e-2)


def test_gelu_both_approximations():
    x = np.concatenate([_rand((64,), np.float32), np.float32([-5.5, -9.0, -12.0, 0.0, 30.0])])
    exact = run_ours("Gelu", {"x": x}, 20, np.float32, x.shape)
    tanh = run_ours("Gelu", {"x": x}, 20, np.float32, x.shape, approximate="tanh")
    xd = x.astype(np.float64)
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in xd])
    # relative accuracy holds also for x << 0, where 1 + erf(x) cancels in float32
    np.testing.assert_allclose(exact, want, rtol=1e-6, atol=1e-30)
    want_t = xd / (1 + np.exp(-2 * math.sqrt(2 / math.pi) * (xd + 0.044715 * xd**3)))  # = 0.5x(1+tanh u)
    np.testing.assert_allclose(tanh, want_t, rtol=1e-5, atol=1e-30)


def test_erf_accuracy():
    x = np.concatenate([np.linspace(-7, 7, 20001), np.geomspace(1e-30, 6, 2000), [0.0, np.inf, -np.inf, np.nan]])
    want = np.array([math.erf(v) for v in x])
    got64 = run_ours("Erf", {"x": x}, 13, np.float64, x.shape)
    np.testing.assert_allclose(got64, want, rtol=1e-14, atol=0)
    x32 = x.astype(np.float32)
    want32 = np.array([math.erf(v) for v in x32.astype(np.float64)]).astype(np.float32)
    got32 = run_ours("Erf", {"x": x32}, 13, np.float32, x.shape)
    # float32: the correctly rounded result, give or take one ulp
    assert np.all(np.abs(got32.view(np.int32).astype(np.int64) - want32.view(np.int32)) <= 1)


def test_scalar_inputs_give_arrays():
    x = np.array(-2.5, dtype=np.float32)
    for op in ("Abs", "Sigmoid", "Erf", "Round"):
        got = run_ours(op, {"x": x}, 13, np.float32, [])
        assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == np.float32


def test_isinf_isnan():
    x = np.array([1.0, np.inf, -np.inf, np.nan, 0.0], dtype=np.float32)
    for attrs in ({}, {"detect_negative": 0}, {"detect_positive": 0}):
        ours, ref = run_both("IsInf", {"x": x}, 10, np.bool_, x.shape, **attrs)
        np.testing.assert_array_equal(ours, ref)
    ours, ref = run_both("IsNaN", {"x": x}, 13, np.bool_, x.shape)
    np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------
# binary ops


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int64, np.int8, np.uint8])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
def test_binary_broadcast(op, dtype):
    a = _rand((2, 3, 4), dtype, 20)
    b = _rand((3, 1), dtype, 20)
    if np.dtype(dtype).kind in "iu":
        b[b == 0] = 3
    if dtype == np.uint8:
        a, b = a // 2 + 100, b % 50 + 1
    ours, ref = run_both(op, {"a": a, "b": b}, 14 if op not in ("Max", "Min") else 13, dtype, (2, 3, 4))
    assert ours.dtype == np.dtype(dtype)
    np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), rtol=1e-3 if dtype == np.float16 else 1e-6)


def test_integer_div_truncates_toward_zero():
    a = np.array([-7, 7, -7, 7, -1, 0], dtype=np.int64)
    b = np.array([2, -2, -2, 2, 3, -5], dtype=np.int64)
    got = run_ours("Div", {"a": a, "b": b}, 14, np.int64, a.shape)
    np.testing.assert_array_equal(got, [-3, -3, 3, 3, 0, 0])


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_mod(fmod, dtype):
    if np.dtype(dtype).kind == "f" and fmod == 0:
        pytest.skip("onnxruntime requires fmod=1 for floats")
    a = np.array([-7, 7, -7, 7, 5, -4], dtype=dtype)
    b = np.array([3, -3, -3, 3, 5, 3], dtype=dtype)
    ours, ref = run_both("Mod", {"a": a, "b": b}, 13, dtype, a.shape, fmod=fmod)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("xd,yd", [(np.float32, np.int64), (np.int32, np.float32), (np.int64, np.int64),
                                   (np.float32, np.float64), (np.float16, np.float32), (np.int32, np.int32)])
def test_pow_mixed_types(xd, yd):
    x = np.array([[1, 2, 3], [-2, 4, 0.5]]).astype(xd)
    for y in ([2], [3], [0.5] if np.dtype(yd).kind == "f" else [0], [1, 2, 3]):
        y = np.array(y).astype(yd)
        ours, ref = run_both("Pow", {"x": x, "y": y}, 15, xd, x.shape)
        assert ours.dtype == np.dtype(xd)
        np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), rtol=1e-3, equal_nan=True)


@pytest.mark.parametrize("op", ["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"])
def test_comparisons(op):
    a = np.array([[1, 2, np.nan], [3, -1, 2]], dtype=np.float32)
    b = np.array([2, 2, np.nan], dtype=np.float32)
    ours, ref = run_both(op, {"a": a, "b": b}, 16 if "Or" in op else 13, np.bool_, a.shape)
    np.testing.assert_array_equal(ours, ref)


def test_equal_strings():
    a = np.array(["a", "bc", ""], dtype=object)
    b = np.array(["a", "b", ""], dtype=object)
    got = run_ours("Equal", {"a": a, "b": b}, 19, np.bool_, a.shape)
    np.testing.assert_array_equal(got, [True, False, True])


def test_legacy_broadcast_axis():
    a = np.zeros((2, 3, 4, 5), dtype=np.float32)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = run_ours("Add", {"a": a, "b": b}, 6, np.float32, a.shape, broadcast=1, axis=1)
    np.testing.assert_array_equal(got, a + b[None, :, :, None])
    c = np.arange(5, dtype=np.float32)  # no axis: trailing dims, numpy's rule
    got = run_ours("Mul", {"a": a + 2, "b": c}, 1, np.float32, a.shape, broadcast=1, consumed_inputs=[0, 0])
    np.testing.assert_array_equal(got, (a + 2) * c)


def test_bitshift_out_of_range_amounts():
    x = np.array([-8, 4, -1, 3], dtype=np.int8)
    y = np.array([8, 9, -1, 1], dtype=np.int8)
    right = run_ours("BitShift", {"x": x, "y": y}, 28, np.int8, x.shape, direction="RIGHT")
    np.testing.assert_array_equal(right, [-1, 0, -1, 1])
    left = run_ours("BitShift", {"x": x, "y": y}, 28, np.int8, x.shape, direction="LEFT")
    np.testing.assert_array_equal(left, [0, 0, 0, 6])
    u = np.array([1, 255], dtype=np.uint8)
    got = run_ours("BitShift", {"x": u, "y": np.array([8, 1], np.uint8)}, 11, np.uint8, u.shape, direction="LEFT")
    np.testing.assert_array_equal(got, [0, 254])


# ---------------------------------------------------------------------------
# clip / variadic / where


def test_clip_versions():
    x = np.array([-3, -0.5, 0.5, 3, np.nan], dtype=np.float32)
    got = run_ours("Clip", {"x": x}, 6, np.float32, x.shape, min=-1.0, max=1.0)
    np.testing.assert_array_equal(got, [-1, -0.5, 0.5, 1, np.nan])
    lo, hi = np.array(-1, np.float32), np.array(1, np.float32)
    ours, ref = run_both("Clip", {"x": x, "lo": lo, "hi": hi}, 13, np.float32, x.shape)
    np.testing.assert_array_equal(ours, ref)
    xi = np.array([-300, 5, 300], dtype=np.int64)
    ours, ref = run_both("Clip", {"x": xi, "lo": np.array(-10, np.int64), "hi": np.array(10, np.int64)},
                         13, np.int64, xi.shape)
    np.testing.assert_array_equal(ours, ref)


def test_variadic_broadcast():
    feeds = {"a": _rand((2, 1, 3), np.float32), "b": _rand((4, 1), np.float32), "c": _rand((3,), np.float32)}
    for op in ("Sum", "Mean", "Max", "Min"):
        ours, ref = run_both(op, feeds, 13, np.float32, (2, 4, 3))
        np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_where_strings_and_broadcast():
    c = np.array([[True], [False]])
    x = np.array(["a", "b", "c"], dtype=object)
    y = np.array(["z"], dtype=object)
    got = run_ours("Where", {"c": c, "x": x, "y": y}, 16, object, (2, 3))
    assert got.tolist() == [["a", "b", "c"], ["z", "z", "z"]]


# ---------------------------------------------------------------------------
# Cast


def test_cast_numbers_to_strings_like_ort():
    for dt in (np.float32, np.float64, np.float16, np.int64, np.bool_):
        x = np.array([0.1, 1 / 3, -2.0, 1e10, 1e-7, np.inf, -np.inf, np.nan, 0.0, 123456789.0])
        if np.dtype(dt).kind in "bi":
            x = x[np.isfinite(x)]
        with np.errstate(over="ignore"):  # 1e10 -> float16 inf, on purpose
            x = x.astype(dt)
        ours, ref = run_both("Cast", {"x": x}, 21, object, x.shape, to=TensorProto.STRING)
        assert ours.dtype == object
        assert ours.tolist() == ref.tolist()


def test_cast_strings_to_numbers_like_ort():
    s = np.array(["1.5", "INF", "-inf", "+INF", "NaN", "nan", "1e-5", " 2", "-0", "Infinity"], dtype=object)
    for to, dt in ((TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64), (TensorProto.FLOAT16, np.float16)):
        ours, ref = run_both("Cast", {"x": s}, 21, dt, s.shape, to=to)
        assert ours.dtype == np.dtype(dt)
        np.testing.assert_array_equal(ours, ref)
    si = np.array(["15", "-3", "100.5", "0", "+4", "300"], dtype=object)
    for to, dt in ((TensorProto.INT64, np.int64), (TensorProto.INT32, np.int32), (TensorProto.UINT8, np.uint8),
                   (TensorProto.BOOL, np.bool_)):
        ours, ref = run_both("Cast", {"x": si}, 21, dt, si.shape, to=to)
        np.testing.assert_array_equal(ours, ref)


def test_cast_float8_saturate():
    x = np.array([0, 1.5, 448, 500, 1e6, -1e6, np.inf, -np.inf, np.nan], dtype=np.float32)
    sat = run_ours("Cast", {"x": x}, 21, F8, x.shape, to=TensorProto.FLOAT8E4M3FN)
    np.testing.assert_array_equal(sat.astype(np.float32), [0, 1.5, 448, 448, 448, -448, 448, -448, np.nan])
    nosat = run_ours("Cast", {"x": x}, 21, F8, x.shape, to=TensorProto.FLOAT8E4M3FN, saturate=0)
    np.testing.assert_array_equal(nosat.astype(np.float32)[:2], [0, 1.5])
    assert np.isnan(nosat.astype(np.float32)[3:]).all()
    e5 = np.dtype(ml_dtypes.float8_e5m2)
    nosat = run_ours("Cast", {"x": x}, 21, e5, x.shape, to=TensorProto.FLOAT8E5M2, saturate=0)
    assert nosat.astype(np.float32)[4] == np.inf and nosat.astype(np.float32)[7] == -np.inf


def test_cast_opset1_type_name_and_wrap():
    x = np.array([1.7, -2.7, 3.0], dtype=np.float32)
    got = run_ours("Cast", {"x": x}, 1, np.int32, x.shape, to="INT32")
    np.testing.assert_array_equal(got, [1, -2, 3])
    i = np.array([200, -56, 300], dtype=np.int16)
    ours, ref = run_both("Cast", {"x": i}, 13, np.int8, i.shape, to=TensorProto.INT8)
    np.testing.assert_array_equal(ours, ref)


def test_cast_bfloat16_roundtrip_and_castlike():
    x = _rand((10,), np.float32)
    got = run_ours("Cast", {"x": x}, 13, BF16, x.shape, to=TensorProto.BFLOAT16)
    assert got.dtype == BF16
    np.testing.assert_array_equal(got, x.astype(BF16))
    like = np.zeros((1,), dtype=np.float16)
    got = run_ours("CastLike", {"x": x, "t": like}, 15, np.float16, x.shape)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, x.astype(np.float16))


def test_bitcast_same_width():
    if "BitCast" not in {s.name for s in onnx.defs.get_all_schemas()}:
        pytest.skip("onnx has no BitCast")
    x = np.array([1.0, -2.0], dtype=np.float32)
    got = run_ours("BitCast", {"x": x}, 26, np.int32, x.shape, to=TensorProto.INT32)
    np.testing.assert_array_equal(got, x.view(np.int32))
    s = np.array(1.5, dtype=np.float16)
    got = run_ours("BitCast", {"x": s}, 26, np.uint16, [], to=TensorProto.UINT16)
    assert got.shape == () and got == s.view(np.uint16)
