"""Optional compiled loops (numba) for the few kernels numpy cannot express in one pass.

numpy runs a stencil such as a depthwise convolution as one pass over the image per tap (nine
multiply-adds over the whole plane for a 3x3 kernel), while onnxruntime makes one pass with
the taps in registers. When numba is installed (the ``jit`` extra; ``bench`` and ``test``
include it), the kernels here do the same in one pass; without it, or with ``ORTLITE_JIT=0``
in the environment, the numpy paths run and give the same results within float tolerance.

The loops are compiled once per dtype at session creation (not on the first run) and cached
on disk by numba (``cache=True``), so a later process loads them in milliseconds. They
release the GIL, so the conv kernel splits them over the intra-op threads (run_split).
"""
from __future__ import annotations

import functools
import logging
import os
import threading

import numpy as np

log = logging.getLogger("ortlite")

# Activation codes understood by the compiled epilogues (others run on numpy afterwards).
ACT_NONE, ACT_RELU, ACT_CLIP, ACT_LEAKY, ACT_HARDSIGMOID = 0, 1, 2, 3, 4
_ACT_CODES = {"Relu": ACT_RELU, "Clip": ACT_CLIP, "LeakyRelu": ACT_LEAKY, "HardSigmoid": ACT_HARDSIGMOID}

_lock = threading.Lock()
_state = {}  # "numba": module or None, "reason": why not, "fns": {(name, dtype): compiled}


@functools.lru_cache(maxsize=None)
def _act_params(code, dtype_str):
    a = np.array([code[1], code[2], 1, 0], dtype=np.dtype(dtype_str))
    a.flags.writeable = False
    return a


def act_params(code, dtype):
    """The loops' activation parameters [lo, hi, 1, 0] in ``dtype`` for an act_code result
    (one shared read-only array per code and dtype)."""
    return _act_params(tuple(code), np.dtype(dtype).str)


def _activate_py(v, act, lo, hi, one, zero):
    """The fused activation of the compiled loops (codes ACT_*; lo/hi: Clip's bounds, LeakyRelu's
    alpha in lo, HardSigmoid's alpha/beta in lo/hi). Inlined with ``act`` a compile-time
    constant of the caller, so the branches fold away."""
    if act == 1:
        return v if v > zero else zero
    if act == 2:
        return lo if v < lo else (hi if v > hi else v)
    if act == 3:
        return v if v >= zero else v * lo
    if act == 4:
        v = v * lo + hi
        return zero if v < zero else (one if v > one else v)
    return v


_activate = _activate_py  # replaced by its numba-compiled form when numba loads


def _numba():
    """The numba module, or None (not installed, broken, or ORTLITE_JIT=0)."""
    if "numba" not in _state:
        with _lock:
            if "numba" not in _state:
                mod, reason = None, None
                if os.environ.get("ORTLITE_JIT", "1").strip() in ("0", "false", "no", "off"):
                    reason = "ORTLITE_JIT=0"
                else:
                    try:
                        import numba as mod  # noqa: F811
                    except Exception as e:  # noqa: BLE001 - any import failure: numpy paths
                        mod, reason = None, f"numba not importable ({type(e).__name__}: {e})"
                if mod is not None:
                    global _activate
                    _activate = mod.njit(inline="always", cache=True)(_activate_py)
                _state["numba"], _state["reason"] = mod, reason
                _state["fns"] = {}
    return _state["numba"]


def available():
    return _numba() is not None


def unavailable_reason():
    _numba()
    return _state.get("reason")


def act_code(act):
    """(code, p0, p1) for an activation callable built by kernels.contrib (its ``kind`` and
    ``params``), ACT_NONE for none; None when the compiled epilogue cannot run it."""
    if act is None:
        return ACT_NONE, 0.0, 0.0
    code = _ACT_CODES.get(getattr(act, "kind", None))
    if code is None:
        return None
    a, b = getattr(act, "params", (0.0, 0.0))
    return code, float(a if a is not None else 0.0), float(b if b is not None else 0.0)


