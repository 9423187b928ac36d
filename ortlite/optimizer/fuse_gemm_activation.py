"""GemmActivationFusion (onnxruntime's): Gemm followed by an activation becomes
com.microsoft ``FusedGemm``.

1. ``Gemm -> Relu | Sigmoid | Tanh | Softsign | Softplus`` -> ``FusedGemm(activation=...)``;
2. ``Gemm -> LeakyRelu | Elu | ThresholdedRelu (alpha)`` -> ``activation_alpha``;
3. ``Gemm -> HardSigmoid (alpha, beta)`` -> ``activation_alpha``, ``activation_beta``;
4. ``Gemm -> Selu (alpha, gamma)`` -> ``activation_alpha``, ``activation_gamma``.

The Gemm's alpha / beta / transA / transB carry over; the fused node takes the
activation's output name (BERT's pooler Tanh writes ``pooler_output``). Preconditions: an ONNX
Gemm on float32/16 whose output is read by the activation alone and is no graph output.
"""
from __future__ import annotations

from ortlite.optimizer._match import MS, can_fuse, rewrite_each

# activation -> [(its attribute, FusedGemm attribute, ONNX default)]
_ACTS = {
    "Relu": [], "Sigmoid": [], "Tanh": [], "Softsign": [], "Softplus": [],
    "LeakyRelu": [("alpha", "activation_alpha", 0.01)],
    "Elu": [("alpha", "activation_alpha", 1.0)],
    "ThresholdedRelu": [("alpha", "activation_alpha", 1.0)],
    "HardSigmoid": [("alpha", "activation_alpha", 0.2), ("beta", "activation_beta", 0.5)],
    "Selu": [("alpha", "activation_alpha", 1.67326319217681884765625),
             ("gamma", "activation_gamma", 1.05070102214813232421875)],
}


class GemmActivationFusion:
    """Gemm -> activation  =>  FusedGemm (cases 1-4)."""

    name = "GemmActivationFusion"

    def apply(self, ctx) -> bool:
        def fuse(view, gemm):
            if len(gemm.outputs) != 1 or not view.is_float(*[i for i in gemm.inputs if i]):
                return False
            if set(gemm.attrs) - {"alpha", "beta", "transA", "transB"}:
                return False  # Gemm before opset 7 ('broadcast')
            act = view.sole_consumer(gemm.outputs[0], tuple(_ACTS))
            if act is None:
                return False
            prov = can_fuse(ctx, [gemm, act], "FusedGemm", MS)
            if prov is None:
                return False
            attrs = {k: gemm.attrs[k] for k in ("alpha", "beta", "transA", "transB") if k in gemm.attrs}
            for src, dst, default in _ACTS[act.op_type]:
                attrs[dst] = float(act.attrs.get(src, default))
            node = ctx.make_node("FusedGemm", list(gemm.inputs), [act.outputs[0]], domain=MS,
                                 name=ctx.new_name(f"{gemm.name}/FusedGemm"), provider=prov,
                                 activation=act.op_type, **attrs)
            ctx.replace([gemm, act], [node])
            return True

        return rewrite_each(ctx, ["Gemm"], fuse)


PASSES = [GemmActivationFusion]
