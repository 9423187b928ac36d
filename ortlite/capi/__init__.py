"""Compatibility aliases for code that imports from ``onnxruntime.capi``."""
