"""GELU fusions (onnxruntime's GeluFusion and FastGeluFusion).

GeluFusion rewrites the exact (erf) GELU as torch exports it into com.microsoft ``Gelu``:

1. ``Div(x, sqrt(2)) -> Erf -> Add(., 1) -> Mul(x, .) -> Mul(., 0.5)``
   (HF BERT's ``x * 0.5 * (1 + erf(x / sqrt(2)))`` as traced);
2. the same with ``Mul(x, 1/sqrt(2))`` instead of the Div;
3. the same with the halving elsewhere in the product: ``Mul(Mul(x, 0.5), 1 + erf)``,
   ``Mul(x, Mul(1 + erf, 0.5))`` (any operand order of each Mul / Add).

FastGeluFusion rewrites the tanh approximation into com.microsoft ``FastGelu``:

4. ``0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * Pow(x, 3))))`` (GPT-2's ``gelu_new``);
5. the same with ``x * x * x`` for the cube; the product 0.5 * x * (1 + tanh) in any of the
   orders of case 3.

Every intermediate must be read only inside the pattern (and be no graph output), the
constants must be those numbers up to their dtype's rounding, and the values float32/16.
The fused node takes the last Mul's output name.
"""
from __future__ import annotations

import math

from ortlite.optimizer._match import MS, can_fuse, other_input, rewrite_each

SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def match_half_product(view, x, s):
    """The Mul nodes computing 0.5 * x * s from value ``s`` (read only by them), in any order:
    (muls, result name) or None."""
    m1 = view.sole_consumer(s, "Mul")
    if m1 is None:
        return None
    o = other_input(m1, s)
    if o is None or o == s:
        return None
    if o == x:
        m2 = view.sole_consumer(m1.outputs[0], "Mul")
        if m2 is not None and view.is_value(other_input(m2, m1.outputs[0]), 0.5, x):
            return [m1, m2], m2.outputs[0]
        return None
    if view.is_value(o, 0.5, x):
        m2 = view.sole_consumer(m1.outputs[0], "Mul")
        if m2 is not None and other_input(m2, m1.outputs[0]) == x:
            return [m1, m2], m2.outputs[0]
        return None
    m0 = view.producer(o, "Mul")
    if m0 is not None and view.private(o, m1):
        a, b = m0.inputs
        if (a == x and view.is_value(b, 0.5, x)) or (b == x and view.is_value(a, 0.5, x)):
            return [m0, m1], m1.outputs[0]
    return None


def match_one_plus(view, t):
    """Add(t, 1) reading ``t`` alone: the Add node or None."""
    add = view.sole_consumer(t, "Add")
    if add is None or not view.is_value(other_input(add, t), 1.0, t):
        return None
    return add


class GeluFusion:
    """x * 0.5 * (1 + erf(x / sqrt(2))) -> com.microsoft Gelu (cases 1-3 of the module doc)."""

    name = "GeluFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, erf):
            scaled = erf.inputs[0]
            if not view.private(scaled, erf):
                return False
            pre = view.producer(scaled, ("Div", "Mul"))
            if pre is None:
                return False
            x = None
            if pre.op_type == "Div":
                if view.is_value(pre.inputs[1], SQRT2, pre.inputs[0]):
                    x = pre.inputs[0]
            else:
                for a, b in (pre.inputs, pre.inputs[::-1]):
                    if view.is_value(b, 1.0 / SQRT2, a):
                        x = a
                        break
            if x is None or not view.is_float(x, *pre.inputs):
                return False
            add = match_one_plus(view, erf.outputs[0])
            if add is None:
                return False
            prod = match_half_product(view, x, add.outputs[0])
            if prod is None:
                return False
            muls, out = prod
            nodes = [pre, erf, add] + muls
            prov = can_fuse(ctx, nodes, "Gelu", MS)
            if prov is None:
                return False
            gelu = ctx.make_node("Gelu", [x], [out], domain=MS, name=ctx.new_name(f"{erf.name}/Gelu"), provider=prov)
            ctx.replace(nodes, [gelu])
            return True

        return rewrite_each(ctx, ["Erf"], fuse)


def _cube_of(view, name):
    """x when ``name`` is Pow(x, 3) or x * x * x computed for this use alone: (x, nodes) or None."""
    p = view.producer(name, ("Pow", "Mul"))
    if p is None:
        return None
    if p.op_type == "Pow":
        x = p.inputs[0]
        return (x, [p]) if view.is_value(p.inputs[1], 3.0, x) else None
    a, b = p.inputs
    for sq_name, x in ((a, b), (b, a)):
        sq = view.producer(sq_name, "Mul")
        if sq is not None and sq.inputs[0] == x and sq.inputs[1] == x and view.private(sq_name, p):
            return x, [p, sq]
    return None


class FastGeluFusion:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> com.microsoft FastGelu (cases 4-5)."""

    name = "FastGeluFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, tanh):
            t_in = tanh.inputs[0]
            if not view.private(t_in, tanh):
                return False
            scale = view.producer(t_in, "Mul")
            if scale is None:
                return False
            inner = None
            for a, b in (scale.inputs, scale.inputs[::-1]):
                if view.is_value(b, SQRT_2_OVER_PI, a):
                    inner = a
            if inner is None or not view.private(inner, scale):
                return False
            add = view.producer(inner, "Add")
            if add is None:
                return False
            found = None
            for x, cs in (add.inputs, add.inputs[::-1]):
                m = view.producer(cs, "Mul")
                if m is None or not view.private(cs, add):
                    continue
                for cube, k in (m.inputs, m.inputs[::-1]):
                    if not view.is_value(k, 0.044715, x) or not view.private(cube, m):
                        continue
                    c = _cube_of(view, cube)
                    if c is not None and c[0] == x:
                        found = (x, [m] + c[1])
            if found is None:
                return False
            x, cube_nodes = found
            if not view.is_float(x):
                return False
            one = match_one_plus(view, tanh.outputs[0])
            if one is None:
                return False
            prod = match_half_product(view, x, one.outputs[0])
            if prod is None:
                return False
            muls, out = prod
            nodes = cube_nodes + [add, scale, tanh, one] + muls
            prov = can_fuse(ctx, nodes, "FastGelu", MS)
            if prov is None:
                return False
            node = ctx.make_node("FastGelu", [x], [out], domain=MS, name=ctx.new_name(f"{tanh.name}/FastGelu"),
                                 provider=prov)
            ctx.replace(nodes, [node])
            return True

        return rewrite_each(ctx, ["Tanh"], fuse)


PASSES = [GeluFusion, FastGeluFusion]
