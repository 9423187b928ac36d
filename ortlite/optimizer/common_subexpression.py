"""Common subexpression elimination (onnxruntime's CommonSubexpressionElimination)."""
from __future__ import annotations

import numpy as np

_NONDETERMINISTIC = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial",
    "Dropout",
}
_DOMAINS = ("", "ai.onnx.ml", "com.microsoft")  # custom-op domains may hold state: never merged
_SMALL = 1024  # constants up to this many elements are compared by value, larger ones by name


def _attr_key(node):
    if set(node.attr_protos) != set(node.attrs):
        return None  # attributes without their protos (an edited node): not comparable
    parts = []
    for k in sorted(node.attr_protos):
        a = node.attr_protos[k]
        if a.doc_string:
            b = type(a)()
            b.CopyFrom(a)
            b.doc_string = ""
            a = b
        parts.append((k, a.SerializeToString(deterministic=True)))
    return tuple(parts)


def _input_key(ctx, name, cache):
    if not name:
        return ("",)
    if name in cache:
        return cache[name]
    key = ("v", name)
    c = ctx.const(name)
    if c is not None:
        a = np.asarray(c)
        if a.size <= _SMALL:
            if a.dtype == object:
                key = ("c", "O", a.shape, tuple(a.reshape(-1).tolist()))
            else:
                key = ("c", a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())
    cache[name] = key
    return key


class CommonSubexpressionElimination:
    """Merges nodes that compute the same thing.

    1. Two nodes with the same op type, domain, opset, attributes (their AttributeProtos
       compared), output arity and inputs (the same names, or small constants equal in
       dtype, shape and bytes) become one: readers of the later node's outputs read the
       earlier node's. Applied in topological order, so whole duplicated chains collapse.
    2. When the later node produces a graph output and the earlier does not, the later one is
       kept and the earlier one's readers are moved to it.

    Random ops, Dropout, nodes with subgraphs, nodes of custom domains and nodes without
    outputs are never merged; nor are two nodes that both produce graph outputs.
    """

    name = "CommonSubexpressionElimination"

    def apply(self, ctx) -> bool:
        graph = ctx.graph
        seen = {}
        rename = {}
        dead = set()
        cache = {}

        def resolve(n):
            while n in rename:
                n = rename[n]
            return n

        for node in graph.nodes:
            if rename and any(i in rename for i in node.inputs):
                node.inputs = [resolve(i) if i else i for i in node.inputs]
            if (
                node.subgraphs
                or node.op_type in _NONDETERMINISTIC
                or node.domain not in _DOMAINS
                or not any(node.outputs)
            ):
                continue
            ak = _attr_key(node)
            if ak is None:
                continue
            key = (node.domain, node.op_type, node.opset, ak, tuple(bool(o) for o in node.outputs),
                   tuple(_input_key(ctx, i, cache) for i in node.inputs))
            rep = seen.get(key)
            if rep is None:
                seen[key] = node
                continue
            node_out = any(ctx.is_output(o) for o in node.outputs if o)
            rep_out = any(ctx.is_output(o) for o in rep.outputs if o)
            if node_out and rep_out:
                continue
            keep, drop = (node, rep) if node_out else (rep, node)
            for a, b in zip(drop.outputs, keep.outputs):
                if a:
                    rename[a] = b
            dead.add(id(drop))
            seen[key] = keep
        if not dead:
            return False
        for node in graph.nodes:
            if any(i in rename for i in node.inputs):
                node.inputs = [resolve(i) if i else i for i in node.inputs]
        implicit = {i for n in graph.nodes for i in n.implicit_inputs}
        for old in rename:
            if old in implicit:
                ctx.rename_uses(old, resolve(old))
        for n in graph.nodes:
            if n.implicit_inputs and len(set(n.implicit_inputs)) != len(n.implicit_inputs):
                n.implicit_inputs = list(dict.fromkeys(n.implicit_inputs))
        graph.nodes = [n for n in graph.nodes if id(n) not in dead]
        graph.toposort()
        return True


PASSES = [CommonSubexpressionElimination]
