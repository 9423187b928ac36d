"""Graph optimizer: passes that edit the IR before it is planned.

Levels follow onnxruntime: ORT_DISABLE_ALL runs nothing but the Constant
lowering every plan needs; ORT_ENABLE_BASIC and up fold constants. (Fusions
and the other basic/extended passes come with the optimizer issue.) Each pass
lives in its own module, returns whether it changed the graph, and can be
disabled by name through ``disabled_optimizers``.
"""
from __future__ import annotations

from ortlite.optimizer.constant_folding import ConstantFolding, lower_constants

PASSES_BY_LEVEL = {
    1: [ConstantFolding],
}


def optimize(graph, level, constants, fed, outputs, disabled=()):
    """Run the passes of ``level`` over ``graph``; ``constants`` is updated in place."""
    lower_constants(graph, constants, fed)
    for lvl in sorted(PASSES_BY_LEVEL):
        if level < lvl:
            continue
        for cls in PASSES_BY_LEVEL[lvl]:
            if cls.name in disabled:
                continue
            cls().apply(graph, constants, fed, outputs)