def _make_depthwise(nb, kh, kw, sh, sw, dh, dw, act, has_z):
    """A depthwise 2-D convolution loop with its window, activation and residual fixed at compile
    time (numba folds the closure's values as constants), so the tap loops unroll and the loop
    over output columns vectorizes with the taps summed in registers."""
    KH, KW, SH, SW, DH, DW, ACT, HAS_Z = kh, kw, sh, sw, dh, dw, act, has_z

    @nb.njit(nogil=True, cache=True, fastmath={"contract"}, boundscheck=False, error_model="numpy")
    def depthwise2d(x, w, bias, z, prm, y, pt, pl, p0, p1):
        """y[p] = act(sum_ij w[c, i, j] * xpad[p, oh*SH + i*DH, ow*SW + j*DW] + bias[c] (+ z[p]))
        for planes p0 <= p < p1 (p = n*C + c), where xpad is x with pt rows / pl columns of
        zeros in front (and zeros behind as far as the window reads).

        Each plane is first copied into its SH*SW stride phases (zero-padded planes of width
        wq), so that every tap reads one phase contiguously at a fixed offset; the taps are then
        summed in registers, one output row at a time, or, for narrow outputs, in one flat loop
        over ho*wq positions (the wq - wo extra columns per row computed and dropped).
        Flat indices are unsigned: with signed ones numba's negative-index wraparound keeps
        LLVM from vectorizing the loops."""
        h, wd = x.shape[1], x.shape[2]
        channels = w.shape[0]
        ho, wo = y.shape[1], y.shape[2]
        hq = ho + ((KH - 1) * DH) // SH + 1
        wq = wo + ((KW - 1) * DW) // SW + 1
        uwq = np.uint64(wq)
        plane = np.uint64(hq * wq + wq)
        ph = np.zeros(SH * SW * (hq * wq + wq), x.dtype)
        flat = wo <= 32
        tmp = np.empty(ho * wq if flat else 1, x.dtype)
        lo, hi, one, zero = prm[0], prm[1], prm[2], prm[3]
        kend = min(wd, wq * SW - pl)
        for p in range(p0, p1):
            c = p % channels
            for r in range(h):
                rr = r + pt
                qr = rr // SH
                if qr >= hq:
                    break
                for ph_c in range(SW):  # the input columns k with (k + pl) % SW == ph_c
                    k0 = (ph_c - pl) % SW
                    base = (np.uint64((rr % SH) * SW + ph_c) * plane + np.uint64(qr) * uwq
                            + np.uint64((k0 + pl) // SW))
                    cnt = (kend - k0 + SW - 1) // SW if kend > k0 else 0
                    for t in range(cnt):
                        ph[base + np.uint64(t)] = x[p, r, k0 + t * SW]
            b = bias[c]
            if flat:
                for q in range(ho * wq):
                    acc = b
                    uq = np.uint64(q)
                    for i in range(KH):
                        for j in range(KW):
                            acc += w[c, i, j] * ph[np.uint64(((i * DH) % SH) * SW + (j * DW) % SW) * plane + uq
                                                   + np.uint64((i * DH) // SH) * uwq + np.uint64((j * DW) // SW)]
                    tmp[q] = acc
                for oh in range(ho):
                    ro = np.uint64(oh) * uwq
                    for k in range(wo):
                        v = tmp[ro + np.uint64(k)]
                        if HAS_Z:
                            v += z[p, oh, k]
                        y[p, oh, k] = _activate(v, ACT, lo, hi, one, zero)
            else:
                for oh in range(ho):
                    ro = np.uint64(oh) * uwq
                    for k in range(wo):
                        acc = b
                        uq = ro + np.uint64(k)
                        for i in range(KH):
                            for j in range(KW):
                                acc += w[c, i, j] * ph[np.uint64(((i * DH) % SH) * SW + (j * DW) % SW) * plane + uq
                                                       + np.uint64((i * DH) // SH) * uwq + np.uint64((j * DW) // SW)]
                        v = acc
                        if HAS_Z:
                            v += z[p, oh, k]
                        y[p, oh, k] = _activate(v, ACT, lo, hi, one, zero)

    return depthwise2d


def depthwise2d(dtype, kernel, strides, dilations, act, has_z):
    """The compiled depthwise loop for one window / activation code / residual flag and dtype
    (float32 or float64), compiled now or loaded from numba's disk cache; None without numba
    or when compiling fails (logged once; the numpy path runs)."""
    consts = tuple(int(v) for v in (*kernel, *strides, *dilations)) + (int(act), bool(has_z))

    def args_of(nb, t):
        r3, r1, i = _ro(nb, t, 3), _ro(nb, t, 1), nb.int64
        return (r3, r3, r1, r3, r1, t[:, :, ::1], i, i, i, i)

    return _compiled("depthwise2d", dtype, _make_depthwise, consts, args_of)


def _make_bias_act(nb, act, has_z):
    ACT, HAS_Z = act, has_z

    @nb.njit(nogil=True, cache=True, fastmath={"contract"}, boundscheck=False, error_model="numpy")
    def bias_act(y, bias, z, prm, m0, m1):
        """In place on y (N, M, P): y = act(y + bias[m] (+ z)) for channels m0 <= m < m1, one
        pass (numpy needs one per step, and its clip is a slow generic loop)."""
        n, p = y.shape[0], y.shape[2]
        lo, hi, one, zero = prm[0], prm[1], prm[2], prm[3]
        for i in range(n):
            for m in range(m0, m1):
                b = bias[m]
                for k in range(p):
                    v = y[i, m, k] + b
                    if HAS_Z:
                        v += z[i, m, k]
                    y[i, m, k] = _activate(v, ACT, lo, hi, one, zero)

    return bias_act


def _compiled(name, dtype, make, consts, args_of):
    """The compiled entry point of ``make(nb, *consts)`` for dtype (see depthwise2d)."""
    nb = _numba()
    dtype = np.dtype(dtype)
    if nb is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    key = (name, dtype.str) + tuple(consts)
    fns = _state["fns"]
    fn = fns.get(key, False)
    if fn is not False:
        return fn
    with _lock:
        if key not in fns:
            fn = None
            try:
                disp = make(nb, *consts)
                args = args_of(nb, nb.from_dtype(dtype))
                disp.compile(args)
                # the compiled entry point itself: no per-call type dispatch, and writable arrays
                # go to the read-only parameters without a second compilation (callers pass
                # C-contiguous arrays of the dtype)
                fn = disp.overloads[args].entry_point
            except Exception as e:  # noqa: BLE001 - a broken toolchain must not break the session
                log.warning("ortlite: compiled %s unavailable (%s: %s); using numpy", name, type(e).__name__, e)
            fns[key] = fn
    return fns[key]


def _ro(nb, t, ndim):
    return nb.types.Array(t, ndim, "C", readonly=True)


def bias_act(dtype, act, has_z):
    """The compiled in-place epilogue y = act(y + bias (+ z)) on (N, M, P), or None."""
    return _compiled("bias_act", dtype, _make_bias_act, (int(act), bool(has_z)),
                     lambda nb, t: (t[:, :, ::1], _ro(nb, t, 1), _ro(nb, t, 3), _ro(nb, t, 1), nb.int64, nb.int64))

