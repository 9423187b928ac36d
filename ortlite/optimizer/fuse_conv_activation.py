"""ConvActivationFusion (onnxruntime's): Conv followed by an activation becomes
com.microsoft ``FusedConv``.

1. ``Conv -> Relu | Sigmoid | Tanh`` -> ``FusedConv(activation=...)``;
2. ``Conv -> LeakyRelu(alpha)`` -> ``activation_params=[alpha]``;
3. ``Conv -> HardSigmoid(alpha, beta)`` -> ``activation_params=[alpha, beta]``;
4. ``Conv -> Clip(min, max)`` (constant min / max inputs, or the attributes before opset 11;
   a missing bound is float32's lowest / highest) -> ``activation_params=[min, max]``;
5. ``Conv -> Add(., z) -> Relu`` with ``z`` of exactly the Conv output's shape (ResNet's
   residual) -> ``FusedConv(X, W, B, Z, activation="Relu")``.

Preconditions: a plain ONNX Conv on float32/16; the Conv output (and in case 5 the Add
output) is read by the next node alone and is no graph output; in case 5 both shapes are
fully known and equal (dims equal as ints or as the same symbolic name). The fused node takes
the activation's output name and the Conv's attributes.
"""
from __future__ import annotations

import numpy as np

from ortlite.optimizer._match import MS, can_fuse, other_input, rewrite_each, shapes_equal

_F32 = np.finfo(np.float32)
_ACTS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Clip")


def activation_params(view, act):
    """(activation name, params list) for a supported activation node, or None."""
    op = act.op_type
    if act.domain != "" or act.subgraphs or op not in _ACTS:
        return None
    a = act.attrs
    if op in ("Relu", "Sigmoid", "Tanh"):
        return op, []
    if op == "LeakyRelu":
        return op, [float(a.get("alpha", 0.01))]
    if op == "HardSigmoid":
        return op, [float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))]
    # Clip
    if act.opset < 11:
        return op, [float(a.get("min", float(_F32.min))), float(a.get("max", float(_F32.max)))]
    bounds = []
    for k, default in ((1, float(_F32.min)), (2, float(_F32.max))):
        name = act.inputs[k] if len(act.inputs) > k else ""
        if not name:
            bounds.append(default)
            continue
        c = view.const(name)
        if c is None or c.size != 1 or c.dtype.kind != "f":
            return None
        bounds.append(float(c.reshape(())))
    return op, bounds


class ConvActivationFusion:
    """Conv (+ Add z) -> activation  =>  FusedConv (cases 1-5)."""

    name = "ConvActivationFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, conv):
            if len(conv.outputs) != 1 or not view.is_float(conv.inputs[0], conv.outputs[0]):
                return False
            y = conv.outputs[0]
            nxt = view.sole_consumer(y)
            if nxt is None or nxt.subgraphs or nxt.domain != "":
                return False
            ins = list(conv.inputs)
            old = [conv]
            if nxt.op_type == "Add" and len(nxt.inputs) == 2:
                z = other_input(nxt, y)
                act = view.sole_consumer(nxt.outputs[0], "Relu")
                if z is None or z == y or act is None:
                    return False
                ys, zs = view.shape(y), view.shape(z)
                if not shapes_equal(ys, zs) or any(d is None for d in ys):
                    return False
                while len(ins) < 3:
                    ins.append("")
                ins.append(z)
                old.append(nxt)
                kind = ("Relu", [])
            else:
                act = nxt
                kind = activation_params(view, act)
                if kind is None:
                    return False
            old.append(act)
            prov = can_fuse(ctx, old, "FusedConv", MS)
            if prov is None:
                return False
            name, params = kind
            node = ctx.make_node("FusedConv", ins, [act.outputs[0]], domain=MS,
                                 name=ctx.new_name(f"{conv.name}/FusedConv"), provider=prov,
                                 activation=name, activation_params=[float(p) for p in params] or None,
                                 **conv.attrs)
            ctx.replace(old, [node])
            return True

        return rewrite_each(ctx, ["Conv"], fuse)


PASSES = [ConvActivationFusion]
