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
So runs do not set it themselves: ``run_begin`` / ``run_end`` count the runs in flight (every session's)
and give BLAS one count for all of them, the intra-op budget shared out: a run alone gets its
session's ``intra_op_num_threads`` (0: every core), k overlapping runs get ``cores // k`` each (at
least 1, at most the smallest budget among them), so overlapping runs never ask for more threads than
there are cores (OpenBLAS's threads spin while they wait for work: two runs each waking all cores'
threads run slower together than one after the other).
"""
from __future__ import annotations

import collections
import logging
import os
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


def cores() -> int:
    """The cores this process may run on (its affinity mask, a container's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_CORES = cores()
_active: dict = {}  # intra-op budget (threads; 0 = every core) -> runs running with it
_in_flight = 0  # runs running (every kind), including those handed a slot and not yet entered
_outside = ()  # [(lib, count)] the libraries had before the first run in flight began
_target = 0  # the count runs in flight share now (0: none in flight)
_dirty = False  # a count was set since the first run in flight began: the last one out restores
_slots = 0  # admitted CPU runs holding a slot (at most LIMIT)
_waiting = collections.deque()  # Events of runs waiting for a slot, first come first served
_local = threading.local()  # .depth: runs this thread is inside; .gated: its outermost run holds a slot


def _limit_from_env() -> int:
    raw = os.environ.get("ORTLITE_MAX_CONCURRENT_RUNS", "")
    try:
        return max(0, int(raw)) if raw.strip() else _CORES
    except ValueError:
        log.warning("ORTLITE_MAX_CONCURRENT_RUNS=%r is not an integer: using %d (the cores)", raw, _CORES)
        return _CORES


LIMIT = _limit_from_env()  # CPU runs running at once (0: no limit); the others wait in order


def _share() -> int:
    if not _active:
        return _target
    if _in_flight == 1:
        (b,) = _active
        return b if b > 0 else _CORES
    least = min(b if b > 0 else _CORES for b in _active)
    return max(1, min(least, _CORES // _in_flight))


def _apply(n):
    global _target, _dirty
    if n != _target:
        for lib in _libs or ():
            lib.set_num_threads(n)
        _target, _dirty = n, True


def _enter(budget, first):
    """Count a run with ``budget`` among those running (``_in_flight`` already counts it) and give BLAS
    the count they share; ``first``: no run was in flight before (the libraries' counts are recorded
    to be put back). Under ``_lock``."""
    global _outside, _target, _dirty
    _active[budget] = _active.get(budget, 0) + 1
    try:
        if first:
            libs = _libs if _libs is not None else libraries()
            want = budget if budget > 0 else _CORES
            _outside = [(lib, lib.get_num_threads()) for lib in libs]
            _target, _dirty = want, False
            for lib, count in _outside:
                if count != want:
                    lib.set_num_threads(want)
                    _dirty = True
        else:
            _apply(_share())
    except Exception as e:  # noqa: BLE001 - a library that refuses a count: leave it as it is
        log.info("BLAS thread count not set: %s: %s", type(e).__name__, e)


def run_begin(budget: int, admit: bool = True) -> None:
    """A run starts with ``budget`` intra-op threads (its session's; 0 = every core): BLAS gets the
    count shared by every run in flight. Pair with ``run_end(budget)`` on the same thread.

    ``admit`` (CPU sessions): at most ``LIMIT`` such runs run at once (the cores; the environment's
    ORTLITE_MAX_CONCURRENT_RUNS, 0 for no limit); a run past it waits until one ends, in arrival order.
    More CPU-bound runs than cores only take turns on the cores and the GIL, each slower, in an order
    no one chose (16 threads on one session: fewer runs per second than 2, and a long tail); waiting
    in order keeps each run's latency its queue time plus its own. A run started from inside a run on
    the same thread (a custom op running a session) and a device run are neither held nor hold a slot.
    A run alone costs one lock and one get per library (~1 us)."""
    global _in_flight, _slots
    depth = getattr(_local, "depth", 0)
    gated = bool(admit and LIMIT and not depth)
    _local.depth = depth + 1
    if gated:
        _local.gated = True  # only an outermost run holds a slot: one flag per thread is enough
    with _lock:
        if not gated:
            _in_flight += 1
            _enter(budget, _in_flight == 1)
            return
        if _slots < LIMIT and not _waiting:
            _slots += 1
            _in_flight += 1
            _enter(budget, _in_flight == 1)
            return
        ev = threading.Event()
        _waiting.append(ev)
    ev.wait()  # run_end handed this run its slot (``_slots`` and ``_in_flight`` count it already)
    with _lock:
        _enter(budget, False)


def run_end(budget: int) -> None:
    """The run begun by ``run_begin(budget)`` on this thread is over: its slot goes to the first
    waiting run, or the others in flight share its threads; the last one out puts back the counts the
    libraries had before (when anything was set)."""
    global _in_flight, _target, _dirty, _slots
    depth = _local.depth = _local.depth - 1
    gated = not depth and getattr(_local, "gated", False)
    if gated:
        _local.gated = False
    with _lock:
        left = _active[budget] - 1
        if left:
            _active[budget] = left
        else:
            del _active[budget]
        try:
            if gated and _waiting:
                _waiting.popleft().set()  # the slot passes on: _slots and _in_flight stay
                return
            if gated:
                _slots -= 1
            _in_flight -= 1
            if _in_flight:
                _apply(_share())
            else:
                if _dirty:
                    for lib, count in _outside:
                        lib.set_num_threads(count)
                _target, _dirty = 0, False
        except Exception as e:  # noqa: BLE001
            log.info("BLAS thread count not restored: %s: %s", type(e).__name__, e)


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
            # runs in flight share a count that may have changed meanwhile (run_begin / run_end)
            lib.set_num_threads(_target or cur)
        self.saved = []
        return False
