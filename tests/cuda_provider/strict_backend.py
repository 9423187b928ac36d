"""The CUDA provider on the strict CuPy stand-in (strict_cupy.py), for machines without a GPU.

``StrictCudaBackend`` *is* the provider's real CuPy backend (providers/cuda.py ``_CupyBackend``):
only the ``cupy`` module it holds is replaced by ``FakeCupy`` - the strict array namespace plus the
few ``cupy.cuda`` objects the backend uses (device, memory pool, streams, allocator), which record
what they are asked. So the provider's own copy, pool and stream code runs, and its kernels get
``xp`` = the strict namespace. Around each kernel, the host/device contract of the node's inputs
and outputs is checked and device inputs are snapshotted to catch in-place writes.
"""
from __future__ import annotations

import contextlib
import itertools
import threading

import numpy as np

from cuda_provider import strict_cupy as sc
from cuda_provider.strict_cupy import SArr, SXP
from ortlite.partition import METADATA_ONLY_OPS
from ortlite.providers.cuda import CUDAExecutionProvider, _CupyBackend

# --------------------------------------------------------------------------- cupy.cuda, recorded

_tls = threading.local()
_stream_ids = itertools.count(1)


class FakeStream:
    """A stream: a number; entering it makes it current on this thread (as cupy.cuda.Stream)."""

    null = None

    def __init__(self, non_blocking=False, ptr=0):
        self.id = next(_stream_ids)
        self.ptr = ptr or self.id
        self.non_blocking = non_blocking
        self.syncs = 0
        self.capturing = False

    @classmethod
    def from_external(cls, ptr, device_id=None):
        return cls(ptr=ptr)

    def __enter__(self):
        _tls.streams = getattr(_tls, "streams", []) + [self]
        return self

    def __exit__(self, *exc):
        _tls.streams.pop()

    def synchronize(self):
        self.syncs += 1
        STREAM_LOG.append(("synchronize", self.id, None))

    def begin_capture(self):
        self.capturing = True

    def end_capture(self):
        self.capturing = False
        return ("graph", self.id)

    def __repr__(self):
        return f"<stream {self.id}>"


FakeStream.null = FakeStream()


def current_stream():
    stack = getattr(_tls, "streams", None)
    return stack[-1] if stack else FakeStream.null


# (what, stream id, extra): each copy, kernel, synchronize and exchange, with the stream it ran on
STREAM_LOG: list = []


def log_stream(what, stream=None):
    cur = current_stream()
    STREAM_LOG.append((what, cur.id, stream))
    return cur.ptr


sc.STREAM_EVENT[0] = log_stream


class FakePool:
    def __init__(self):
        self.limit = 0

    def malloc(self, nbytes):
        return None

    def set_limit(self, size=0, fraction=None):
        self.limit = int(size)

    def get_limit(self):
        return self.limit

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0


class _Device:
    def __init__(self, device_id=0):
        self.id = device_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class _Cuda:
    runtime = _Runtime()
    Device = _Device
    MemoryPool = FakePool
    Stream = FakeStream

    @staticmethod
    def ExternalStream(ptr, device_id=None):  # noqa: N802 - CuPy's name
        return FakeStream(ptr=ptr)

    @staticmethod
    @contextlib.contextmanager
    def using_allocator(malloc=None):
        yield

    @staticmethod
    def get_current_stream():
        return current_stream()


def _to_device(host, copy=True):
    """cupy.asarray / cupy.array of host data: refuses dtypes CuPy has none for, as CuPy does."""
    log_stream("device_copy" if type(host) is SArr else "host_to_device")
    if type(host) is SArr:
        return SArr(host._a.copy()) if copy else host
    a = np.asarray(host)
    if not sc.dtype_ok(a.dtype):
        raise ValueError(f"[strict cupy] Unsupported dtype {a.dtype}: cupy cannot hold it")
    return SArr(np.array(a, copy=True))


def _asnumpy(a, stream=None, order="C", out=None, blocking=True):
    STREAM_LOG.append(("device_to_host", (stream or current_stream()).id, None))
    return np.array(a._a if type(a) is SArr else a, copy=True)


