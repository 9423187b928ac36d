"""The exception names onnxruntime exposes here, aliased to ortlite's; any other public name (SessionOptions,
OrtValue, get_available_providers, ...) is ortlite's own, as onnxruntime's native module holds them too."""
from ortlite.errors import (  # noqa: F401
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    NotImplemented,
    RuntimeException,
)


def __getattr__(name):
    import ortlite

    if name.startswith("_") or name == "capi" or not hasattr(ortlite, name):
        raise AttributeError(f"module '{__name__}' has no attribute '{name}' (ortlite has no such name)")
    return getattr(ortlite, name)
