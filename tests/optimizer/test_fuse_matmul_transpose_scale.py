"""MatMulScaleFusion / MatmulTransposeFusion (ortlite/optimizer/fuse_matmul_transpose_scale.py)."""
import numpy as np
import pytest

from ortlite.optimizer.fuse_matmul_transpose_scale import MatMulScaleFusion, MatmulTransposeFusion
from ortlite.partition import assign

F = np.float32


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def mm_model(opt, pre_a=None, pre_b=None, post=None, perm_a=None, perm_b=None, k_value=2.0, extra_out=None):
    """y = post(MatMul(pre_a(Ta(a)), pre_b(Tb(b)))) with a: [2, 4, 5], b: [2, 5, 3] (transposed
    inputs take the swapped shapes)."""
    inits = {"k": np.array(k_value, F), "kv": np.full((5,), 2.0, F)}
    n = []
    a, b = "a", "b"
    a_shape, b_shape = [2, 4, 5], [2, 5, 3]
    if perm_a is not None:
        n.append(opt.node("Transpose", [a], ["ta"], perm=perm_a))
        a_shape = [a_shape[i] for i in np.argsort(perm_a)]
        a = "ta"
    if perm_b is not None:
        n.append(opt.node("Transpose", [b], ["tb"], perm=perm_b))
        b_shape = [b_shape[i] for i in np.argsort(perm_b)]
        b = "tb"
    if pre_a:
        n.append(opt.node(pre_a, [a, "kv" if k_value is None else "k"], ["sa"]))
        a = "sa"
    if pre_b:
        n.append(opt.node(pre_b, ["k", b] if pre_b == "Mul" else [b, "k"], ["sb"]))
        b = "sb"
    n.append(opt.node("MatMul", [a, b], ["mm" if post else "y"]))
    if post:
        n.append(opt.node(post, ["mm", "k"], ["y"]))
    outs = [opt.tensor("y", F, [2, 4, 3])] + ([opt.tensor(extra_out, F, None)] if extra_out else [])
    return opt.model(n, [opt.tensor("a", F, a_shape), opt.tensor("b", F, b_shape)], outs, inits)


def feeds(opt, m):
    out = {}
    for v in m.graph.input:
        shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
        out[v.name] = opt.rng.standard_normal(shape).astype(F)
    return out


def fused(sess):
    nodes = [n for n in sess._graph.nodes if n.op_type == "FusedMatMul"]
    assert len(nodes) == 1
    return nodes[0]


@pytest.mark.parametrize("kw,alpha", [
    (dict(pre_a="Mul"), 2.0), (dict(pre_a="Div"), 0.5), (dict(pre_b="Mul"), 2.0), (dict(pre_b="Div"), 0.5),
    (dict(post="Mul"), 2.0), (dict(post="Div"), 0.5), (dict(pre_a="Mul", pre_b="Div", post="Mul"), 2.0),
])
def test_matmul_scale(opt, kw, alpha):
    m = mm_model(opt, **kw)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    node = fused(sess)
    assert opt.ops(sess) == {"FusedMatMul": 1}
    assert node.attrs["alpha"] == pytest.approx(alpha) and node.inputs == ["a", "b"] and node.outputs == ["y"]


@pytest.mark.parametrize("kw,flags", [
    (dict(perm_a=[0, 2, 1]), (1, 0)), (dict(perm_b=[0, 2, 1]), (0, 1)),
    (dict(perm_a=[0, 2, 1], perm_b=[0, 2, 1]), (1, 1)),
])
def test_matmul_transpose(opt, kw, flags):
    m = mm_model(opt, **kw)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    node = fused(sess)
    assert opt.ops(sess) == {"FusedMatMul": 1}
    assert (node.attrs["transA"], node.attrs["transB"]) == flags and node.inputs == ["a", "b"]


def test_transpose_and_scale_together(opt):
    m = mm_model(opt, perm_b=[0, 2, 1], post="Div", k_value=8.0)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    node = fused(sess)
    assert node.attrs["transB"] == 1 and node.attrs["alpha"] == pytest.approx(0.125)


def test_idempotent(opt):
    for cls, kw in ((MatMulScaleFusion, dict(post="Mul")), (MatmulTransposeFusion, dict(perm_a=[0, 2, 1]))):
        ctx = placed(opt, mm_model(opt, **kw))
        assert cls().apply(ctx)
        assert not cls().apply(ctx)


@pytest.mark.parametrize("kw", [
    dict(perm_a=[1, 0, 2]),                 # not a swap of the last two axes
    dict(pre_a="Mul", k_value=None),        # a vector, not a scalar
    dict(post="Mul", extra_out="mm"),       # the MatMul output is a graph output
    dict(pre_a="Mul", extra_out="sa"),      # the scaled input is read elsewhere
])
def test_left_alone(opt, kw):
    m = mm_model(opt, **kw)
    ctx = placed(opt, m)
    assert not MatMulScaleFusion().apply(ctx) and not MatmulTransposeFusion().apply(ctx)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    assert "FusedMatMul" not in opt.ops(sess)


def test_integer_matmul_left_alone(opt):
    n = [opt.node("Transpose", ["a"], ["t"], perm=[1, 0]), opt.node("MatMul", ["t", "b"], ["y"])]
    m = opt.model(n, [opt.tensor("a", np.int32, [3, 2]), opt.tensor("b", np.int32, [3, 4])],
                  [opt.tensor("y", np.int32, [2, 4])])
    assert not MatmulTransposeFusion().apply(placed(opt, m))


def test_disabled(opt):
    m = mm_model(opt, perm_a=[0, 2, 1], post="Mul")
    sess = opt.session(m, "all", disabled=["MatMulScaleFusion", "MatmulTransposeFusion"])
    assert opt.ops(sess) == {"Transpose": 1, "MatMul": 1, "Mul": 1}
    sess = opt.session(m, "all", disabled=["MatMulScaleFusion"])
    assert opt.ops(sess) == {"FusedMatMul": 1, "Mul": 1}
