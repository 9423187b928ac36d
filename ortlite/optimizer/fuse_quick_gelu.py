"""QuickGeluFusion (onnxruntime's): x * Sigmoid(alpha * x) -> com.microsoft ``QuickGelu(x, alpha)``.

SiLU / Swish (``Mul(x, Sigmoid(x))``, alpha = 1) is what YOLO-style detectors and EfficientNet
export after every convolution; CLIP's QuickGELU is ``Mul(x, Sigmoid(Mul(x, 1.702)))``. Either
operand order of each Mul. Preconditions: the Sigmoid's output (and the inner Mul's) is read by
the pattern alone and is no graph output, alpha is a constant scalar, ``x`` is a float value
and not constant (constant folding takes those).
"""
from __future__ import annotations

from ortlite.optimizer._match import MS, can_fuse, rewrite_each


class QuickGeluFusion:
    """Mul(x, Sigmoid(x)) / Mul(x, Sigmoid(Mul(x, alpha)))  =>  QuickGelu(x, alpha)."""

    name = "QuickGeluFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, mul):
            if len(mul.inputs) != 2:
                return False
            for x, s in (mul.inputs, mul.inputs[::-1]):
                sig = view.producer(s, "Sigmoid")
                if sig is None or not view.private(s, mul) or view.const(x) is not None or not view.is_float(x):
                    continue
                inner, alpha, nodes = sig.inputs[0], 1.0, [sig, mul]
                if inner != x:
                    scale = view.producer(inner, "Mul")
                    if scale is None or not view.private(inner, sig) or len(scale.inputs) != 2:
                        continue
                    a, b = scale.inputs
                    alpha = view.scalar(b) if a == x else view.scalar(a) if b == x else None
                    if alpha is None:
                        continue
                    nodes = [scale, sig, mul]
                prov = can_fuse(ctx, nodes, "QuickGelu", MS)
                if prov is None:
                    return False
                node = ctx.make_node("QuickGelu", [x], list(mul.outputs), domain=MS, alpha=float(alpha),
                                     name=ctx.new_name(f"{mul.name}/QuickGelu"), provider=prov)
                ctx.replace(nodes, [node])
                return True
            return False

        return rewrite_each(ctx, [("Mul", "")], fuse)


PASSES = [QuickGeluFusion]
