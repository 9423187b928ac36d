"""The 8-bit integer GEMMs (kernels/_int8.py: float32 BLAS on K blocks small enough to be exact)
against exact int64 math (tests/exact_int.py), bit for bit.

Operands sit at the extremes of their types (all 255 / -128 values, zero points 0 / 128 / 255),
K is large (4096; 70,000, where one float32 GEMM would round), shapes broadcast over batches, and
ConvInteger runs with groups, padding, strides and dilations (channel chunks, and the float64
fallback for a window too large even for one channel)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import ortlite
from ortlite.kernels import _int8
from ortlite.types import onnx_elem_type
from tests.exact_int import (assert_requantized, conv_integer, dynamic_quantize_linear, dynamic_quantize_lstm,
                              matmul_integer)

MS = "com.microsoft"
U8, S8 = np.dtype(np.uint8), np.dtype(np.int8)


def _model(op, inputs, consts=(), out_type=None, domain="", **attrs):
    """One-node model; inputs: (name, array) in node order, '' for a missing optional input."""
    node = helper.make_node(op, [n for n, _ in inputs], ["y"], domain=domain or None, **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
                    for n, a in inputs if n and n not in consts]
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in inputs if n and n in consts]
    out = helper.make_tensor_value_info("y", out_type or 0, None)
    m = helper.make_model(helper.make_graph([node], "g", graph_inputs, [out], inits),
                          opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    feeds = {n: a for n, a in inputs if n and n not in consts}
    return ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _extreme(rng, dtype, shape, kind):
    """'max' / 'min': every value at the type's end; 'ends': each value at one end or the other."""
    info = np.iinfo(dtype)
    if kind == "max":
        return np.full(shape, info.max, dtype)
    if kind == "min":
        return np.full(shape, info.min, dtype)
    return np.where(rng.random(shape) < 0.5, info.min, info.max).astype(dtype)


def _zp(dtype, v):
    return None if v is None else np.asarray(v, dtype)


ZPS = {U8: [None, 0, 128, 255], S8: [None, -128, 0, 127]}


# ---------------------------------------------------------------------------------- the helper

@pytest.mark.parametrize("a_dt,b_dt", [(U8, S8), (U8, U8), (S8, S8), (S8, U8)])
@pytest.mark.parametrize("kind", ["max", "min", "ends"])
def test_helper_extremes_k4096(a_dt, b_dt, kind):
    rng = np.random.default_rng(0)
    a = _extreme(rng, a_dt, (3, 4096), kind)
    b = _extreme(rng, b_dt, (4096, 5), "ends" if kind == "ends" else ("min" if kind == "max" else "max"))
    for za in ZPS[a_dt]:
        for zb in ZPS[b_dt]:
            got = _int8.exact_int_matmul(np, a, b, _zp(a_dt, za), _zp(b_dt, zb))
            want = matmul_integer(a, b, _zp(a_dt, za), _zp(b_dt, zb))
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want, err_msg=f"zero points {za}, {zb}")


@pytest.mark.parametrize("a_dt,b_dt,za,zb", [(U8, S8, None, None), (U8, S8, 128, 0), (U8, U8, 255, 0),
                                             (S8, S8, -128, 127), (U8, U8, 0, 128)])
