import pytest

from ortlite import providers
from compiling.fake_compiler import FakeCompilerExecutionProvider


@pytest.fixture
def fake_compiler():
    FakeCompilerExecutionProvider.log.clear()
    providers.register_provider(FakeCompilerExecutionProvider, priority=0)
    yield FakeCompilerExecutionProvider
    providers.unregister_provider(FakeCompilerExecutionProvider.name)
