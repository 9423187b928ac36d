"""Exceptions raised by ortlite.

The names follow onnxruntime's (``onnxruntime.capi.onnxruntime_pybind11_state``),
so code that catches ``InvalidArgument`` or ``Fail`` keeps working; each also
derives from the matching Python built-in so ``except ValueError`` works too.
"""


class OrtliteError(Exception):
    """Base class of every error ortlite raises on purpose."""


class Fail(OrtliteError, RuntimeError):
    """A run or a session set-up failed."""


class InvalidArgument(OrtliteError, ValueError):
    """The caller passed something the model does not accept."""


class NoSuchFile(OrtliteError, FileNotFoundError):
    """The model file does not exist."""


class InvalidProtobuf(OrtliteError, ValueError):
    """The bytes are not a readable ONNX model."""


class InvalidGraph(OrtliteError, ValueError):
    """The model parses but is not a valid ONNX graph."""


class NotImplemented(OrtliteError, NotImplementedError):  # noqa: A001 - onnxruntime's name
    """No kernel, opset or feature for what the model asks."""


class RuntimeException(Fail):
    """A kernel raised while running a node."""


class EPFail(Fail):
    """An execution provider failed."""


class ProviderFallbackWarning(UserWarning):
    """A requested execution provider was skipped (not available here), or a group it claimed
    could not be compiled and its nodes went to the next providers; the message says why."""
