"""Graph optimizer: passes that edit the IR before it is planned.

Levels follow onnxruntime:

* ORT_DISABLE_ALL: nothing but the Constant lowering every plan needs;
* ORT_ENABLE_BASIC: provider-independent rewrites before partitioning
  (``BASIC_PASSES``: eliminations, constant folding, weight folding);
* ORT_ENABLE_EXTENDED and ORT_ENABLE_ALL: fusions after partitioning
  (``EXTENDED_PASSES``), applied only to nodes whose provider has a kernel for
  the fused op.

A pass is a class with a ``name`` and ``apply(ctx) -> bool`` (whether it
changed the graph); it lives in its own module, is idempotent, and is skipped
when its name is in ``disabled_optimizers``.
"""
from __future__ import annotations

import importlib
import logging

from ortlite.optimizer._context import PassContext
from ortlite.optimizer.constant_folding import ConstantFolding, lower_constants

log = logging.getLogger("ortlite")

# Module names under ortlite.optimizer holding one pass each, in the order they run.
# A module listed here but not present yet is skipped (passes land one by one).
BASIC_PASS_MODULES = [
    "eliminate_identity",
    "eliminate_noop",
    "constant_folding",
    "common_subexpression",
    "fold_conv_bn",
    "fold_conv_add_mul",
    "matmul_add_to_gemm",
    "eliminate_transpose_reshape_cast",
    "remove_unused",
]
EXTENDED_PASS_MODULES = [
    "fuse_matmul_integer_to_float",
    "fuse_gelu",
    "fuse_layer_norm",
    "fuse_skip_layer_norm",
    "fuse_bias_gelu",
    "fuse_quick_gelu",
    "fuse_attention",
    "fuse_matmul_transpose_scale",
    "fuse_conv_activation",
    "fuse_gemm_activation",
    "fuse_shape_chains",
    "remove_unused",
]

_MAX_ROUNDS = 4


def _load(modules):
    passes = []
    for mod in modules:
        try:
            m = importlib.import_module(f"ortlite.optimizer.{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"ortlite.optimizer.{mod}":
                continue
            raise
        passes.extend(getattr(m, "PASSES", ()))
    return passes


def basic_passes():
    return _load(BASIC_PASS_MODULES)


def extended_passes():
    return _load(EXTENDED_PASS_MODULES)


def all_pass_names():
    return sorted({p.name for p in basic_passes() + extended_passes()})


def _run(passes, ctx, disabled):
    applied = []
    for _ in range(_MAX_ROUNDS):
        changed = False
        for cls in passes:
            if cls.name in disabled:
                continue
            if cls().apply(ctx):
                changed = True
                applied.append(cls.name)
        if not changed:
            break
    return applied


def optimize_basic(ctx: PassContext, disabled=()):
    """Constant lowering (always), then the basic passes from ORT_ENABLE_BASIC up."""
    lower_constants(ctx.graph, ctx.constants, ctx.fed)
    if ctx.level < 1:
        return []
    return _run(basic_passes(), ctx, set(disabled))


def optimize_extended(ctx: PassContext, disabled=()):
    """Fusions (ORT_ENABLE_EXTENDED and up), on a partitioned graph."""
    if ctx.level < 2:
        return []
    return _run(extended_passes(), ctx, set(disabled))


__all__ = ["PassContext", "ConstantFolding", "optimize_basic", "optimize_extended", "all_pass_names"]
