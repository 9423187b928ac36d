"""Pretend device memory for the fake ``tensorrt`` module: addresses -> live allocations.

Real TensorRT takes raw ints (``set_tensor_address(name, ptr)``) and reads whatever is there when
the engine runs; a freed buffer gives silent garbage. The fake resolves every address through this
registry instead and fails the test (``AssertionError``) on an address that no live allocation
covers, or whose allocation died after ``set_tensor_address`` (use-after-free, even when a new
allocation happens to reuse the address).

Feeding the registry:

* ``install_strict_cupy_hook()`` (the ``fake_trt*`` fixtures call it): every array the strict CuPy
  stand-in (tests/cuda_provider/strict_cupy.py) creates is registered, so ``arr.data.ptr`` of any
  strict "device" array resolves. Idempotent; stays installed (the registry holds weak refs only).
* ``register_device_buffer(array)`` for anything else (a numpy array, an ``SArr``): returns its address.

An allocation is the numpy array that owns the memory (``.base`` chain walked to the end); it is
live while that array is. Alignment is judged like a CUDA pool: each allocation starts 512-byte
aligned, so ``is_aligned(ptr)`` is ``(ptr - allocation start) % 256 == 0`` for a registered address
(``ptr % 256 == 0`` otherwise). A view at an odd offset (``x[1:]``) is therefore misaligned.
"""
from __future__ import annotations

import bisect
import ctypes
import itertools
import threading
import weakref

import numpy as np

ALIGNMENT = 256
_lock = threading.RLock()
_starts: list = []  # sorted allocation starts
_by_start: dict = {}  # start -> Allocation
_serial = itertools.count(1)


class Allocation:
    """One live (or dead) pretend device allocation."""

    __slots__ = ("start", "end", "ref", "serial", "__weakref__")

    def __init__(self, owner):
        lo, hi = _bounds(owner)
        self.start, self.end = lo, max(hi, lo + 1)
        self.serial = next(_serial)
        self.ref = weakref.ref(owner, self._died)

    def _died(self, _ref):
        with _lock:
            if _by_start.get(self.start) is self:
                del _by_start[self.start]
                i = bisect.bisect_left(_starts, self.start)
                if i < len(_starts) and _starts[i] == self.start:
                    del _starts[i]

    @property
    def alive(self):
        return self.ref() is not None

    def __repr__(self):
        return f"<allocation #{self.serial} 0x{self.start:x}..0x{self.end:x} {'live' if self.alive else 'freed'}>"


def _bounds(a):
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = np.byte_bounds
    return byte_bounds(a)


def _numpy_of(array):
    if isinstance(array, np.ndarray):
        return array
    inner = getattr(array, "_a", None)  # strict_cupy.SArr
    if isinstance(inner, np.ndarray):
        return inner
    raise TypeError(f"register_device_buffer: expected a numpy array or a strict-CuPy array, got {type(array).__name__}")


def _owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def register_device_buffer(array):
    """Register the allocation behind ``array`` (numpy or strict-CuPy); returns the array's address."""
    a = _numpy_of(array)
    own = _owner(a)
    with _lock:
        lo = _bounds(own)[0]
        cur = _by_start.get(lo)
        if cur is None or cur.ref() is not own:
            alloc = Allocation(own)
            if cur is None:
                bisect.insort(_starts, lo)
            _by_start[lo] = alloc
    return a.__array_interface__["data"][0]


def lookup(ptr):
    """The live allocation containing address ``ptr``, or None."""
    with _lock:
        i = bisect.bisect_right(_starts, ptr) - 1
        if i < 0:
            return None
        alloc = _by_start.get(_starts[i])
        if alloc is None or not (alloc.start <= ptr < alloc.end) or not alloc.alive:
            return None
        return alloc


def is_aligned(ptr):
    alloc = lookup(ptr)
    base = alloc.start if alloc is not None else 0
    return (ptr - base) % ALIGNMENT == 0


def resolve(ptr, nbytes, what, expected=None):
    """A writable uint8 numpy view of ``nbytes`` at ``ptr`` (and its owner, to keep alive while used).

    ``expected``: the Allocation seen when the address was set; if it died since, or the address
    now belongs to another allocation, the buffer was freed in between -> AssertionError.
    """
    if expected is not None and not expected.alive:
        raise AssertionError(
            f"fake tensorrt: {what}: address 0x{ptr:x} was set with set_tensor_address but its buffer "
            f"({expected!r}) has been freed since (use-after-free: a GPU would read/write garbage here). "
            "Keep device buffers alive until execute_async_v3's work is done, and call set_tensor_address "
            "again for a new buffer even when its pointer value is equal.")
    alloc = lookup(ptr)
    if alloc is None:
        raise AssertionError(
            f"fake tensorrt: {what}: address 0x{ptr:x} does not belong to any live device allocation "
            "(freed, never allocated, or a host pointer). Device buffers must be strict-CuPy arrays or be "
            "registered with fake_tensorrt_memory.register_device_buffer().")
    if expected is not None and alloc is not expected:
        raise AssertionError(
            f"fake tensorrt: {what}: address 0x{ptr:x} was set for {expected!r}, which was freed; the address "
            f"now belongs to {alloc!r} (use-after-free hidden by address reuse)")
    if ptr + nbytes > alloc.end:
        raise AssertionError(
            f"fake tensorrt: {what}: {nbytes} bytes at 0x{ptr:x} run past the end of {alloc!r} "
            f"by {ptr + nbytes - alloc.end} bytes (buffer too small for the tensor)")
    owner = alloc.ref()
    if owner is None:  # died between lookup and here
        raise AssertionError(f"fake tensorrt: {what}: buffer at 0x{ptr:x} freed while in use")
    if nbytes == 0:
        return np.zeros(0, np.uint8), owner
    view = np.frombuffer((ctypes.c_ubyte * nbytes).from_address(ptr), dtype=np.uint8)
    return view, owner


def read(ptr, dtype, shape, what, expected=None):
    """A copy of the array of ``dtype``/``shape`` stored at ``ptr`` (C order)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    view, owner = resolve(ptr, nbytes, what, expected)
    out = view.view(dtype).reshape(shape).copy()
    del owner
    return out


def write(ptr, value, what, expected=None):
    """Store ``value`` (C order) at ``ptr``."""
    value = np.ascontiguousarray(value)
    view, owner = resolve(ptr, value.nbytes, what, expected)
    if value.nbytes:
        view[...] = value.reshape(-1).view(np.uint8)
    del owner


_hook_lock = threading.Lock()
_hooked = []


def install_strict_cupy_hook():
    """Register every array the strict CuPy stand-in creates (idempotent; False if it cannot be imported)."""
    with _hook_lock:
        if _hooked:
            return True
        try:
            from cuda_provider import strict_cupy
        except Exception:  # noqa: BLE001 - CuPy not installed: explicit registration only
            return False
        sarr = strict_cupy.SArr
        orig = sarr.__init__

        def __init__(self, a):  # noqa: N807
            orig(self, a)
            register_device_buffer(a)

        sarr.__init__ = __init__
        _hooked.append((sarr, orig))
        return True


def live_allocations():
    with _lock:
        return [a for a in _by_start.values() if a.alive]
