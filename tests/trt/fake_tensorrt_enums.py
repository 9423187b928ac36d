"""pybind11-style enums and Dims for the fake ``tensorrt`` module (see fake_tensorrt.py).

Values per version come from NVIDIA/TensorRT include/NvInfer*.h at v10.16 and v11.1 (main).
"""
from __future__ import annotations


class _EnumMeta(type):
    def __iter__(cls):
        return iter(cls.__members__.values())

    def __len__(cls):
        return len(cls.__members__)


class _Enum(metaclass=_EnumMeta):
    """A pybind11 enum value: ``.name``, ``.value``, ``int()``, hashable; ``E(int)`` looks a member up."""

    __members__: dict = {}
    _arithmetic = False

    def __new__(cls, value):
        if isinstance(value, cls):
            return value
        for m in cls.__members__.values():
            if m._v == int(value):
                return m
        raise ValueError(f"{value} is not a valid {cls.__name__}")

    @classmethod
    def _make(cls, name, value):
        m = object.__new__(cls)
        m._n, m._v = name, value
        return m

    @property
    def name(self):
        return self._n

    @property
    def value(self):
        return self._v

    def __int__(self):
        return self._v

    def __index__(self):
        return self._v

    def __hash__(self):
        return hash(self._v)

    def __eq__(self, other):
        if type(other) is type(self):
            return self._v == other._v
        if self._arithmetic and isinstance(other, int) and not isinstance(other, _Enum):
            return self._v == other
        return NotImplemented if not isinstance(other, _Enum) else False

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def _cmp_value(self, other):
        if type(other) is type(self):
            return other._v
        if self._arithmetic and isinstance(other, int) and not isinstance(other, _Enum):
            return other
        raise TypeError(f"cannot compare {type(self).__name__} with {type(other).__name__}")

    def __lt__(self, other):
        return self._v < self._cmp_value(other)

    def __le__(self, other):
        return self._v <= self._cmp_value(other)

    def __gt__(self, other):
        return self._v > self._cmp_value(other)

    def __ge__(self, other):
        return self._v >= self._cmp_value(other)

    def __or__(self, other):
        if not self._arithmetic:
            return NotImplemented
        return self._v | int(other)

    __ror__ = __or__

    def __and__(self, other):
        if not self._arithmetic:
            return NotImplemented
        return self._v & int(other)

    __rand__ = __and__

    def __str__(self):
        return f"{type(self).__name__}.{self._n}"

    def __repr__(self):
        return f"<{type(self).__name__}.{self._n}: {self._v}>"

    def __reduce__(self):
        return (type(self), (self._v,))


def make_enum(name, members, arithmetic=False, extra=None):
    """A new enum class ``name`` with ``members`` {NAME: int} (each also a class attribute)."""
    ns = {"_arithmetic": arithmetic, "__qualname__": name}
    ns.update(extra or {})
    cls = type(name, (_Enum,), ns)
    cls.__members__ = {}
    for k, v in members.items():
        m = cls._make(k, v)
        cls.__members__[k] = m
        setattr(cls, k, m)
    return cls


def _seq(*names, start=0):
    return {n: i for i, n in enumerate(names, start)}


SEVERITY = _seq("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")
DATATYPE = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "FP8": 6, "BF16": 7,
            "INT64": 8, "INT4": 9, "FP4": 10, "E8M0": 11}
DATATYPE_ITEMSIZE = {"FLOAT": 4, "HALF": 2, "INT8": 1, "INT32": 4, "BOOL": 1, "UINT8": 1, "FP8": 1, "BF16": 2,
                     "INT64": 8, "INT4": 0.5, "FP4": 0.5, "E8M0": 1}
