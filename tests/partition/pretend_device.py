"""A test provider that pretends to be a second device, for CPU-only machines.

Its values are numpy arrays tagged as ``DeviceArray``; numpy arithmetic on a
DeviceArray outside one of its own kernels raises, so a device value that
reaches a CPU kernel without a copy fails loudly, and its kernels check that
every input they get is on the device (or on the host, for host-only inputs).
It runs a small subset of the CPU kernels.
"""
from __future__ import annotations

import threading

import numpy as np

from ortlite.providers.base import Claim, ExecutionProvider

SUPPORTED = {
    "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "MatMul", "Gemm", "Softmax",
    "Reshape", "Transpose", "Identity", "Neg", "Abs",
}

_active = threading.local()


class DeviceArray(np.ndarray):
    """An array 'in device memory': usable only inside the pretend provider's kernels."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if not getattr(_active, "on", False):
            raise AssertionError(f"device array used on the host by {ufunc.__name__} (a copy is missing)")
        args = [np.asarray(x).view(np.ndarray) if isinstance(x, DeviceArray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o).view(np.ndarray) if isinstance(o, DeviceArray) else o for o in kwargs["out"])
        return getattr(ufunc, method)(*args, **kwargs)


def to_device_array(x):
    return np.ascontiguousarray(x).view(DeviceArray)


class PretendDeviceExecutionProvider(ExecutionProvider):
    name = "PretendDeviceExecutionProvider"
    family = "cpu"  # it reuses the numpy kernels, for a subset of ops
    device_type = "pretend"

    @property
    def xp(self):
        return np

    def get_capability(self, node, lookup, graph=None):
        if node.domain != "" or node.op_type not in SUPPORTED:
            return Claim(node, None, f"no pretend-device kernel for {node.op_type}")
        return super().get_capability(node, lookup, graph)

    def wrap_kernel(self, fn, node, kdef):
        hosts = set(kdef.host_inputs)

        def run(*args):
            for k, a in enumerate(args):
                if a is None or not hasattr(a, "dtype"):
                    continue
                on_dev = isinstance(a, DeviceArray)
                if k in hosts and on_dev:
                    raise AssertionError(f"{node.op_type} '{node.name}': host-only input {k} is on the device")
                if k not in hosts and not on_dev:
                    raise AssertionError(f"{node.op_type} '{node.name}': input {k} is on the host (a copy is missing)")
            _active.on = True
            try:
                r = fn(*[a.view(np.ndarray) if isinstance(a, DeviceArray) else a for a in args])
            finally:
                _active.on = False
            if type(r) is tuple:
                return tuple(to_device_array(x) for x in r)
            return to_device_array(r)

        return run

    def is_on_device(self, value):
        return isinstance(value, DeviceArray)

    def to_device(self, host_array):
        return to_device_array(np.asarray(host_array))

    def to_host(self, value):
        return np.array(value.view(np.ndarray)) if isinstance(value, DeviceArray) else value
