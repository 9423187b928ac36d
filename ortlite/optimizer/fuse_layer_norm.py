"""Layer-norm fusions (onnxruntime's LayerNormFusion and SimplifiedLayerNormFusion).

LayerNormFusion rewrites a decomposed layer norm over the last axis into
``LayerNormalization`` (ONNX domain; below opset 17 onnxruntime - and ortlite - register it
there as a contrib op):

1. ``m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2)); Div(d, Sqrt(Add(v, eps)))``
   then ``Mul(., gamma)`` and ``Add(., beta)`` (each operand order), ReduceMean ``axes`` given
   as the attribute (opset < 18) or the constant input (18+), keepdims=1;
2. the same with ``Mul(d, d)`` for the square;
3. the same with two ``Sub(x, m)`` nodes (one for the square, one for the Div);
4. without the Add (no beta) or without the Mul (gamma of ones).

SimplifiedLayerNormFusion rewrites an RMS norm into ``SimplifiedLayerNormalization``
(onnxruntime's op in the default domain):

5. ``Mul(gamma, Div(x, Sqrt(Add(ReduceMean(Pow(x, 2)), eps))))``;
6. the same with ``Mul(x, Reciprocal(Sqrt(...)))`` (LLaMA's ``x * rsqrt(var + eps)``).

Preconditions: the reductions are over exactly the last axis of ``x`` (whose size is known),
gamma / beta / eps are constants, gamma and beta hold ``x.shape[-1]`` values (or one value,
broadcast), every intermediate is read only inside the pattern, x is float32/16.
"""
from __future__ import annotations

import numpy as np

from ortlite.optimizer._match import axes_of, can_fuse, is_last_axis, other_input, rewrite_each


def _reduce_mean_last(view, node, x):
    """``node`` is ReduceMean over exactly the last axis of ``x``, keepdims=1."""
    if node is None or node.op_type != "ReduceMean" or node.domain != "" or node.inputs[0] != x:
        return False
    if int(node.attrs.get("keepdims", 1)) != 1:
        return False
    return is_last_axis(view, axes_of(view, node), x)


def _vector(view, name, h):
    """A constant broadcast against [..., h] that holds h values or one value: the [h] vector."""
    c = view.const(name)
    if c is None or c.dtype.kind != "f":
        return None
    if c.size == h and c.shape[-1:] == (h,):
        return np.ascontiguousarray(c.reshape(h))
    if c.size == 1:
        return np.full((h,), c.reshape(()), dtype=c.dtype)
    return None


def _affine_tail(view, y, x, h, rank):
    """After the normalized value ``y``: optional Mul(gamma) then optional Add(beta).
    Returns (nodes, out, gamma, beta) (gamma/beta arrays or None)."""
    nodes, gamma, beta, out = [], None, None, y
    mul = view.sole_consumer(out, "Mul")
    if mul is not None:
        g = other_input(mul, out)
        gv = _vector(view, g, h) if g is not None and g != out else None
        if gv is not None and view.const(g).ndim <= rank:
            nodes.append(mul)
            gamma, out = gv, mul.outputs[0]
    add = view.sole_consumer(out, "Add")
    if add is not None:
        b = other_input(add, out)
        bv = _vector(view, b, h) if b is not None and b != out else None
        if bv is not None and view.const(b).ndim <= rank:
            nodes.append(add)
            beta, out = bv, add.outputs[0]
    return nodes, out, gamma, beta


def _eps_sqrt(view, var, x):
    """Add(var, eps) -> Sqrt, each read once: (nodes, eps, sqrt output) or None."""
    add = view.sole_consumer(var, "Add")
    if add is None:
        return None
    e = other_input(add, var)
    eps = view.scalar_for(e, x) if e is not None else None
    if eps is None or eps < 0:
        return None
    sq = view.sole_consumer(add.outputs[0], "Sqrt")
    if sq is None:
        return None
    return [add, sq], eps, sq.outputs[0]


def _square_of(view, node, d):
    """``node`` computes d^2: Pow(d, 2) or Mul(d, d)."""
    if node.op_type == "Pow" and node.domain == "" and node.inputs[0] == d:
        return view.is_value(node.inputs[1], 2.0, d)
    return node.op_type == "Mul" and node.domain == "" and node.inputs == [d, d]


