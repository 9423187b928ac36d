"""BatchNormalization folded into the Conv (or MatMul) before it (onnxruntime's ConvBNFusion,
MatmulBNFusion)."""
from __future__ import annotations

import numpy as np

from ortlite.optimizer.eliminate_identity import GraphIndex, sole_reader, used, value_rank

_FLOATS = (np.float16, np.float32, np.float64)


def _bn_params(ctx, bn, channels, consumers):
    """(scale, bias, mean, var, eps) in float64 for an inference-mode BatchNormalization whose
    extra outputs are unused, or None."""
    if bn.domain != "" or bn.subgraphs or len(bn.inputs) != 5 or not bn.outputs[0]:
        return None
    extra = [o for o in bn.outputs[1:] if o]
    if bn.opset < 14:
        # before 14, asking for the statistics outputs switches the op to training mode
        if extra:
            return None
        if int(bn.attrs.get("spatial", 1)) != 1:
            return None
        if bn.opset < 7 and "is_test" in bn.attrs and not int(bn.attrs["is_test"]):
            return None
    else:
        if int(bn.attrs.get("training_mode", 0)):
            return None
        if any(used(ctx, o, consumers) for o in extra):
            return None
    vals = [ctx.const(n) for n in bn.inputs[1:]]
    if any(v is None for v in vals):
        return None
    vals = [np.asarray(v) for v in vals]
    if any(v.dtype.type not in _FLOATS or v.shape != (channels,) for v in vals):
        return None
    scale, bias, mean, var = (v.astype(np.float64) for v in vals)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    return scale, bias, mean, var, eps


def _fold(scale, bias, mean, var, eps):
    """The per-channel multiplier and offset the BatchNormalization applies."""
    s = scale / np.sqrt(var + eps)
    return s, bias - mean * s



def _sole_bn_reader(ctx, idx, node):
    """The BatchNormalization that is the only reader of ``node``'s output, or None."""
    z = node.outputs[0]
    readers = idx.consumers.get(z, [])
    if len(readers) != 1 or readers[0].op_type != "BatchNormalization":
        return None
    bn = readers[0]
    if bn.inputs[0] != z or not sole_reader(ctx, z, bn, idx.consumers):
        return None
    return bn

class ConvBNFusion:
    """Folds an inference BatchNormalization into the Conv that feeds it.

    1. ``Conv(x, W[, B]) -> z -> BatchNormalization(z, scale, bias, mean, var) -> y`` with W
       (and B) and all four BN parameters constant floats of shape [M], BN in inference mode
       (``training_mode`` 0; before opset 14 no statistics outputs and ``spatial`` 1), and
       ``z`` read by the BN only and not a graph output: becomes ``Conv(x, W', B') -> y`` with
       ``s = scale / sqrt(var + eps)``, ``W' = W * s[:, None, ...]``,
       ``B' = (B - mean) * s + bias`` (computed in float64, stored in W's dtype).
    """

    name = "ConvBNFusion"

    def apply(self, ctx) -> bool:
        changed = False
        idx = GraphIndex(ctx)
        for conv in [n for n in ctx.graph.nodes if n.op_type == "Conv" and n.domain == ""]:
            if len(conv.inputs) < 2 or len(conv.outputs) != 1 or not conv.outputs[0]:
                continue
            bn = _sole_bn_reader(ctx, idx, conv)
            if bn is None:
                continue
            W = ctx.const(conv.inputs[1])
            if W is None or np.asarray(W).dtype.type not in _FLOATS or np.ndim(W) < 3:
                continue
            W = np.asarray(W)
            B = None
            if len(conv.inputs) > 2 and conv.inputs[2]:
                B = ctx.const(conv.inputs[2])
                if B is None or np.asarray(B).shape != (W.shape[0],):
                    continue
            p = _bn_params(ctx, bn, W.shape[0], idx.consumers)
            if p is None:
                continue
            s, off = _fold(*p)
            w2 = (W.astype(np.float64) * s.reshape((-1,) + (1,) * (W.ndim - 1))).astype(W.dtype)
            b0 = np.zeros(W.shape[0]) if B is None else np.asarray(B).astype(np.float64)
            b2 = (b0 * s + off).astype(W.dtype)
            wn = ctx.add_constant(conv.inputs[1] + "_bn", w2)
            bname = ctx.add_constant((conv.inputs[2] if B is not None else conv.name + ".bias") + "_bn", b2)
            new = ctx.make_node("Conv", [conv.inputs[0], wn, bname], [bn.outputs[0]], name=conv.name)
            new.attrs, new.attr_protos, new.opset = dict(conv.attrs), dict(conv.attr_protos), conv.opset
            ctx.replace([conv, bn], [new])
            idx.invalidate()
            changed = True
        return changed


class MatmulBNFusion:
    """Folds an inference BatchNormalization into a 2-D MatMul with a constant weight.

    1. ``MatMul(a, W) -> z -> BatchNormalization(z, scale, bias, mean, var) -> y`` with ``a``
       of rank 2 ([batch, K]), W a constant float [K, N], the BN parameters constant [N] and
       BN in inference mode (as in ConvBNFusion), ``z`` read by the BN only and not a graph
       output: becomes ``Gemm(a, W * s, bias - mean * s) -> y`` (opset 7 and up).
    """

    name = "MatmulBNFusion"

    def apply(self, ctx) -> bool:
        changed = False
        if ctx.opset("") < 7:
            return False
        idx = GraphIndex(ctx)
        for mm in [n for n in ctx.graph.nodes if n.op_type == "MatMul" and n.domain == ""]:
            if len(mm.inputs) != 2 or len(mm.outputs) != 1 or not mm.outputs[0]:
                continue
            bn = _sole_bn_reader(ctx, idx, mm)
            if bn is None:
                continue
            W = ctx.const(mm.inputs[1])
            if W is None or np.asarray(W).dtype.type not in _FLOATS or np.ndim(W) != 2:
                continue
            if value_rank(ctx, mm.inputs[0]) != 2:
                continue
            W = np.asarray(W)
            p = _bn_params(ctx, bn, W.shape[1], idx.consumers)
            if p is None:
                continue
            s, off = _fold(*p)
            w2 = (W.astype(np.float64) * s[None, :]).astype(W.dtype)
            wn = ctx.add_constant(mm.inputs[1] + "_bn", w2)
            bname = ctx.add_constant(mm.name + ".bias_bn", off.astype(W.dtype))
            new = ctx.make_node("Gemm", [mm.inputs[0], wn, bname], [bn.outputs[0]], name=mm.name)
            ctx.replace([mm, bn], [new])
            idx.invalidate()
            changed = True
        return changed


PASSES = [ConvBNFusion, MatmulBNFusion]
