"""Compiled row kernels (numba, optional) for the transformer ops' elementwise and normalization work.

numpy runs Gelu, LayerNorm or Softmax as a chain of whole-array passes (each with its temporary),
about 7 ns per element for the exact Gelu; onnxruntime makes one pass with vectorized polynomial
approximations (MLAS). The loops here do the same: one pass per row with the row in L1, and the
transcendental functions as float32 polynomials that LLVM vectorizes (no libm call per element):

* ``exp32``: Cephes' expf (range reduction by ln 2, degree-6 polynomial, 2^n built from its bits),
  within 1 ulp down to float32's normal range (below: 0); NaN propagates, exp(-inf) = 0, exp(inf) = inf.
* exact Gelu in float32 with kernels.elementwise's scheme (Gelu(x) = max(x, 0) - h exp(h Q(h)),
  h = min(|x|, 6) / 2) and the same float64 tail for x < -2.5, so the accuracy is that of the numpy
  path (tests/kernels/test_transformer_perf_paths.py: test_gelu_f32_accuracy_dense).
* FastGelu / Gelu(approximate='tanh') in the overflow-free sigmoid form x / (1 + exp(-2u)).
* LayerNorm / RMSNorm rows (with SkipLayerNormalization's skip and bias added on the way in):
  the corrected two-pass mean and variance, as kernels.norm computes them, in the input's dtype.
* Softmax over the last axis.

Same conventions as kernels._jit: numba imported lazily (``ORTLITE_JIT=0`` or no numba: every
function here returns None and the numpy paths run), compiled once per dtype at session creation
(the kernels' prepare step calls the getters), cached on disk (``cache=True``); the loops release
the GIL so the callers split rows over the intra-op threads (_nn_util.run_split).
"""
from __future__ import annotations

import math

import numpy as np

from . import _jit
from ._nn_util import run_split, worker_count
from .elementwise import _GELU_Q, _GELU_TAIL_G, _INV_SQRT_2PI

# Sizes (elements) from which the compiled loops beat numpy; below, the per-call cost of either
# is a few microseconds and the numpy path is kept (it also serves shapes the loops do not take).
MIN_SIZE = 256

_F = np.float32
_L2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693359375), _F(-2.12194440e-4)
_EXP_P = tuple(_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                               1.6666665459e-1, 5.0000001201e-1))
_EXP_LO, _EXP_HI = _F(-87.3), _F(88.3)  # the reduction's 2^n stays a normal float32 in between
_EXP_INF = _F(88.73)  # above: inf in float32
_Q32 = tuple(_F(c) for c in _GELU_Q)
_TAIL_G = tuple(float(c) for c in _GELU_TAIL_G)
_TAIL_CUT = _F(-2.5)  # below: the float64 tail (kernels.elementwise._GELU_TAIL)
_TAIL_BLOCK = 64


# ------------------------------------------------------------------------------ scalar helpers
# Module globals compiled (inline) when numba loads, so numba's disk cache recognizes the loops.

def _exp32_core_py(t):
    """exp(t) in float32 (Cephes expf: range reduction by ln 2, a degree-6 polynomial, 2^n from
    its bits), vectorizable, within 1 ulp, for -87.3 <= t <= 88.3 (NaN: NaN, the 2^n factor being
    garbage)."""
    n = np.floor(t * _L2E + _F(0.5))
    r = t - n * _LN2_HI - n * _LN2_LO
    p = _EXP_P[0] * r + _EXP_P[1]
    p = p * r + _EXP_P[2]
    p = p * r + _EXP_P[3]
    p = p * r + _EXP_P[4]
    p = p * r + _EXP_P[5]
    p = p * (r * r) + r + _F(1.0)
    return p * np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)


def _exp32_py(t):
    """exp(t) in float32 for every t: _exp32_core within its range, 0 below it (results under
    float32's normal range, 1.2e-38, are flushed), inf above float32's largest; NaN stays NaN."""
    c = _EXP_LO if t < _EXP_LO else t
    c = _EXP_HI if c > _EXP_HI else c
    e = _exp32_core(c)
    e = _F(0.0) if t < _EXP_LO else e
    return np.float32(np.inf) if t > _EXP_INF else e


def _gelu_tail64_py(x):
    """Gelu of x <= -2.5 in float64 (kernels.elementwise._gelu_tail64, one value)."""
    xd = np.float64(x)
    a2 = xd * xd
    u = 1.0 / a2
    g = _TAIL_G[10] * u
    g = (g + _TAIL_G[9]) * u
    g = (g + _TAIL_G[8]) * u
    g = (g + _TAIL_G[7]) * u
    g = (g + _TAIL_G[6]) * u
    g = (g + _TAIL_G[5]) * u
    g = (g + _TAIL_G[4]) * u
    g = (g + _TAIL_G[3]) * u
    g = (g + _TAIL_G[2]) * u
    g = (g + _TAIL_G[1]) * u
    g += _TAIL_G[0]
    return np.float32(-_INV_SQRT_2PI * math.exp(-0.5 * a2) * g)