BUILDER_FLAG = {
    "10": {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
           "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8, "OBEY_PRECISION_CONSTRAINTS": 9,
           "PREFER_PRECISION_CONSTRAINTS": 10, "DIRECT_IO": 11, "REJECT_EMPTY_ALGORITHMS": 12,
           "VERSION_COMPATIBLE": 13, "EXCLUDE_LEAN_RUNTIME": 14, "FP8": 15, "ERROR_ON_TIMING_CACHE_MISS": 16,
           "BF16": 17, "DISABLE_COMPILATION_CACHE": 18, "STRIP_PLAN": 19, "WEIGHTLESS": 19, "REFIT_IDENTICAL": 20,
           "WEIGHT_STREAMING": 21, "INT4": 22, "REFIT_INDIVIDUAL": 23, "STRICT_NANS": 24, "MONITOR_MEMORY": 25,
           "FP4": 26, "EDITABLE_TIMING_CACHE": 27, "DISTRIBUTIVE_INDEPENDENCE": 28},
    "11": {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
           "SAFETY_SCOPE": 8, "DIRECT_IO": 11, "VERSION_COMPATIBLE": 12, "EXCLUDE_LEAN_RUNTIME": 13,
           "ERROR_ON_TIMING_CACHE_MISS": 15, "DISABLE_COMPILATION_CACHE": 17, "STRIP_PLAN": 18,
           "REFIT_IDENTICAL": 19, "WEIGHT_STREAMING": 20, "REFIT_INDIVIDUAL": 22, "STRICT_NANS": 23,
           "MONITOR_MEMORY": 24, "EDITABLE_TIMING_CACHE": 26, "DISTRIBUTIVE_INDEPENDENCE": 27},
}
NETWORK_FLAG = {
    "10": {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3},
    "11": {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
}
ONNX_PARSER_FLAG = _seq("NATIVE_INSTANCENORM", "ENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA",
                        "REPORT_CAPABILITY_DLA", "ENABLE_PLUGIN_OVERRIDE", "ADJUST_FOR_DLA")
PARSER_ERROR_CODE = _seq("SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED",
                         "INVALID_VALUE", "INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH", "UNSUPPORTED_NODE",
                         "UNSUPPORTED_NODE_ATTR", "UNSUPPORTED_NODE_INPUT", "UNSUPPORTED_NODE_DATATYPE",
                         "UNSUPPORTED_NODE_DYNAMIC", "UNSUPPORTED_NODE_SHAPE", "REFIT_FAILED")
MEMORY_POOL = _seq("WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM",
                   "TACTIC_SHARED_MEMORY")
TENSOR_IO_MODE = _seq("NONE", "INPUT", "OUTPUT")
TENSOR_LOCATION = _seq("DEVICE", "HOST")
ALLOC_STRATEGY = _seq("STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED")
HW_COMPAT = {"NONE": 0, "AMPERE_PLUS": 1, "SAME_COMPUTE_CAPABILITY": 2}
PROFILING_VERBOSITY = {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2}
DEVICE_TYPE = _seq("GPU", "DLA")
ENGINE_CAPABILITY = _seq("STANDARD", "SAFETY", "DLA_STANDALONE")
TACTIC_SOURCE = {
    "10": {"CUBLAS": 0, "CUBLAS_LT": 1, "CUDNN": 2, "EDGE_MASK_CONVOLUTIONS": 3, "JIT_CONVOLUTIONS": 4},
    "11": {"EDGE_MASK_CONVOLUTIONS": 0, "JIT_CONVOLUTIONS": 1},
}
TILING_LEVEL = _seq("NONE", "FAST", "MODERATE", "FULL")
SERIALIZATION_FLAG = _seq("EXCLUDE_WEIGHTS", "EXCLUDE_LEAN_RUNTIME", "INCLUDE_REFIT")


class Dims:
    """``trt.Dims``: a tuple-like of ints; ``len()`` of an invalid Dims (nbDims -1) raises ValueError."""

    MAX_DIMS = 8

    def __init__(self, shape=()):
        if isinstance(shape, Dims):
            self._d, self._nb = list(shape._d), shape._nb
            return
        d = [int(x) for x in shape]
        if len(d) > self.MAX_DIMS:
            raise ValueError(f"Dims cannot have more than {self.MAX_DIMS} dimensions")
        self._d, self._nb = d, len(d)

    @classmethod
    def _invalid(cls):
        d = cls(())
        d._nb = -1
        return d

    def __len__(self):
        return self._nb  # -1 -> ValueError("__len__() should return >= 0"), as pybind's Dims{-1}

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self._d[i])
        n = max(self._nb, 0)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Out of bounds")
        return self._d[i]

    def __setitem__(self, i, v):
        n = max(self._nb, 0)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Out of bounds")
        self._d[i] = int(v)

    def __iter__(self):
        return iter(self._d)

    def __eq__(self, other):
        if isinstance(other, Dims):
            return self._nb == other._nb and self._d == other._d
        if isinstance(other, (list, tuple)):
            return self._nb >= 0 and self._d == [int(x) for x in other]
        return NotImplemented

    def __hash__(self):
        return hash((self._nb, tuple(self._d)))

    def __repr__(self):
        if self._nb < 0:
            return "(-1)"  # invalid Dims
        return repr(tuple(self._d))

    __str__ = __repr__
