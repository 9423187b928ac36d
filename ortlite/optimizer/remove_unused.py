"""Dead node and unused constant removal (onnxruntime's unused-node / unused-initializer cleanup)."""
from __future__ import annotations

_DOMAINS = ("", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training")  # side-effect free


class RemoveUnused:
    """Drops what nothing reads.

    1. A node none of whose outputs is read by a kept node (directly or by one of its
       subgraphs) or is a graph output, and whose op has no side effects (standard, ML,
       com.microsoft and training domains; custom-domain nodes are always kept): removed,
       in reverse topological order so whole dead chains go in one apply.
    2. A constant in ``ctx.constants`` (initializer or folded value) that no kept node reads and
       that is neither a graph output nor fed: dropped from ``ctx.constants`` (the graph's
       initializers are left as they are).
    """

    name = "RemoveUnused"

    def apply(self, ctx) -> bool:
        graph = ctx.graph
        needed = set(ctx.outputs)
        keep = []
        for node in reversed(graph.nodes):
            live = node.domain not in _DOMAINS or any(o and o in needed for o in node.outputs)
            if not live:
                continue
            keep.append(node)
            needed.update(i for i in node.inputs if i)
            needed.update(i for i in node.implicit_inputs if i)
        changed = len(keep) != len(graph.nodes)
        if changed:
            keep.reverse()
            graph.nodes = keep
        dead = [n for n in ctx.constants if n not in needed and n not in ctx.fed]
        for n in dead:
            del ctx.constants[n]
        return changed or bool(dead)


PASSES = [RemoveUnused]
