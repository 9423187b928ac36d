"""onnxruntime.capi._pybind_state: the same names as ``onnxruntime_pybind11_state``."""
from ortlite.capi.onnxruntime_pybind11_state import *  # noqa: F401,F403
from ortlite.capi.onnxruntime_pybind11_state import __getattr__  # noqa: F401
