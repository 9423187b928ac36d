"""Elementwise kernels: unary math, binary arithmetic, comparisons, logic, bitwise, activations.

Everything here is written against the array module ``xp`` (numpy on CPU, CuPy on CUDA).
The trivial one-to-one ops come from tables; the rest are short kernels.

Conventions:
* results are always ndarrays (ufuncs on 0-d inputs return numpy scalars: ``_arr`` wraps them);
* the input dtype is preserved. numpy 2 treats Python scalars as "weak", so ``X * 0.5``
  stays float16/float32. ml_dtypes types (bfloat16, float8: numpy kind 'V') do not
  follow that rule (``bf16 * 0.5`` is float32), so float math on them runs in float32 and
  is cast back (``_float_math``);
* floating-point warnings (log(0), x/0, overflow) are silenced: onnxruntime gives inf/nan
  without a word.
"""
from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

from ortlite.registry import Direct, kernel

# ----------------------------------------------------------------------------- helpers

def _quiet(xp):
    """Silence numpy floating-point warnings (CuPy never warns)."""
    return np.errstate(all="ignore") if xp is np else contextlib.nullcontext()


def _arr(xp, x, dtype=None):
    """An ndarray (ufuncs on 0-d arrays give numpy scalars), optionally cast without copying."""
    x = xp.asarray(x)
    if dtype is not None and x.dtype != dtype:
        x = x.astype(dtype)
    return x


def _is_ml(dtype) -> bool:
    """ml_dtypes types (bfloat16, float8, int4...) are numpy 'V' (void) kinds."""
    return dtype.kind == "V"


def _float_math(fn, quiet=True):
    """Run ``fn(xp, X, ...)`` in float32 for ml_dtypes inputs, cast back; keep other dtypes.

    ``quiet`` silences floating-point warnings (np.errstate costs ~2 us a call: ops that only
    warn on overflow, like Add or Relu, skip it)."""

    def run(xp, X, *args):
        if _is_ml(X.dtype):
            with _quiet(xp):
                args = tuple(a.astype(np.float32) if hasattr(a, "dtype") and _is_ml(a.dtype) else a for a in args)
                return _arr(xp, fn(xp, X.astype(np.float32), *args), X.dtype)
        if quiet:
            with _quiet(xp):
                return _arr(xp, fn(xp, X, *args), X.dtype)
        return _arr(xp, fn(xp, X, *args), X.dtype)

    return run


def _legacy_b(A, B, broadcast, axis):
    """Opsets 1-6 binary ops: with broadcast=1, B matches a contiguous run of A's dims that
    starts at ``axis`` (default: the trailing dims, which is numpy's rule)."""
    if broadcast and axis is not None and 0 < B.ndim < A.ndim:
        axis = axis + A.ndim if axis < 0 else axis
        trailing = A.ndim - axis - B.ndim
        if trailing > 0:
            B = B.reshape(B.shape + (1,) * trailing)
    return B


# ----------------------------------------------------------------------------- erf

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 1969
# (netlib specfun CALERF): three rational approximations, accurate to ~1e-16 in float64.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1


