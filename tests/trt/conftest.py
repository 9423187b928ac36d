"""Fixtures installing the fake ``tensorrt`` module (fake_tensorrt.py) as ``sys.modules["tensorrt"]``.

* ``fake_trt``: parametrized over both personalities (ids "trt10", "trt11");
* ``fake_trt10`` / ``fake_trt11``: one personality.

Each yields the module; its controls are ``mod._fake`` (= ``trt.fake_tensorrt``: SUPPORT, STATS,
FAULTS, DEVICE, reset(), register_device_buffer). ``strict_cuda`` (the CUDA provider over the strict
CuPy stand-in) is re-exported from tests/cuda_provider/conftest.py. Controls are reset before and after the test, the
strict-CuPy allocation hook is installed, and the previous ``sys.modules["tensorrt"]`` is restored.
"""
import sys

import pytest

from cuda_provider import conftest as _cuda_conftest
from trt import fake_tensorrt
from trt.fake_tensorrt_memory import install_strict_cupy_hook

# the CUDA provider on the strict CuPy stand-in (tests/cuda_provider/conftest.py), for provider tests here
strict_cuda = _cuda_conftest.strict_cuda

VERSIONS = {"trt10": "10.16.1", "trt11": "11.4.0"}


def _install(version):
    fake_tensorrt.reset()
    install_strict_cupy_hook()
    mod = fake_tensorrt.personality(version)
    missing = object()
    prev = sys.modules.get("tensorrt", missing)
    sys.modules["tensorrt"] = mod
    try:
        yield mod
    finally:
        if prev is missing:
            sys.modules.pop("tensorrt", None)
        else:
            sys.modules["tensorrt"] = prev
        fake_tensorrt.reset()


@pytest.fixture(params=list(VERSIONS), ids=list(VERSIONS))
def fake_trt(request):
    yield from _install(VERSIONS[request.param])


@pytest.fixture
def fake_trt10():
    yield from _install(VERSIONS["trt10"])


@pytest.fixture
def fake_trt11():
    yield from _install(VERSIONS["trt11"])