class LayerNormFusion:
    """ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add -> LayerNormalization (cases 1-4)."""

    name = "LayerNormFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, rm1):
            x = rm1.inputs[0]
            if not _reduce_mean_last(view, rm1, x) or rm1.outputs[0] in view.outputs:
                return False
            rank, h = view.rank(x), view.static_dim(x, -1)
            if rank is None or h is None or h <= 0 or not view.is_float(x):
                return False
            subs = view.consumers(rm1.outputs[0])
            if not subs or len(subs) > 2 or any(
                    s.op_type != "Sub" or s.domain != "" or s.inputs != [x, rm1.outputs[0]] for s in subs):
                return False
            # the square branch and the Div branch read the centered value(s)
            sq = div = None
            for s in subs:
                d = s.outputs[0]
                if d in view.outputs:
                    return False
                for c in {id(c): c for c in view.consumers(d)}.values():
                    if _square_of(view, c, d) and sq is None:
                        sq = (s, c)
                    elif c.op_type == "Div" and c.domain == "" and c.inputs[0] == d and div is None:
                        div = (s, c)
                    else:
                        return False
            if sq is None or div is None or (len(subs) == 2 and sq[0] is div[0]):
                return False
            sub_nodes = subs
            square, dv = sq[1], div[1]
            rm2 = view.sole_consumer(square.outputs[0], "ReduceMean")
            if rm2 is None or not _reduce_mean_last(view, rm2, square.outputs[0]):
                return False
            es = _eps_sqrt(view, rm2.outputs[0], x)
            if es is None:
                return False
            es_nodes, eps, root = es
            if dv.inputs[1] != root or not view.private(root, dv):
                return False
            tail, out, gamma, beta = _affine_tail(view, dv.outputs[0], x, h, rank)
            if gamma is None:
                gamma = np.ones((h,), dtype=view.dtype(x) or np.float32)
            nodes = [rm1] + sub_nodes + [square, rm2] + es_nodes + [dv] + tail
            prov = can_fuse(ctx, nodes, "LayerNormalization", "")
            if prov is None:
                return False
            ins = [x, ctx.add_constant(f"{rm1.name}/gamma", gamma)]
            if beta is not None:
                ins.append(ctx.add_constant(f"{rm1.name}/beta", beta))
            ln = ctx.make_node("LayerNormalization", ins, [out], name=ctx.new_name(f"{rm1.name}/LayerNorm"),
                               provider=prov, axis=-1, epsilon=float(eps))
            ctx.replace(nodes, [ln])
            return True

        return rewrite_each(ctx, ["ReduceMean"], fuse)


class SimplifiedLayerNormFusion:
    """x / sqrt(mean(x^2) + eps) * gamma -> SimplifiedLayerNormalization (cases 5-6)."""

    name = "SimplifiedLayerNormFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, square):
            x = square.inputs[0]
            if not _square_of(view, square, x):
                return False
            rank, h = view.rank(x), view.static_dim(x, -1)
            if rank is None or h is None or h <= 0 or not view.is_float(x):
                return False
            rm = view.sole_consumer(square.outputs[0], "ReduceMean")
            if rm is None or not _reduce_mean_last(view, rm, square.outputs[0]):
                return False
            es = _eps_sqrt(view, rm.outputs[0], x)
            if es is None:
                return False
            es_nodes, eps, root = es
            c = view.sole_consumer(root, ("Div", "Reciprocal"))
            if c is None:
                return False
            if c.op_type == "Div":
                if c.inputs != [x, root]:
                    return False
                norm_nodes, y = [c], c.outputs[0]
            else:
                m = view.sole_consumer(c.outputs[0], "Mul")
                if m is None or other_input(m, c.outputs[0]) != x:
                    return False
                norm_nodes, y = [c, m], m.outputs[0]
            mul = view.sole_consumer(y, "Mul")
            g = other_input(mul, y) if mul is not None else None
            gamma = _vector(view, g, h) if g is not None and g != y else None
            if gamma is None or view.const(g).ndim > rank:
                return False
            nodes = [square, rm] + es_nodes + norm_nodes + [mul]
            prov = can_fuse(ctx, nodes, "SimplifiedLayerNormalization", "")
            if prov is None:
                return False
            node = ctx.make_node("SimplifiedLayerNormalization", [x, ctx.add_constant(f"{rm.name}/gamma", gamma)],
                                 [mul.outputs[0]], name=ctx.new_name(f"{rm.name}/SimplifiedLayerNorm"),
                                 provider=prov, axis=-1, epsilon=float(eps))
            ctx.replace(nodes, [node])
            return True

        return rewrite_each(ctx, ["Pow", "Mul"], fuse)


PASSES = [LayerNormFusion, SimplifiedLayerNormFusion]
