"""Shape math computed once per input-shape signature (ortlite's ``ShapeChain``; onnxruntime has no such pass).

A value is *shape-derived* when a Shape or Size node makes it, or a small deterministic op computes it from
shape-derived values and constants. The nodes making shape-derived values on the CPU provider are grouped
(split where one group would form a cycle with the nodes around it, as compiled groups are) and each group
becomes one ``ortlite::ShapeChain`` node whose kernel (kernels/shape_chain.py) runs the group once per
distinct set of input shapes. Runs in sessions whose only provider is the CPU (elsewhere shape math is
placed by the partitioner's host rules). A saved optimized model holds the original nodes again
(optimizer/export.py), so it still runs on onnxruntime.
"""
from __future__ import annotations

import numpy as np

from ortlite import registry
from ortlite.context import KernelContext

LEAVES = {"Shape", "Size"}
OPS = LEAVES | {
    "Gather", "GatherElements", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul", "Div",
    "Mod", "Neg", "Abs", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Where", "Not", "And", "Or",
    "Max", "Min", "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "Range", "Identity", "Reshape", "Floor",
    "Ceil", "Sqrt", "Reciprocal", "Pow", "Split", "Flatten", "Transpose", "Sign",
}
MIN_NODES = 2
CPU = "CPUExecutionProvider"


class FuseShapeChains:
    name = "FuseShapeChains"

    def apply(self, ctx) -> bool:
        if not ctx.providers or any(p.name != CPU for p in ctx.providers):
            return False
        graph = ctx.graph
        derived, chain = set(), []
        for node in graph.nodes:
            if node.domain not in ("", "ai.onnx") or node.subgraphs or node.op_type not in OPS:
                continue
            if node.provider not in (None, CPU):
                continue
            if node.op_type in LEAVES:
                ok = True
            else:
                ins = [n for n in node.inputs if n]
                ok = bool(ins) and any(n in derived for n in ins) and all(
                    n in derived or ctx.const(n) is not None for n in ins)
            if ok:
                chain.append(node)
                derived.update(o for o in node.outputs if o)
        if len(chain) < MIN_NODES:
            return False
        from ortlite.compiling.groups import acyclic_pieces, connected_groups, graph_index

        order, producer, readers = graph_index(graph)
        changed = False
        for comp in connected_groups(chain):
            for piece in acyclic_pieces(comp, producer, readers, order):
                if len(piece) >= MIN_NODES and self._fuse(ctx, sorted(piece, key=lambda n: order[id(n)]), readers):
                    changed = True
        return changed

    def _fuse(self, ctx, piece, readers) -> bool:
        graph = ctx.graph
        ids = {id(n) for n in piece}
        made = {o for n in piece for o in n.outputs if o}
        shape_inputs, value_inputs, consts = [], [], {}
        for n in piece:
            for k, name in enumerate(n.inputs):
                if not name or name in made:
                    continue
                if n.op_type in LEAVES and k == 0:
                    if name not in shape_inputs:
                        shape_inputs.append(name)
                elif ctx.const(name) is not None:
                    consts[name] = ctx.const(name)
                elif name not in value_inputs:
                    value_inputs.append(name)
        outputs = [o for n in piece for o in n.outputs if o and (
            ctx.is_output(o) or any(id(r) not in ids for r, _ in readers.get(o, [])))]
        if not outputs:
            return False
        steps = []
        from ortlite.providers.cpu import CPUExecutionProvider

        cpu = CPUExecutionProvider()
        for n in piece:
            kd = registry.lookup(n.op_type, n.domain, n.opset, "cpu")
            if kd is None:
                return False
            kc = KernelContext(n, n.opset, np, cpu, [graph.info(x) if x else None for x in n.inputs],
                               [graph.info(x) if x else None for x in n.outputs], consts)
            try:
                fn = kd.bind(kc, dict(n.attrs))
            except Exception:  # noqa: BLE001 - a node that cannot be bound alone stays a node
                return False
            steps.append((fn, list(n.inputs), list(n.outputs)))
        from ortlite.kernels.shape_chain import ChainProgram

        program = ChainProgram(list(piece), steps, shape_inputs, value_inputs, outputs, consts)
        fused = ctx.make_node("ShapeChain", shape_inputs + value_inputs, outputs, domain="ortlite",
                              name=f"ShapeChain_{piece[0].name}", provider=CPU)
        fused.attrs = {"program": program}
        fused.attr_protos = {}
        fused.opset = 1
        pos = graph.nodes.index(piece[-1])
        graph.nodes[pos] = fused
        graph.nodes[:] = [n for n in graph.nodes if id(n) not in ids]
        return True


PASSES = [FuseShapeChains]
