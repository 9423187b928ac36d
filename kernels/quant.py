"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul.

Spec: https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html. Granularity follows the
scale's shape: a scalar (per tensor), a 1-D vector along ``axis`` (per axis), or the
input's rank with ``ceil(D/block_size)`` along ``axis`` (blocked).

The integer and float8 paths use only array-module calls; 4-bit, 2-bit, float4/6 and
float8 dtypes come from ml_dtypes and so work on the CPU only.
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel
from ortlite.types import np_dtype

from . import _int8_jit
from ._int8 import exact_int_matmul_float

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None


def _int_range(dt):
    """(min, max) of an integer quantized type (numpy or ml_dtypes), or None for float types."""
    dt = np.dtype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min), int(info.max)
    if ml_dtypes is not None:
        try:
            info = ml_dtypes.iinfo(dt)
            return int(info.min), int(info.max)
        except (ValueError, TypeError):
            return None
    return None


def _is_low_float(dt):
    """float16 / bfloat16 / float8 / e8m0 ... : anything computed through float32."""
    dt = np.dtype(dt)
    return dt != np.float32 and dt != np.float64 and _int_range(dt) is None and dt.kind not in "b"


def _to_f32(xp, a):
    """float32 view of a scale / zero point / quantized value (ml_dtypes types included)."""
    return a.astype(np.float32, copy=False)


def _expand(xp, p, x_shape, axis, block_size):
    """Reshape scale / zero point ``p`` so that it broadcasts against x (per tensor / axis / block)."""
    rank = len(x_shape)
    if p.ndim == 0 or p.size == 1 and block_size <= 0:
        return p.reshape(())
    axis = axis + rank if axis < 0 else axis
    if block_size > 0:
        if p.ndim != rank:
            raise ValueError(f"blocked quantization: scale rank {p.ndim} != input rank {rank}")
        p = xp.repeat(p, block_size, axis=axis)
        return p[(slice(None),) * axis + (slice(0, x_shape[axis]),)]
    if p.ndim == 1:
        shape = [1] * rank
        shape[axis] = p.shape[0]
        return p.reshape(shape)
    return p  # same rank as x: broadcast as is


def _compute_dtype(dt):
    """Precision of the arithmetic: float64 stays, everything else runs in float32."""
    return np.float64 if np.dtype(dt) == np.float64 else np.float32


def _quantize(xp, x, scale, zero_point, out_dtype, axis, block_size, saturate, precision=None):
    x_shape = x.shape
    scale = _expand(xp, xp.asarray(scale), x_shape, axis, block_size)
    prec = np.dtype(precision) if precision is not None else scale.dtype
    if prec.kind in "iu":  # integer scales (opset 23 T2 allows int32): divide in float32
        prec = np.dtype(np.float32)
    ct = _compute_dtype(prec)
    q = x.astype(ct, copy=False) / scale.astype(ct, copy=False)
    if ct != prec and _is_low_float(prec):
        # Emulate the lower precision of the division by rounding its result to that type.
        q = q.astype(prec).astype(ct)
    zp = None
    if zero_point is not None:
        zp = _expand(xp, xp.asarray(zero_point), x_shape, axis, block_size)
    rng = _int_range(out_dtype)
    if rng is not None:
        q = xp.rint(q)
        if zp is not None:
            q += zp.astype(ct)
        q = xp.clip(q, rng[0], rng[1])
        if np.dtype(out_dtype).kind in "iu":
            return q.astype(out_dtype)
        return q.astype(np.int8 if rng[0] < 0 else np.uint8).astype(out_dtype)  # 4-bit / 2-bit
    # float8 / float4 / float6 outputs: the cast rounds to nearest even.
    if zp is not None:
        q = q + _to_f32(xp, zp).astype(ct)
    if saturate and ml_dtypes is not None:
        fmax = float(ml_dtypes.finfo(out_dtype).max)
        q = xp.clip(q, -fmax, fmax)  # NaN stays NaN
    return q.astype(out_dtype)