def _gelu32_py(v):
    """Exact Gelu of a float32 value below the tail cut (see kernels.elementwise._gelu32_into);
    NaN stays NaN, Gelu(inf) = inf."""
    h = np.abs(v) * _F(0.5)
    h = _F(3.0) if h > _F(3.0) else h
    q = _Q32[0] * h + _Q32[1]
    q = q * h + _Q32[2]
    q = q * h + _Q32[3]
    q = q * h + _Q32[4]
    q = q * h + _Q32[5]
    q = q * h + _Q32[6]
    q = q * h + _Q32[7]
    q = q * h + _Q32[8]
    y = (v if v > _F(0.0) else _F(0.0)) - h * _exp32_core(h * q)  # h q(h) in [-20, 0]
    return v if v != v else y


def _gelu_row_py(src, yr, idx):
    """yr = exact Gelu(src) for one row: one vectorized float32 pass, then the values below the
    tail cut recomputed in float64. The tail is looked for in blocks of _TAIL_BLOCK: a vectorized
    count, then, in the blocks that have some, their indices gathered and computed. (Counted in
    the first loop, the test stops it from vectorizing; a test-and-compute loop would be
    if-converted into computing the float64 tail, libm exp included, for every element.)"""
    h = src.shape[0]
    for j in range(h):
        yr[j] = _gelu32(src[j])
    for j0 in range(0, h, _TAIL_BLOCK):
        j1 = min(j0 + _TAIL_BLOCK, h)
        k = 0
        for j in range(j0, j1):
            k += src[j] < _TAIL_CUT
        if k == 0:
            continue
        k = 0
        for j in range(j0, j1):
            idx[k] = j
            k += src[j] < _TAIL_CUT
        for i in range(k):
            j = idx[i]
            yr[j] = _gelu_tail64(src[j])


_HELPERS = ("_exp32_core", "_exp32", "_gelu_tail64", "_gelu32", "_gelu_row")
_exp32_core, _exp32, _gelu_tail64, _gelu32, _gelu_row = (
    _exp32_core_py, _exp32_py, _gelu_tail64_py, _gelu32_py, _gelu_row_py)
_helpers_ready = []


def _nb():
    """numba (with the helpers compiled), or None."""
    nb = _jit._numba()
    if nb is not None and not _helpers_ready:
        with _jit._lock:
            if not _helpers_ready:
                for name in _HELPERS:
                    globals()[name] = nb.njit(inline="always", cache=True, error_model="numpy")(
                        globals()[name + "_py"])
                _helpers_ready.append(True)
    return nb


_OPTS = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy")
# reassoc lets the row sums vectorize; no nnan / ninf: NaN and inf propagate as in numpy
_FM_SUM = {"reassoc", "contract"}


# ------------------------------------------------------------------------------ Gelu family

GELU_ERF, GELU_TANH = 0, 1
_TANH_K0 = -2.0 * math.sqrt(2.0 / math.pi)
_TANH_K1 = _TANH_K0 * 0.044715


def _make_gelu(nb, mode):
    MODE = mode
    K0, K1 = _F(_TANH_K0), _F(_TANH_K1)

    @nb.njit(fastmath={"contract"}, **_OPTS)
    def gelu_rows(x, bias, y, r0, r1):
        """y[r] = Gelu(x[r] + bias) for rows r0 <= r < r1 of x, y [R, H] (bias [H], or [0]: none).
        Exact Gelu (MODE 0): _gelu_row, on x + bias formed in a scratch row (faster than adding
        it in each of its passes). FastGelu (MODE 1): x / (1 + exp(x (K0 + K1 x^2)))."""
        h = x.shape[1]
        has_b = bias.shape[0] != 0
        idx = np.empty(_TAIL_BLOCK + 1, np.int64)
        tmp = np.empty(h if has_b else 0, x.dtype)
        for r in range(r0, r1):
            xr, yr = x[r], y[r]
            if MODE == 1:
                for j in range(h):
                    v = xr[j] + bias[j] if has_b else xr[j]
                    yr[j] = v / (_F(1.0) + _exp32(v * (K0 + K1 * v * v)))
            elif has_b:
                for j in range(h):
                    tmp[j] = xr[j] + bias[j]
                _gelu_row(tmp, yr, idx)
            else:
                _gelu_row(xr, yr, idx)

    return gelu_rows


