import pytest

from ortlite import ortvalue, providers
from ortlite.providers import cuda as cuda_mod


@pytest.fixture
def fake_cuda():
    """The CUDA provider with its CuPy backend replaced by a numpy stand-in (see fake_cuda.py)."""
    from cuda_provider.fake_cuda import FakeCUDAExecutionProvider, FakeCudaBackend

    FakeCudaBackend.instances.clear()
    providers.register_provider(FakeCUDAExecutionProvider, priority=0)
    ortvalue._device_providers.clear()
    yield FakeCUDAExecutionProvider
    providers.unregister_provider(FakeCUDAExecutionProvider.name)
    ortvalue._device_providers.clear()


@pytest.fixture
def real_cuda():
    """Skips (with CuPy's reason) unless CuPy sees a CUDA device."""
    ok, why = cuda_mod._probe_cupy()
    if not ok:
        pytest.skip(f"CUDAExecutionProvider unavailable: {why}")
    import cupy

    return cupy


@pytest.fixture
def strict_cuda():
    """The real CUDA provider over the strict CuPy stand-in (strict_backend.py), refused uses raising."""
    from cuda_provider import strict_cupy
    from cuda_provider.strict_backend import StrictCUDAExecutionProvider

    strict_cupy.reset()
    providers.register_provider(StrictCUDAExecutionProvider, priority=0)
    ortvalue._device_providers.clear()
    yield strict_cupy
    providers.unregister_provider(StrictCUDAExecutionProvider.name)
    ortvalue._device_providers.clear()
