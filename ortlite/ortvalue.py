"""OrtValue and OrtDevice: a value (tensor, sequence, map or empty optional) on a device.

On the CPU an OrtValue aliases the numpy array it was made from (as onnxruntime
does); for other devices it owns a device buffer made by the device's provider.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ortlite import types as ot


class OrtDevice:
    """A device: type name ('cpu', 'cuda') and id."""

    __slots__ = ("_type", "_id")

    def __init__(self, device_type: str = "cpu", device_id: int = 0):
        self._type = str(device_type).lower()
        self._id = int(device_id)

    @classmethod
    def make(cls, device_type, device_id=0):
        return cls(device_type, device_id)

    def device_type(self) -> str:
        return self._type

    def device_id(self) -> int:
        return self._id

    def __eq__(self, other):
        return isinstance(other, OrtDevice) and (self._type, self._id) == (other._type, other._id)

    def __hash__(self):
        return hash((self._type, self._id))

    def __repr__(self):
        return f"OrtDevice('{self._type}', {self._id})"


CPU = OrtDevice("cpu", 0)
_DL_CPU, _DL_CUDA, _DL_CUDA_MANAGED = 1, 2, 13  # DLPack device types


_device_providers: dict = {}


def device_provider(device: OrtDevice):
    """The provider instance owning memory of ``device`` (None for the CPU)."""
    if device.device_type() == "cpu":
        return None
    from ortlite.providers import provider_for_device

    cls, why = provider_for_device(device.device_type())
    if cls is None:
        raise ValueError(f"device '{device.device_type()}' is not available: {why}")
    key = (cls, device.device_id())
    prov = _device_providers.get(key)
    if prov is None:
        prov = _device_providers[key] = cls({"device_id": device.device_id()})
    return prov


def _device_module(device: OrtDevice):
    if device.device_type() == "cpu":
        return np
    return device_provider(device).xp


def _element_dtype(element_type):
    if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, bool):
        return ot.np_dtype(int(element_type))
    return np.dtype(element_type)


class OrtValue:
    """A value handed to or returned by a session (onnxruntime.OrtValue).

    Streams: a device value made here (from numpy, DLPack, update_inplace) is complete when the
    call returns, so any stream may read it. A session's output carries the provider whose stream
    computed it (``_owner``); reading it (numpy(), __dlpack__(stream=...), __cuda_array_interface__)
    is ordered after that stream's work.
    """

    __slots__ = ("_value", "_device", "_owner", "__weakref__")

    def __init__(self, value, device: OrtDevice = CPU, owner=None):
        self._value = value
        self._device = device
        self._owner = owner

    def _provider(self):
        """The provider whose stream orders this value (None on the CPU)."""
        if self._device.device_type() == "cpu":
            return None
        return self._owner or device_provider(self._device)

    # ---- constructors (onnxruntime's names) ---------------------------------
    @staticmethod
    def ortvalue_from_numpy(numpy_obj, device_type="cpu", device_id=0) -> "OrtValue":
        """Wrap a numpy array. On the CPU the OrtValue aliases it; elsewhere the data is copied."""
        arr = np.asarray(numpy_obj)
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
        device = OrtDevice(device_type, device_id)
        prov = device_provider(device)
        if prov is None:
            return OrtValue(arr, device)
        value = prov.to_device(arr)
        prov.synchronize()  # a synchronous copy, as onnxruntime's: any stream may read it now
        return OrtValue(value, device)

    @staticmethod
    def ortvalue_from_numpy_with_onnx_type(data, onnx_element_type: int) -> "OrtValue":
        return OrtValue(np.asarray(data).view(ot.np_dtype(onnx_element_type)))

    @staticmethod
    def ortvalue_from_shape_and_type(shape, element_type, device_type="cpu", device_id=0) -> "OrtValue":
        """A new uninitialized tensor (numpy dtype or ONNX element type) on a device."""
        device = OrtDevice(device_type, device_id)
        dtype = _element_dtype(element_type)
        shape = tuple(int(d) for d in shape)
        prov = device_provider(device)
        if prov is None:
            return OrtValue(np.empty(shape, dtype=dtype), device)
        return OrtValue(prov.empty(shape, dtype), device)

    @staticmethod
    def from_dlpack(data, is_bool_tensor=False) -> "OrtValue":
        """An OrtValue sharing the memory of a DLPack producer (a CuPy or PyTorch tensor, a numpy
        array, ...): no copy. ``is_bool_tensor`` reads a uint8 tensor as bool (older DLPack
        producers export bool as uint8)."""
        dev = getattr(data, "__dlpack_device__", None)
        if dev is None:
            raise TypeError("OrtValue.from_dlpack needs an object with __dlpack__ and __dlpack_device__ "
                            f"(a CuPy/PyTorch tensor or numpy array), got {type(data).__name__}; pass the "
                            "tensor itself rather than a capsule")
        kind, dev_id = (int(v) for v in dev())
        if kind == _DL_CPU:
            arr, device = np.from_dlpack(data), CPU
        elif kind in (_DL_CUDA, _DL_CUDA_MANAGED):
            device = OrtDevice("cuda", dev_id)
            prov = device_provider(device)
            arr = prov.from_dlpack(data)  # the producer's work is ordered before this provider's stream...
            prov.synchronize()  # ...which is drained, so the session streams that read it need no order
        else:
            raise ValueError(f"OrtValue.from_dlpack: DLPack device type {kind} is not supported (CPU = 1, CUDA = 2)")
        if is_bool_tensor and arr.dtype == np.uint8:
            arr = arr.view(np.bool_)
        return OrtValue(arr, device)

    @staticmethod
    def ort_value_from_sequence(values) -> "OrtValue":
        return OrtValue([v.numpy() if isinstance(v, OrtValue) else np.asarray(v) for v in values])

    # ---- queries ---------------------------------------------------------------
    def is_tensor(self) -> bool:
        return hasattr(self._value, "shape") and hasattr(self._value, "dtype")

    def is_tensor_sequence(self) -> bool:
        return isinstance(self._value, list)

    def is_sparse_tensor(self) -> bool:
        return False

    def has_value(self) -> bool:
        return self._value is not None

    def shape(self) -> list:
        self._require_tensor("shape")
        return list(self._value.shape)

    def element_type(self) -> int:
        self._require_tensor("element_type")
        return ot.onnx_elem_type(self._value.dtype)

    def data_type(self) -> str:
        v = self._value
        if self.is_tensor():
            return ot.dtype_type_string(v.dtype)
        if isinstance(v, list):
            inner = ot.dtype_type_string(v[0].dtype) if v else "tensor(float)"
            return f"seq({inner})"
        if isinstance(v, dict):
            return "map"
        return "optional"

    def device_name(self) -> str:
        return self._device.device_type()

    def device(self) -> OrtDevice:
        return self._device

    def data_ptr(self) -> int:
        self._require_tensor("data_ptr")
        if isinstance(self._value, np.ndarray):
            return self._value.ctypes.data
        return int(self._value.data.ptr)

    # ---- zero-copy exchange ------------------------------------------------------------
    def __dlpack__(self, stream=None, **kwargs):
        self._require_tensor("__dlpack__")
        if isinstance(self._value, np.ndarray):
            return self._value.__dlpack__(**kwargs)
        with self._provider().active():  # the consumer's stream waits for the one that made the value
            return self._value.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self):
        self._require_tensor("__dlpack_device__")
        return self._value.__dlpack_device__()

    def to_dlpack(self):
        """A DLPack capsule sharing this value's memory (onnxruntime's OrtValue.to_dlpack)."""
        return self.__dlpack__()

    @property
    def __cuda_array_interface__(self):
        v = self._value
        if isinstance(v, np.ndarray) or not hasattr(type(v), "__cuda_array_interface__"):
            raise AttributeError("__cuda_array_interface__: this OrtValue is not in CUDA memory "
                                 f"(device '{self.device_name()}')")
        with self._provider().active():  # its "stream" entry is the stream that made the value
            return v.__cuda_array_interface__

    def numpy(self):
        """The value on the host: ndarray (a copy from a device, the array itself on CPU), list or dict."""
        v = self._value
        if self._device.device_type() == "cpu" or v is None:
            return v
        prov = self._provider()  # to_host copies on its stream and waits for it
        if isinstance(v, list):
            return [prov.to_host(x) for x in v]
        return prov.to_host(v)

    def update_inplace(self, np_arr) -> None:
        """Copy new contents into the existing buffer (its address does not change)."""
        self._require_tensor("update_inplace")
        src = np.asarray(np_arr)
        if tuple(src.shape) != tuple(self._value.shape):
            raise ValueError(f"update_inplace: shape {list(src.shape)} differs from the OrtValue's {self.shape()}")
        if isinstance(self._value, np.ndarray):
            np.copyto(self._value, src, casting="same_kind")
        else:
            prov = self._provider()
            with prov.active():
                self._value.set(src.astype(self._value.dtype, copy=False))
            prov.synchronize()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return np.asarray(a, dtype=dtype)

    def _require_tensor(self, what):
        if not self.is_tensor():
            raise TypeError(f"OrtValue.{what}() needs a tensor, this OrtValue holds {self.data_type()}")

    def __repr__(self):
        if self.is_tensor():
            return f"OrtValue({self.data_type()}, shape={self.shape()}, device='{self.device_name()}')"
        return f"OrtValue({self.data_type()})"


def array_from_pointer(ptr: int, dtype, shape) -> np.ndarray:
    """A numpy view of host memory at ``ptr`` (for bind_input / bind_output with a CPU pointer)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) if len(shape) else 1
    buf = (ctypes.c_char * (n * dtype.itemsize)).from_address(int(ptr))
    return np.frombuffer(buf, dtype=dtype, count=n).reshape(tuple(int(d) for d in shape))