def gelu(mode):
    """The compiled float32 Gelu rows loop (GELU_ERF or GELU_TANH), or None."""
    def args_of(nb, t):
        r2, r1 = _jit._ro(nb, t, 2), _jit._ro(nb, t, 1)
        return (r2, r1, t[:, ::1], nb.int64, nb.int64)

    if _nb() is None:
        return None
    return _jit._compiled("tf_gelu", np.float32, _make_gelu, (int(mode),), args_of)


# ------------------------------------------------------------------------------ normalizations

LN_SKIP, LN_BIAS, LN_BETA, LN_SUM, LN_RMS = 1, 2, 4, 8, 16


def _make_norm(nb, dstr):
    dt = np.dtype(dstr)
    ZERO, ONE = dt.type(0.0), dt.type(1.0)

    @nb.njit(fastmath=_FM_SUM, **_OPTS)
    def norm_rows(x, skip, bias, gamma, beta, y, s, mean, inv, eps, flags, r0, r1):
        """For rows r0 <= r < r1 of x [R, H]: v = x[r] (+ skip[r % len(skip)]) (+ bias), then
        y[r] = (v - mean) * inv_std * gamma (+ beta) - or, with LN_RMS, v * inv_rms * gamma and
        mean 0 - with mean[r] and inv[r] written, and v into s[r] with LN_SUM. The mean and
        variance are the corrected two-pass ones (exact for rows far from 0). Unused arrays may
        have length 0. Without LN_SUM, v is kept in a scratch row (not in y: with two names for
        one buffer LLVM's overlap check would send every loop to its scalar version)."""
        h = x.shape[1]
        tmp = np.empty(0 if (flags & LN_SUM) != 0 else h, x.dtype)
        ns = skip.shape[0]
        has_s, has_b = (flags & LN_SKIP) != 0, (flags & LN_BIAS) != 0
        has_beta, want_s, rms = (flags & LN_BETA) != 0, (flags & LN_SUM) != 0, (flags & LN_RMS) != 0
        fh = dt.type(h)
        for r in range(r0, r1):
            v = s[r] if want_s else tmp
            xr = x[r]
            acc = ZERO
            if has_s:
                sr = skip[r % ns]
                if has_b:
                    for j in range(h):
                        t = xr[j] + sr[j] + bias[j]
                        v[j] = t
                        acc += t
                else:
                    for j in range(h):
                        t = xr[j] + sr[j]
                        v[j] = t
                        acc += t
            elif has_b:
                for j in range(h):
                    t = xr[j] + bias[j]
                    v[j] = t
                    acc += t
            else:
                for j in range(h):
                    t = xr[j]
                    v[j] = t
                    acc += t
            yr = y[r]
            if rms:
                sq = ZERO
                for j in range(h):
                    sq += v[j] * v[j]
                iv = ONE / np.sqrt(sq / fh + eps)
                for j in range(h):
                    yr[j] = v[j] * iv * gamma[j]
                mean[r] = ZERO
                inv[r] = iv
                continue
            c = acc / fh
            d1 = ZERO
            d2 = ZERO
            for j in range(h):
                d = v[j] - c
                d1 += d
                d2 += d * d
            d1 /= fh
            var = d2 / fh - d1 * d1
            var = ZERO if var < ZERO else var
            m = c + d1  # NaN for a row holding inf, as onnxruntime's
            iv = ONE / np.sqrt(var + eps)
            if has_beta:
                for j in range(h):
                    yr[j] = (v[j] - m) * iv * gamma[j] + beta[j]
            else:
                for j in range(h):
                    yr[j] = (v[j] - m) * iv * gamma[j]
            mean[r] = m
            inv[r] = iv

    return norm_rows


def norm_rows(dtype):
    """The compiled LayerNorm / RMSNorm rows loop for float32 / float64 (see _make_norm), or None."""
    def args_of(nb, t):
        r2, r1, w1 = _jit._ro(nb, t, 2), _jit._ro(nb, t, 1), t[::1]
        return (r2, r2, r1, r1, r1, t[:, ::1], t[:, ::1], w1, w1, t, nb.int64, nb.int64, nb.int64)

    if _nb() is None:
        return None
    dt = np.dtype(dtype)
    return _jit._compiled("tf_norm", dt, _make_norm, (dt.str,), args_of)


# ------------------------------------------------------------------------------ Softmax

def _make_softmax(nb):
    @nb.njit(fastmath=_FM_SUM, **_OPTS)
    def softmax_rows(x, y, r0, r1):
        """y[r] = exp(x[r] - max) / sum for rows r0 <= r < r1 of x, y [R, H] (float32). A row
        holding NaN, +inf, or only -inf gives NaN, as numpy's softmax does."""
        h = x.shape[1]
        for r in range(r0, r1):
            xr, yr = x[r], y[r]
            m = xr[0]
            for j in range(1, h):
                m = xr[j] if xr[j] > m else m
            acc = _F(0.0)
            for j in range(h):
                e = _exp32(xr[j] - m)
                yr[j] = e
                acc += e
            k = _F(1.0) / acc
            for j in range(h):
                yr[j] *= k

    return softmax_rows


