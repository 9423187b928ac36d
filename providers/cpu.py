"""CPUExecutionProvider: numpy kernels, always available."""
from __future__ import annotations

import numpy as np

from ortlite.providers.base import ExecutionProvider


class CPUExecutionProvider(ExecutionProvider):
    name = "CPUExecutionProvider"
    family = "cpu"
    device_type = "cpu"

    @property
    def xp(self):
        return np

    def to_host(self, value):
        return value
