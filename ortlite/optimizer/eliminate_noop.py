"""No-op elimination (onnxruntime's NoopElimination) and cancelling Unsqueeze/Squeeze pairs."""
from __future__ import annotations

import numpy as np

from ortlite import types as ot
from ortlite.optimizer.eliminate_identity import (
    GraphIndex,
    bypass,
    const_ints,
    sole_reader,
    used,
    value_elem_type,
    value_shape,
)

_BIG = 2**31 - 1  # an end at or past this takes the whole axis, whatever its size


def _all_equal(c, v) -> bool:
    a = np.asarray(c)
    if a.dtype.kind not in "biuf" or a.size == 0:
        return False
    return bool(np.all(a == v))


def _keeps_shape(ctx, x, c) -> bool:
    """Broadcasting ``x`` with constant ``c`` gives ``x``'s shape."""
    cs = np.shape(c)
    if len(cs) == 0:
        return True
    xs = value_shape(ctx, x)
    if xs is None or len(xs) < len(cs):
        return False
    for cd, xd in zip(reversed(cs), reversed(xs)):
        if cd != 1 and not (isinstance(xd, int) and xd == cd):
            return False
    return True


def _outputs_unused(ctx, node, consumers, first=1) -> bool:
    return not any(used(ctx, o, consumers) for o in node.outputs[first:])


def _norm_axes(axes, rank):
    out = []
    for a in axes:
        if a < 0:
            if rank is None:
                return None
            a += rank
        if rank is not None and not 0 <= a < rank:
            return None
        out.append(a)
    return out if len(set(out)) == len(out) else None


def _axes_of(ctx, node):
    """The ``axes`` of a Squeeze / Unsqueeze (attribute before opset 13, input from 13): a list,
    None when absent, or False when not constant."""
    if node.opset < 13:
        a = node.attrs.get("axes")
        return None if a is None else [int(v) for v in a]
    if len(node.inputs) < 2 or not node.inputs[1]:
        return None
    v = const_ints(ctx, node.inputs[1])
    return False if v is None else v


