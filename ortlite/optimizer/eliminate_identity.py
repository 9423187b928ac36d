"""Identity and inference-Dropout elimination (onnxruntime's EliminateIdentity, EliminateDropout).

Also home of the small helpers the other elimination / folding passes share: ``bypass``
(drop nodes whose output equals one of their inputs, keeping graph output names) and
the shape / element-type look-ups.
"""
from __future__ import annotations

import numpy as np

from ortlite import types as ot

# ---------------------------------------------------------------------------------------
# shared helpers


def value_shape(ctx, name):
    """The shape of tensor ``name`` (ints, dim_param strings, None per unknown dim), or None."""
    if not name:
        return None
    c = ctx.const(name)
    if c is not None:
        return list(np.shape(c))
    vi = ctx.graph.info(name)
    if vi is None or vi.shape is None or vi.kind not in (None, "tensor"):
        return None
    return list(vi.shape)


def value_rank(ctx, name):
    s = value_shape(ctx, name)
    return None if s is None else len(s)


def value_elem_type(ctx, name):
    """The ONNX element type of tensor ``name``, or None when unknown."""
    if not name:
        return None
    c = ctx.const(name)
    if c is not None:
        try:
            return ot.onnx_elem_type(np.asarray(c).dtype)
        except (TypeError, KeyError, ValueError):
            return None
    vi = ctx.graph.info(name)
    if vi is None or vi.kind not in (None, "tensor") or not vi.elem_type:
        return None
    return vi.elem_type


def const_ints(ctx, name):
    """The constant integer tensor ``name`` as a list of Python ints, or None."""
    c = ctx.const(name)
    if c is None:
        return None
    a = np.asarray(c)
    if a.dtype.kind not in "iu":
        return None
    return [int(v) for v in a.reshape(-1)]


