"""TensorrtExecutionProvider: compiles claimed subgraphs into TensorRT engines.

Only availability is decided here for now; engine building lands with the
TensorRT provider's issue.
"""
from __future__ import annotations

from ortlite.providers.base import ExecutionProvider


class TensorrtExecutionProvider(ExecutionProvider):
    name = "TensorrtExecutionProvider"
    family = "tensorrt"
    device_type = "cuda"

    @classmethod
    def availability(cls):
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "the tensorrt Python package is not installed (pip install 'ortlite[tensorrt]')"
        except Exception as e:  # noqa: BLE001
            return False, f"tensorrt failed to import: {e}"
        return False, "this ortlite build has no TensorRT engine builder yet"
