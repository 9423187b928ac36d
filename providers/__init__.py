"""Execution providers by onnxruntime's names, imported lazily."""
from __future__ import annotations

import importlib

# In default priority order (as onnxruntime lists them).
_PROVIDERS = {
    "TensorrtExecutionProvider": "ortlite.providers.tensorrt",
    "CUDAExecutionProvider": "ortlite.providers.cuda",
    "OpenVINOExecutionProvider": "ortlite.providers.openvino",
    "CPUExecutionProvider": "ortlite.providers.cpu",
}
_BUILTIN = dict(_PROVIDERS)
_ALIASES = {"TensorRTExecutionProvider": "TensorrtExecutionProvider"}

_availability_cache: dict[str, tuple[bool, str]] = {}

from ortlite.hints import REPO_URL, install_hint  # noqa: E402,F401 - the providers' install hints



_registered_classes: dict[str, type] = {}


def register_provider(cls, priority: int | None = None) -> None:
    """Add an execution provider class (plugins, and the tests' pretend device).

    ``priority`` is its index in the default order (default: just before the CPU provider).
    """
    name = cls.name
    _registered_classes[name] = cls
    names = [n for n in _PROVIDERS if n != name]
    pos = len(names) - 1 if priority is None else priority
    names.insert(pos, name)
    mods = {n: _PROVIDERS.get(n, "") for n in names}
    _PROVIDERS.clear()
    _PROVIDERS.update(mods)
    _availability_cache.pop(name, None)


def unregister_provider(name: str) -> None:
    """Remove a provider added with register_provider; a built-in name gets its own class back."""
    _registered_classes.pop(name, None)
    _availability_cache.pop(name, None)
    if name not in _BUILTIN:
        _PROVIDERS.pop(name, None)
        return
    others = [n for n in _PROVIDERS if n not in _BUILTIN]
    order = list(_BUILTIN)
    order[-1:-1] = others  # plugins keep their place before the CPU provider
    mods = {n: _BUILTIN.get(n, _PROVIDERS.get(n, "")) for n in order}
    _PROVIDERS.clear()
    _PROVIDERS.update(mods)


def provider_for_device(device_type: str):
    """An available provider class whose values live on ``device_type``, or (None, reason)."""
    reasons = []
    for n in _PROVIDERS:
        cls = provider_class(n)
        if cls.device_type != device_type:
            continue
        ok, why = availability(n)
        if ok:
            return cls, ""
        reasons.append(f"{n}: {why}")
    return None, "; ".join(reasons) or f"no execution provider has device '{device_type}'"


def all_provider_names() -> list:
    return list(_PROVIDERS)


def canonical_name(name: str) -> str:
    """onnxruntime's spelling of a provider name, or ValueError listing the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"a provider is a name or a (name, options) tuple, got {name!r}")
    name = _ALIASES.get(name, name)
    if name not in _PROVIDERS:
        valid = ", ".join(_PROVIDERS)  # aliases (TensorRTExecutionProvider) are accepted, not listed
        raise ValueError(f"'{name}' is not an execution provider; valid names: {valid}")
    return name


def provider_class(name: str):
    name = canonical_name(name)
    if name in _registered_classes:
        return _registered_classes[name]
    mod = importlib.import_module(_PROVIDERS[name])
    return getattr(mod, name)


def availability(name: str) -> tuple[bool, str]:
    name = canonical_name(name)
    if name not in _availability_cache:
        _availability_cache[name] = provider_class(name).availability()
    return _availability_cache[name]


def available_provider_names() -> list:
    return [n for n in _PROVIDERS if availability(n)[0]]