def test_helper_k70000_single_float32_gemm_would_round(a_dt, b_dt, za, zb):
    # partial sums climb to ~1e9 (far past 2**24) and come back, so the result fits int32
    k = 70000
    rng = np.random.default_rng(1)
    ai = np.iinfo(a_dt)
    bi = np.iinfo(b_dt)
    a = rng.integers(ai.max - 3, ai.max + 1, (2, k)).astype(a_dt)
    a[:, ::7] = ai.min  # a few at the other end
    b = np.empty((k, 3), b_dt)
    b[: k // 2] = rng.integers(bi.min, bi.min + 2, (k // 2, 3))
    b[k // 2:] = rng.integers(bi.max - 1, bi.max + 1, (k - k // 2, 3))
    zpa, zpb = _zp(a_dt, za), _zp(b_dt, zb)
    want = matmul_integer(a, b, zpa, zpb)
    assert np.abs(want).max() < 2 ** 31
    got = _int8.exact_int_matmul(np, a, b, zpa, zpb)
    np.testing.assert_array_equal(got, want)
    prepared = _int8.IntOperand.make(np, b, zpb)  # a constant B: one-row products run as gemv on B^T
    np.testing.assert_array_equal(_int8.exact_int_matmul(np, a[:1], prepared, zpa), want[:1])
    np.testing.assert_array_equal(_int8.exact_int_matmul(np, a[0], prepared, zpa), want[0])
    # the data is a real test: one float32 GEMM over the whole K rounds it
    naive = (_int8.IntOperand.make(np, a, zpa, True).values @ _int8.IntOperand.make(np, b, zpb).values)
    assert (naive.astype(np.int64) != want).any()


def test_helper_batch_broadcast_and_vectors():
    rng = np.random.default_rng(2)
    k = 1500
    a = rng.integers(0, 256, (2, 1, 4, k)).astype(np.uint8)
    b = rng.integers(-128, 128, (3, k, 6)).astype(np.int8)
    za, zb = np.uint8(255), np.int8(-128)
    np.testing.assert_array_equal(_int8.exact_int_matmul(np, a, b, za, zb), matmul_integer(a, b, za, zb))
    b2 = b[0]  # batch folded into one GEMM
    np.testing.assert_array_equal(_int8.exact_int_matmul(np, a, b2, za, zb), matmul_integer(a, b2, za, zb))
    v = a[0, 0, 0]  # 1-D operands
    np.testing.assert_array_equal(_int8.exact_int_matmul(np, v, b2, za, zb), matmul_integer(v, b2, za, zb))
    np.testing.assert_array_equal(_int8.exact_int_matmul(np, a[0, 0], b2[:, 0], za, zb),
                                  matmul_integer(a[0, 0], b2[:, 0], za, zb))


def test_value_bound_uses_the_zero_points():
    assert _int8.value_bound(U8) == 255
    assert _int8.value_bound(S8) == 128
    assert _int8.value_bound(U8, np.uint8(128)) == 128
    assert _int8.value_bound(U8, np.array([0, 255], np.uint8)) == 255
    assert _int8.value_bound(S8, np.int8(127)) == 255
    assert _int8.value_bound(S8, np.int8(-128)) == 255
    assert _int8.block_size(255, 255) * 255 * 255 <= 2 ** 24


# ---------------------------------------------------------------------------------- MatMulInteger

@pytest.mark.parametrize("const_b", [True, False])
@pytest.mark.parametrize("a_shape,b_shape", [((1, 4096), (4096, 7)), ((2, 3, 5, 700), (700, 9)),
                                             ((2, 1, 5, 700), (3, 700, 4)), ((6, 70000), (70000, 2))])
def test_matmul_integer(const_b, a_shape, b_shape):
    rng = np.random.default_rng(3)
    k = a_shape[-1]
    a = _extreme(rng, U8, a_shape, "ends")
    b = _extreme(rng, S8, b_shape, "ends")
    if k == 70000:  # keep the sum inside int32: rows of A at one end, half of B at each end
        a = np.full(a_shape, 255, np.uint8)
        a[:, ::5] = 0
        b[: k // 2], b[k // 2:] = -128, 127
        b[::11] = 3
    m = a_shape[-2]
    for za, zb in [(np.uint8(0), None), (np.uint8(128), np.int8(0)),
                   (rng.integers(0, 256, m).astype(np.uint8), rng.integers(-128, 128, b_shape[-1]).astype(np.int8))]:
        if za.ndim == 1 and len(a_shape) > 2:
            continue  # per-row zero points are for 2-D A
        inputs = [("A", a), ("B", b), ("az", za)] + ([("bz", zb)] if zb is not None else [])
        consts = ("B", "bz") if const_b else ()
        got = _model("MatMulInteger", inputs, consts, out_type=6)
        want = matmul_integer(a, b, za, zb)
        assert np.abs(want).max() < 2 ** 31
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------- ConvInteger

CONV_CASES = [
    # x shape, w shape, group, pads, strides, dilations
    ((1, 64, 9, 9), (8, 64, 3, 3), 1, (1, 1, 1, 1), (1, 1), (1, 1)),  # K 576: channel chunks
    ((2, 64, 11, 10), (6, 32, 3, 3), 2, (0, 2, 1, 0), (2, 1), (1, 1)),  # grouped, asymmetric pads
    ((1, 16, 12, 12), (16, 1, 3, 3), 16, (1, 1, 1, 1), (2, 2), (1, 1)),  # depthwise, strided
    ((1, 600, 5, 5), (4, 600, 1, 1), 1, (0, 0, 0, 0), (1, 1), (1, 1)),  # 1x1, K 600
    ((2, 40, 9, 8), (6, 20, 3, 2), 2, (1, 0, 1, 0), (1, 2), (2, 1)),  # dilated, grouped, batch
    ((1, 2, 20, 20), (3, 2, 17, 17), 1, (0, 0, 0, 0), (1, 1), (1, 1)),  # 289 taps: float64 fallback
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x{}w{}g{}".format(*c[:3]))
@pytest.mark.parametrize("w_dt", [U8, S8])
@pytest.mark.parametrize("const_w", [True, False])
def test_conv_integer(case, w_dt, const_w):
    xs, ws, group, pads, strides, dil = case
    rng = np.random.default_rng(4)
    x = _extreme(rng, U8, xs, "ends")
    w = _extreme(rng, w_dt, ws, "ends")
    per_channel = rng.integers(np.iinfo(w_dt).min, np.iinfo(w_dt).max + 1, ws[0]).astype(w_dt)
    for xz, wz in [(np.uint8(0), None), (np.uint8(128), np.asarray(0, w_dt)), (np.uint8(255), per_channel)]:
        inputs = [("x", x), ("w", w), ("xz", xz)] + ([("wz", wz)] if wz is not None else [])
        got = _model("ConvInteger", inputs, ("w", "wz") if const_w else (), out_type=6, group=group,
                     pads=list(pads), strides=list(strides), dilations=list(dil))
        want = conv_integer(x, w, xz, wz, pads=pads, strides=strides, dilations=dil, group=group)
        np.testing.assert_array_equal(got, want)


def test_conv_integer_all_max():
    # every product 255 * 255 (zero points 0): the bound the chunks are sized for, reached
    x = np.full((1, 96, 6, 6), 255, np.uint8)
    w = np.full((4, 96, 3, 3), 255, np.uint8)
    got = _model("ConvInteger", [("x", x), ("w", w)], ("w",), out_type=6, pads=[1, 1, 1, 1])
    np.testing.assert_array_equal(got, conv_integer(x, w, pads=(1, 1, 1, 1)))


@pytest.mark.parametrize("with_bias", [False, True])
def test_qlinear_conv_requantizes_exact_sums(with_bias):
    rng = np.random.default_rng(5)
    x = _extreme(rng, U8, (1, 64, 7, 7), "ends")
    w = _extreme(rng, S8, (5, 64, 3, 3), "ends")
    xs, ws, ys = np.float32(0.02), rng.uniform(0.001, 0.01, 5).astype(np.float32), np.float32(3.0)
    xz, wz, yz = np.uint8(128), np.zeros(5, np.int8), np.uint8(100)
    bias = rng.integers(-2 ** 20, 2 ** 20, 5).astype(np.int32)
    inputs = [("x", x), ("xs", xs), ("xz", xz), ("w", w), ("ws", ws), ("wz", wz), ("ys", ys), ("yz", yz)]
    if with_bias:
        inputs.append(("B", bias))
    got = _model("QLinearConv", inputs, ("w", "ws", "wz", "B"), out_type=2, pads=[1, 1, 1, 1])
    acc = conv_integer(x, w, xz, wz, pads=(1, 1, 1, 1))
    if with_bias:
        acc = acc + bias.reshape(1, -1, 1, 1)
    real = acc * (np.float64(xs) * ws.astype(np.float64) / np.float64(ys)).reshape(1, -1, 1, 1)
    assert_requantized(got, real, yz, np.uint8)


# ------------------------------------------------------------------------ QLinearMatMul and contrib

def test_qlinear_matmul_large_k():
    rng = np.random.default_rng(6)
    k = 20000
    a = _extreme(rng, U8, (3, k), "ends")
    b = _extreme(rng, S8, (k, 4), "ends")
    sa, sb, sy = np.float32(0.05), np.float32(0.02), np.float32(20.0)
    za, zb, zy = np.uint8(255), np.int8(0), np.int8(3)
    inputs = [("a", a), ("sa", sa), ("za", za), ("b", b), ("sb", sb), ("zb", zb), ("sy", sy), ("zy", zy)]
    got = _model("QLinearMatMul", inputs, ("b", "sb", "zb"), out_type=3)
    real = matmul_integer(a, b, za, zb) * (np.float64(sa) * np.float64(sb) / np.float64(sy))
    assert_requantized(got, real, zy, np.int8)


@pytest.mark.parametrize("const_b", [True, False])
def test_matmul_integer_to_float(const_b):
    rng = np.random.default_rng(7)
    k = 5000
    a = _extreme(rng, U8, (4, k), "ends")
    b = _extreme(rng, S8, (k, 6), "ends")
    sa, sb = np.float32(0.013), rng.uniform(0.001, 0.01, 6).astype(np.float32)
    za, zb = np.uint8(128), rng.integers(-128, 128, 6).astype(np.int8)
    bias = rng.standard_normal(6).astype(np.float32)
    inputs = [("A", a), ("B", b), ("sa", sa), ("sb", sb), ("za", za), ("zb", zb), ("bias", bias)]
    got = _model("MatMulIntegerToFloat", inputs, ("B", "sb", "zb", "bias") if const_b else ("sb",),
                 out_type=1, domain=MS)
    want = matmul_integer(a, b, za, zb).astype(np.float32) * (sa * sb) + bias
    np.testing.assert_array_equal(got, want)


def test_dynamic_quantize_matmul():
    rng = np.random.default_rng(8)
    k = 3000
    a = (rng.standard_normal((5, k)) * 4).astype(np.float32)
    b = _extreme(rng, S8, (k, 7), "ends")
    sb, zb = np.float32(0.003), np.int8(0)
    got = _model("DynamicQuantizeMatMul", [("A", a), ("B", b), ("sb", sb), ("zb", zb)], ("B", "sb", "zb"),
                 out_type=1, domain=MS)
    aq, sa, za = dynamic_quantize_linear(a)
    want = matmul_integer(aq, b, za, zb).astype(np.float32) * (np.float32(sa) * sb)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------- DynamicQuantizeLinear

@pytest.mark.parametrize("name", ["normal", "positive", "negative", "zeros", "ties", "wide", "empty"])
def test_dynamic_quantize_linear_exact(name):
    rng = np.random.default_rng(9)
    x = {
        "normal": rng.standard_normal((7, 33)).astype(np.float32),
        "positive": rng.uniform(0.5, 3, (4, 5)).astype(np.float32),
        "negative": -rng.uniform(0.5, 3, (40,)).astype(np.float32),
        "zeros": np.zeros((3, 3), np.float32),
        "ties": (np.arange(-255, 256, dtype=np.float32) / 2),  # scale 1: every other x / scale is a tie
        "wide": np.array([-1e30, 3.0, 1e30, -7e29], np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }[name]
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, list(x.shape))],
                          [helper.make_tensor_value_info(n, t, None) for n, t in (("y", 2), ("s", 1), ("z", 2))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    y, s, z = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    wy, ws, wz = dynamic_quantize_linear(x)
    np.testing.assert_array_equal(y, wy)
    assert s.dtype == np.float32 and z.dtype == np.uint8
    assert np.float32(s) == ws and np.uint8(z) == wz


# ------------------------------------------------------------------------- DynamicQuantizeLSTM

@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("const_w", [True, False])
def test_dynamic_quantize_lstm_exact_gemms(direction, const_w):
    # I = 3000 with zero points at the ends: the input projection spans several exact blocks
    rng = np.random.default_rng(10)
    t, b, i, h = 4, 2, 3000, 5
    d = 2 if direction == "bidirectional" else 1
    w = _extreme(rng, S8, (d, i, 4 * h), "ends")
    r = _extreme(rng, S8, (d, h, 4 * h), "ends")
    ws = rng.uniform(1e-5, 3e-5, (d, 4 * h)).astype(np.float32)
    rs = rng.uniform(0.001, 0.003, (d, 4 * h)).astype(np.float32)
    wz = rng.integers(-128, 128, (d, 4 * h)).astype(np.int8)
    rz = np.full((d,), 127, np.int8).reshape(d)
    rs1 = rs[:, :1].reshape(d)  # per-direction R scale
    x = rng.standard_normal((t, b, i)).astype(np.float32)
    bias = (rng.standard_normal((d, 8 * h)) * 0.1).astype(np.float32)
    h0 = rng.standard_normal((d, b, h)).astype(np.float32)
    c0 = rng.standard_normal((d, b, h)).astype(np.float32)
    inputs = [("x", x), ("w", w), ("r", r), ("bias", bias), ("", None), ("h0", h0), ("c0", c0), ("", None),
              ("ws", ws), ("wz", wz), ("rs", rs1), ("rz", rz)]
    node = helper.make_node("DynamicQuantizeLSTM", [n for n, _ in inputs], ["y", "yh", "yc"], domain=MS,
                            hidden_size=h, direction=direction)
    consts = {"w", "r", "ws", "wz", "rs", "rz"} if const_w else set()
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
                                        for n, a in inputs if n and n not in consts],
                          [helper.make_tensor_value_info(n, 1, None) for n in ("y", "yh", "yc")],
                          [numpy_helper.from_array(a, n) for n, a in inputs if n in consts])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    feeds = {n: a for n, a in inputs if n and n not in consts}
    got = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    want = dynamic_quantize_lstm(x, w, r, bias, h0, c0, ws, wz, rs1, rz, direction)
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("nd", [1, 3])
def test_conv_integer_1d_3d(nd):
    # 1-D against the 2-D reference with height 1; 3-D as the sum over depth taps of 2-D convs
    rng = np.random.default_rng(11)
    if nd == 1:
        x = _extreme(rng, U8, (2, 70, 19), "ends")
        w = _extreme(rng, U8, (3, 70, 5), "ends")
        got = _model("ConvInteger", [("x", x), ("w", w)], ("w",), out_type=6, pads=[2, 1], strides=[2])
        want = conv_integer(x[:, :, None], w[:, :, None], pads=(0, 2, 0, 1), strides=(1, 2))[:, :, 0]
    else:
        x = _extreme(rng, U8, (1, 30, 4, 6, 6), "ends")
        w = _extreme(rng, S8, (2, 30, 2, 3, 3), "ends")
        xz = np.uint8(0)
        got = _model("ConvInteger", [("x", x), ("w", w), ("xz", xz)], ("w",), out_type=6, pads=[0, 1, 1, 0, 1, 1])
        want = np.stack([sum(conv_integer(x[:, :, od + dz], w[:, :, dz], pads=(1, 1, 1, 1)) for dz in range(2))
                         for od in range(3)], axis=2)
    np.testing.assert_array_equal(got, want)


# ---- the column bound of a prepared B, and the compiled DynamicQuantizeLinear

@pytest.mark.parametrize("big_column", [False, True])
def test_column_bound_single_block_exact(big_column):
    """K * 255 * 128 > 2**24 but small weights: one float32 GEMM (column bound); one column at the
    extremes forces the exact blocks again. Both equal int64 math."""
    rng = np.random.default_rng(11)
    k = 4096
    b = rng.integers(-8, 9, (k, 6), dtype=np.int8)
    if big_column:
        b[:, 2] = -128
    a = np.zeros((3, k), np.uint8)  # zero point 255: every |a - zp| is 255
    az = np.array(255, np.uint8)
    op = _int8.IntOperand.make(np, b, None)
    assert op.column_bound() == int(np.abs(b.astype(np.int64)).sum(axis=0).max())
    assert (255 * op.column_bound() <= _int8.F32_EXACT) == (not big_column)
    y = _int8.exact_int_matmul_float(np, a, op, az)
    assert y.dtype == (np.float64 if big_column else np.float32)
    np.testing.assert_array_equal(y.astype(np.int64), matmul_integer(a, b, az))


def test_dynamic_quantize_linear_compiled_matches_numpy(monkeypatch):
    from ortlite.kernels import _int8_jit, quant

    if not _int8_jit.available():
        pytest.skip("numba not available")
    rng = np.random.default_rng(12)
    cases = [(np.arange(-1000, 1000, dtype=np.float32) * np.float32(0.5)).reshape(40, 50),  # ties
             np.zeros((2, 3), np.float32), np.full(4, -2.0, np.float32), np.full(4, 7.0, np.float32),
             np.array([1e-40, 3e-39], np.float32), np.array([3e38, -3e38], np.float32)]
    cases += [(rng.standard_normal(37) * 10.0 ** rng.integers(-8, 8)).astype(np.float32) + np.float32(s)
              for s in range(-3, 4) for _ in range(10)]
    with np.errstate(over="ignore"):
        fast = [quant.dynamic_quantize_linear(np, x) for x in cases]
    monkeypatch.setitem(_int8_jit._fns, "quantize_u8", None)
    for x, got in zip(cases, fast):
        with np.errstate(over="ignore"):  # +-3e38: the range overflows to an infinite scale
            want = quant.dynamic_quantize_linear(np, x)
            ref = dynamic_quantize_linear(x)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(got[0], ref[0])
