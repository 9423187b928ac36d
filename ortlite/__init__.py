"""ortlite: an ONNX inference runtime in Python with onnxruntime's API.

    import ortlite as ort
    sess = ort.InferenceSession("model.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    outputs = sess.run(None, {"input": x})
"""
from ortlite._version import __version__
from ortlite.errors import (  # noqa: F401
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    OrtliteError,
    RuntimeException,
)
from ortlite.iobinding import IOBinding
from ortlite.options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions
from ortlite.ortvalue import OrtDevice, OrtValue
from ortlite.report import NodePlacement, PlacementReport
from ortlite.session import InferenceSession, ModelMetadata, NodeArg, ProviderFallbackWarning
from ortlite.compat import (  # noqa: F401 - onnxruntime's remaining module-level names (docs/MIGRATION.md)
    OrtAllocatorType, OrtArenaCfg, OrtDeviceMemoryType, OrtDeviceVendorId, OrtMemoryInfo, OrtMemoryInfoDeviceType,
    OrtMemType, OrtSparseFormat, SparseTensor, create_and_register_allocator, cuda_version, disable_telemetry_events,
    enable_telemetry_events, get_default_logger_verbosity, has_collective_ops, package_name, preload_dlls,
    print_debug_info, register_custom_op, set_default_logger_verbosity, set_global_thread_pool_sizes, set_seed,
    unregister_custom_op, version,
)


def get_all_providers():
    """Every provider name ortlite knows, in default priority order."""
    from ortlite.providers import all_provider_names

    return all_provider_names()


def get_available_providers():
    """Providers usable on this machine, in default priority order."""
    from ortlite.providers import available_provider_names

    return available_provider_names()


def get_unavailable_providers():
    """ortlite only: {provider name: why it is not available here} (e.g. no CuPy, no device)."""
    from ortlite.providers import all_provider_names, availability

    return {n: availability(n)[1] for n in all_provider_names() if not availability(n)[0]}


def get_device():
    """'GPU' when a GPU provider is available, else 'CPU' (as onnxruntime reports its build)."""
    return "GPU" if any(p != "CPUExecutionProvider" for p in get_available_providers()) else "CPU"


def get_version_string():
    return __version__


def get_build_info():
    return f"ortlite {__version__} (numpy CPU provider)"


def set_default_logger_severity(level: int) -> None:
    """0 verbose, 1 info, 2 warning, 3 error, 4 fatal (onnxruntime's scale) for the 'ortlite' logger: the
    default of every session and run whose options leave log_severity_level at -1."""
    import logging

    from ortlite.options import python_level

    logging.getLogger("ortlite").setLevel(python_level(level))


__all__ = [
    "__version__", "InferenceSession", "SessionOptions", "RunOptions", "GraphOptimizationLevel",
    "ExecutionMode", "ExecutionOrder", "OrtValue", "OrtDevice", "IOBinding", "NodeArg", "ModelMetadata",
    "get_all_providers", "get_available_providers", "get_unavailable_providers", "get_device", "get_version_string", "get_build_info",
    "set_default_logger_severity", "ProviderFallbackWarning", "PlacementReport", "NodePlacement",
    "OrtAllocatorType", "OrtArenaCfg", "OrtDeviceMemoryType", "OrtDeviceVendorId", "OrtMemoryInfo",
    "OrtMemoryInfoDeviceType", "OrtMemType", "OrtSparseFormat", "SparseTensor", "create_and_register_allocator",
    "cuda_version", "disable_telemetry_events", "enable_telemetry_events", "get_default_logger_verbosity",
    "has_collective_ops", "package_name", "preload_dlls", "print_debug_info", "register_custom_op",
    "set_default_logger_verbosity", "set_global_thread_pool_sizes", "set_seed", "unregister_custom_op", "version",
    "capi",
]


def __getattr__(name):
    """``ortlite.capi`` (onnxruntime.capi's aliases) imported on first use, so
    ``except ort.capi.onnxruntime_pybind11_state.Fail`` works right after ``import ortlite as ort``."""
    if name == "capi":
        import importlib

        return importlib.import_module("ortlite.capi")
    raise AttributeError(f"module 'ortlite' has no attribute '{name}'")
