"""Chains of Transposes, Reshapes and Casts shortened (onnxruntime's TransposeOptimizer /
ReshapeFusion / CastElimination, in their simple forms)."""
from __future__ import annotations

from onnx import TensorProto as TP
from onnx import helper

from ortlite.optimizer.eliminate_identity import (
    GraphIndex,
    bypass,
    const_ints,
    sole_reader,
    value_elem_type,
    value_rank,
)

# Element types each type converts to exactly (every value of the key is a value of each member).
_INTS = {
    TP.BOOL: (0, 1, True), TP.UINT8: (0, 2**8 - 1, False), TP.INT8: (-(2**7), 2**7 - 1, False),
    TP.UINT16: (0, 2**16 - 1, False), TP.INT16: (-(2**15), 2**15 - 1, False),
    TP.UINT32: (0, 2**32 - 1, False), TP.INT32: (-(2**31), 2**31 - 1, False),
    TP.UINT64: (0, 2**64 - 1, False), TP.INT64: (-(2**63), 2**63 - 1, False),
}
# significand bits (with the implicit one) of the float types: integers up to 2**bits are exact
_FLOAT_BITS = {TP.BFLOAT16: 8, TP.FLOAT16: 11, TP.FLOAT: 24, TP.DOUBLE: 53}
_FLOAT_WIDER = {  # float types each float type embeds into exactly (range and precision)
    TP.BFLOAT16: {TP.FLOAT, TP.DOUBLE},
    TP.FLOAT16: {TP.FLOAT, TP.DOUBLE},
    TP.FLOAT: {TP.DOUBLE},
    TP.DOUBLE: set(),
}


def exact_cast(src: int, dst: int) -> bool:
    """Every value of element type ``src`` is exactly representable in ``dst`` (no strings,
    no 8-bit / 4-bit floats or ints: their casts saturate or round in their own ways)."""
    if src == dst:
        return src in _INTS or src in _FLOAT_BITS
    if src in _INTS:
        lo, hi, _ = _INTS[src]
        if dst in _INTS and dst != TP.BOOL:
            dlo, dhi, _ = _INTS[dst]
            return dlo <= lo and hi <= dhi
        if dst in _FLOAT_BITS:
            return max(abs(lo), hi) <= 2 ** _FLOAT_BITS[dst]
        return False
    if src in _FLOAT_WIDER:
        return dst in _FLOAT_WIDER[src]
    return False


def _perm(node, rank):
    p = node.attrs.get("perm")
    if p is None:
        return None if rank is None else list(range(rank - 1, -1, -1))
    return [int(v) for v in p]


class TransposeReshapeCastElimination:
    """Shortens chains of layout and type conversions.

    1. ``Transpose(x, p)`` with ``p`` the identity permutation (or a rank-0/1 input without
       ``perm``): removed.
    2. ``Transpose(Transpose(x, p1), p2)``: the second becomes ``Transpose(x, q)``,
       ``q[i] = p1[p2[i]]``, or is removed when ``q`` is the identity; the first goes when
       nothing else reads it.
    3. ``Reshape(Reshape(x, s1), s2)`` with ``s2`` constant and (unless ``allowzero``) free of
       0s (a 0 copies a dim of the intermediate): the second reads ``x``; the first goes when
       nothing else reads it (-1 is fine: the element count is the same).
    4. ``Cast(Cast(x, T1), T2)`` where ``x``'s type T0 is known and every T0 value is exact in
       T1: the second becomes ``Cast(x, T2)``, or is removed when T2 == T0; the first goes when
       nothing else reads it. float -> double -> float is such a chain (every float is a
       double: the pair is removed); double -> float -> double is not, nor is anything through a
       narrower type. Also kept: T0 an integer type and T2 a float type that cannot hold it
       exactly (a direct int -> float16 cast may round twice where the chain rounds once).

    Graph outputs keep their names; the first node of a chain that is a graph output stays.
    """

    name = "TransposeReshapeCastElimination"

    def apply(self, ctx) -> bool:
        changed = False
        self.idx = GraphIndex(ctx)
        handlers = {"Transpose": self._transpose, "Reshape": self._reshape, "Cast": self._cast}
        for node in list(ctx.graph.nodes):
            fn = handlers.get(node.op_type)
            if fn is None or node.domain != "" or node.subgraphs or len(node.outputs) != 1 or not node.outputs[0]:
                continue
            if not node.inputs or not node.inputs[0]:
                continue
            if not any(n is node for n in ctx.graph.nodes):
                continue  # went with an earlier chain
            if fn(ctx, node):
                self.idx.invalidate()
                changed = True
        return changed

    def _first(self, ctx, node):
        p = self.idx.producers.get(node.inputs[0])
        if p is None or p.op_type != node.op_type or p.domain != "" or p.subgraphs or len(p.outputs) != 1:
            return None
        if not p.inputs or not p.inputs[0]:
            return None
        return p

    @staticmethod
    def _shorten(ctx, first, second, x):
        """Point ``second`` at ``x`` instead of ``first``'s output; drop ``first`` when unread."""
        mid = second.inputs[0]
        second.inputs = [x] + list(second.inputs[1:])
        consumers = ctx.consumers()
        if not consumers.get(mid) and not ctx.is_output(mid):
            ctx.remove([first])

    @staticmethod
    def _removal(ctx, first, second):
        remove = [second]
        if first is not None and sole_reader(ctx, second.inputs[0], second):
            remove.append(first)
        return remove

    def _transpose(self, ctx, node):
        x = node.inputs[0]
        p2 = _perm(node, value_rank(ctx, x))
        if p2 is None:
            return False
        if p2 == list(range(len(p2))):
            return bypass(ctx, node.outputs[0], x, [node])
        first = self._first(ctx, node)
        if first is None:
            return False
        x0 = first.inputs[0]
        p1 = _perm(first, value_rank(ctx, x0))
        if p1 is None or len(p1) != len(p2) or sorted(p1) != list(range(len(p1))):
            return False
        q = [p1[i] for i in p2]
        if q == list(range(len(q))):
            return bypass(ctx, node.outputs[0], x0, self._removal(ctx, first, node))
        node.attrs = dict(node.attrs, perm=q)
        node.attr_protos = dict(node.attr_protos, perm=helper.make_attribute("perm", q))
        self._shorten(ctx, first, node, x0)
        return True

    def _reshape(self, ctx, node):
        if node.opset < 5 or len(node.inputs) != 2:
            return False
        first = self._first(ctx, node)
        if first is None or first.opset < 5:
            return False
        s2 = const_ints(ctx, node.inputs[1])
        if s2 is None or (0 in s2 and not int(node.attrs.get("allowzero", 0))):
            return False
        self._shorten(ctx, first, node, first.inputs[0])
        return True

    def _cast(self, ctx, node):
        first = self._first(ctx, node)
        if first is None:
            return False
        x = first.inputs[0]
        t0, t1, t2 = value_elem_type(ctx, x), first.attrs.get("to"), node.attrs.get("to")
        if t0 is None or not isinstance(t1, int) or not isinstance(t2, int):
            return False
        if not exact_cast(t0, t1) or not (t2 in _INTS or t2 in _FLOAT_BITS):
            return False
        if t0 in _INTS and t0 != TP.BOOL and t2 in _FLOAT_BITS and not exact_cast(t0, t2):
            return False  # a direct int -> narrower float cast may round twice (via float32)
        if t2 == t0:
            return bypass(ctx, node.outputs[0], x, self._removal(ctx, first, node))
        self._shorten(ctx, first, node, x)
        return True


PASSES = [TransposeReshapeCastElimination]