class NoopElimination:
    """Removes nodes whose output equals their (first non-constant) input.

    1. ``Add(x, 0)``, ``Add(0, x)``, ``Sub(x, 0)``, ``Mul(x, 1)``, ``Mul(1, x)``, ``Div(x, 1)``
       with a constant whose every element is the neutral value, of ``x``'s element type,
       and whose broadcasting leaves ``x``'s shape unchanged (a 0-d constant, or a rank no
       larger than ``x``'s with each dim 1 or equal to ``x``'s known dim). (As in
       onnxruntime, ``-0.0 + 0`` gives ``+0.0``: equal values.)
    2. ``Pad`` whose pads are all zero (attribute or constant input).
    3. ``Slice`` taking everything: on each sliced axis step 1, start 0 (or at or before
       ``-dim`` for a known dim) and end at or past the known dim (or >= 2**31-1).
    4. ``Expand`` to a constant shape that broadcasting leaves equal to ``x``'s shape.
    5. ``Cast`` to the element type ``x`` already has (known from shape inference or the constant).
    6. ``Unsqueeze(x, axes) -> Squeeze(axes)`` with the same normalized axes, and
       ``Squeeze(x, axes) -> Unsqueeze(axes)`` where ``x``'s squeezed dims are known to be 1:
       readers of the second output read ``x``; the first node goes too when nothing else reads it.

    Graph outputs keep their names (see ``bypass``); a node whose extra outputs are used stays.
    """

    name = "NoopElimination"

    def apply(self, ctx) -> bool:
        changed = False
        idx = GraphIndex(ctx)
        removed = set()
        handlers = {"Add": self._add, "Sub": self._sub, "Mul": self._mul, "Div": self._div, "Pad": self._pad,
                    "Slice": self._slice, "Expand": self._expand, "Cast": self._cast, "Squeeze": self._squeeze,
                    "Unsqueeze": self._unsqueeze}
        for node in list(ctx.graph.nodes):
            if node.domain != "" or node.subgraphs or not node.outputs or not node.outputs[0]:
                continue
            if id(node) in removed:
                continue  # went with an earlier pair
            fn = handlers.get(node.op_type)
            if fn is None:
                continue
            r = fn(ctx, node, idx)
            if r is None or not _outputs_unused(ctx, node, idx.consumers):
                continue
            src, remove = r
            if bypass(ctx, node.outputs[0], src, remove, idx.consumers):
                removed.update(id(n) for n in remove)
                idx.invalidate()
                changed = True
        return changed

    # ---- 1. neutral elements -------------------------------------------------------
    def _binary(self, ctx, node, neutral, commutative):
        if len(node.inputs) != 2:
            return None
        a, b = node.inputs
        for x, c_name in ((a, b),) + (((b, a),) if commutative else ()):
            c = ctx.const(c_name)
            if c is None or not x:
                continue
            if not _all_equal(c, neutral):
                continue
            xt = value_elem_type(ctx, x)
            try:
                ct = ot.onnx_elem_type(np.asarray(c).dtype)
            except (TypeError, KeyError, ValueError):
                continue
            if xt is None or xt != ct:
                continue
            if not _keeps_shape(ctx, x, c):
                continue
            return x, [node]
        return None

    def _add(self, ctx, node, consumers):
        return self._binary(ctx, node, 0, True)

    def _sub(self, ctx, node, consumers):
        return self._binary(ctx, node, 0, False)

    def _mul(self, ctx, node, consumers):
        return self._binary(ctx, node, 1, True)

    def _div(self, ctx, node, consumers):
        return self._binary(ctx, node, 1, False)

    # ---- 2. Pad ----------------------------------------------------------------------
    def _pad(self, ctx, node, consumers):
        if not node.inputs or not node.inputs[0]:
            return None
        if node.opset < 11:
            pads = node.attrs.get("pads", node.attrs.get("paddings"))
            pads = None if pads is None else [int(p) for p in pads]
        else:
            pads = const_ints(ctx, node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
        if pads is None or any(p != 0 for p in pads):
            return None
        return node.inputs[0], [node]

    # ---- 3. Slice --------------------------------------------------------------------
    def _slice(self, ctx, node, consumers):
        x = node.inputs[0] if node.inputs else ""
        if not x:
            return None
        if node.opset < 10:
            starts, ends = node.attrs.get("starts"), node.attrs.get("ends")
            axes, steps = node.attrs.get("axes"), None
            if starts is None or ends is None:
                return None
            starts, ends = [int(v) for v in starts], [int(v) for v in ends]
            axes = None if axes is None else [int(v) for v in axes]
        else:
            ins = list(node.inputs) + [""] * (5 - len(node.inputs))
            starts, ends = const_ints(ctx, ins[1]), const_ints(ctx, ins[2])
            axes = const_ints(ctx, ins[3]) if ins[3] else None
            steps = const_ints(ctx, ins[4]) if ins[4] else None
            if starts is None or ends is None or (ins[3] and axes is None) or (ins[4] and steps is None):
                return None
        n = len(starts)
        if len(ends) != n or (axes is not None and len(axes) != n) or (steps is not None and len(steps) != n):
            return None
        shape = value_shape(ctx, x)
        rank = None if shape is None else len(shape)
        axes = _norm_axes(list(range(n)) if axes is None else axes, rank)
        if axes is None:
            return None
        for k, ax in enumerate(axes):
            dim = shape[ax] if shape is not None and isinstance(shape[ax], int) else None
            if steps is not None and steps[k] != 1:
                return None
            s, e = starts[k], ends[k]
            if not (s == 0 or (dim is not None and s <= -dim)):
                return None
            if not (e >= _BIG or (dim is not None and e >= dim)):
                return None
        return x, [node]

    # ---- 4. Expand -------------------------------------------------------------------
    def _expand(self, ctx, node, consumers):
        if len(node.inputs) != 2 or not node.inputs[0]:
            return None
        s = const_ints(ctx, node.inputs[1])
        if s is None:
            return None
        x = node.inputs[0]
        xs = value_shape(ctx, x)
        if xs is None or len(s) > len(xs):
            return None
        for sd, xd in zip(reversed(s), reversed(xs)):
            if sd != 1 and not (isinstance(xd, int) and xd == sd):
                return None
        return x, [node]

    # ---- 5. Cast ---------------------------------------------------------------------
    def _cast(self, ctx, node, consumers):
        if len(node.inputs) != 1 or not node.inputs[0]:
            return None
        to = node.attrs.get("to")
        if not isinstance(to, int):
            return None  # Cast-1 spelled the type as a string
        t = value_elem_type(ctx, node.inputs[0])
        if t is None or t != to:
            return None
        return node.inputs[0], [node]

    # ---- 6. Unsqueeze / Squeeze pairs --------------------------------------------------
    def _squeeze(self, ctx, node, consumers):
        return self._pair(ctx, node, consumers, "Unsqueeze")

    def _unsqueeze(self, ctx, node, consumers):
        return self._pair(ctx, node, consumers, "Squeeze")

    def _pair(self, ctx, second, consumers, first_op):
        if not second.inputs or not second.inputs[0]:
            return None
        mid = second.inputs[0]
        first = consumers.producers.get(mid)
        if first is None or first.op_type != first_op or first.domain != "" or first.subgraphs:
            return None
        if not first.inputs or not first.inputs[0] or len(first.outputs) != 1:
            return None
        x = first.inputs[0]
        a1, a2 = _axes_of(ctx, first), _axes_of(ctx, second)
        if a1 is False or a2 is False:
            return None
        xs = value_shape(ctx, x)
        if first_op == "Unsqueeze":  # Unsqueeze(x, a1) -> Squeeze(a2)
            if a1 is None:
                return None
            rank = None if xs is None else len(xs) + len(a1)
            n1 = _norm_axes(a1, rank)
            if n1 is None:
                return None
            if a2 is None:  # squeeze all 1s: x must have none
                if xs is None or any(not isinstance(d, int) or d == 1 for d in xs):
                    return None
            else:
                n2 = _norm_axes(a2, rank)
                if n2 is None or sorted(n1) != sorted(n2):
                    return None
        else:  # Squeeze(x, a1) -> Unsqueeze(a2): x's squeezed dims must be known 1s
            if xs is None or a2 is None:
                return None
            rank = len(xs)
            if a1 is None:
                n1 = [i for i, d in enumerate(xs) if d == 1]
                if any(not isinstance(d, int) for d in xs):
                    return None
            else:
                n1 = _norm_axes(a1, rank)
                if n1 is None or any(xs[i] != 1 for i in n1):
                    return None
            n2 = _norm_axes(a2, rank)
            if n2 is None or sorted(n1) != sorted(n2):
                return None
        remove = [second]
        if sole_reader(ctx, mid, second, consumers.consumers):
            remove.append(first)
        return x, remove


PASSES = [NoopElimination]
