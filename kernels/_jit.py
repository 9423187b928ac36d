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
import math
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
    constant of the caller, so the branches fold away. Every test is false for NaN and returns v
    itself, so NaN passes through as ONNX (and onnxruntime) define Relu(NaN) = Clip(NaN) = NaN."""
    if act == 1:
        return zero if v < zero else v
    if act == 2:
        return lo if v < lo else (hi if v > hi else v)
    if act == 3:
        return v * lo if v < zero else v
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
                    for name in _RNN_HELPERS:
                        globals()[name] = mod.njit(inline="always", cache=True, error_model="numpy")(
                            globals()[name + "_py"])
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

    return _compiled("depthwise2d", dtype, _make_depthwise, consts, args_of, defer=True)


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


def _compiled(name, dtype, make, consts, args_of, defer=False):
    """The compiled entry point of ``make(nb, *consts)`` for dtype (see depthwise2d), or None.

    ``defer`` (callers that ask again on every run and have a numpy path): while numba is not loaded
    yet in this process, return None at once and load numba and compile the loop on a background
    thread (``ortlite-jit``); a later call gets the compiled loop once it is ready. Importing numba and
    initializing its CPU target takes most of a second, so a session's creation and first runs do not
    wait for it (``ORTLITE_JIT_BACKGROUND=0``: compile in the caller, as without ``defer``)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)) or ("numba" in _state and _state["numba"] is None):
        return None
    key = (name, dtype.str) + tuple(consts)
    fns = _state.get("fns")
    if fns is not None:
        fn = fns.get(key, False)
        if fn is not False:
            return fn
    if key in _pending:
        return None  # being compiled in the background: the numpy path meanwhile
    if defer and "numba" not in _state and _background_allowed():
        _schedule(key, (name, dtype, make, consts, args_of))
        return None
    if _numba() is None:
        return None
    return _compile_now(key, name, dtype, make, consts, args_of)


def _compile_now(key, name, dtype, make, consts, args_of):
    nb = _numba()
    fns = _state["fns"]
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


# ---- background compilation (see _compiled's defer) ------------------------------------------------
_bg_lock = threading.Lock()
_pending: dict = {}  # key -> job, queued or compiling on the background thread
_bg = {"thread": None}


def _jit_off() -> bool:
    return os.environ.get("ORTLITE_JIT", "1").strip().lower() in ("0", "false", "no", "off")