def softmax_rows():
    """The compiled float32 softmax rows loop, or None."""
    def args_of(nb, t):
        return (_jit._ro(nb, t, 2), t[:, ::1], nb.int64, nb.int64)

    if _nb() is None:
        return None
    return _jit._compiled("tf_softmax", np.float32, _make_softmax, (), args_of)


# ------------------------------------------------------------------------------ callers' side

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}
_EMPTY2 = {k: v.reshape(0, 0) for k, v in _EMPTY.items()}
# The exact Gelu costs about ten times a plain elementwise pass per element: split it over the
# intra-op threads from a tenth of the size at which _nn_util splits such a pass.
_GELU_COST = 8


def run_gelu(fn, x2, bias):
    """Gelu of the float32 rows x2 [R, H] (+ bias [H] or None) through a gelu() loop, the rows
    split over the intra-op threads; a fresh [R, H] array."""
    y2 = np.empty(x2.shape, np.float32)
    b = _EMPTY[x2.dtype] if bias is None else bias
    run_split(lambda r0, r1: fn(x2, b, y2, r0, r1), x2.shape[0], worker_count(x2.size * _GELU_COST))
    return y2


def run_norm(fn, x2, skip2, bias, gamma, beta, eps, rms=False, want_sum=False):
    """LayerNorm (RMSNorm with ``rms``) of the rows x2 [R, H] (+ skip2 [Rs, H], R a multiple of
    Rs, row r reading skip row r % Rs) (+ bias [H]), times gamma [H] (+ beta [H]), through a
    norm_rows() loop of x2's dtype; every array C-contiguous in that dtype, None where absent.
    Returns (y [R, H], the sum [R, H] or None, mean [R], inv_std [R])."""
    dt = x2.dtype
    r = x2.shape[0]
    flags = ((LN_SKIP if skip2 is not None else 0) | (LN_BIAS if bias is not None else 0)
             | (LN_BETA if beta is not None else 0) | (LN_SUM if want_sum else 0) | (LN_RMS if rms else 0))
    y2 = np.empty(x2.shape, dt)
    s2 = np.empty(x2.shape, dt) if want_sum else _EMPTY2[dt]
    mean, inv = np.empty(r, dt), np.empty(r, dt)
    e1 = _EMPTY[dt]
    sk = _EMPTY2[dt] if skip2 is None else skip2
    b, be = (e1 if bias is None else bias), (e1 if beta is None else beta)
    ep = dt.type(eps)
    run_split(lambda r0, r1: fn(x2, sk, b, gamma, be, y2, s2, mean, inv, ep, flags, r0, r1), r, worker_count(x2.size))
    return y2, (s2 if want_sum else None), mean, inv


def run_softmax(fn, x2):
    """Softmax of the float32 rows x2 [R, H] through softmax_rows(); a fresh [R, H] array."""
    y2 = np.empty(x2.shape, np.float32)
    run_split(lambda r0, r1: fn(x2, y2, r0, r1), x2.shape[0], worker_count(x2.size * 2))
    return y2


def norm_vector(v, tail, dt):
    """A scale / bias input as a C-contiguous vector of dt over the normalized axes ``tail``
    (its shape that of tail, leading 1s allowed); None stays None; False when it is not."""
    if v is None:
        return None
    n = math.prod(tail)
    if v.size != n:
        return False
    try:
        if np.broadcast_shapes(v.shape, tail) != tuple(tail):
            return False
    except ValueError:
        return False
    return np.ascontiguousarray(v.reshape(n), dtype=dt)


def norm_axes(fn, X, axis, scale, bias, eps, dt, rms=False):
    """LayerNorm (RMSNorm with ``rms``) of X over its axes from ``axis`` (>= 0) on, in dtype dt,
    times scale (+ bias), through the norm_rows() loop ``fn`` of dt. Returns (y in dt, X's shape;
    mean, inv_std with the normalized axes kept as 1), or None where the loop does not apply (a
    scale or bias that does not cover the normalized axes exactly, small or empty tensors)."""
    tail = X.shape[axis:]
    if X.size < MIN_SIZE or not tail or 0 in tail:
        return None
    g, b = norm_vector(scale, tail, dt), norm_vector(bias, tail, dt)
    if g is None or g is False or b is False:
        return None
    x2 = np.ascontiguousarray(X, dtype=dt).reshape(-1, math.prod(tail))
    y, _, mean, inv = run_norm(fn, x2, None, None, g, b, eps, rms=rms)
    stat = X.shape[:axis] + (1,) * len(tail)
    return y.reshape(X.shape), mean.reshape(stat), inv.reshape(stat)