class FakeCupy:
    """What providers/cuda.py's backend reads from ``cupy``; array functions come from the strict namespace."""

    cuda = _Cuda()
    ndarray = SArr

    def __getattr__(self, name):
        return getattr(SXP, name)

    @staticmethod
    def asarray(a, dtype=None):
        return _to_device(a if dtype is None else np.asarray(a, dtype))

    @staticmethod
    def array(a, copy=True, dtype=None):
        return _to_device(a if dtype is None else np.asarray(a, dtype), copy=copy)

    @staticmethod
    def empty(shape, dtype=float):
        if not sc.dtype_ok(dtype):
            raise ValueError(f"[strict cupy] Unsupported dtype {np.dtype(dtype)}: cupy cannot hold it")
        return SArr(np.empty(shape, dtype))

    asnumpy = staticmethod(_asnumpy)

    @staticmethod
    def from_dlpack(obj):
        """As cupy.from_dlpack: asks the producer to order its work before the current stream."""
        log_stream("from_dlpack")
        obj.__dlpack__(stream=current_stream().ptr)
        return SArr(obj._a) if type(obj) is SArr else SArr(np.from_dlpack(obj))


FAKE_CUPY = FakeCupy()


# --------------------------------------------------------------------------- the backend


class StrictCudaBackend(_CupyBackend):
    """The real backend over FakeCupy, each kernel checked (see the module's docstring)."""

    def __init__(self, opts):
        super().__init__(opts, cupy=FAKE_CUPY)

    @property
    def xp(self):
        return SXP

    @contextlib.contextmanager
    def active(self, pool=None):
        prev = getattr(sc._ctx, "in_kernel", False), getattr(sc._ctx, "op", None)
        if not prev[0]:
            sc._ctx.in_kernel, sc._ctx.op = True, "(prepare / outside a kernel)"
        try:
            with super().active(pool):
                yield
        finally:
            sc._ctx.in_kernel, sc._ctx.op = prev

    def compute_mode(self):
        return contextlib.nullcontext()  # CuPy's TF32 switch needs a device

    def from_pointer(self, ptr, dtype, shape, owner=None):
        raise NotImplementedError("the strict stand-in has no device pointers")

    def wrap_kernel(self, fn, node, kdef):
        hosts = set(kdef.host_inputs)
        if (node.domain, node.op_type) in METADATA_ONLY_OPS:  # only the shape is read: no copy is made
            hosts |= set(range(len(node.inputs)))
        op = node.op_type if not node.domain else f"{node.domain}:{node.op_type}"

        def run(*args):
            snaps = []
            log_stream(f"kernel {op}")
            with sc.kernel_scope(op):
                for k, a in enumerate(args):
                    if isinstance(a, list):
                        if any(type(x) is np.ndarray for x in a):
                            sc.record("HOST_INPUT", f"input {k}: a sequence of host arrays reached a CUDA kernel")
                        continue
                    if k in kdef.host_inputs and type(a) is SArr:
                        sc.record("CONTRACT", f"host-only input {k} arrived on the device")
                    if k not in hosts and type(a) is np.ndarray:
                        sc.record("HOST_INPUT", f"input {k} arrived as a host array (a copy step is missing)")
                    if type(a) is SArr:
                        snaps.append((k, a, a._a.copy()))
                r = fn(*args)
                for k, a, before in snaps:
                    if a._a.shape != before.shape or np.ascontiguousarray(a._a).tobytes() != before.tobytes():  # NaN-safe
                        a._a[...] = before
                        sc.record("INPLACE_INPUT", f"the kernel wrote its input {k} in place")
                for k, o in enumerate(r if type(r) is tuple else (r,)):
                    if type(o) is np.ndarray or isinstance(o, (np.generic, int, float, bool)):
                        sc.record("HOST_OUTPUT", f"output {k} is a host value ({type(o).__name__})")
                    elif isinstance(o, list) and any(type(x) is np.ndarray for x in o):
                        sc.record("HOST_OUTPUT", f"output {k} is a sequence holding host arrays")
            return r

        return run


class StrictCUDAExecutionProvider(CUDAExecutionProvider):
    """CUDAExecutionProvider on the strict stand-in (registered by the tests in its place)."""

    backend_class = StrictCudaBackend

    @classmethod
    def availability(cls):
        return True, ""
