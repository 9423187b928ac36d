"""MatMulIntegerToFloatFusion (onnxruntime's): the dequantizing tail of a MatMulInteger joins it.

``MatMulInteger(A, B, a_zp, b_zp) -> Cast(to=float) -> Mul(., Mul(a_scale, b_scale))``, what
onnxruntime.quantization.quantize_dynamic writes for every quantized MatMul / Gemm, becomes
com.microsoft ``MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zp, b_zp)``: one kernel, no int32
tensor, no Cast pass and no Mul pass.

Bit-exact with the unfused nodes: the fused kernel computes the same exact integer sums, rounds
them to float32 once (as the Cast does) and multiplies by float32 ``a_scale * b_scale`` (the
scale Mul; float multiplication is commutative, so either operand order matches). Preconditions:
float32 scales, ``a_scale`` of one value (per tensor, as DynamicQuantizeLinear gives it) and
``b_scale`` of one value or a 1-D [N] vector with N the last dim of B (of rank >= 2; so the broadcasts are
those of the unfused Muls); the int32 tensor, the cast and the scale product are read by this
chain alone and are no graph outputs (a scale product read elsewhere stays as it is).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ortlite.optimizer._match import MS, can_fuse, other_input, rewrite_each

_F32 = np.dtype(np.float32)


def _one_value(view, name):
    """``name`` is known to hold exactly one value (constant of size 1, or a known shape of
    rank <= 1 whose dims are all 1)."""
    c = view.const(name)
    if c is not None:
        return c.size == 1 and c.ndim <= 1
    s = view.shape(name)
    return s is not None and len(s) <= 1 and all(d == 1 for d in s)


def _b_scale_ok(view, b_scale, b):
    """b_scale is one value, or a [N] vector with N = B's known last dim."""
    if _one_value(view, b_scale):
        return True
    s = view.shape(b_scale)
    n = view.static_dim(b, -1)
    return s is not None and len(s) == 1 and n is not None and s[0] == n


class MatMulIntegerToFloatFusion:
    """MatMulInteger -> Cast(float) -> Mul(scale product)  =>  MatMulIntegerToFloat."""

    name = "MatMulIntegerToFloatFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, mm):
            cast = view.sole_consumer(mm.outputs[0], "Cast")
            if cast is None or cast.attrs.get("to") != TensorProto.FLOAT:
                return False
            mul = view.sole_consumer(cast.outputs[0], "Mul")
            if mul is None:
                return False
            prod = other_input(mul, cast.outputs[0])
            smul = view.producer(prod, "Mul")
            if smul is None or not view.private(prod, mul) or len(smul.inputs) != 2:
                return False
            b = mm.inputs[1]
            if (view.rank(b) or 0) < 2:  # a 1-D B gives no product axis for a [N] scale to follow
                return False
            for a_scale, b_scale in (smul.inputs, smul.inputs[::-1]):
                if (view.dtype(a_scale) == _F32 and view.dtype(b_scale) == _F32
                        and _one_value(view, a_scale) and _b_scale_ok(view, b_scale, b)):
                    break
            else:
                return False
            prov = can_fuse(ctx, [mm, cast, mul, smul], "MatMulIntegerToFloat", MS)
            if prov is None:
                return False
            zps = list(mm.inputs[2:4]) + [""] * (4 - len(mm.inputs))
            inputs = [mm.inputs[0], b, a_scale, b_scale] + zps
            while inputs[-1] == "":
                inputs.pop()
            node = ctx.make_node("MatMulIntegerToFloat", inputs, list(mul.outputs), domain=MS,
                                 name=ctx.new_name(f"{mm.name}/MatMulIntegerToFloat"), provider=prov)
            ctx.replace([mm, cast, mul, smul], [node])
            return True

        return rewrite_each(ctx, ["MatMulInteger"], fuse)


PASSES = [MatMulIntegerToFloatFusion]
