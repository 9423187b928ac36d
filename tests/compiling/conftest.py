import pytest

from ortlite import providers
from compiling.fake_compiler import FakeCompilerExecutionProvider, FakeDeviceCompilerExecutionProvider


@pytest.fixture
def fake_compiler():
    FakeCompilerExecutionProvider.log.clear()
    FakeCompilerExecutionProvider.claims.clear()
    providers.register_provider(FakeCompilerExecutionProvider, priority=0)
    yield FakeCompilerExecutionProvider
    providers.unregister_provider(FakeCompilerExecutionProvider.name)


@pytest.fixture
def fake_device_compiler():
    FakeCompilerExecutionProvider.log.clear()
    providers.register_provider(FakeDeviceCompilerExecutionProvider, priority=0)
    yield FakeDeviceCompilerExecutionProvider
    providers.unregister_provider(FakeDeviceCompilerExecutionProvider.name)
    from ortlite import ortvalue

    ortvalue._device_providers.clear()
