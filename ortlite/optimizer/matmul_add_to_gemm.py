"""2-D MatMul + bias Add -> Gemm (onnxruntime's MatMulAddFusion)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ortlite.optimizer.eliminate_identity import GraphIndex, sole_reader, value_elem_type, value_shape

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16}


class MatMulAddFusion:
    """Fuses a 2-D MatMul and the bias Add after it into a Gemm.

    1. ``MatMul(a, b) -> z -> Add(z, c)`` (or ``Add(c, z)``) with ``a`` of rank 2 [M, K], ``b``
       a constant (or known-rank) 2-D [K, N] tensor, all float / double / float16, ``c`` a
       constant whose shape broadcasts to [M, N] without changing it ([N], [1, N], [M, N],
       [M, 1], [1, 1], a scalar; N and M as far as they are known), ``z`` read by the Add only
       and not a graph output: becomes ``Gemm(a, b, c) -> y`` (alpha = beta = 1; opset 7 and
       up, where Gemm broadcasts C).
    2. Batched (3-D and up) MatMuls are left alone: Gemm is 2-D.
    """

    name = "MatMulAddFusion"

    def apply(self, ctx) -> bool:
        if ctx.opset("") < 7:
            return False
        changed = False
        idx = GraphIndex(ctx)
        for add in [n for n in ctx.graph.nodes if n.op_type == "Add" and n.domain == ""]:
            if len(add.inputs) != 2 or len(add.outputs) != 1 or not add.outputs[0]:
                continue
            for zi in (0, 1):
                z, cn = add.inputs[zi], add.inputs[1 - zi]
                mm = idx.producers.get(z)
                if mm is None or mm.op_type != "MatMul" or mm.domain != "" or len(mm.inputs) != 2:
                    continue
                if not sole_reader(ctx, z, add, idx.consumers):
                    continue
                a, b = mm.inputs
                sa, sb = value_shape(ctx, a), value_shape(ctx, b)
                if sa is None or sb is None or len(sa) != 2 or len(sb) != 2:
                    continue
                t = value_elem_type(ctx, a)
                if t not in _FLOAT_TYPES or value_elem_type(ctx, b) != t:
                    continue
                c = ctx.const(cn)
                if c is None or value_elem_type(ctx, cn) != t:
                    continue
                if not self._fits(np.shape(c), sa[0], sb[1]):
                    continue
                gemm = ctx.make_node("Gemm", [a, b, cn], [add.outputs[0]], name=mm.name)
                ctx.replace([mm, add], [gemm])
                idx.invalidate()
                changed = True
                break
        return changed

    @staticmethod
    def _fits(cs, m, n) -> bool:
        """``cs`` broadcasts to [m, n] (ints or symbolic) and leaves that shape as it is."""
        if len(cs) > 2:
            return False
        aligned = (1,) * (2 - len(cs)) + tuple(cs)
        for d, full in zip(aligned, (m, n)):
            if d != 1 and not (isinstance(full, int) and d == full):
                return False
        return True


PASSES = [MatMulAddFusion]
