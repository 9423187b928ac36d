"""A per-output-channel constant Add / Mul after a Conv folded into its bias / weight
(onnxruntime's ConvAddFusion, ConvMulFusion)."""
from __future__ import annotations

import numpy as np

from ortlite.optimizer.eliminate_identity import GraphIndex, sole_reader

_FLOATS = (np.float16, np.float32, np.float64)


def _match(ctx, node, idx):
    """For ``Conv -> op_type(z, c)`` (either operand order): (conv, W, B, c as [M] float64), or None.

    ``c`` must be a finite constant of W's dtype whose shape, aligned to the output
    [N, M, d1..dk], is 1 everywhere but (optionally) the channel axis, where it is M or 1 -
    so the output shape does not change - and ``z`` must be read by this node only.
    """
    if node.domain != "" or len(node.inputs) != 2 or len(node.outputs) != 1 or not node.outputs[0]:
        return None
    for zi in (0, 1):
        z, cn = node.inputs[zi], node.inputs[1 - zi]
        conv = idx.producers.get(z)
        if conv is None or conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1:
            continue
        if len(conv.inputs) < 2 or not sole_reader(ctx, z, node, idx.consumers):
            continue
        W = ctx.const(conv.inputs[1])
        c = ctx.const(cn)
        if W is None or c is None:
            continue
        W, c = np.asarray(W), np.asarray(c)
        if W.dtype.type not in _FLOATS or c.dtype != W.dtype or W.ndim < 3:
            continue
        M, rank = W.shape[0], W.ndim  # output rank = weight rank: [N, M, spatial...]
        if c.ndim > rank or not np.all(np.isfinite(c)):
            continue
        aligned = (1,) * (rank - c.ndim) + c.shape
        if any(d != 1 for k, d in enumerate(aligned) if k != 1) or aligned[1] not in (1, M):
            continue
        B = None
        if len(conv.inputs) > 2 and conv.inputs[2]:
            B = ctx.const(conv.inputs[2])
            if B is None or np.asarray(B).shape != (M,):
                continue
            B = np.asarray(B)
        cv = np.broadcast_to(c.astype(np.float64).reshape(-1), (M,))  # c.size is M or 1
        return conv, W, B, cv
    return None


def _rebuild(ctx, conv, node, w_name, b_name):
    ins = [conv.inputs[0], w_name] + ([b_name] if b_name else [])
    new = ctx.make_node("Conv", ins, [node.outputs[0]], name=conv.name)
    new.attrs, new.attr_protos, new.opset = dict(conv.attrs), dict(conv.attr_protos), conv.opset
    ctx.replace([conv, node], [new])


class ConvAddFusion:
    """Folds a constant per-channel Add into the Conv's bias.

    1. ``Conv(x, W[, B]) -> z -> Add(z, c)`` (or ``Add(c, z)``), W (and B) constant, ``c`` a
       constant of shape [M, 1, ..], [1, M, 1, ..], a scalar or all-ones dims (rank at most the
       output's), ``z`` read by the Add only and not a graph output: becomes
       ``Conv(x, W, B + c) -> y``.
    """

    name = "ConvAddFusion"

    def apply(self, ctx) -> bool:
        changed = False
        idx = GraphIndex(ctx)
        for node in [n for n in ctx.graph.nodes if n.op_type == "Add"]:
            m = _match(ctx, node, idx)
            if m is None:
                continue
            conv, W, B, cv = m
            b0 = np.zeros(W.shape[0]) if B is None else B.astype(np.float64)
            base = conv.inputs[2] if B is not None else conv.name + ".bias"
            b_name = ctx.add_constant(base + "_add", (b0 + cv).astype(W.dtype))
            _rebuild(ctx, conv, node, conv.inputs[1], b_name)
            idx.invalidate()
            changed = True
        return changed


class ConvMulFusion:
    """Folds a constant per-channel Mul into the Conv's weight and bias.

    1. ``Conv(x, W[, B]) -> z -> Mul(z, c)`` (or ``Mul(c, z)``), W (and B) constant, ``c`` a
       finite constant of the shapes ConvAddFusion accepts, ``z`` read by the Mul only and not
       a graph output: becomes ``Conv(x, W * c[:, None, ..], B * c) -> y``.
    """

    name = "ConvMulFusion"

    def apply(self, ctx) -> bool:
        changed = False
        idx = GraphIndex(ctx)
        for node in [n for n in ctx.graph.nodes if n.op_type == "Mul"]:
            m = _match(ctx, node, idx)
            if m is None:
                continue
            conv, W, B, cv = m
            w2 = (W.astype(np.float64) * cv.reshape((-1,) + (1,) * (W.ndim - 1))).astype(W.dtype)
            w_name = ctx.add_constant(conv.inputs[1] + "_mul", w2)
            b_name = ""
            if B is not None:
                b_name = ctx.add_constant(conv.inputs[2] + "_mul", (B.astype(np.float64) * cv).astype(W.dtype))
            _rebuild(ctx, conv, node, w_name, b_name)
            idx.invalidate()
            changed = True
        return changed


PASSES = [ConvAddFusion, ConvMulFusion]
