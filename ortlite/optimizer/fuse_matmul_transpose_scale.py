"""MatMul fusions into com.microsoft ``FusedMatMul`` (alpha * A' @ B'): onnxruntime's
MatMulScaleFusion and MatmulTransposeFusion.

MatMulScaleFusion:

1. ``MatMul(Mul(a, s), b)`` / ``MatMul(Div(a, s), b)`` and the same on ``b``, ``s`` a scalar
   constant -> ``FusedMatMul(a, b, alpha=s or 1/s)``;
2. ``Mul(MatMul(a, b), s)`` / ``Div(MatMul(a, b), s)`` -> ``FusedMatMul(a, b, alpha=...)``
   (named like the Mul/Div's output);
3. the same around an existing FusedMatMul (alpha multiplied in).

MatmulTransposeFusion:

4. ``MatMul(Transpose(a), b)`` with the Transpose swapping the last two axes (perm
   ``[0, .., r-3, r-1, r-2]``) -> ``FusedMatMul(a, b, transA=1)``, likewise for ``b``;
5. the same on a FusedMatMul input (its transA / transB flag flips). The Transpose is
   dropped when nothing else reads it.

Preconditions: float32/16 values; the scale constant holds one number and cannot raise the
rank of what it multiplies; the scaled input (cases 1, 3) is read by the MatMul alone, the
MatMul output (case 2) only by the Mul/Div and is no graph output; FusedMatMul with
transBatchA / transBatchB set is left alone.
"""
from __future__ import annotations

from ortlite.optimizer._match import MS, can_fuse, replace, rewrite_each

_ANCHORS = ["MatMul", ("FusedMatMul", MS)]


def _params(node):
    """(alpha, transA, transB) of a MatMul / FusedMatMul, None for batch-transposing ones."""
    if node.op_type == "MatMul":
        return 1.0, 0, 0
    a = node.attrs
    if int(a.get("transBatchA", 0)) or int(a.get("transBatchB", 0)):
        return None
    return float(a.get("alpha", 1.0)), int(a.get("transA", 0)), int(a.get("transB", 0))


def _scaled(view, name, reader):
    """When ``name`` = Mul(v, s) / Div(v, s) read by ``reader`` alone: (node, v, factor)."""
    p = view.producer(name, ("Mul", "Div"))
    if p is None or not view.private(name, reader) or len(p.inputs) != 2:
        return None
    a, b = p.inputs
    cands = [(a, b)] if p.op_type == "Div" else [(a, b), (b, a)]
    for v, s in cands:
        k = view.scalar_for(s, v)
        if k is None or view.const(v) is not None or view.const(s).dtype.kind != "f":
            continue
        if p.op_type == "Div":
            if k == 0:
                return None
            k = 1.0 / k
        return p, v, k
    return None


def _emit(ctx, mm, old, inputs, out, alpha, ta, tb):
    prov = can_fuse(ctx, old, "FusedMatMul", MS)
    if prov is None:
        return False
    node = ctx.make_node("FusedMatMul", inputs, [out], domain=MS, name=ctx.new_name(f"{mm.name}/FusedMatMul"),
                         provider=prov, alpha=float(alpha), transA=int(ta), transB=int(tb))
    replace(ctx, old, [node])
    return True


class MatMulScaleFusion:
    """Scalar Mul/Div on a MatMul input or output -> FusedMatMul alpha (cases 1-3)."""

    name = "MatMulScaleFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, mm):
            prm = _params(mm)
            if prm is None or len(mm.inputs) != 2:
                return False
            alpha, ta, tb = prm
            if not view.is_float(*mm.inputs):
                return False
            old, ins, found = [mm], list(mm.inputs), False
            for i in (0, 1):
                if i == 1 and ins[1] == ins[0]:
                    break
                r = _scaled(view, mm.inputs[i], mm)
                if r is not None:
                    p, v, k = r
                    old.append(p)
                    ins[i] = v
                    alpha *= k
                    found = True
            out = mm.outputs[0]
            c = view.sole_consumer(out, ("Mul", "Div"))
            if c is not None and len(c.inputs) == 2:
                s = c.inputs[1] if c.inputs[0] == out else (c.inputs[0] if c.op_type == "Mul" else None)
                k = None
                if s is not None and s != out and view.const(s) is not None and view.const(s).dtype.kind == "f":
                    cs = view.const(s)
                    if cs.ndim == 0 or (view.rank(out) is not None and cs.ndim <= view.rank(out)):
                        k = view.scalar(s)
                if k is not None and not (c.op_type == "Div" and k == 0):
                    alpha *= (1.0 / k) if c.op_type == "Div" else k
                    old.append(c)
                    out = c.outputs[0]
                    found = True
            if not found:
                return False
            return _emit(ctx, mm, old, ins, out, alpha, ta, tb)

        return rewrite_each(ctx, _ANCHORS, fuse)


def _swaps_last_two(view, t):
    perm = t.attrs.get("perm")
    if perm is None:
        return view.rank(t.inputs[0]) == 2
    r = len(perm)
    return r >= 2 and list(perm[:-2]) == list(range(r - 2)) and list(perm[-2:]) == [r - 1, r - 2]


class MatmulTransposeFusion:
    """Transpose of the last two axes on a MatMul input -> FusedMatMul transA/transB (cases 4-5)."""

    name = "MatmulTransposeFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, mm):
            prm = _params(mm)
            if prm is None or len(mm.inputs) != 2:
                return False
            alpha, ta, tb = prm
            if not view.is_float(*mm.inputs):
                return False
            ins, flags, old, found = list(mm.inputs), [ta, tb], [mm], False
            for i in (0, 1):
                t = view.producer(mm.inputs[i], "Transpose")
                if t is None or not _swaps_last_two(view, t):
                    continue
                ins[i] = t.inputs[0]
                flags[i] ^= 1
                found = True
            if not found:
                return False
            return _emit(ctx, mm, old, ins, mm.outputs[0], alpha, *flags)

        return rewrite_each(ctx, _ANCHORS, fuse)


PASSES = [MatMulScaleFusion, MatmulTransposeFusion]
