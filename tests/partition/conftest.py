import pytest

from ortlite import providers
from partition.pretend_device import PretendDeviceExecutionProvider


@pytest.fixture(autouse=True)
def pretend_device():
    providers.register_provider(PretendDeviceExecutionProvider, priority=0)
    yield PretendDeviceExecutionProvider
    providers.unregister_provider(PretendDeviceExecutionProvider.name)
    from ortlite import ortvalue

    ortvalue._device_providers.clear()
