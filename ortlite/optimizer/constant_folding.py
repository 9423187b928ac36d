"""Constant lowering and constant folding.

1. ``Constant`` nodes become constants of the plan (always: it is how a plan holds them).
2. A deterministic node whose inputs are all constants is run once with the CPU
   kernels at session start and replaced by its outputs (ORT_ENABLE_BASIC and up).
   Nodes with subgraphs, random ops and nodes reading fed values are left alone.
"""
from __future__ import annotations

import numpy as np

from ortlite import registry
from ortlite.context import KernelContext

_NONDETERMINISTIC = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial",
    "Dropout",
}
_MAX_FOLD_ELEMENTS = 1 << 27  # 128M elements: folding costs memory once; not folding costs time every run


def _evaluate(node, inputs, graph):
    k = registry.lookup(node.op_type, node.domain, node.opset, "cpu")
    if k is None:
        return None
    from ortlite.providers.cpu import CPUExecutionProvider

    consts = {n: v for n, v in zip(node.inputs, inputs) if n}
    ctx = KernelContext(node, node.opset, np, CPUExecutionProvider(), [graph.info(n) for n in node.inputs],
                        [graph.info(n) for n in node.outputs], consts)
    fn = k.bind(ctx, dict(node.attrs))
    args = list(inputs)
    while args and args[-1] is None and not node.inputs[len(args) - 1]:
        args.pop()
    r = fn(*args)
    return r if type(r) is tuple else (r,)


def lower_constants(graph, constants, fed):
    keep = []
    for node in graph.nodes:
        if node.op_type == "Constant" and node.domain == "" and not node.inputs:
            out = _evaluate(node, [], graph)
            if out is not None:
                v = out[0]
                constants[node.outputs[0]] = np.asarray(v) if isinstance(v, np.generic) else v
                continue
        keep.append(node)
    graph.nodes = keep


class ConstantFolding:
    name = "ConstantFolding"

    def apply(self, ctx) -> bool:
        graph, constants, fed = ctx.graph, ctx.constants, ctx.fed
        changed = False
        keep = []
        for node in graph.nodes:
            if (
                node.subgraphs
                or node.op_type in _NONDETERMINISTIC
                or node.domain not in ("", "ai.onnx.ml", "com.microsoft")
                or not node.inputs
                or any(n and (n not in constants or n in fed) for n in node.inputs)
                or any(n in constants for n in node.outputs if n)
            ):
                keep.append(node)
                continue
            try:
                out = _evaluate(node, [constants.get(n) if n else None for n in node.inputs], graph)
            except Exception:  # noqa: BLE001 - leave it to run time, which reports errors with context
                out = None
            if out is None or any(
                not isinstance(v, (np.ndarray, np.generic)) or np.size(v) > _MAX_FOLD_ELEMENTS for v in out
            ):
                keep.append(node)
                continue
            for name, v in zip(node.outputs, out):
                if name:
                    constants[name] = np.asarray(v)
            changed = True
        graph.nodes = keep
        return changed


PASSES = [ConstantFolding]
