"""BiasGeluFusion (onnxruntime's): a bias Add in front of a fused GELU joins it.

1. ``Add(x, bias) -> Gelu`` (com.microsoft) -> com.microsoft ``BiasGelu(x, bias)``;
2. ``Add(x, bias) -> FastGelu`` (com.microsoft, no bias yet) -> ``FastGelu(x, bias)``.

Either operand order of the Add. Preconditions: ``bias`` is a constant 1-D float vector of
length H where H is the known last dim of ``x`` (so the Add does not broadcast ``x``), ``x``
is not itself constant, and the Add output is read by the GELU alone (and is no graph output).
"""
from __future__ import annotations

from ortlite.optimizer._match import MS, can_fuse, rewrite_each


def _bias_operand(view, add):
    """(x, bias) for Add(x, bias) with bias a [H] constant, H = x.shape[-1], or None."""
    if len(add.inputs) != 2:
        return None
    for x, b in (add.inputs, add.inputs[::-1]):
        c = view.const(b)
        if c is None or view.const(x) is not None or c.dtype.kind != "f" or c.ndim != 1:
            continue
        if view.static_dim(x, -1) == c.shape[0] and (view.rank(x) or 0) >= 1:
            return x, b
    return None


class BiasGeluFusion:
    """Add(x, bias) -> Gelu / FastGelu  =>  BiasGelu / FastGelu(x, bias)."""

    name = "BiasGeluFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, gelu):
            if gelu.op_type == "FastGelu" and (len(gelu.inputs) > 1 and gelu.inputs[1]):
                return False
            add = view.producer(gelu.inputs[0], "Add")
            if add is None or not view.private(add.outputs[0], gelu):
                return False
            xb = _bias_operand(view, add)
            if xb is None or not view.is_float(*xb):
                return False
            x, b = xb
            op = "BiasGelu" if gelu.op_type == "Gelu" else "FastGelu"
            prov = can_fuse(ctx, [add, gelu], op, MS)
            if prov is None:
                return False
            node = ctx.make_node(op, [x, b], list(gelu.outputs), domain=MS, name=ctx.new_name(f"{gelu.name}/{op}"),
                                 provider=prov)
            ctx.replace([add, gelu], [node])
            return True

        return rewrite_each(ctx, [("Gelu", MS), ("FastGelu", MS)], fuse)


PASSES = [BiasGeluFusion]
