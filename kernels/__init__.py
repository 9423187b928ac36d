"""Operator kernels, grouped by family. Importing this package registers them all.

Each module registers its kernels with ``ortlite.registry.kernel``; see that
module for the contract. Families: elementwise, math, reduce, nn (conv, pool,
norm, resize, ...), tensor, control_flow, sequence, rnn, quant, random, signal,
text, detection, ml, contrib.
"""
import importlib
import pkgutil

_SKIP = {"_common"}

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod not in _SKIP:
        importlib.import_module(f"{__name__}.{_mod}")
