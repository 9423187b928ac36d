"""MatMulAddFusion (ortlite/optimizer/matmul_add_to_gemm.py)."""
import numpy as np
import pytest
from onnx import numpy_helper

from ortlite.optimizer.matmul_add_to_gemm import MatMulAddFusion

F = np.float32
RNG = np.random.default_rng(6)


def _model(opt, c_shape, a_shape=("M", 5), b_shape=(5, 4), c_first=False, dtype=F, b_fed=False, extra=False):
    inits = {"c": RNG.standard_normal(c_shape).astype(dtype)}
    inputs = [opt.tensor("a", dtype, list(a_shape))]
    if b_fed:
        inputs.append(opt.tensor("b", dtype, list(b_shape)))
    else:
        inits["b"] = RNG.standard_normal(b_shape).astype(dtype)
    nodes = [opt.node("MatMul", ["a", "b"], ["z"]), opt.node("Add", ["c", "z"] if c_first else ["z", "c"], ["y"])]
    outs = [opt.tensor("y", dtype, None)]
    if extra:
        outs.append(opt.tensor("z", dtype, None))
    return opt.model(nodes, inputs, outs, inits)


def _feeds(m, rows=3, dtype=F):
    feeds = {"a": RNG.standard_normal((rows, 5)).astype(dtype)}
    if any(i.name == "b" for i in m.graph.input):
        feeds["b"] = RNG.standard_normal((5, 4)).astype(dtype)
    return feeds


@pytest.mark.parametrize("c_shape", [(4,), (1, 4), (), (1,), (1, 1), (3, 4), (3, 1)], ids=str)
def test_fused(opt, c_shape):
    a_shape = (3, 5) if 3 in c_shape else ("M", 5)
    m = _model(opt, c_shape, a_shape=a_shape, c_first=len(c_shape) == 1)
    ctx, first, second = opt.run_pass(MatMulAddFusion, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Gemm": 1}
    g = ctx.graph.nodes[0]
    assert g.inputs == ["a", "b", "c"] and g.outputs == ["y"]
    sess = opt.check(m, _feeds(m), rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"Gemm": 1}
    assert opt.ops(opt.session(m, disabled=["MatMulAddFusion"])) == {"MatMul": 1, "Add": 1}


def test_fed_weight_and_float64(opt):
    m = _model(opt, (4,), b_fed=True)
    assert opt.ops(opt.check(m, _feeds(m), rtol=1e-5, atol=1e-5)) == {"Gemm": 1}
    m = _model(opt, (1, 4), dtype=np.float64)
    assert opt.ops(opt.check(m, _feeds(m, dtype=np.float64), rtol=1e-12, atol=1e-12)) == {"Gemm": 1}


@pytest.mark.parametrize("case", ["batched", "c_grows", "c_rows_unknown", "z_is_output", "int", "unknown_rank"])
def test_kept(opt, case):
    if case == "batched":  # torch's Linear on [B, S, K]: Gemm is 2-D
        m = _model(opt, (4,), a_shape=("B", "S", 5))
        feeds = {"a": RNG.standard_normal((2, 3, 5)).astype(F)}
    elif case == "c_grows":
        m = _model(opt, (2, 1, 4))
        feeds = _feeds(m)
    elif case == "c_rows_unknown":  # [3, 4] bias on a [M, 4] product: M may not be 3
        m = _model(opt, (3, 4))
        feeds = _feeds(m)
    elif case == "z_is_output":
        m = _model(opt, (4,), extra=True)
        feeds = _feeds(m)
    elif case == "int":
        m = _model(opt, (4,), dtype=np.int32)
        feeds = {"a": RNG.integers(-5, 5, (3, 5)).astype(np.int32)}
        m.graph.initializer[1].CopyFrom(numpy_helper.from_array(RNG.integers(-5, 5, (5, 4)).astype(np.int32), "b"))
        m.graph.initializer[0].CopyFrom(numpy_helper.from_array(RNG.integers(-5, 5, (4,)).astype(np.int32), "c"))
    else:
        m = _model(opt, (4,), a_shape=("M", 5))
        m.graph.input[0].type.tensor_type.ClearField("shape")
        feeds = _feeds(m)
    ctx, first, _ = opt.run_pass(MatMulAddFusion, m)
    assert not first
    assert opt.ops(ctx.graph) == {"MatMul": 1, "Add": 1}
    opt.check(m, feeds, rtol=1e-5, atol=1e-5)
