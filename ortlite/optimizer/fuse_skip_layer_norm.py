"""SkipLayerNormFusion (onnxruntime's): a residual Add feeding a LayerNormalization becomes
com.microsoft ``SkipLayerNormalization``.

1. ``LayerNormalization(Add(a, b))`` -> ``SkipLayerNormalization(a, b, gamma, beta)``;
2. ``LayerNormalization(Add(Add(a, bias), b))`` (either operand order of either Add, bias a
   constant [H] vector: the bias of the Linear before the residual) -> the bias goes to
   SkipLayerNormalization's ``bias`` input;
3. ``LayerNormalization(Add(Add(a, b), bias))`` likewise;
4. when the residual sum is read elsewhere too (GPT-2's pre-norm blocks) or is a graph output,
   the fused node also produces it, under its name, as its 4th output
   ``input_skip_bias_sum``.

Preconditions: the LayerNormalization normalizes the last axis (axis -1 or rank-1),
stash_type 1, only its Y output is used; gamma and beta are [H] and H is the known last dim
of both Add operands; both operands have rank 3 (onnxruntime's kernel wants [B, S, H]), their
first two dims equal where both are static, the operand with a static leading 1 (a
broadcast [1, S, H] skip) becomes ``skip``; the inner bias Add (cases 2, 3) is read only by
the outer Add; float32/16.
"""
from __future__ import annotations

from ortlite.optimizer._match import MS, can_fuse, rewrite_each


def _bias(view, name, h):
    c = view.const(name)
    if c is None or c.dtype.kind != "f" or c.ndim != 1 or c.shape[0] != h:
        return None
    return name


def _operands_ok(view, a, b, h):
    for v in (a, b):
        s = view.shape(v)
        if s is None or len(s) != 3 or view.static_dim(v, -1) != h or view.const(v) is not None:
            return False
    sa, sb = view.shape(a), view.shape(b)
    for i in (0, 1):
        da, db = sa[i], sb[i]
        if isinstance(da, int) and isinstance(db, int) and da != db and 1 not in (da, db):
            return False
    return True


def _order(view, a, b):
    """(input, skip): a statically broadcast operand ([1, S, H]) goes to ``skip``."""
    sa = view.shape(a)
    if sa[0] == 1 and view.shape(b)[0] != 1:
        return b, a
    return a, b


class SkipLayerNormFusion:
    """Add (+ bias Add) -> LayerNormalization => SkipLayerNormalization (cases 1-4)."""

    name = "SkipLayerNormFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, ln):
            if len([o for o in ln.outputs if o]) != 1 or not ln.outputs[0] or len(ln.inputs) < 2:
                return False
            if int(ln.attrs.get("stash_type", 1)) != 1:
                return False
            s = ln.inputs[0]
            add = view.producer(s, "Add")
            if add is None or len(add.inputs) != 2:
                return False
            r = view.rank(s)
            axis = int(ln.attrs.get("axis", -1))
            if r != 3 or axis not in (-1, 2):
                return False
            h = view.static_dim(s, -1)
            gamma = ln.inputs[1]
            beta = ln.inputs[2] if len(ln.inputs) > 2 and ln.inputs[2] else None
            if h is None or _bias(view, gamma, h) is None or (beta is not None and _bias(view, beta, h) is None):
                return False
            if not view.is_float(s):
                return False
            # the sum stays available under its name when someone else reads it (case 4)
            others = [c for c in view.consumers(s) if c is not ln]
            keep_sum = bool(others) or s in view.outputs
            nodes, bias = [add], None
            a, b = add.inputs
            # case 3: the outer Add adds a bias vector to an inner residual Add
            for v, other in ((a, b), (b, a)):
                if _bias(view, v, h) is not None:
                    inner = view.producer(other, "Add")
                    if inner is not None and view.private(other, add) and _operands_ok(view, *inner.inputs, h):
                        nodes, bias = [add, inner], v
                        a, b = inner.inputs
                    break
            if bias is None:
                # case 2: one operand is Linear + bias computed for this sum alone
                for v, other in ((a, b), (b, a)):
                    inner = view.producer(v, "Add")
                    if inner is None or not view.private(v, add):
                        continue
                    for x, bb in (inner.inputs, inner.inputs[::-1]):
                        if _bias(view, bb, h) is not None and _operands_ok(view, x, other, h):
                            nodes, bias = [add, inner], bb
                            a, b = x, other
                            break
                    if bias is not None:
                        break
            if not _operands_ok(view, a, b, h):
                return False
            a, b = _order(view, a, b)
            prov = can_fuse(ctx, nodes + [ln], "SkipLayerNormalization", MS)
            if prov is None:
                return False
            ins = [a, b, gamma, beta or "", bias or ""]
            while ins[-1] == "":
                ins.pop()
            outs = [ln.outputs[0]] + (["", "", s] if keep_sum else [])
            node = ctx.make_node("SkipLayerNormalization", ins, outs, domain=MS,
                                 name=ctx.new_name(f"{ln.name}/SkipLayerNorm"), provider=prov,
                                 epsilon=float(ln.attrs.get("epsilon", 1e-5)))
            ctx.replace(nodes + [ln], [node])
            return True

        return rewrite_each(ctx, ["LayerNormalization"], fuse)


PASSES = [SkipLayerNormFusion]
