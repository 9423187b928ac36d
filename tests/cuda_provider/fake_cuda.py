"""A numpy stand-in for the CUDA provider's CuPy backend, for machines without a GPU.

The provider code under test is the real CUDAExecutionProvider (options, copies, IOBinding,
OrtValues, CUDA-graph bookkeeping); only its backend is replaced. "Device" arrays are the
pretend device's DeviceArray (numpy arithmetic on one outside a kernel raises, so a missing
copy fails loudly); kernels run the shared numpy kernels of the 'cuda' family.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ortlite.ortvalue import array_from_pointer
from ortlite.providers.cuda import CUDAExecutionProvider
from partition.pretend_device import DeviceArray, PretendDeviceExecutionProvider, to_device_array


class OutOfMemoryError(Exception):
    """CuPy's name for an allocation over the pool's limit."""


class FakeGraph:
    def __init__(self, fn, outs):
        self.fn, self.outs, self.launches = fn, outs, 0

    def launch(self):
        self.launches += 1
        for dst, new in zip(self.outs, self.fn()):
            np.copyto(dst.view(np.ndarray), np.asarray(new).view(np.ndarray))


class FakeCudaBackend:
    instances = []

    def __init__(self, opts):
        self.opts = opts
        self.allocated = 0
        self.entered = 0
        self.syncs = 0
        self.captures = 0
        FakeCudaBackend.instances.append(self)

    xp = np

    @contextlib.contextmanager
    def active(self, pool=None):
        self.entered += 1
        yield

    def is_device_array(self, value):
        return isinstance(value, DeviceArray)

    def _alloc(self, nbytes):
        limit = self.opts.gpu_mem_limit
        if limit and self.allocated + nbytes > limit:
            raise OutOfMemoryError(f"Out of memory allocating {nbytes} bytes (limit {limit})")
        self.allocated += nbytes

    def to_device(self, host_array):
        a = np.asarray(host_array)
        self._alloc(a.nbytes)
        return to_device_array(a)

    def to_host(self, value):
        return np.array(value.view(np.ndarray))

    def synchronize(self):
        self.syncs += 1

    def empty(self, shape, dtype):
        return to_device_array(np.empty(shape, dtype))

    def from_pointer(self, ptr, dtype, shape, owner=None):
        return array_from_pointer(ptr, dtype, shape).view(DeviceArray)

    def from_dlpack(self, obj):
        return to_device_array(np.from_dlpack(obj.host))  # FakeCudaTensor below

    def memory_info(self):
        return {"used_bytes": self.allocated, "total_bytes": self.allocated, "limit_bytes": self.opts.gpu_mem_limit}

    def new_pool(self):
        return object()

    def capture(self, fn, pool):
        self.captures += 1
        out = fn()
        return FakeGraph(fn, out), out

    def launch(self, graph):
        graph.launch()

    def device_copy(self, value, pool=None):
        return to_device_array(np.array(np.asarray(value).view(np.ndarray)))

    def copy_into(self, dst, src):
        np.copyto(dst.view(np.ndarray), np.asarray(src).view(np.ndarray))

    def wrap_kernel(self, fn, node, kdef):
        return PretendDeviceExecutionProvider.wrap_kernel(None, fn, node, kdef)


class FakeCUDAExecutionProvider(CUDAExecutionProvider):
    """The CUDA provider on the numpy stand-in (registered under the CUDA provider's name)."""

    backend_class = FakeCudaBackend

    @classmethod
    def availability(cls):
        return True, ""


class FakeCudaTensor:
    """A DLPack producer that says it lives on CUDA device 0 (its data is host memory)."""

    def __init__(self, host):
        self.host = host

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("the fake CUDA backend reads .host directly")