def _background_allowed() -> bool:
    if _jit_off() or os.environ.get("ORTLITE_JIT_BACKGROUND", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    import importlib.util

    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


def enabled() -> bool:
    """Whether compiled loops will run in this process, without loading numba (``available()`` loads
    it): numba loaded, or importable and not turned off. For session creation's checks."""
    if "numba" in _state:
        return _state["numba"] is not None
    if _jit_off():
        return False
    import importlib.util

    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


def _schedule(key, job):
    with _bg_lock:
        if key in _pending:
            return
        _pending[key] = job
        t = _bg["thread"]
        if t is None or not t.is_alive():
            t = threading.Thread(target=_bg_main, name="ortlite-jit", daemon=True)
            _bg["thread"] = t
            t.start()


def _bg_main():
    while True:
        with _bg_lock:
            if not _pending:
                _bg["thread"] = None
                return
            key, job = next(iter(_pending.items()))
        try:
            if _numba() is not None:
                _compile_now(key, *job)
        except Exception as e:  # noqa: BLE001 - never kill the process from here; the numpy path stays
            log.warning("ortlite: background compile of %s failed (%s: %s)", job[0], type(e).__name__, e)
        finally:
            with _bg_lock:
                _pending.pop(key, None)


def wait_background(timeout=None) -> bool:
    """Wait until the loops queued for background compilation are ready (benchmarks call it before
    timing); True when none is left."""
    import time

    end = None if timeout is None else time.monotonic() + timeout
    while True:
        t = _bg["thread"]
        if t is None:
            return not _pending
        t.join(None if end is None else max(0.0, end - time.monotonic()))
        if end is not None and time.monotonic() >= end:
            return not _pending


def _ro(nb, t, ndim):
    return nb.types.Array(t, ndim, "C", readonly=True)


def bias_act(dtype, act, has_z):
    """The compiled in-place epilogue y = act(y + bias (+ z)) on (N, M, P), or None."""
    return _compiled("bias_act", dtype, _make_bias_act, (int(act), bool(has_z)),
                     lambda nb, t: (t[:, :, ::1], _ro(nb, t, 1), _ro(nb, t, 3), _ro(nb, t, 1), nb.int64, nb.int64),
                     defer=True)



# ------------------------------------------------------------------------------ recurrent layers
# Helpers of the compiled recurrences: module globals (compiled in _numba), not closure variables,
# so that numba's disk cache recognizes the loops in the next process.

def _tanh32_py(v):
    """tanh in float32 as MLAS computes it (Eigen's rational approximation on [-9, 9]; about 3e-7
    absolute error): vectorizable, unlike a libm call per element. The clamps keep NaN."""
    v = np.float32(9.0) if v > np.float32(9.0) else v
    v = np.float32(-9.0) if v < np.float32(-9.0) else v
    x2 = v * v
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return (p * v) / q


def _tanh64_py(v):
    return math.tanh(v)


def _tanh_py(v, f32):
    """_tanh32 or _tanh64 (``f32`` a constant of the caller: the branch folds away)."""
    if f32:
        return _tanh32(v)
    return _tanh64(v)


def _clamp_py(v, c):
    """v clipped to [-c, c]; NaN stays NaN."""
    v = c if v > c else v
    return -c if v < -c else v


def _clamp01_py(v, hi):
    """v clipped to [0, hi]; NaN stays NaN."""
    v = hi if v > hi else v
    return hi * 0 if v < 0 else v


def _recur_py(h, r, n0, n1, g, zero):
    """g[b, j] += r[j] . h[b] for gate columns n0 <= j < n1 and every batch row b: one dot product
    over contiguous rows (vectorized under the caller's fastmath reassoc; as fast as OpenBLAS's
    gemv at these sizes, and faster for a few rows: each row of R is read once for the batch)."""
    for j in range(n0, n1):
        for b in range(h.shape[0]):
            acc = zero
            for k in range(r.shape[1]):
                acc += r[j, k] * h[b, k]
            g[b, j] += acc


def _step_time_py(T, lens, b, k, rev):
    """(time index, active) of batch row b at step k (reverse: time len-1-k)."""
    n = min(max(lens[b], 0), T)
    if k >= n:
        return k, False
    return (n - 1 - k if rev else k), True


def _zero_tail_py(y, d, lens, T):
    """Y[t, d, b] = 0 for the times past each batch row's length."""
    for b in range(y.shape[2]):
        for t in range(min(max(lens[b], 0), T), T):
            y[t, d, b, :] = 0


_RNN_HELPERS = ("_tanh32", "_tanh64", "_tanh", "_clamp", "_clamp01", "_recur", "_step_time", "_zero_tail")
_tanh32, _tanh64, _tanh, _clamp, _clamp01, _recur, _step_time, _zero_tail = (
    _tanh32_py, _tanh64_py, _tanh_py, _clamp_py, _clamp01_py, _recur_py, _step_time_py, _zero_tail_py)


def _make_rnn(nb, op, dstr):
    """The whole recurrence of an RNN / GRU / LSTM (every step, every direction) in one compiled
    call, for the default activations. The caller passes the input projection of every step
    ``xw [T, B, D*G*H]`` (biases folded in), ``rw [D, G*H, H]`` (R, C-contiguous), with the weights'
    sigmoid-gate columns pre-multiplied by 0.5 (kernels.rnn), so every sigmoid is
    ``0.5 + 0.5 tanh(v)``. Per step: the recurrent product (_recur), then the gates; nothing is
    allocated per step. Batch entries past their ``lens`` keep their state and output zeros.
    float32 uses MLAS's tanh (as onnxruntime does), float64 libm's."""
    dt = np.dtype(dstr)
    F32 = bool(dt == np.float32)
    HALF, ONE = dt.type(0.5), dt.type(1.0)
    ZERO = dt.type(0.0)
    # reassoc: the dot products vectorize (no nnan / ninf: NaN and inf propagate as numpy's)
    opts = dict(nogil=True, cache=True, fastmath={"reassoc", "contract"}, boundscheck=False, error_model="numpy")

    if op == "LSTM":
        @nb.njit(**opts)
        def lstm(xw, rw, peep, h, c, y, lens, rev0, clip_f, clip_g, flags):
            """flags: 1 peepholes (peep [D, 3H], i o f), 2 input_forget, 4 write y [T, D, B, H]."""
            T, B = xw.shape[0], xw.shape[1]
            D, H = h.shape[0], h.shape[2]
            G = 4 * H
            has_p, ifg, want_y = (flags & 1) != 0, (flags & 2) != 0, (flags & 4) != 0
            g = np.empty((B, G), xw.dtype)
            for d in range(D):
                rev = rev0 != 0 if d == 0 else True
                hd, cd, rd = h[d], c[d], rw[d]
                for k in range(T):
                    for b in range(B):
                        t, on = _step_time(T, lens, b, k, rev)
                        for j in range(G):
                            g[b, j] = xw[t, b, d * G + j]
                    _recur(hd, rd, 0, G, g, ZERO)
                    for b in range(B):
                        t, on = _step_time(T, lens, b, k, rev)
                        if not on:
                            continue
                        for j in range(H):
                            cp = cd[b, j]
                            vi = g[b, j]
                            if has_p:
                                vi += peep[d, j] * cp
                            i = HALF + HALF * _tanh(_clamp(vi, clip_f), F32)
                            if ifg:
                                f = ONE - i
                            else:
                                vf = g[b, 2 * H + j]
                                if has_p:
                                    vf += peep[d, 2 * H + j] * cp
                                f = HALF + HALF * _tanh(_clamp(vf, clip_f), F32)
                            cn = f * cp + i * _tanh(_clamp(g[b, 3 * H + j], clip_g), F32)
                            vo = g[b, H + j]
                            if has_p:
                                vo += peep[d, H + j] * cn
                            hn = (HALF + HALF * _tanh(_clamp(vo, clip_f), F32)) * _tanh(cn, F32)
                            cd[b, j] = cn
                            hd[b, j] = hn
                            if want_y:
                                y[t, d, b, j] = hn
                if want_y:
                    _zero_tail(y, d, lens, T)

        return lstm

    if op == "GRU":
        @nb.njit(**opts)
        def gru(xw, rw, rbh, h, y, lens, rev0, clip_f, clip_g, flags):
            """flags: 1 linear_before_reset (rbh [D, H]: Rbh inside the reset product), 4 write y."""
            T, B = xw.shape[0], xw.shape[1]
            D, H = h.shape[0], h.shape[2]
            G = 3 * H
            lbr, want_y = (flags & 1) != 0, (flags & 4) != 0
            g = np.empty((B, G), xw.dtype)
            rh = np.empty((B, H), xw.dtype)
            for d in range(D):
                rev = rev0 != 0 if d == 0 else True
                hd, rd = h[d], rw[d]
                for k in range(T):
                    for b in range(B):
                        t, on = _step_time(T, lens, b, k, rev)
                        for j in range(2 * H):
                            g[b, j] = xw[t, b, d * G + j]
                        for j in range(H):
                            g[b, 2 * H + j] = rbh[d, j] if lbr else xw[t, b, d * G + 2 * H + j]
                    if lbr:  # ht = g(Xt*Wh + rt (.) (Ht-1*Rh + Rbh) + Wbh)
                        _recur(hd, rd, 0, G, g, ZERO)
                    else:  # ht = g(Xt*Wh + (rt (.) Ht-1)*Rh + Rbh + Wbh)
                        _recur(hd, rd, 0, 2 * H, g, ZERO)
                        for b in range(B):
                            for j in range(H):
                                r = HALF + HALF * _tanh(_clamp(g[b, H + j], clip_f), F32)
                                rh[b, j] = r * hd[b, j]
                        _recur(rh, rd, 2 * H, G, g, ZERO)
                    for b in range(B):
                        t, on = _step_time(T, lens, b, k, rev)
                        if not on:
                            continue
                        for j in range(H):
                            z = HALF + HALF * _tanh(_clamp(g[b, j], clip_f), F32)
                            if lbr:
                                r = HALF + HALF * _tanh(_clamp(g[b, H + j], clip_f), F32)
                                v = xw[t, b, d * G + 2 * H + j] + r * g[b, 2 * H + j]
                            else:
                                v = g[b, 2 * H + j]
                            hh = _tanh(_clamp(v, clip_g), F32)
                            hn = hh + z * (hd[b, j] - hh)  # (1 - z) (.) ht + z (.) Ht-1
                            hd[b, j] = hn
                            if want_y:
                                y[t, d, b, j] = hn
                if want_y:
                    _zero_tail(y, d, lens, T)

        return gru

    @nb.njit(**opts)
    def rnn(xw, rw, h, y, lens, rev0, clip_f, flags):
        """flags: 4 write y."""
        T, B = xw.shape[0], xw.shape[1]
        D, H = h.shape[0], h.shape[2]
        want_y = (flags & 4) != 0
        g = np.empty((B, H), xw.dtype)
        for d in range(D):
            rev = rev0 != 0 if d == 0 else True
            hd, rd = h[d], rw[d]
            for k in range(T):
                for b in range(B):
                    t, on = _step_time(T, lens, b, k, rev)
                    for j in range(H):
                        g[b, j] = xw[t, b, d * H + j]
                _recur(hd, rd, 0, H, g, ZERO)
                for b in range(B):
                    t, on = _step_time(T, lens, b, k, rev)
                    if not on:
                        continue
                    for j in range(H):
                        hn = _tanh(_clamp(g[b, j], clip_f), F32)
                        hd[b, j] = hn
                        if want_y:
                            y[t, d, b, j] = hn
            if want_y:
                _zero_tail(y, d, lens, T)

    return rnn


def rnn_loop(op, dtype):
    """The compiled recurrence of ``op`` ("RNN", "GRU", "LSTM") for dtype (float32 / float64), or
    None without numba (see _make_rnn for the arguments)."""
    dt = np.dtype(dtype)

    def args_of(nb, t):
        r2, r3 = _ro(nb, t, 2), _ro(nb, t, 3)
        w3, w4, i = t[:, :, ::1], t[:, :, :, ::1], nb.int64
        lens = _ro(nb, nb.int64, 1)
        if op == "LSTM":
            return (r3, r3, r2, w3, w3, w4, lens, i, t, t, i)
        if op == "GRU":
            return (r3, r3, r2, w3, w4, lens, i, t, t, i)
        return (r3, r3, w3, w4, lens, i, t, i)

    return _compiled("rnn_" + op, dt, _make_rnn, (op, dt.str), args_of)


def _make_dq_lstm(nb):
    @nb.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"}, boundscheck=False, error_model="numpy")
    def dq_lstm(xw, rq, rs, h, c, y, d, rev, want_y):
        """One direction of com.microsoft DynamicQuantizeLSTM (default activations, all lengths T)
        as onnxruntime computes it: each step, every row of h is quantized on its own
        (DynamicQuantizeLinear: uint8, range widened to 0, scale and rounding in float32) and
        multiplied exactly by the integer R: ``rq [4H, H]`` holds R minus its zero point, one
        gate column per row, as float32 integers, and the caller checked that H * 255 * max|rq|
        <= 2**24, so every partial sum is an exact float32 integer in any order. The product is
        scaled by (h scale * R scale [4H]) and added to ``xw [T, B, 4H]`` (the input projection
        with the biases); gates i, o, f, c. h, c [B, H] are updated in place; Y[t, d] written."""
        T, B = xw.shape[0], xw.shape[1]
        H = h.shape[1]
        G = 4 * H
        f0, f1, f255 = np.float32(0), np.float32(1), np.float32(255)
        q = np.empty((B, H), np.float32)
        hs = np.empty(B, np.float32)
        g = np.empty((B, G), np.float32)
        for k in range(T):
            t = T - 1 - k if rev else k
            for b in range(B):
                lo, hi = f0, f0
                for j in range(H):
                    v = h[b, j]
                    lo = v if (v < lo or v != v) else lo  # NaN kept: the whole row becomes NaN
                    hi = v if (v > hi or v != v) else hi
                s = (hi - lo) / f255
                s = f1 if s == f0 else s
                zp = _clamp01(np.rint(-lo / s), f255)
                for j in range(H):
                    q[b, j] = _clamp01(np.rint(h[b, j] / s) + zp, f255) - zp
                hs[b] = s
            for j in range(G):
                for b in range(B):
                    acc = f0
                    for i in range(H):
                        acc += rq[j, i] * q[b, i]
                    g[b, j] = acc * (hs[b] * rs[j]) + xw[t, b, j]
            for b in range(B):
                for j in range(H):
                    i_ = np.float32(0.5) + np.float32(0.5) * _tanh32(np.float32(0.5) * g[b, j])
                    o_ = np.float32(0.5) + np.float32(0.5) * _tanh32(np.float32(0.5) * g[b, H + j])
                    f_ = np.float32(0.5) + np.float32(0.5) * _tanh32(np.float32(0.5) * g[b, 2 * H + j])
                    cn = f_ * c[b, j] + i_ * _tanh32(g[b, 3 * H + j])
                    hn = o_ * _tanh32(cn)
                    c[b, j] = cn
                    h[b, j] = hn
                    if want_y:
                        y[t, d, b, j] = hn

    return dq_lstm


def dq_lstm(dtype=np.float32):
    """The compiled DynamicQuantizeLSTM direction loop (see _make_dq_lstm), or None."""
    def args_of(nb, t):
        r1, r2, r3 = _ro(nb, t, 1), _ro(nb, t, 2), _ro(nb, t, 3)
        return (r3, r2, r1, t[:, ::1], t[:, ::1], t[:, :, :, ::1], nb.int64, nb.boolean, nb.boolean)

    if np.dtype(dtype) != np.float32:
        return None
    return _compiled("dq_lstm", dtype, _make_dq_lstm, (), args_of)
