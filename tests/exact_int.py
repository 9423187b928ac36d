"""Exact references for the integer and quantized ops, and a probe of onnxruntime's exactness.

ONNX defines MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv (and onnxruntime's
DynamicQuantizeMatMul, MatMulIntegerToFloat, DynamicQuantizeLSTM on top of them) with integer
products summed exactly. The references here do that in int64, then apply the float scales
as the op defines; requantization rounds half to even and saturates.

onnxruntime is not an exact oracle for them on every CPU: on x86 without AVX-512 VNNI / AVX-VNNI,
its u8s8 GEMM (MLAS) adds pairs of uint8*int8 products in saturating int16 (vpmaddubsw), so
large activations times large weights come out wrong. ``require_exact_onnxruntime`` runs a small
probe once per test session and skips an onnxruntime comparison where the probe shows that,
with the reason in the skip message; the exact-math check of the same case always runs.
"""
from __future__ import annotations

import functools
import platform

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

# ----------------------------------------------------------------------------------- references


def saturate(values, dtype):
    """Clip to dtype's range and cast."""
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def as_int(x, zero_point=None, axis=None):
    """x - zero_point in int64; a 1-D zero point lies along ``axis`` of x."""
    v = np.asarray(x).astype(np.int64)
    if zero_point is None:
        return v
    z = np.asarray(zero_point).astype(np.int64)
    if z.ndim == 1 and z.size > 1:
        shape = [1] * v.ndim
        shape[axis] = z.size
        z = z.reshape(shape)
    return v - z


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    """(A - a_zp) @ (B - b_zp) in int64; a 1-D a_zp is per row of A, a 1-D b_zp per column of B."""
    return np.matmul(as_int(a, a_zero_point, axis=-2), as_int(b, b_zero_point, axis=-1))


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, pads=(0, 0, 0, 0), strides=(1, 1),
                 dilations=(1, 1), group=1):
    """2-D convolution of (x - x_zp) with (w - w_zp) in int64 (N, C, H, W layout); a 1-D w_zp is
    per output channel. Padding adds x_zp, i.e. 0 after the subtraction."""
    xi = as_int(x, x_zero_point)
    wi = as_int(w, w_zero_point, axis=0)
    t, left, b, r = pads
    xi = np.pad(xi, ((0, 0), (0, 0), (t, b), (left, r)))
    m, cg, kh, kw = wi.shape
    sh, sw = strides
    dh, dw = dilations
    n, _, hp, wp = xi.shape
    oh = (hp - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wp - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((n, m, oh, ow), np.int64)
    mg = m // group
    for g in range(group):
        xg = xi[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, wi[g * mg:(g + 1) * mg, :, i, j])
    return out


def dynamic_quantize_linear(x):
    """ONNX DynamicQuantizeLinear (float32 arithmetic as the spec writes it): (y, scale, zero point)."""
    x = np.asarray(x, np.float32)
    hi = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
    lo = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
    if hi == lo:
        return np.zeros(x.shape, np.uint8), np.float32(1), np.uint8(0)
    scale = np.float32((hi - lo) / np.float32(255))
    zp = np.float32(np.clip(np.rint(-lo / scale), 0, 255))
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, scale, np.uint8(zp)


def requantize(real, zero_point, dtype):
    """saturate(round_half_even(real) + zero_point) for real-valued (float64) results."""
    return saturate(np.rint(real) + np.asarray(zero_point).astype(np.int64), dtype)


def assert_requantized(got, real, zero_point, dtype, tie_window=1e-5):
    """``got`` equals requantize(real, ...) exactly, except by one unit where ``real`` lies within
    ``tie_window`` (relative) of a rounding boundary (x.5): there the float32 scales an implementation
    multiplies by decide the side. ``real`` is the exact result before rounding, in units of the output
    scale (float64)."""
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    want = requantize(real, zero_point, dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    frac = np.abs(np.asarray(real) - np.floor(real) - 0.5)
    near_tie = np.broadcast_to(frac <= tie_window * np.maximum(1.0, np.abs(real)), diff.shape)
    bad = (diff > 1) | ((diff == 1) & ~near_tie)
    assert not bad.any(), (f"{int(bad.sum())} of {bad.size} values differ from exact requantization; "
                           f"first at {np.argwhere(bad)[0].tolist()}: got {got[bad][0]}, want {want[bad][0]}")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dynamic_quantize_lstm(x, w, r, bias, h0, c0, w_scale, w_zp, r_scale, r_zp, direction="forward"):
    """onnxruntime's DynamicQuantizeLSTM (com.microsoft) with exact integer GEMMs.

    x [T, B, I] float32 is quantized once (DynamicQuantizeLinear over the whole tensor); W [D, I, 4H]
    and R [D, H, 4H] are int8 with a scale / zero point per direction or per gate column; at every
    step each row of the hidden state is quantized on its own (one row per onnxruntime thread chunk).
    Gates i, o, f, c as ONNX LSTM, default activations, no peepholes or sequence lengths.
    Returns Y [T, D, B, H], Y_h [D, B, H], Y_c [D, B, H] in float32.
    """
    t_len, batch, _ = x.shape
    dirs, hidden = w.shape[0], r.shape[1]
    xq, xs, xz = dynamic_quantize_linear(x)
    y = np.zeros((t_len, dirs, batch, hidden), np.float32)
    yh = np.zeros((dirs, batch, hidden), np.float32)
    yc = np.zeros((dirs, batch, hidden), np.float32)
    for d in range(dirs):
        ws = np.asarray(w_scale[d], np.float64).reshape(-1)
        rs = np.asarray(r_scale[d], np.float64).reshape(-1)
        xw = matmul_integer(xq, w[d], xz, w_zp[d]).astype(np.float64) * (np.float64(xs) * ws)
        b = bias[d].astype(np.float64)
        h, c = h0[d].astype(np.float32), c0[d].astype(np.float64)
        steps = range(t_len) if direction == "forward" or (direction == "bidirectional" and d == 0) \
            else range(t_len - 1, -1, -1)
        for t in steps:
            hr = np.zeros((batch, 4 * hidden))
            for row in range(batch):
                hq, hs, hz = dynamic_quantize_linear(h[row])
                hr[row] = matmul_integer(hq[None], r[d], hz, r_zp[d])[0] * (np.float64(hs) * rs)
            g = xw[t] + hr + b[:4 * hidden] + b[4 * hidden:]
            i, o, f, cc = np.split(g, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
            h = (_sigmoid(o) * np.tanh(c)).astype(np.float32)
            y[t, d] = h
        yh[d], yc[d] = h, c
    return y, yh, yc


# ------------------------------------------------------------------------- onnxruntime's exactness

_ELEM = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}


def _extreme(rng, dtype, shape, high):
    info = np.iinfo(dtype)
    lo, hi = (info.max - 55, info.max) if high else (info.min, info.min + 55)
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def _probe_model(op, a, b, a_dtype):
    """One-node model: ``a`` a graph input, ``b`` an initializer (what quantized models have)."""
    names, inits = ["a", "b"], [numpy_helper.from_array(b, "b")]
    out_type = TensorProto.INT32
    if op == "QLinearConv":  # scales 1 and an output scale of 2^16: the accumulator, rounded, in range
        consts = {"as": np.float32(1), "az": a_dtype.type(0), "bs": np.float32(1), "bz": b.dtype.type(0),
                  "ys": np.float32(65536), "yz": a_dtype.type(0)}
        inits += [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
        names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
        out_type = _ELEM[a_dtype]
    graph = helper.make_graph([helper.make_node(op, names, ["y"])], "probe",
                              [helper.make_tensor_value_info("a", _ELEM[a_dtype], list(a.shape))],
                              [helper.make_tensor_value_info("y", out_type, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def onnxruntime_integer_error(op, a_dtype, b_dtype):
    """Largest difference between onnxruntime and exact integer math on a probe of ``op``
    (MatMulInteger, ConvInteger or QLinearConv, the kernels quantized ops run on) with large
    operands of the given dtypes: 0 where onnxruntime is exact on this CPU. A string where
    onnxruntime cannot run the probe at all."""
    import onnxruntime as ort

    a_dtype, b_dtype = np.dtype(a_dtype), np.dtype(b_dtype)
    worst = 0
    for b_high in (True, False):
        rng = np.random.default_rng(11)
        if op == "MatMulInteger":
            a, b = _extreme(rng, a_dtype, (4, 64), True), _extreme(rng, b_dtype, (64, 8), b_high)
            exact = matmul_integer(a, b)
        else:
            a, b = _extreme(rng, a_dtype, (1, 16, 5, 5), True), _extreme(rng, b_dtype, (8, 16, 3, 3), b_high)
            exact = conv_integer(a, b)
            if op == "QLinearConv":
                exact = requantize(exact / 65536.0, 0, a_dtype)
        try:
            sess = ort.InferenceSession(_probe_model(op, a, b, a_dtype), providers=["CPUExecutionProvider"])
            got = sess.run(None, {"a": a})[0]
        except Exception as e:  # noqa: BLE001 - the reason goes into the skip message
            return f"onnxruntime cannot run {op} on {a_dtype}x{b_dtype}: {str(e).splitlines()[0][:200]}"
        worst = max(worst, int(np.abs(got.astype(np.int64) - exact.astype(np.int64)).max()))
    return worst


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def require_exact_onnxruntime(op, a_dtype, b_dtype):
    """Skip the calling test (an onnxruntime comparison) unless onnxruntime's ``op`` kernel is exact
    for these operand dtypes on this CPU."""
    err = onnxruntime_integer_error(op, a_dtype, b_dtype)
    if isinstance(err, str):
        _skip(err)
    if err:
        a, b = np.dtype(a_dtype).name, np.dtype(b_dtype).name
        _skip(f"onnxruntime's {a}x{b} integer kernels are not exact on this CPU ({_cpu_name()}): its {op} "
                    f"on large operands differs from exact integer math by up to {err} (u8*s8 pairs summed in "
                    f"saturating int16 without VNNI); this case is checked against exact integer math instead")


def _skip(reason):
    """pytest.skip, reported at the test's own location (so `-rs` lists each skipped test)."""
    try:
        raise pytest.skip.Exception(reason, _use_item_location=True)
    except TypeError:  # a pytest without that keyword: the location is this module's
        pytest.skip(reason)
