"""onnxruntime.capi.onnxruntime_inference_collection: the Python classes ported code imports from there."""
from ortlite.compat import SparseTensor  # noqa: F401
from ortlite.iobinding import IOBinding  # noqa: F401
from ortlite.ortvalue import OrtDevice, OrtValue  # noqa: F401
from ortlite.session import InferenceSession  # noqa: F401