class GraphIndex:
    """Readers and producers of the graph's values, computed when first asked for and again
    after ``invalidate()`` (call it after every edit)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._consumers = self._producers = None

    @property
    def consumers(self) -> dict:
        if self._consumers is None:
            self._consumers = self.ctx.consumers()
        return self._consumers

    @property
    def producers(self) -> dict:
        if self._producers is None:
            self._producers = self.ctx.producers()
        return self._producers

    def invalidate(self):
        self._consumers = self._producers = None


def used(ctx, name, consumers=None) -> bool:
    """Whether value ``name`` is read by a node (or a subgraph) or is a graph output."""
    if not name:
        return False
    consumers = ctx.consumers() if consumers is None else consumers
    return bool(consumers.get(name)) or ctx.is_output(name)


def sole_reader(ctx, name, node, consumers=None) -> bool:
    """``node`` is the only reader of ``name`` and ``name`` is not a graph output."""
    consumers = ctx.consumers() if consumers is None else consumers
    readers = consumers.get(name, [])
    return (
        not ctx.is_output(name)
        and name not in ctx.fed
        and len(readers) >= 1
        and all(r is node for r in readers)
    )


def _defined_in_subgraphs(node, name) -> bool:
    for g in node.subgraphs.values():
        local = set(g.initializers) | {v.name for v in g.inputs} | {o for n in g.nodes for o in n.outputs}
        if name in local:
            return True
        for n in g.nodes:
            if n.subgraphs and _defined_in_subgraphs(n, name):
                return True
    return False


def can_rename(ctx, old, new, consumers=None) -> bool:
    """Readers of ``old`` may read ``new`` instead: no subgraph reading ``old`` defines ``new`` itself."""
    consumers = ctx.consumers() if consumers is None else consumers
    for r in consumers.get(old, []):
        if r.subgraphs and old in r.implicit_inputs and _defined_in_subgraphs(r, new):
            return False
    return True


def bypass(ctx, out, src, remove, consumers=None) -> bool:
    """Drop the nodes ``remove``, of which one produces ``out`` whose value equals ``src``.

    Readers of ``out`` then read ``src``. When ``out`` is a graph output (whose name must
    survive), the node producing ``src`` is made to produce ``out`` instead, which needs
    ``src`` to be a node output read by nothing but the nodes in ``remove`` and not a graph
    output; otherwise nothing changes and False is returned. Other outputs of the nodes in
    ``remove`` must be unused (the caller checks).
    """
    consumers = ctx.consumers() if consumers is None else consumers
    if not out or not src or out == src:
        return False
    remove_ids = {id(n) for n in remove}
    if not ctx.is_output(out):
        if not can_rename(ctx, out, src, consumers):
            return False
        ctx.rename_uses(out, src)
        _dedupe_implicit(consumers.get(out, []))
        ctx.remove(remove)
        return True
    if ctx.is_output(src) or src in ctx.fed:
        return False
    prod = ctx.producers().get(src)
    if prod is None or id(prod) in remove_ids:
        return False  # a constant: the output has to stay a node's output
    if any(id(r) not in remove_ids for r in consumers.get(src, [])):
        return False
    prod.outputs = [out if o == src else o for o in prod.outputs]
    ctx.remove(remove)
    return True


def _dedupe_implicit(nodes):
    for n in nodes:
        if n.implicit_inputs and len(set(n.implicit_inputs)) != len(n.implicit_inputs):
            seen, keep = set(), []
            for i in n.implicit_inputs:
                if i not in seen:
                    seen.add(i)
                    keep.append(i)
            n.implicit_inputs = keep


def first_plain(nodes, op_type, domain=""):
    """The nodes of ``op_type`` in ``domain`` without subgraphs (a snapshot to iterate over)."""
    return [n for n in nodes if n.op_type == op_type and n.domain == domain and not n.subgraphs]


# ---------------------------------------------------------------------------------------
# passes


class EliminateIdentity:
    """Removes Identity nodes.

    1. ``Identity(x) -> y``, ``y`` not a graph output: readers of ``y`` read ``x``.
    2. ``y`` is a graph output: the node producing ``x`` produces ``y`` instead, when ``x`` is
       read by this Identity only and is neither a graph output, a fed value nor a constant
       (otherwise the Identity stays: it is the copy that gives the output its own name).
    """

    name = "EliminateIdentity"

    def apply(self, ctx) -> bool:
        changed = False
        idx = GraphIndex(ctx)
        for node in first_plain(ctx.graph.nodes, "Identity"):
            if len(node.inputs) != 1 or len(node.outputs) != 1:
                continue
            if bypass(ctx, node.outputs[0], node.inputs[0], [node], idx.consumers):
                idx.invalidate()
                changed = True
        return changed


def _false_constant(ctx, name) -> bool:
    if not name:
        return True
    c = ctx.const(name)
    if c is None:
        return False
    a = np.asarray(c)
    return a.size == 1 and not bool(a.reshape(-1)[0])


class EliminateDropout:
    """Removes Dropout in inference, where it is the identity on its data input.

    1. ``Dropout(x[, ratio[, training_mode]]) -> y[, mask]`` with the mask output absent or
       unused (no reader, not a graph output) and ``training_mode`` absent, empty or a
       constant false: readers of ``y`` read ``x`` (graph outputs as in EliminateIdentity).
       A fed or constant-true ``training_mode`` keeps the node (it may drop values).
    """

    name = "EliminateDropout"

    def apply(self, ctx) -> bool:
        changed = False
        idx = GraphIndex(ctx)
        for node in first_plain(ctx.graph.nodes, "Dropout"):
            if not node.inputs or not node.inputs[0] or not node.outputs or not node.outputs[0]:
                continue
            if any(used(ctx, o, idx.consumers) for o in node.outputs[1:]):
                continue
            if len(node.inputs) > 2 and not _false_constant(ctx, node.inputs[2]):
                continue
            if bypass(ctx, node.outputs[0], node.inputs[0], [node], idx.consumers):
                idx.invalidate()
                changed = True
        return changed


PASSES = [EliminateIdentity, EliminateDropout]