def _erfc_scaled_tail(xp, y):
    """exp(-y*y) * R(y) ~= erfc(y) for y > 0.46875 (Cody's ranges 2 and 3), float64."""
    mid = y <= 4.0
    # range 2: 0.46875 < y <= 4
    ym = xp.where(mid, y, 1.0)
    num = _ERF_C[8] * ym
    den = ym
    for i in range(7):
        num = (num + _ERF_C[i]) * ym
        den = (den + _ERF_D[i]) * ym
    r_mid = (num + _ERF_C[7]) / (den + _ERF_D[7])
    # range 3: y > 4
    yb = xp.where(mid, 5.0, y)
    z = 1.0 / (yb * yb)
    num = _ERF_P[5] * z
    den = z
    for i in range(4):
        num = (num + _ERF_P[i]) * z
        den = (den + _ERF_Q[i]) * z
    r_big = (_INV_SQRT_PI - z * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / yb
    r = xp.where(mid, r_mid, r_big)
    # exp(-y^2) split as exp(-ys^2) * exp(-(y-ys)(y+ys)) to keep the argument exact
    ys = xp.trunc(y * 16.0) / 16.0
    return xp.exp(-ys * ys) * xp.exp(-(y - ys) * (y + ys)) * r


def _erf64(xp, x):
    """Cody's erf in float64 (relative error ~1e-16)."""
    x = x.astype(np.float64)
    y = xp.abs(x)
    small = y <= 0.46875
    out = xp.empty_like(x)
    if xp is np and small.all():
        idx_small, idx_big = slice(None), None
    elif xp is np and not small.any():
        idx_small, idx_big = None, slice(None)
    else:
        idx_small, idx_big = small, ~small
    if idx_small is not None:
        xs = x[idx_small]
        z = xs * xs
        num = _ERF_A[4] * z
        den = z
        for i in range(3):
            num = (num + _ERF_A[i]) * z
            den = (den + _ERF_B[i]) * z
        out[idx_small] = xs * (num + _ERF_A[3]) / (den + _ERF_B[3])
    if idx_big is not None:
        xb = x[idx_big]
        # erf(|x| >= 6) == 1 exactly in float64: the clamp keeps 1/y^2 and exp finite
        yb = xp.minimum(xp.abs(xb), 6.0)
        v = 1.0 - _erfc_scaled_tail(xp, yb)
        v = xp.where(xb < 0, -v, v)
        out[idx_big] = xp.where(xb != xb, xb, v)  # NaN stays NaN (the clamp swallowed it)
    return out


# For float32 (and narrower) results a cheaper scheme, still evaluated in float64 so that
# the result is the correctly rounded float32 to within 0.5001 ulp (checked against math.erf):
#   |x| <= 2:  erf(x) = x * P(x^2)                 (degree-12 least-squares fit of erf(x)/x)
#   |x| >  2:  erf(x) = sign(x) * (1 - exp(Q(|x|)))  (degree-8 fit of log(erfc(x)) on [2, 3.92];
#              beyond 3.92 erf rounds to +-1 in float32)
# Coefficients are highest degree first (Horner order).
_ERF32_SMALL = (1.571405208424411e-11, -5.888440304970162e-10, 1.1221107853696199e-08,
                -1.4970003900308752e-07, 1.6080947643943374e-06, -1.4852617553697371e-05,
                0.00012045630072290335, -0.0008547456771464952, 0.005223927383874798,
                -0.02686615343756726, 0.11283791369446385, -0.3761263888356637, 1.1283791670941925)
_ERF32_LOGERFC = (1.142101371011271e-06, -3.4798741528215846e-05, 0.0004859492251298995,
                  -0.004142488834015527, 0.024296637806399703, -0.10544746180474879,
                  -0.6380764291614649, -1.1254607452255627, -0.0012598151209805722)
_ERF32_SPLIT, _ERF32_SAT = 2.0, 3.92
_ERF_BLOCK = 16384  # elements per block: the float64 temporaries stay in cache


def _erf32_block(xp, xb, plus_one=False):
    """erf (or 1 + erf, without cancellation for x << 0) of a float64 block, good to float32.

    Branch-free (np.where on a data-dependent mask is slow): both pieces are evaluated and
    blended; NaN propagates through minimum/polynomials on its own."""
    a = xp.minimum(xp.abs(xb), _ERF32_SAT)
    xc = xp.copysign(a, xb)  # clamped x keeps the small-|x| polynomial finite
    z = xc * xc
    c = _ERF32_SMALL
    p = c[0] * z
    for k in c[1:-1]:
        p += k
        p *= z
    p += c[-1]
    p *= xc
    c = _ERF32_LOGERFC
    q = c[0] * a
    for k in c[1:-1]:
        q += k
        q *= a
    q += c[-1]
    e = xp.exp(q)  # erfc(|x|) for |x| > 2
    big = xp.copysign(1.0 - e, xb)
    small = a <= _ERF32_SPLIT
    p *= small  # p*m + big*(1-m): exact for either piece (p - big would cancel tiny p)
    big *= ~small
    p += big
    if plus_one:
        p += 1.0
        # far left tail: 1 + erf(x) = erfc(-x) is tiny but not 0; Cody's erfc for those
        far = xb < -_ERF32_SAT
        if xp is not np or far.any():
            tail = _erfc_scaled_tail(xp, xp.minimum(-xp.where(far, xb, -5.0), 30.0))
            p = xp.where(far, tail, p)
    return p


def _blockwise(xp, x, fn):
    """``fn`` (float64 block -> float64 block) over x in cache-sized blocks; result in x.dtype."""
    if xp is not np or x.size <= _ERF_BLOCK:
        return xp.asarray(fn(x.astype(np.float64))).astype(x.dtype)
    flat = x.reshape(-1)
    out = np.empty(flat.shape, dtype=x.dtype)
    for s in range(0, flat.size, _ERF_BLOCK):
        e = s + _ERF_BLOCK
        out[s:e] = fn(flat[s:e].astype(np.float64))
    return out.reshape(x.shape)


def erf(xp, x):
    """Vectorized erf with x's dtype: Cody's float64 approximations for float64, a cheaper
    float64-evaluated scheme (exact to float32 rounding) for float32/float16."""
    if x.dtype == np.float64:
        return _erf64(xp, x)
    return _blockwise(xp, x, lambda xb: _erf32_block(xp, xb))


# ----------------------------------------------------------------------------- float32 Gelu

# Gelu(x) = x * Phi(x) computed in float32, branch-free, in cache-sized blocks:
#   Gelu(x) = max(x, 0) - a * Phi(-a),  a = |x|        (x Phi(x) = x - x Phi(-x) for x > 0)
#   a * Phi(-a) = h * exp(h * Q(h)),   h = min(a, 6) / 2,  h Q(h) ~= log(2 Phi(-2h))
# Q is a degree-8 fit (weighted minimax, coefficients below, highest degree first): the
# relative error of Phi(-a) is ~1e-7 for a <= 2.5 and, beyond, small next to half an ulp of x
# (the term only corrects x there; at a >= 6 it is below 1e-8). Measured against
# 0.5 x erfc(-x / sqrt 2) in float64: <= 2.3 ulp for x >= 0 and relative error <= 7e-7 for
# -2.5 <= x < 0 (where float32 rounding of the exponent dominates). x < -2.5 (a small tail
# in practice) is recomputed in float64 (_gelu_tail64), so the tiny values there keep full
# relative accuracy (correctly rounded or one ulp off); NaN propagates, Gelu(+inf) = inf,
# Gelu(-inf) = -0. About 4x faster than evaluating the float64 scheme blockwise.
_GELU_Q = (0.00012120872367829625, -0.0012743489197018013, 0.005448878115939725, -0.010791948794174465,
           -0.0012500206587590635, 0.0776601230878403, -0.29097647024673196, -1.2732039539305504,
           -1.5957706017756097)
_GELU_Q32 = tuple(np.float32(c) for c in _GELU_Q)
_GELU_TAIL = np.float32(-2.5)  # below: the float64 tail
_GELU_HMAX = np.float32(3.0)
_F32_HALF, _F32_ZERO = np.float32(0.5), np.float32(0.0)
_BLOCK32 = 65536  # float32 elements per block: the few temporaries stay in L2


# The tail in float64: Gelu(x) = -a Phi(-a) = -phi(a) g(1/a^2), a = -x >= 2.5, with
# g(u) = a Phi(-a) / phi(a) (a times Mills' ratio: 1 - u + 3u^2 - ...) a degree-10 fit on
# u in (0, 0.16] (relative error < 5e-9; lowest degree first).
_GELU_TAIL_G = (0.9999999872155597, -0.9999926179648545, 2.9986208847626004, -14.87584712203938,
                98.49748734034219, -721.8634558347695, 4870.712545267331, -26047.798734042684,
                97649.92230842823, -222357.63719651618, 228688.16599621892)
_INV_SQRT_2PI = 0.3989422804014327


def _gelu_tail64(x):
    """Gelu of float64 values x <= -2.5, to float64 precision far beyond float32's needs
    (Gelu(-inf) = -0, the limit)."""
    a2 = x * x
    u = 1.0 / a2
    c = _GELU_TAIL_G
    g = c[-1] * u
    for k in c[-2:0:-1]:
        g += k
        g *= u
    g += c[0]
    a2 *= -0.5
    e = np.exp(a2, out=a2)
    e *= g
    e *= -_INV_SQRT_2PI
    return e


def _blocks(x, out, bias):
    """(input block, output block) pairs over float32 arrays in cache-sized pieces: 1-D x/out,
    or with ``bias`` ([H]) 2-D [R, H] ones in whole rows, the block's input being x + bias
    computed into the output block (so the sum is still in cache when it is used)."""
    if bias is None:
        n = x.size
        bs = min(n, _BLOCK32)
        for s in range(0, n, bs):
            yield x[s:s + bs], out[s:s + bs]
    else:
        r, h = x.shape
        rows = max(1, _BLOCK32 // max(h, 1))
        for s in range(0, r, rows):
            yb = out[s:s + rows]
            np.add(x[s:s + rows], bias, out=yb)
            yb = yb.reshape(-1)
            yield yb, yb


def _gelu32_into(x, out, bias=None):
    """out = Gelu(x) (or Gelu(x + bias), see _blocks) for float32 C-contiguous arrays (out may
    be x)."""
    if x.size == 0:
        return out
    bs = min(x.size, _BLOCK32) if bias is None else max(1, _BLOCK32 // max(x.shape[1], 1)) * x.shape[1]
    h_buf = np.empty(bs, np.float32)
    p_buf = np.empty(bs, np.float32)
    m_buf = np.empty(bs, np.bool_)
    c = _GELU_Q32
    tails = []  # (output block, indices, inputs there): the float64 tail, done once at the end
    with np.errstate(all="ignore"):
        for xb, yb in _blocks(x, out, bias):
            k = xb.size
            if k == bs:
                h, p, m = h_buf, p_buf, m_buf
            else:
                h, p, m = h_buf[:k], p_buf[:k], m_buf[:k]
            np.abs(xb, out=h)
            h *= _F32_HALF
            np.minimum(h, _GELU_HMAX, out=h)
            np.multiply(h, c[0], out=p)
            for ck in c[1:-1]:
                p += ck
                p *= h
            p += c[-1]
            p *= h
            np.exp(p, out=p)
            p *= h
            np.less(xb, _GELU_TAIL, out=m)
            if m.any():
                idx = np.flatnonzero(m)
                tails.append((yb, idx, xb[idx]))
            np.maximum(xb, _F32_ZERO, out=yb)
            yb -= p
        if tails:
            vals = _gelu_tail64(np.concatenate([t[2] for t in tails]).astype(np.float64))
            o = 0
            for yb, idx, _ in tails:
                yb[idx] = vals[o:o + idx.size]
                o += idx.size
    return out


def gelu_f32(xp, x, out=None, bias=None):
    """Exact (erf) Gelu of a float32 array (of x + bias, bias a float32 vector over the last
    axis); numpy only (see _gelu32_into). ``out`` (float32, C-contiguous, x's shape, may be x
    when there is no bias) receives the result."""
    x = np.ascontiguousarray(x)
    if out is None:
        out = np.empty_like(x)
    if bias is None:
        _gelu32_into(x.reshape(-1), out.reshape(-1))
    else:
        h = x.shape[-1] if x.ndim else 1
        _gelu32_into(x.reshape(-1, h), out.reshape(-1, h), bias)
    return out


# FastGelu / Gelu(approximate='tanh'): 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)),
# u = sqrt(2/pi) (x + 0.044715 x^3): -2u = x * (K0 + K1 x^2), evaluated in blocks in place.
_TANH_K0 = -2.0 * math.sqrt(2.0 / math.pi)
_TANH_K1 = _TANH_K0 * 0.044715


def gelu_tanh_into(x, out, bias=None):
    """out = x / (1 + exp(x (K0 + K1 x^2))) for float32/float64 C-contiguous arrays (1-D, or
    [R, H] with ``bias`` [H] added first, see _blocks; out may be x)."""
    if x.size == 0:
        return out
    bs = min(x.size, _BLOCK32) if bias is None else max(1, _BLOCK32 // max(x.shape[1], 1)) * x.shape[1]
    dt = x.dtype.type
    k0, k1, one = dt(_TANH_K0), dt(_TANH_K1), dt(1.0)
    t_buf = np.empty(bs, x.dtype)
    with np.errstate(all="ignore"):
        for xb, yb in _blocks(x, out, bias):
            t = t_buf if xb.size == bs else t_buf[: xb.size]
            np.multiply(xb, xb, out=t)
            t *= k1
            t += k0
            t *= xb
            np.exp(t, out=t)  # overflows to inf for x << 0: x / inf = -0, the limit
            t += one
            np.divide(xb, t, out=yb)
    return out


# ----------------------------------------------------------------------------- unary tables

def _sigmoid(xp, x):
    # 1 / (1 + exp(-x)) keeps full relative precision on both sides; exp overflows to inf
    # for x << 0, giving the right limit 0 (warnings are silenced by the caller).
    # float16 goes through float32 so that small results do not flush to 0 at x < -11.
    if x.dtype == np.float16:
        return _sigmoid(xp, x.astype(np.float32)).astype(np.float16)
    e = xp.asarray(xp.exp(-x))  # (0-d inputs give numpy scalars, which have no out=)
    e += 1
    return xp.reciprocal(e, out=e)


def _softplus(xp, x):
    return xp.logaddexp(x, 0)  # log(exp(x) + 1) without overflow


# op -> (first opset, function). Float-only ops go through _float_math (bfloat16 in float32).
_UNARY_FLOAT = {
    "Acos": (7, lambda xp, x: xp.arccos(x)),
    "Acosh": (9, lambda xp, x: xp.arccosh(x)),
    "Asin": (7, lambda xp, x: xp.arcsin(x)),
    "Asinh": (9, lambda xp, x: xp.arcsinh(x)),
    "Atan": (7, lambda xp, x: xp.arctan(x)),
    "Atanh": (9, lambda xp, x: xp.arctanh(x)),
    "Ceil": (1, lambda xp, x: xp.ceil(x)),
    "Cos": (7, lambda xp, x: xp.cos(x)),
    "Cosh": (9, lambda xp, x: xp.cosh(x)),
    "Erf": (9, erf),
    "Exp": (1, lambda xp, x: xp.exp(x)),
    "Floor": (1, lambda xp, x: xp.floor(x)),
    "Log": (1, lambda xp, x: xp.log(x)),
    "Reciprocal": (1, lambda xp, x: xp.reciprocal(x)),
    "Round": (11, lambda xp, x: xp.round(x)),  # numpy rounds half to even, as ONNX asks
    "Sigmoid": (1, _sigmoid),
    "Sin": (7, lambda xp, x: xp.sin(x)),
    "Sinh": (9, lambda xp, x: xp.sinh(x)),
    "Softplus": (1, _softplus),
    "Softsign": (1, lambda xp, x: x / (1 + xp.abs(x))),
    "Sqrt": (1, lambda xp, x: xp.sqrt(x)),
    "Tan": (7, lambda xp, x: xp.tan(x)),
    "Tanh": (1, lambda xp, x: xp.tanh(x)),
    "Mish": (18, lambda xp, x: x * xp.tanh(_softplus(xp, x))),
    "HardSwish": (14, lambda xp, x: x * xp.clip(x * (1.0 / 6.0) + 0.5, 0, 1)),
}

# Ops that also take integer (and for Abs/Neg/Sign unsigned) inputs: applied directly, except
# that ml_dtypes floats still go through float32.
_UNARY_ANY = {
    "Abs": (1, lambda xp, x: xp.abs(x)),
    "Neg": (1, lambda xp, x: xp.negative(x)),
    "Relu": (1, lambda xp, x: xp.maximum(x, 0)),
    "Sign": (9, lambda xp, x: xp.sign(x)),
    "Not": (1, lambda xp, x: xp.logical_not(x)),
    "BitwiseNot": (18, lambda xp, x: xp.invert(x)),
    "IsNaN": (9, lambda xp, x: xp.isnan(x)),
}

_BOOL_RESULT = {"Not", "IsNaN"}


# ops that never raise floating-point warnings on finite or infinite inputs
_NO_WARNINGS = {"Abs", "Neg", "Relu", "Sign", "Ceil", "Floor", "Round", "Tanh", "Atan", "Asinh",
                "Softsign", "Not", "BitwiseNot", "IsNaN"}


# Warning-free unary ops as one ufunc call on numpy arrays (the per-node cost of small models is
# mostly wrappers): ml_dtypes inputs and CuPy still take the general path.
_DIRECT = {"Abs": np.absolute, "Neg": np.negative, "Ceil": np.ceil, "Floor": np.floor, "Tanh": np.tanh,
           "Sign": np.sign, "Atan": np.arctan, "Asinh": np.arcsinh}


# Unary ops that warn (sqrt of a negative, log of 0, exp overflow): on float32/float64 inputs of rank >= 1,
# the ufunc under np.errstate as one Direct call, without the kernel's dtype dispatch.
_QUIET_DIRECT = {"Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log, "Reciprocal": np.reciprocal}
_PLAIN_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _direct_unary(name, run):
    """The kernel of a warning-free unary op, one Python call deep on numpy (``consumed_inputs``: opset
    1's legacy in-place hint, accepted and ignored); None for the others."""
    ufunc = _DIRECT.get(name)
    if name == "Relu":
        def fast(xp, X, *, consumed_inputs=None):
            if xp is np and type(X) is np.ndarray and X.dtype.kind in "fiu" and X.ndim:
                return np.maximum(X, X.dtype.type(0))
            return run(xp, X)
    elif ufunc is not None:
        def fast(xp, X, *, consumed_inputs=None):
            if xp is np and type(X) is np.ndarray and X.dtype.kind in "fiub" and X.ndim:
                return ufunc(X)
            return run(xp, X)
    else:
        return None
    return fast


def _specialize_unary(name):
    """The plan-time form of ``_direct_unary``'s fast path: where shape inference tells a numpy input of a
    plain dtype and rank >= 1 (a ufunc on a 0-d array gives a numpy scalar), the node is one ufunc call.
    Relu is ``maximum(X, 0)`` with a zero of X's dtype made here (maximum propagates NaN, as Relu must)."""
    ufunc = _DIRECT.get(name)
    quiet = _QUIET_DIRECT.get(name)
    if quiet is not None:
        def specialize_quiet(ctx, consumed_inputs=None):
            dtype, rank = ctx.input_dtype(0), ctx.input_rank(0)
            if ctx.xp is not np or dtype is None or not rank or np.dtype(dtype) not in _PLAIN_FLOATS:
                return None

            def quiet_direct(X, _u=quiet, _errstate=np.errstate):
                with _errstate(all="ignore"):
                    return _u(X)

            return Direct(quiet_direct)

        return specialize_quiet
    if name != "Relu" and ufunc is None:
        return None

    def specialize(ctx, consumed_inputs=None):
        dtype, rank = ctx.input_dtype(0), ctx.input_rank(0)
        if ctx.xp is not np or dtype is None or not rank:
            return None
        if name == "Relu":
            return Direct(np.maximum, dtype.type(0)) if dtype.kind in "fiu" else None
        return Direct(ufunc) if dtype.kind in "fiub" else None

    return specialize


def _register_unary(name, since, fn, bool_result):
    run = _float_math(fn, quiet=name not in _NO_WARNINGS)
    fast = None if bool_result else _direct_unary(name, run)

    if fast is not None:
        unary = fast
    elif bool_result:
        def unary(xp, X, *, consumed_inputs=None):
            x = X.astype(np.float32) if _is_ml(X.dtype) else X
            return _arr(xp, fn(xp, x))
    elif since == 1:
        # opset 1 carried a 'consumed_inputs' attribute (legacy in-place hint): accepted, ignored
        def unary(xp, X, *, consumed_inputs=None):
            return run(xp, X)
    else:
        def unary(xp, X):
            return run(xp, X)

    unary.__name__ = unary.__qualname__ = name.lower()
    kernel(name, since=since, specialize=None if bool_result else _specialize_unary(name))(unary)


for _name, (_since, _fn) in {**_UNARY_FLOAT, **_UNARY_ANY}.items():
    _register_unary(_name, _since, _fn, _name in _BOOL_RESULT)


@kernel("IsInf", since=10)
def is_inf(xp, X, *, detect_negative=1, detect_positive=1):
    if _is_ml(X.dtype):
        X = X.astype(np.float32)
    if detect_negative and detect_positive:
        return _arr(xp, xp.isinf(X))
    if detect_positive:
        return _arr(xp, X == np.inf)
    if detect_negative:
        return _arr(xp, X == -np.inf)
    return xp.zeros(X.shape, dtype=bool)


# ----------------------------------------------------------------------------- activations with attributes

@kernel("Elu", since=1)
def elu(xp, X, *, alpha=1.0, consumed_inputs=None):
    return _float_math(lambda xp, x: xp.maximum(x, 0) + alpha * xp.expm1(xp.minimum(x, 0)))(xp, X)


@kernel("Celu", since=12)
def celu(xp, X, *, alpha=1.0):
    def f(xp, x):
        return xp.maximum(x, 0) + xp.minimum(alpha * xp.expm1(xp.minimum(x, 0) / alpha), 0)
    return _float_math(f)(xp, X)


@kernel("Selu", since=1)
def selu(xp, X, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875, consumed_inputs=None):
    def f(xp, x):
        return gamma * (xp.maximum(x, 0) + alpha * xp.expm1(xp.minimum(x, 0)))
    return _float_math(f)(xp, X)


@kernel("LeakyRelu", since=1)
def leaky_relu(xp, X, *, alpha=0.01, consumed_inputs=None):
    # max(x, 0) + alpha * min(x, 0): same as where(x >= 0, x, alpha * x), faster
    def f(xp, x):
        out = xp.minimum(x, 0)
        out *= alpha
        out += xp.maximum(x, 0)
        return out
    return _float_math(f)(xp, X)


@kernel("ThresholdedRelu", since=10)
def thresholded_relu(xp, X, *, alpha=1.0):
    return _float_math(lambda xp, x: xp.where(x > alpha, x, 0))(xp, X)


@kernel("HardSigmoid", since=1)
def hard_sigmoid(xp, X, *, alpha=0.2, beta=0.5, consumed_inputs=None):
    return _float_math(lambda xp, x: xp.clip(x * alpha + beta, 0, 1))(xp, X)


@kernel("Shrink", since=9)
def shrink(xp, X, *, bias=0.0, lambd=0.5):
    # Shrink also takes integer tensors: compute, then cast back to the input type
    def f(xp, x):
        return xp.where(x < -lambd, x + bias, xp.where(x > lambd, x - bias, 0))
    return _float_math(f)(xp, X)


@kernel("Gelu", since=20)
def gelu(xp, X, *, approximate="none"):
    if approximate == "tanh":
        # 0.5 * x * (1 + tanh(u)) == x * sigmoid(2u): same value, no cancellation for x << 0
        c = 2.0 * math.sqrt(2.0 / math.pi)

        def f(xp, x):
            if xp is np and x.dtype in (np.float32, np.float64):
                x = np.ascontiguousarray(x)
                return gelu_tanh_into(x.reshape(-1), np.empty(x.size, x.dtype)).reshape(x.shape)
            if xp is np and x.dtype == np.float16:
                x32 = x.astype(np.float32).reshape(-1)
                return gelu_tanh_into(x32, x32).reshape(x.shape).astype(np.float16)
            return x * _sigmoid(xp, c * (x + 0.044715 * (x * x * x)))
    elif approximate == "none":
        r2 = 1.0 / math.sqrt(2.0)

        def f(xp, x):
            if x.dtype == np.float64:
                return (0.5 * x) * (1.0 + _erf64(xp, x * r2))
            if xp is np:  # float32 natively; float16 through float32
                x32 = x if x.dtype == np.float32 else x.astype(np.float32)
                return gelu_f32(xp, x32, None if x32 is x else x32)
            # 0.5 * x * (1 + erf(x / sqrt 2)), all in float64 before the one rounding
            return _blockwise(xp, x, lambda xb: (0.5 * xb) * _erf32_block(xp, xb * r2, plus_one=True))
    else:
        from ortlite.errors import NotImplemented as OrtNotImplemented

        raise OrtNotImplemented(f"Gelu: approximate='{approximate}' not supported (use 'none' or 'tanh')")
    return _float_math(f)(xp, X)


@kernel("Swish", since=24)
def swish(xp, X, *, alpha=1.0):
    return _float_math(lambda xp, x: x * _sigmoid(xp, x * alpha))(xp, X)


@kernel("PRelu", since=1)  # v1/v6: slope is a scalar or per-channel (axis 1) vector
def prelu_legacy(xp, X, slope, *, consumed_inputs=None):
    if slope.ndim == 1 and slope.size > 1 and X.ndim > 2 and slope.shape[0] == X.shape[1]:
        slope = slope.reshape((-1,) + (1,) * (X.ndim - 2))
    return prelu(xp, X, slope)


@kernel("PRelu", since=7)  # v7: slope broadcasts to X numpy-style (unidirectional)
def prelu(xp, X, slope):
    return _float_math(lambda xp, x, s: xp.maximum(x, 0) + s * xp.minimum(x, 0))(xp, X, slope)


# ----------------------------------------------------------------------------- Clip

@kernel("Clip", since=1)  # v1/v6: bounds are attributes (absent: -FLT_MAX / FLT_MAX, i.e. none)
def clip_legacy(xp, X, *, max=None, min=None, consumed_inputs=None):  # noqa: A002
    def f(xp, x):
        if min is not None:
            x = xp.maximum(x, min)
        if max is not None:
            x = xp.minimum(x, max)
        return x
    return _float_math(f)(xp, X)


@kernel("Clip", since=11)  # v11: bounds are optional inputs (v12 adds integer types)
def clip(xp, X, min=None, max=None):  # noqa: A002
    # maximum then minimum: with min > max every value becomes max, as the spec says
    out = X
    if min is not None:
        out = xp.maximum(out, min.reshape(()) if min.ndim else min)
    if max is not None:
        out = xp.minimum(out, max.reshape(()) if max.ndim else max)
    if out is X:
        return X
    return _arr(xp, out, X.dtype)


# ----------------------------------------------------------------------------- binary ops

def _div(xp, A, B):
    if A.dtype.kind in "iu":
        # ONNX integer division truncates toward zero (C semantics); numpy floors
        q = xp.floor_divide(A, B)
        if A.dtype.kind == "i":
            r = A - q * B
            q = q + ((r != 0) & ((A < 0) != (B < 0))).astype(q.dtype)
        return q
    return xp.true_divide(A, B)


_BINARY = {
    # op -> (function, result is bool)
    "Add": (lambda xp, a, b: xp.add(a, b), False),
    "Sub": (lambda xp, a, b: xp.subtract(a, b), False),
    "Mul": (lambda xp, a, b: xp.multiply(a, b), False),
    "Div": (_div, False),
    "And": (lambda xp, a, b: xp.logical_and(a, b), True),
    "Or": (lambda xp, a, b: xp.logical_or(a, b), True),
    "Xor": (lambda xp, a, b: xp.logical_xor(a, b), True),
    "Equal": (lambda xp, a, b: xp.equal(a, b), True),
    "Greater": (lambda xp, a, b: xp.greater(a, b), True),
    "Less": (lambda xp, a, b: xp.less(a, b), True),
}
_BINARY_NEW = {
    # ops born after opset 7: numpy broadcasting from the start
    "GreaterOrEqual": (12, lambda xp, a, b: xp.greater_equal(a, b), True),
    "LessOrEqual": (12, lambda xp, a, b: xp.less_equal(a, b), True),
    "BitwiseAnd": (18, lambda xp, a, b: xp.bitwise_and(a, b), False),
    "BitwiseOr": (18, lambda xp, a, b: xp.bitwise_or(a, b), False),
    "BitwiseXor": (18, lambda xp, a, b: xp.bitwise_xor(a, b), False),
}


def _binary_compute(fn, bool_result, quiet=False):
    """``fn(xp, A, B)``; ml_dtypes inputs computed in float32; only ``quiet`` ops (Div) pay
    for silencing warnings."""
    def compute(xp, A, B):
        if _is_ml(A.dtype):
            dt = None if bool_result else A.dtype
            return _arr(xp, fn(xp, A.astype(np.float32), B.astype(np.float32)), dt)
        return _arr(xp, fn(xp, A, B))

    if not quiet:
        return compute

    def run(xp, A, B):
        with _quiet(xp):
            return compute(xp, A, B)
    return run


# Binary ops that are one ufunc call on two numpy arrays of one plain dtype (Div is not: integer
# division truncates and x/0 is silenced)
_BINARY_UFUNC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "And": np.logical_and,
                 "Or": np.logical_or, "Xor": np.logical_xor, "Equal": np.equal, "Greater": np.greater,
                 "Less": np.less, "GreaterOrEqual": np.greater_equal, "LessOrEqual": np.less_equal,
                 "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor}


def _specialize_binary(name):
    """The node as its ufunc where shape inference tells two numpy inputs of one dtype (not ml_dtypes,
    not strings) and a rank >= 1 for one of them (so the result is an array, not a numpy scalar)."""
    ufunc = _BINARY_UFUNC.get(name)
    if ufunc is None:
        return None

    def specialize(ctx):
        a, b = ctx.input_dtype(0), ctx.input_dtype(1)
        if ctx.xp is not np or a is None or a != b or a.kind not in "fiub":
            return None
        if ctx.input_rank(0) or ctx.input_rank(1):
            return Direct(ufunc)
        if ctx.input_rank(0) == 0 and ctx.input_rank(1) == 0:  # a numpy scalar, made an array as _arr does
            def scalar_direct(A, B, _u=ufunc, _asarray=np.asarray):
                return _asarray(_u(A, B))
            return Direct(scalar_direct)
        return None

    return specialize


def _specialize_div(ctx):
    """Div of two signed-integer scalars (shape arithmetic: a length over a stride, a rate over a rate) on
    numpy: Python's integer division truncated toward zero, as the kernel computes it. A zero divisor or
    a quotient out of the dtype's range takes the kernel."""
    a, b = ctx.input_dtype(0), ctx.input_dtype(1)
    if ctx.xp is not np or a is None or a != b or a.kind != "i" or a.type.__module__ != "numpy":
        return None
    if ctx.input_rank(0) != 0 or ctx.input_rank(1) != 0:
        return None
    dt = np.dtype(a)
    info = np.iinfo(dt)
    kern = functools.partial(_BINARY_DIV_RUN, np)

    def div_direct(A, B, _lo=info.min, _hi=info.max, _dt=dt, _k=kern):
        if A.ndim or B.ndim:
            return _k(A, B)
        x, y = int(A), int(B)
        if y:
            q = abs(x) // abs(y)
            if (x < 0) != (y < 0):
                q = -q
            if _lo <= q <= _hi:
                return np.array(q, _dt)
        return _k(A, B)

    return Direct(div_direct)


def _register_binary(name, fn, bool_result):
    run = _binary_compute(fn, bool_result, quiet=name == "Div")

    # v1-v6: the 'broadcast'/'axis' attributes (v1 also 'consumed_inputs')
    def binary_legacy(xp, A, B, *, axis=None, broadcast=0, consumed_inputs=None):
        return run(xp, A, _legacy_b(A, B, broadcast, axis))

    # v7+: numpy-style multidirectional broadcasting
    def binary(xp, A, B):
        return run(xp, A, B)

    binary_legacy.__name__ = binary_legacy.__qualname__ = name.lower() + "_legacy"
    binary.__name__ = binary.__qualname__ = name.lower()
    kernel(name, since=1)(binary_legacy)
    kernel(name, since=7, specialize=_specialize_div if name == "Div" else _specialize_binary(name))(binary)
    if name == "Div":
        global _BINARY_DIV_RUN
        _BINARY_DIV_RUN = binary


for _name, (_fn, _bool) in _BINARY.items():
    _register_binary(_name, _fn, _bool)

for _name, (_since, _fn, _bool) in _BINARY_NEW.items():
    def _mk(fn=_fn, b=_bool):
        run = _binary_compute(fn, b)

        def binary(xp, A, B):
            return run(xp, A, B)
        return binary

    _k = _mk()
    _k.__name__ = _k.__qualname__ = _name.lower()
    kernel(_name, since=_since, specialize=_specialize_binary(_name))(_k)


@kernel("Mod", since=10)
def mod(xp, A, B, *, fmod=0):
    # fmod=1: C fmod (sign of A); fmod=0: Python-style modulo (sign of B), for ints and floats
    with _quiet(xp):
        if _is_ml(A.dtype):
            return _arr(xp, mod(xp, A.astype(np.float32), B.astype(np.float32), fmod=fmod), A.dtype)
        return _arr(xp, xp.fmod(A, B) if fmod else xp.mod(A, B))


@kernel("BitShift", since=11)  # v28 only defines shifts out of [0, bits): 0, or -1 for negative >> n
def bit_shift(xp, X, Y, *, direction):
    bits = X.dtype.itemsize * 8
    if direction not in ("LEFT", "RIGHT"):
        raise ValueError(f"BitShift: direction must be 'LEFT' or 'RIGHT', got '{direction}'")
    Y = Y.astype(X.dtype, copy=False)
    oor = (Y < 0) | (Y >= bits) if X.dtype.kind == "i" else (Y >= bits)
    any_oor = bool(oor.any()) if xp is np else True
    if any_oor:
        Y = xp.where(oor, 0, Y).astype(X.dtype, copy=False)
    out = xp.left_shift(X, Y) if direction == "LEFT" else xp.right_shift(X, Y)
    if any_oor:
        if direction == "RIGHT" and X.dtype.kind == "i":
            fill = xp.where(X < 0, -1, 0).astype(X.dtype)
        else:
            fill = X.dtype.type(0)
        out = xp.where(oor, fill, out)
    return _arr(xp, out, X.dtype)


# ----------------------------------------------------------------------------- Pow

def _pow(xp, X, Y):
    with _quiet(xp):
        if _is_ml(X.dtype):
            return _arr(xp, _pow(xp, X.astype(np.float32), Y.astype(np.float32) if _is_ml(Y.dtype) else Y), X.dtype)
        if _is_ml(Y.dtype):
            Y = Y.astype(np.float32)
        if X.dtype.kind == "f":
            if Y.size == 1 and isinstance(Y, np.ndarray):
                # cheap common exponents (x**2 in LayerNorm-style graphs)
                y = float(Y.reshape(()))
                if y == 2.0:
                    return X * X
                if y == 1.0:
                    return X.copy()
                if y == 3.0:
                    return X * X * X
            if Y.dtype.kind in "iub" or Y.dtype.itemsize <= X.dtype.itemsize:
                return _arr(xp, xp.power(X, Y.astype(X.dtype, copy=False)), X.dtype)
            return _arr(xp, xp.power(X, Y), X.dtype)
        # integer base: the result keeps the base type
        if Y.dtype.kind in "iu" and not bool((Y < 0).any()):
            return _arr(xp, xp.power(X, Y), X.dtype)
        # fractional or negative exponents: through double, truncated like C's (int)pow(x, y)
        r = xp.power(X.astype(np.float64), Y.astype(np.float64))
        return _arr(xp, xp.trunc(r), X.dtype)


@kernel("Pow", since=1)  # v1: 'broadcast'/'axis' attributes
def pow_legacy(xp, X, Y, *, axis=None, broadcast=0):
    return _pow(xp, X, _legacy_b(X, Y, broadcast, axis))


def _specialize_pow(ctx):
    """Pow of a float32/float64 base of rank >= 1 by a constant one-value exponent 1, 2 or 3: the
    products the kernel computes (``X * X``, ...) as one Direct call."""
    dt, rank, y = ctx.input_dtype(0), ctx.input_rank(0), ctx.const(1)
    if ctx.xp is not np or not rank or dt is None or np.dtype(dt) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    if y is None or y.size != 1 or y.dtype.kind not in "iuf" or y.dtype.type.__module__ != "numpy":
        return None
    e = float(y.reshape(()))
    if e == 2.0:
        def pow_direct(X, _y):
            return X * X
    elif e == 3.0:
        def pow_direct(X, _y):
            return X * X * X
    elif e == 1.0:
        def pow_direct(X, _y):
            return X.copy()
    else:
        return None
    return Direct(pow_direct)


@kernel("Pow", since=7, specialize=_specialize_pow)  # v7: numpy broadcasting (v12 adds integer types, mixed types)
def pow_(xp, X, Y):
    return _pow(xp, X, Y)


# ----------------------------------------------------------------------------- variadic

def _fold(xp, fn, inputs):
    out = inputs[0]
    for x in inputs[1:]:
        out = fn(out, x)
    return out


def _variadic(fn):
    def run(xp, inputs):
        if not inputs:
            raise ValueError("variadic op needs at least one input")
        if len(inputs) == 1:
            return inputs[0]
        dt = inputs[0].dtype
        if _is_ml(dt):
            return _arr(xp, _fold(xp, fn(xp), [x.astype(np.float32) for x in inputs]), dt)
        return _arr(xp, _fold(xp, fn(xp), inputs), dt)
    return run


_sum_run = _variadic(lambda xp: xp.add)
_max_run = _variadic(lambda xp: xp.maximum)  # maximum/minimum propagate NaN
_min_run = _variadic(lambda xp: xp.minimum)


@kernel("Sum", since=1)  # v1-v6 required equal shapes; v8 broadcasts - numpy covers both
def sum_(xp, *inputs, consumed_inputs=None):
    return _sum_run(xp, inputs)


@kernel("Max", since=1)
def max_(xp, *inputs, consumed_inputs=None):
    return _max_run(xp, inputs)


@kernel("Min", since=1)
def min_(xp, *inputs, consumed_inputs=None):
    return _min_run(xp, inputs)


@kernel("Mean", since=1)
def mean(xp, *inputs, consumed_inputs=None):
    s = _sum_run(xp, inputs)
    if len(inputs) == 1:
        return s
    if _is_ml(s.dtype):
        return _arr(xp, s.astype(np.float32) / len(inputs), s.dtype)
    return _arr(xp, s / len(inputs), s.dtype)


# ----------------------------------------------------------------------------- Where

@kernel("Where", since=9)
def where(xp, condition, X, Y):
    return _arr(xp, xp.where(condition, X, Y))