# QuantizeLinear: v10 per-tensor; v13 axis (per-axis); v19 saturate + float8 outputs, scale may be
# float16/bfloat16; v21 block_size, output_dtype, int4/uint4/int16/uint16; v23 precision, float4e2m1,
# scale type separate from x; v24 float8e8m0 scales; v25 int2/uint2; v28 float6. Each version only
# adds attributes or types to the previous one's meaning, so one kernel covers them all.
@kernel("QuantizeLinear", since=10)
class QuantizeLinear:
    def __init__(self, ctx, *, axis=1, block_size=0, output_dtype=0, precision=0, saturate=1):
        self.xp = ctx.xp
        self.axis = axis
        self.block_size = block_size
        self.saturate = saturate
        self.precision = np_dtype(precision) if precision else None
        self.out_dtype = np_dtype(output_dtype) if output_dtype else None
        if self.out_dtype is None and not ctx.has_input(2):
            self.out_dtype = np.dtype(np.uint8)

    def __call__(self, x, y_scale, y_zero_point=None):
        out_dtype = y_zero_point.dtype if y_zero_point is not None else self.out_dtype
        if out_dtype is None:
            out_dtype = np.dtype(np.uint8)
        return _quantize(self.xp, x, y_scale, y_zero_point, out_dtype, self.axis, self.block_size,
                         self.saturate, self.precision)


# DequantizeLinear: v10 per-tensor; v13 axis; v19 float8 inputs, float16/bfloat16 scales;
# v21 block_size, 4-bit/16-bit inputs; v23 output_dtype, float4e2m1; v24 e8m0 scales; v25 2-bit;
# v28 float6. Additions only: one kernel.
@kernel("DequantizeLinear", since=10)
class DequantizeLinear:
    def __init__(self, ctx, *, axis=1, block_size=0, output_dtype=0):
        self.xp = ctx.xp
        self.axis = axis
        self.block_size = block_size
        self.out_dtype = np_dtype(output_dtype) if output_dtype else None

    def __call__(self, x, x_scale, x_zero_point=None):
        xp = self.xp
        scale = _expand(xp, xp.asarray(x_scale), x.shape, self.axis, self.block_size)
        out_dtype = self.out_dtype
        if out_dtype is None:
            out_dtype = scale.dtype
            if _int_range(out_dtype) is not None or out_dtype.itemsize == 1:  # e8m0 scale: float32 out
                out_dtype = np.dtype(np.float32)
        ct = _compute_dtype(out_dtype)
        if _int_range(x.dtype) is not None and np.dtype(x.dtype).kind not in "iu":
            x = x.astype(np.int8 if _int_range(x.dtype)[0] < 0 else np.uint8)  # 4-bit / 2-bit
        y = x.astype(ct)
        if x_zero_point is not None:
            zp = _expand(xp, xp.asarray(x_zero_point), x.shape, self.axis, self.block_size)
            if _int_range(zp.dtype) is not None and np.dtype(zp.dtype).kind not in "iu":
                zp = zp.astype(np.int8 if _int_range(zp.dtype)[0] < 0 else np.uint8)
            y -= zp.astype(ct)
        y *= scale.astype(ct)
        return y.astype(out_dtype, copy=False)


