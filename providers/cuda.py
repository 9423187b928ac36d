"""CUDAExecutionProvider on CuPy.

Only availability is decided here for now: the CuPy kernels, device memory
pool and streams land with the CUDA provider's issue. Until then the provider
reports itself unavailable with the reason, and sessions fall back with a
warning naming it.
"""
from __future__ import annotations

from ortlite.providers.base import ExecutionProvider


def _probe_cupy() -> tuple[bool, str]:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False, "CuPy is not installed (pip install 'ortlite[cuda12]' or 'ortlite[cuda13]')"
    except Exception as e:  # noqa: BLE001 - a broken CUDA install raises many things
        return False, f"CuPy failed to import: {e}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        return False, f"no usable CUDA driver/device: {e}"
    if n == 0:
        return False, "CuPy sees no CUDA device"
    return True, ""


class CUDAExecutionProvider(ExecutionProvider):
    name = "CUDAExecutionProvider"
    family = "cuda"
    device_type = "cuda"

    @classmethod
    def availability(cls):
        ok, why = _probe_cupy()
        if not ok:
            return False, why
        return False, "this ortlite build has no CUDA kernels yet (the CuPy provider is not implemented)"
