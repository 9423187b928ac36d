"""onnxruntime's remaining module-level names, so code ported by changing the import keeps running.

What each name does here, and where it differs from onnxruntime, is listed in docs/MIGRATION.md.
"""
from __future__ import annotations

import enum

import numpy as np

from ortlite._version import __version__
from ortlite.errors import Fail, InvalidArgument
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import register_custom_op, unregister_custom_op  # noqa: F401 - re-exported

version = __version__
package_name = "ortlite"
cuda_version = ""  # onnxruntime's CUDA build version; ortlite uses whatever CuPy was built against

_seed: int | None = None
_logger_verbosity = 0
_global_thread_pool_sizes: tuple[int, int] | None = None


def set_seed(seed: int) -> None:
    """Seed the random ops (RandomNormal, RandomUniform, ...Like, Bernoulli, Multinomial) that have no
    ``seed`` attribute, as onnxruntime does: each such node of a session created afterwards starts its own
    generator from this seed (and the node), so every session made after ``set_seed(s)`` draws the same
    values, run after run. Nodes with a ``seed`` attribute keep it."""
    global _seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgument(f"set_seed: expected an integer seed, got {type(seed).__name__}")
    _seed = int(seed)


def global_seed() -> int | None:
    """The seed given to ``set_seed``, None before any call (kernels then seed from OS entropy)."""
    return _seed


def set_default_logger_verbosity(level: int) -> None:
    """Store onnxruntime's default VLOG verbosity. ortlite's verbose output (the per-node trace) follows
    SessionOptions/RunOptions ``log_verbosity_level`` with severity 0; this value is kept for
    ``get_default_logger_verbosity``."""
    global _logger_verbosity
    _logger_verbosity = int(level)


def get_default_logger_verbosity() -> int:
    """ortlite only: the value last given to ``set_default_logger_verbosity`` (0 by default)."""
    return _logger_verbosity


def set_global_thread_pool_sizes(intra_op_num_threads: int = 0, inter_op_num_threads: int = 0) -> None:
    """Accepted for ported code and stored. ortlite has no global pools: each session sizes BLAS threads
    from its own ``intra_op_num_threads`` (``SessionOptions.use_per_session_threads`` is stored likewise)."""
    global _global_thread_pool_sizes
    _global_thread_pool_sizes = (int(intra_op_num_threads), int(inter_op_num_threads))


def disable_telemetry_events() -> None:
    """No-op: ortlite sends no telemetry."""


def enable_telemetry_events() -> None:
    """No-op: ortlite sends no telemetry."""


def has_collective_ops() -> bool:
    """False: ortlite has no collective (multi-GPU) ops."""
    return False


def preload_dlls(cuda: bool = True, cudnn: bool = True, msvc: bool = True, directory=None) -> None:
    """No-op: ortlite loads no DLLs of its own (CuPy loads CUDA's libraries when the CUDA provider starts)."""


def print_debug_info() -> None:
    """Print the version, the providers available here and why the others are not."""
    import ortlite

    print(f"ortlite {__version__}: available providers {ortlite.get_available_providers()}")
    for name, why in ortlite.get_unavailable_providers().items():
        print(f"  {name}: {why}")


# ---- memory descriptions ------------------------------------------------------------------------------
class OrtMemType(enum.IntEnum):
    CPU_INPUT = -2
    CPU_OUTPUT = -1
    CPU = -1
    DEFAULT = 0


class OrtAllocatorType(enum.IntEnum):
    INVALID = -1
    ORT_DEVICE_ALLOCATOR = 0
    ORT_ARENA_ALLOCATOR = 1


class OrtMemoryInfoDeviceType(enum.IntEnum):
    CPU = 0
    GPU = 1
    FPGA = 2
    NPU = 3


class OrtDeviceMemoryType(enum.IntEnum):
    DEFAULT = 0
    HOST_ACCESSIBLE = 5


