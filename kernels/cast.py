"""Cast, CastLike, BitCast.

Numeric casts are ``astype`` (C semantics: float -> int truncates, int -> int wraps).
The special cases:
* float8 (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ) with ``saturate=1`` (the default) clamp to
  the largest finite value before converting (ml_dtypes' own conversion overflows to
  NaN/inf, which is the ``saturate=0`` behaviour);
* FLOAT8E8M0 (a bare power-of-two exponent) is built from the float32 exponent bits,
  rounded by ``round_mode``;
* strings: numbers are parsed like strtod/strtoll ('INF', '-inf', 'NaN' in any case; a
  fractional string cast to an integer type truncates); numbers are written like
  onnxruntime does: ``%.8g`` for floats, 'INF', '-INF', 'NaN', '1'/'0' for bools;
* opset 1 spelled ``to`` as a type name string ('FLOAT', 'INT64', ...).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ortlite.registry import kernel
from ortlite.types import np_dtype

from . import _direct

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

_F8_SATURATING = set()
if ml_dtypes is not None:
    for _n in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"):
        _F8_SATURATING.add(np.dtype(getattr(ml_dtypes, _n)))
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu) if ml_dtypes is not None and hasattr(ml_dtypes, "float8_e8m0fnu") else None
_STRING = np.dtype(object)


def _is_ml(dtype) -> bool:
    return dtype.kind == "V"


def _target_dtype(to):
    """Numpy dtype of the 'to' attribute: an element type int, or (opset 1) its name."""
    if isinstance(to, (bytes, str)):
        name = to.decode() if isinstance(to, bytes) else to
        try:
            to = TensorProto.DataType.Value(name.upper())
        except ValueError:
            raise ValueError(f"Cast: unknown type name to='{name}'") from None
    return np_dtype(int(to))


# ----------------------------------------------------------------------------- strings

def _to_string(X):
    """Numbers to Python str objects, the way onnxruntime writes them."""
    if X.dtype == _STRING:
        return X.copy()
    if X.dtype == np.bool_:
        out = np.where(X, "1", "0")
    elif X.dtype.kind in "iu":
        out = X.astype(np.str_)
    else:
        f = X.astype(np.float64) if _is_ml(X.dtype) or X.dtype == np.float16 else X
        out = np.char.mod("%.8g", f)
        bad = ~np.isfinite(f)
        if bad.any():
            out[np.isnan(f)] = "NaN"
            out[f == np.inf] = "INF"
            out[f == -np.inf] = "-INF"
    return out.astype(object)


def _parse_strings(X, dtype, saturate=1, round_mode="up"):
    """Python strings to numbers of ``dtype``: strtod for floats, strtoll-like for integers."""
    s = np.asarray(X, dtype=np.str_)
    s = np.char.strip(s)
    if dtype.kind in "iub":
        try:
            vals = s.astype(np.uint64 if dtype.kind == "u" else np.int64)
        except (ValueError, OverflowError):
            # '100.5' -> 100: the integer prefix, as strtoll reads it
            vals = np.trunc(s.astype(np.float64)).astype(np.int64)
        if dtype == np.bool_:
            return vals != 0
        return vals.astype(dtype)
    # float("inf"/"INF"/"+inf"/"Infinity"/"nan"/"NaN"/"1e-5") - numpy's str->float parser
    vals = s.astype(np.float64)
    return _cast_numeric(vals, dtype, saturate, round_mode)


# ----------------------------------------------------------------------------- float8 E8M0

def _to_e8m0(X, saturate, round_mode):
    """float -> FLOAT8E8M0 (2**(e-127), e=255 is NaN) from the float32 exponent bits."""
    bits = np.array(X, dtype=np.float32, copy=None, order="C").view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.uint16)
    mant = bits & 0x7FFFFF
    special = exp == 0xFF  # inf / nan
    if round_mode == "up":
        inc = mant != 0
    elif round_mode == "nearest":
        # halfway and above rounds up (ties up), except below the smallest normal
        half = (mant & 0x400000) != 0
        inc = half & (((mant & 0x3FFFFF) != 0) | (exp > 0))
    elif round_mode == "down":
        inc = np.zeros(exp.shape, dtype=bool)
    else:
        raise ValueError(f"Cast: round_mode must be 'up', 'down' or 'nearest', got '{round_mode}'")
    inc &= ~special
    if saturate:
        inc &= exp != 0xFE  # do not round past the largest exponent
    exp = exp + inc.astype(np.uint16)
    out = np.where(special, 0xFF, np.minimum(exp, 0xFF)).astype(np.uint8)
    return out.view(_E8M0)


# ----------------------------------------------------------------------------- numeric

_SUB_BYTE = {}  # ml_dtypes' 2- and 4-bit integers -> (bits, signed)
if ml_dtypes is not None:
    for _n, _b, _s in (("int4", 4, True), ("uint4", 4, False), ("int2", 2, True), ("uint2", 2, False)):
        if hasattr(ml_dtypes, _n):
            _SUB_BYTE[np.dtype(getattr(ml_dtypes, _n))] = (_b, _s)


def _to_sub_byte(X, dtype):
    """Numbers to a 2- or 4-bit integer type the same way whatever ml_dtypes release is installed
    (releases differ: tritonclient pins ml_dtypes <= 0.5.4). Integers keep their low bits (the spec:
    "discard higher bits and reinterpret"); floats are truncated toward zero and, where the spec leaves
    out-of-range values undefined, give 0 (NaN too), as the ONNX node tests expect."""
    bits, signed = _SUB_BYTE[dtype]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if X.dtype.kind in "iub" or (_is_ml(X.dtype) and X.dtype.name.startswith(("int", "uint"))):
        v = X.astype(np.int64) & ((1 << bits) - 1)
        if signed:
            v = np.where(v > hi, v - (1 << bits), v)
    else:
        f = np.trunc(X.astype(np.float64))
        v = np.where((f >= lo) & (f <= hi), f, 0).astype(np.int64)  # NaN compares false: 0
    return v.astype(np.int8).astype(dtype)


def _cast_numeric(X, dtype, saturate, round_mode):
    src = X.dtype
    if dtype in _SUB_BYTE and src != dtype:
        return _to_sub_byte(X, dtype)
    if dtype in _F8_SATURATING:
        f = X if src in (np.float32, np.float64) else X.astype(np.float32)
        if saturate:
            m = float(ml_dtypes.finfo(dtype).max)
            f = np.clip(f, -m, m)  # NaN stays NaN, +-inf -> +-max
        return f.astype(dtype)
    if _E8M0 is not None and dtype == _E8M0:
        if src == _E8M0:
            return X.copy()
        return _to_e8m0(X.astype(np.float32), saturate, round_mode)
    if _is_ml(src) and _is_ml(dtype):
        # ml_dtypes lacks some conversions between two of its own types: go through a wide one
        both_int = src.name.startswith(("int", "uint")) and dtype.name.startswith(("int", "uint"))
        X = X.astype(np.int64 if both_int else np.float32)
    return X.astype(dtype)


def _cast(xp, X, dtype, saturate=1, round_mode="up"):
    if X.dtype == dtype and dtype != _STRING:
        return X
    if xp is not np and (dtype == _STRING or X.dtype == _STRING):
        # strings live on the host only: the CUDA provider refuses such a Cast (get_capability)
        raise TypeError(f"Cast between {X.dtype} and string runs on the host only, not on a device array")
    with np.errstate(all="ignore"):
        if dtype == _STRING:
            return _to_string(np.asarray(X))
        if X.dtype == _STRING:
            return _parse_strings(X, dtype, saturate, round_mode)
        if xp is not np:
            return X.astype(dtype)
        return np.asarray(_cast_numeric(X, dtype, saturate, round_mode))


class Cast:
    """Cast to the 'to' element type (opset 1: a type name; 19: saturate; 24: round_mode)."""

    def __init__(self, ctx, *, to, saturate=1, round_mode="up"):
        self.xp = ctx.xp
        self.dtype = _target_dtype(to)
        self.saturate = saturate
        self.round_mode = round_mode

    def __call__(self, X):
        return _cast(self.xp, X, self.dtype, self.saturate, self.round_mode)


# One kernel covers every opset: later versions only add types and attributes
# (saturate at 19, round_mode at 24) whose defaults give the older behaviour.
kernel("Cast", since=1, specialize=_direct.cast)(Cast)


@kernel("CastLike", since=15)  # 19 adds saturate, 24 round_mode: defaults keep v15 behaviour
def cast_like(xp, X, target_type, *, saturate=1, round_mode="up"):
    return _cast(xp, X, target_type.dtype, saturate, round_mode)


# ----------------------------------------------------------------------------- BitCast

def _bit_width(dt):
    if _is_ml(dt) and dt.itemsize == 1:
        n = dt.name
        for w in ("1", "2", "4"):
            if n.endswith("int" + w):
                return int(w)
        if n.startswith("float4"):
            return 4
        if n.startswith("float6"):
            return 6
    return dt.itemsize * 8


class BitCast:
    """Reinterpret the bits of each element as another type of the same width."""

    def __init__(self, ctx, *, to):
        self.xp = ctx.xp
        self.dtype = _target_dtype(to)
        if self.dtype == _STRING:
            raise ValueError("BitCast: 'to' cannot be STRING")

    def __call__(self, X):
        dt = self.dtype
        src_w, dst_w = _bit_width(X.dtype), _bit_width(dt)
        if src_w != dst_w:
            raise ValueError(f"BitCast: {X.dtype} ({src_w} bits) and {dt} ({dst_w} bits) differ in width")
        if X.dtype == dt:
            return X
        # ml_dtypes keeps a sub-byte value's code in the low bits of one byte: a view works
        if not X.flags.c_contiguous:  # (ascontiguousarray would turn 0-d into 1-d)
            X = X.copy()
        return X.view(dt)


if hasattr(TensorProto, "FLOAT8E8M0"):
    try:
        import onnx.defs

        onnx.defs.get_schema("BitCast", 26)
        kernel("BitCast", since=26)(BitCast)
    except Exception:  # noqa: BLE001 - onnx without BitCast
        pass
