"""Compiled one-pass loop for 8-bit quantization (numba, through kernels._jit's loader).

DynamicQuantizeLinear on numpy quantizes in four passes over x (divide, round, shift, clip)
plus a cast; here it is one pass writing uint8 directly (the range stays numpy's min / max,
which are vectorized; a branchy compiled min/max loop is slower). It is bit-identical to the
numpy path: the quotient is an IEEE float32 division (no reciprocal, no fastmath), ``np.rint``
rounds half to even, and the saturation happens on the float before the cast. Without numba
(or with ORTLITE_JIT=0) ``available()`` is False and the callers keep the numpy path.
"""
from __future__ import annotations

import threading

import numpy as np

from . import _jit

_lock = threading.Lock()
_fns = {}


def _make(nb):
    @nb.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
    def quantize_u8(x, scale, zp, y):
        lo = np.float32(0.0)
        hi = np.float32(255.0)
        for i in range(x.shape[0]):
            q = np.rint(x[i] / scale) + zp
            if q < lo:
                q = lo
            elif q > hi:
                q = hi
            y[i] = np.uint8(q)

    sig = (nb.types.Array(nb.float32, 1, "C", readonly=True), nb.float32, nb.float32,
           nb.types.Array(nb.uint8, 1, "C"))
    quantize_u8.compile(sig)
    return quantize_u8.overloads[sig].entry_point  # no per-call type dispatch


def _loop():
    """The compiled loop, or None without numba."""
    if "quantize_u8" not in _fns:
        with _lock:
            if "quantize_u8" not in _fns:
                nb = _jit._numba()
                fn = None
                if nb is not None:
                    try:
                        fn = _make(nb)
                    except Exception as e:  # noqa: BLE001 - a broken toolchain must not break the session
                        _jit.log.warning("ortlite: compiled int8 quantization unavailable (%s: %s); using numpy",
                                         type(e).__name__, e)
                _fns["quantize_u8"] = fn
    return _fns["quantize_u8"]


def available():
    """Whether the compiled loop runs (compiling it on the first call)."""
    return _loop() is not None


def quantize_u8(x, scale, zero_point):
    """uint8(clip(rint(x / scale) + zero_point, 0, 255)) of a C-contiguous float32 array, x's shape."""
    y = np.empty(x.shape, np.uint8)
    _loop()(x.reshape(-1), np.float32(scale), np.float32(zero_point), y.reshape(-1))
    return y