class OrtDeviceVendorId(enum.IntEnum):
    NONE = 0
    AMD = 0x1002
    NVIDIA = 0x10DE
    ARM = 0x13B5
    MICROSOFT = 0x1414
    HUAWEI = 0x19E5
    QUALCOMM = 0x5143
    INTEL = 0x8086


# the names onnxruntime's OrtMemoryInfo constructor accepts that ortlite has memory for: vendor of each
_MEMORY_NAMES = {"Cpu": OrtDeviceVendorId.NONE, "Cuda": OrtDeviceVendorId.NVIDIA,
                 "CudaPinned": OrtDeviceVendorId.NVIDIA}


class OrtMemoryInfo:
    """Where memory lives (onnxruntime.OrtMemoryInfo): ``OrtMemoryInfo(name, allocator_type, device_id,
    mem_type)`` with name 'Cpu', 'Cuda' or 'CudaPinned', or ``OrtMemoryInfo.create_v2(...)``. A description
    only: ortlite takes device memory from its providers."""

    def __init__(self, name: str, allocator_type, device_id: int, mem_type):
        if name not in _MEMORY_NAMES:
            raise InvalidArgument(f"OrtMemoryInfo: device name '{name}' is not supported; expected one of "
                                  f"{sorted(_MEMORY_NAMES)} (or OrtMemoryInfo.create_v2)")
        self._set(name, OrtAllocatorType(allocator_type), device_id, OrtMemType(mem_type), OrtDeviceMemoryType.DEFAULT,
                  int(_MEMORY_NAMES[name]))

    def _set(self, name, allocator_type, device_id, mem_type, device_mem_type, vendor_id):
        self._name, self._allocator_type, self._device_id = name, allocator_type, int(device_id)
        self._mem_type, self._device_mem_type, self._vendor_id = mem_type, device_mem_type, int(vendor_id)

    @staticmethod
    def create_v2(name: str, device_type, vendor_id: int, device_id: int, device_mem_type, alignment: int,
                  allocator_type) -> OrtMemoryInfo:
        """onnxruntime's CreateMemoryInfo_V2: any name, described by device type and vendor."""
        OrtMemoryInfoDeviceType(device_type)  # validates
        info = OrtMemoryInfo.__new__(OrtMemoryInfo)
        info._set(str(name), OrtAllocatorType(allocator_type), device_id, OrtMemType.DEFAULT,
                  OrtDeviceMemoryType(device_mem_type), vendor_id)
        return info

    name = property(lambda self: self._name)
    allocator_type = property(lambda self: self._allocator_type)
    device_id = property(lambda self: self._device_id)
    mem_type = property(lambda self: self._mem_type)
    device_mem_type = property(lambda self: self._device_mem_type)
    device_vendor_id = property(lambda self: self._vendor_id)

    def __repr__(self):
        return (f"OrtMemoryInfo(name='{self._name}', device_id={self._device_id}, mem_type={self._mem_type.name}, "
                f"allocator_type={self._allocator_type.name})")


class OrtArenaCfg:
    """Arena settings (onnxruntime.OrtArenaCfg), stored for ``create_and_register_allocator``: either the four
    positional values or one dict of onnxruntime's keys."""

    _KEYS = ("max_mem", "arena_extend_strategy", "initial_chunk_size_bytes", "max_dead_bytes_per_chunk")

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], dict):
            self.config = dict(args[0])
        elif len(args) == len(self._KEYS):
            self.config = dict(zip(self._KEYS, args))
        else:
            raise InvalidArgument(f"OrtArenaCfg: expected {', '.join(self._KEYS)} or one dict, got {len(args)} "
                                  "argument(s)")


