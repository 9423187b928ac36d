"""The BLAS libraries numpy runs its matrix products on, and their thread count.

One place for what three parts of ortlite need: a session sets ``intra_op_num_threads`` around each
run, small dependent products (a recurrence's steps) run on one thread, and the kernels split their
elementwise passes over as many threads as BLAS has. Every loaded BLAS counts: scipy, when imported,
brings a second OpenBLAS, and setting only "the" library when there are two sets neither reliably.
The libraries are found once through threadpoolctl (``refresh`` again at session creation, when a
library may have been loaded since); an OpenBLAS built with pthreads is then driven through its own
get/set functions (ctypes calls of ~0.2 us, where threadpoolctl's methods take ~3 us), others through
threadpoolctl. Without threadpoolctl there is nothing to set: counts stay as the libraries chose.
The thread count of a pthreads OpenBLAS is process-wide: concurrent runs see each other's setting.
"""
from __future__ import annotations

import logging
import threading

log = logging.getLogger("ortlite")

_libs = None  # [controller with get_num_threads() / set_num_threads(n)]; [] when none can be driven
_lock = threading.Lock()


class _RawOpenBLAS:
    __slots__ = ("get_num_threads", "set_num_threads")

    def __init__(self, get, set_):
        self.get_num_threads, self.set_num_threads = get, set_


def _driver(ctl):
    if getattr(ctl, "internal_api", "") == "openblas" and getattr(ctl, "threading_layer", "") == "pthreads":
        try:
            get, set_ = ctl._get_symbol("openblas_get_num_threads"), ctl._get_symbol("openblas_set_num_threads")
        except Exception:  # noqa: BLE001 - another threadpoolctl: its own methods then
            get = set_ = None
        if get is not None and set_ is not None:
            return _RawOpenBLAS(get, set_)
    return ctl


def refresh() -> list:
    """Look the loaded BLAS libraries up again (a session's creation: scipy may have been imported)."""
    global _libs
    try:
        from threadpoolctl import ThreadpoolController

        found = [_driver(c) for c in ThreadpoolController().select(user_api="blas").lib_controllers]
    except ImportError:
        found = []
    except Exception as e:  # noqa: BLE001 - threadpoolctl cannot read a library: leave the counts alone
        log.info("BLAS thread counts cannot be set: %s: %s", type(e).__name__, e)
        found = []
    with _lock:
        _libs = found
    return found


def libraries() -> list:
    """The loaded BLAS libraries' controllers ([] without threadpoolctl)."""
    return _libs if _libs is not None else refresh()


def current() -> int:
    """The thread count BLAS runs with now (the first library's; a session sets them all alike), 1 when
    it cannot be read."""
    libs = libraries()
    try:
        return max(1, int(libs[0].get_num_threads())) if libs else 1
    except Exception:  # noqa: BLE001
        return 1


class Threads:
    """``with Threads(n):`` runs a block with ``n`` BLAS threads in every library and puts back what it
    found (only where the count differs: nothing is called when it already is ``n``)."""

    __slots__ = ("n", "saved")

    def __init__(self, n: int):
        self.n, self.saved = int(n), []

    def __enter__(self):
        n, saved = self.n, self.saved
        for lib in libraries():
            cur = lib.get_num_threads()
            if cur != n:
                lib.set_num_threads(n)
                saved.append((lib, cur))
        return self

    def __exit__(self, *exc):
        for lib, cur in self.saved:
            lib.set_num_threads(cur)
        self.saved = []
        return False
