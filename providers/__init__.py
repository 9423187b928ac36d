"""Execution providers by onnxruntime's names, imported lazily."""
from __future__ import annotations

import importlib

# In default priority order (as onnxruntime lists them).
_PROVIDERS = {
    "TensorrtExecutionProvider": "ortlite.providers.tensorrt",
    "CUDAExecutionProvider": "ortlite.providers.cuda",
    "CPUExecutionProvider": "ortlite.providers.cpu",
}
_ALIASES = {"TensorRTExecutionProvider": "TensorrtExecutionProvider"}

_availability_cache: dict[str, tuple[bool, str]] = {}


def all_provider_names() -> list:
    return list(_PROVIDERS)


def canonical_name(name: str) -> str:
    """onnxruntime's spelling of a provider name, or ValueError listing the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"a provider is a name or a (name, options) tuple, got {name!r}")
    name = _ALIASES.get(name, name)
    if name not in _PROVIDERS:
        valid = ", ".join(list(_PROVIDERS) + list(_ALIASES))
        raise ValueError(f"'{name}' is not an execution provider; valid names: {valid}")
    return name


def provider_class(name: str):
    name = canonical_name(name)
    mod = importlib.import_module(_PROVIDERS[name])
    return getattr(mod, name)


def availability(name: str) -> tuple[bool, str]:
    name = canonical_name(name)
    if name not in _availability_cache:
        _availability_cache[name] = provider_class(name).availability()
    return _availability_cache[name]


def available_provider_names() -> list:
    return [n for n in _PROVIDERS if availability(n)[0]]