def create_and_register_allocator(mem_info: OrtMemoryInfo, arena_cfg: OrtArenaCfg | None = None) -> None:
    """Accepted for ported code, no effect: ortlite's host buffers come from numpy and device buffers from
    the CUDA provider's pool (its ``gpu_mem_limit`` option sizes it)."""
    if not isinstance(mem_info, OrtMemoryInfo):
        raise InvalidArgument(f"create_and_register_allocator: expected an OrtMemoryInfo, got "
                              f"{type(mem_info).__name__}")


# ---- sparse tensors -------------------------------------------------------------------------------------
class OrtSparseFormat(enum.IntEnum):
    ORT_SPARSE_UNDEFINED = 0
    ORT_SPARSE_COO = 1
    ORT_SPARSE_CSRC = 2
    ORT_SPARSE_BLOCK_SPARSE = 4


class SparseCooView:
    """COO indices of a SparseTensor: linear (nnz,) or coordinate pairs (nnz, 2)."""

    def __init__(self, indices):
        self._indices = indices

    def indices(self) -> np.ndarray:
        return self._indices


class SparseCsrView:
    """CSR indices of a SparseTensor: ``inner()`` column of each value, ``outer()`` row starts (rows + 1)."""

    def __init__(self, inner, outer):
        self._inner, self._outer = inner, outer

    def inner(self) -> np.ndarray:
        return self._inner

    def outer(self) -> np.ndarray:
        return self._outer