def dynamic_quantize_linear(xp, x):
    """DynamicQuantizeLinear: (y uint8, scale float32, zero point uint8) of float32 x. The range
    always includes 0 so that 0 is exactly representable; rounding is half to even, saturating."""
    if xp is np and x.size and x.dtype == np.float32 and x.flags.c_contiguous and _int8_jit.available():
        # numpy float32 scalars (the same float32 arithmetic as below, without 0-d array calls),
        # then one compiled pass; NaN / inf ranges take the general path
        xmin, xmax = min(x.min(), np.float32(0)), max(x.max(), np.float32(0))
        scale = (xmax - xmin) / np.float32(255)
        if np.isfinite(scale):
            if scale == 0:
                scale = np.float32(1)
            zp = np.uint8(min(max(np.rint(-xmin / scale), np.float32(0)), np.float32(255)))
            return _int8_jit.quantize_u8(x, scale, zp), np.asarray(scale), np.asarray(zp)
    if x.size == 0:
        xmin = xmax = np.float32(0)
    else:
        xmin = xp.minimum(x.min(), 0).astype(np.float32)
        xmax = xp.maximum(x.max(), 0).astype(np.float32)
    scale = ((xmax - xmin) / np.float32(255)).astype(np.float32)
    # all zeros: onnxruntime reports scale 1, zero point 0 (and then every value quantizes to 0);
    # decided on the device, without reading the scale back
    scale = xp.where(scale == 0, np.float32(1), scale).astype(np.float32)
    zp = xp.clip(xp.rint(-xmin / scale), 0, 255).astype(np.uint8)
    if xp is np:
        # one float32 buffer: x / scale, rounded half to even, + zero point, saturated, in place
        q = np.divide(x, scale, dtype=np.float32)
        np.rint(q, out=q)
        q += np.float32(zp)
        np.clip(q, 0, 255, out=q)
        y = q.astype(np.uint8)
    else:
        y = xp.clip(xp.rint(x.astype(np.float32) / scale) + zp.astype(np.float32), 0, 255).astype(np.uint8)
    return y, xp.asarray(scale, dtype=np.float32), xp.asarray(zp)


# DynamicQuantizeLinear v11: uint8 only.
@kernel("DynamicQuantizeLinear", since=11)
class DynamicQuantizeLinear:
    """dynamic_quantize_linear; the compiled quantization loop is loaded at prepare time."""

    def __init__(self, ctx):
        self.xp = ctx.xp
        if self.xp is np:
            _int8_jit.available()

    def __call__(self, x):
        return dynamic_quantize_linear(self.xp, x)


def _dequant_operand(xp, a, zp):
    """Quantized operand minus its zero point, as float64 (exact for integer sums of products)."""
    if _int_range(a.dtype) is not None:
        a = a.astype(np.float64)
        if zp is not None:
            a = a - xp.asarray(zp).astype(np.float64)
        return a, True
    a = a.astype(np.float32).astype(np.float64)  # float8: zero point is 0 by convention, still honour it
    if zp is not None:
        a = a - xp.asarray(zp).astype(np.float32).astype(np.float64)
    return a, False


def _matmul_scale(xp, s, a_ndim, for_b):
    """Per-tensor scales stay scalars; a per-column b scale [N] or per-row a scale [M] broadcasts."""
    s = xp.asarray(s)
    if s.size == 1:
        return s.reshape(())
    if for_b:
        return s.reshape(s.shape[:-1] + (1, s.shape[-1])) if s.ndim == 1 else s
    return s.reshape(-1, 1) if s.ndim == 1 else s


# QLinearMatMul: v10 int8/uint8 with float scales; v21 adds float16/bfloat16 scales and float8 operands.
@kernel("QLinearMatMul", since=10)
def qlinear_matmul(xp, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    # Integer part exactly (float32 BLAS on exact K blocks, kernels/_int8.py; float8 operands in
    # float64, which holds every product sum), then one requantization.
    if xp is np and np.dtype(a.dtype).kind in "iu" and np.dtype(b.dtype).kind in "iu":
        acc = exact_int_matmul_float(xp, a, b, a_zero_point, b_zero_point).astype(np.float64, copy=False)
    else:
        ai, _ = _dequant_operand(xp, a, a_zero_point)
        bi, _ = _dequant_operand(xp, b, b_zero_point)
        acc = xp.matmul(ai, bi)
    sdt = np.dtype(xp.asarray(y_scale).dtype)
    sa = _matmul_scale(xp, a_scale, a.ndim, False).astype(np.float64)
    sb = _matmul_scale(xp, b_scale, b.ndim, True).astype(np.float64)
    sy = xp.asarray(y_scale).astype(np.float64)
    y = acc * (sa * sb / sy)
    out_dtype = y_zero_point.dtype
    return _quantize(xp, y.astype(np.float32), np.float32(1) if sdt != np.float64 else np.float64(1),
                     y_zero_point, out_dtype, 1, 0, 1)
