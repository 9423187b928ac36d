"""OpenVINOExecutionProvider (placeholder until the provider lands)."""
from __future__ import annotations

from ortlite.providers.base import CompilingProvider


class OpenVINOExecutionProvider(CompilingProvider):
    name = "OpenVINOExecutionProvider"
    device_type = "cpu"

    @classmethod
    def availability(cls):
        return False, "not built yet"