class SparseTensor:
    """A sparse tensor in host memory (onnxruntime.SparseTensor): made with ``sparse_coo_from_numpy`` or
    ``sparse_csr_from_numpy``; ``to_dense()`` (ortlite only) gives the numpy array it stands for."""

    def __init__(self, fmt, dense_shape, values, indices):
        self._format, self._dense_shape, self._values, self._indices = fmt, dense_shape, values, indices

    @staticmethod
    def _common(what, dense_shape, values, ort_device):
        if ort_device is not None and getattr(ort_device, "device_type", lambda: "cpu")() not in ("cpu", 0):
            raise OrtNotImplemented(f"{what}: only CPU memory is supported, got device "
                                    f"{ort_device.device_type()!r}")
        shape = np.asarray(dense_shape, dtype=np.int64)
        if shape.ndim != 1 or (shape < 0).any():
            raise InvalidArgument(f"{what}: dense_shape must be a 1-D list of non-negative dims, got {dense_shape!r}")
        values = np.asarray(values)
        if values.ndim != 1:
            raise InvalidArgument(f"{what}: values must be 1-D, got shape {values.shape}")
        if values.dtype.kind == "U":
            values = values.astype(object)
        return shape, values

    @classmethod
    def sparse_coo_from_numpy(cls, dense_shape, values, coo_indices, ort_device=None) -> SparseTensor:
        """COO: ``coo_indices`` (int64) holds one linear index per value, or one coordinate row per value
        for a 2-D tensor (shape (nnz, 2))."""
        what = "SparseTensor.sparse_coo_from_numpy"
        shape, values = cls._common(what, dense_shape, values, ort_device)
        idx = np.asarray(coo_indices, dtype=np.int64)
        nnz = values.shape[0]
        if idx.size not in (nnz, 2 * nnz):
            raise InvalidArgument(f"{what}: {idx.size} indices for {nnz} values; expected {nnz} linear indices "
                                  f"or {2 * nnz} (pairs of coordinates)")
        if idx.size == 2 * nnz and idx.ndim == 1:
            idx = idx.reshape(nnz, 2)
        size = int(np.prod(shape))
        flat = idx if idx.ndim == 1 else (np.ravel_multi_index(tuple(idx.T), tuple(shape)) if len(shape) == 2
                                          else None)
        if flat is None:
            raise InvalidArgument(f"{what}: coordinate-pair indices need a 2-D dense_shape, got {shape.tolist()}")
        if nnz and (flat.min() < 0 or flat.max() >= size):
            raise InvalidArgument(f"{what}: an index is outside the dense shape {shape.tolist()} ({size} elements)")
        return cls(OrtSparseFormat.ORT_SPARSE_COO, shape, values, idx)

    @classmethod
    def sparse_csr_from_numpy(cls, dense_shape, values, inner_indices, outer_indices, ort_device=None
                              ) -> SparseTensor:
        """CSR of a 2-D tensor: ``inner_indices`` the column of each value, ``outer_indices`` the offset of
        each row's first value (rows + 1 entries)."""
        what = "SparseTensor.sparse_csr_from_numpy"
        shape, values = cls._common(what, dense_shape, values, ort_device)
        inner = np.asarray(inner_indices, dtype=np.int64)
        outer = np.asarray(outer_indices, dtype=np.int64)
        if shape.size != 2:
            raise InvalidArgument(f"{what}: CSR needs a 2-D dense_shape, got {shape.tolist()}")
        if inner.shape != values.shape:
            raise InvalidArgument(f"{what}: {inner.size} inner indices for {values.size} values; expected one each")
        if outer.shape != (shape[0] + 1,) or (values.size and (outer[0] != 0 or outer[-1] != values.size
                                                               or (np.diff(outer) < 0).any())):
            raise InvalidArgument(f"{what}: outer_indices must be {shape[0] + 1} non-decreasing offsets from 0 to "
                                  f"{values.size}, got {outer.tolist()}")
        if inner.size and (inner.min() < 0 or inner.max() >= shape[1]):
            raise InvalidArgument(f"{what}: a column index is outside 0..{shape[1] - 1}")
        return cls(OrtSparseFormat.ORT_SPARSE_CSRC, shape, values, (inner, outer))

    def values(self) -> np.ndarray:
        return self._values

    def format(self) -> OrtSparseFormat:
        return self._format

    def dense_shape(self) -> np.ndarray:
        return self._dense_shape

    def data_type(self) -> str:
        from ortlite import types as ot

        return f"sparse_tensor({ot.type_name(ot.onnx_elem_type(self._values.dtype))})"

    def device_name(self) -> str:
        return "cpu"

    def as_coo_view(self) -> SparseCooView:
        if self._format is not OrtSparseFormat.ORT_SPARSE_COO:
            raise Fail(f"This sparse tensor does not contain COO format (it is {self._format.name})")
        return SparseCooView(self._indices)

    def as_csrc_view(self) -> SparseCsrView:
        if self._format is not OrtSparseFormat.ORT_SPARSE_CSRC:
            raise Fail(f"This sparse tensor does not contain CSR(C) format (it is {self._format.name})")
        return SparseCsrView(*self._indices)

    def as_blocksparse_view(self):
        raise Fail(f"This sparse tensor does not contain BlockSparse format (it is {self._format.name}); "
                   "ortlite makes COO and CSR sparse tensors only")

    def to_cuda(self, ort_device):
        raise OrtNotImplemented("SparseTensor.to_cuda: ortlite keeps sparse tensors in host memory; "
                                "convert with to_dense() and make a device OrtValue from it")

    def to_dense(self) -> np.ndarray:
        """ortlite only: the dense numpy array (zeros where no value is stored)."""
        shape = tuple(int(d) for d in self._dense_shape)
        out = np.zeros(int(np.prod(shape)), dtype=self._values.dtype)
        if self._values.dtype == object:
            out[:] = ""
        if self._format is OrtSparseFormat.ORT_SPARSE_COO:
            idx = self._indices
            flat = idx if idx.ndim == 1 else np.ravel_multi_index(tuple(idx.T), shape)
        else:
            inner, outer = self._indices
            rows = np.repeat(np.arange(shape[0]), np.diff(outer))
            flat = rows * shape[1] + inner
        out[flat] = self._values
        return out.reshape(shape)

    def __repr__(self):
        return (f"SparseTensor({self._format.name}, dense_shape={self._dense_shape.tolist()}, "
                f"nnz={self._values.size}, dtype={self._values.dtype})")
