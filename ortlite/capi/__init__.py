"""Compatibility aliases for code that imports from ``onnxruntime.capi``: ``onnxruntime_pybind11_state``
(the exception classes; ``_pybind_state`` is the same module) and ``onnxruntime_inference_collection``."""
from ortlite.capi import onnxruntime_pybind11_state  # noqa: F401 - reachable as ort.capi.onnxruntime_pybind11_state
