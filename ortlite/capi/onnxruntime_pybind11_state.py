"""The exception names onnxruntime exposes here, aliased to ortlite's."""
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
