"""Operator kernels, grouped by family. ``import_all()`` imports every module (each registers its
kernels); importing the package itself registers nothing.

Each module registers its kernels with ``ortlite.registry.kernel``; see that module for the
contract. Families: elementwise, math, reduce, nn (conv, pool, norm, resize, ...), tensor,
control_flow, sequence, rnn, quant, random, signal, text, detection, ml, contrib. Sessions do not
import them all: ``ortlite.registry`` keeps an index from op to module (written the first time every
module is imported) and imports a module when an op of its is first looked up.
"""
import importlib
import pkgutil

_SKIP = {"_common"}


def module_names():
    """Every kernel module's full name, sorted."""
    return [f"{__name__}.{m.name}" for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
            if m.name not in _SKIP]


def import_all():
    """Import every kernel module."""
    for name in module_names():
        importlib.import_module(name)
