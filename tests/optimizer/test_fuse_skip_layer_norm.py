"""SkipLayerNormFusion (ortlite/optimizer/fuse_skip_layer_norm.py)."""
import numpy as np
import pytest

from ortlite.optimizer.fuse_skip_layer_norm import SkipLayerNormFusion
from ortlite.partition import assign

F = np.float32
H = 16


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def sln_model(opt, bias=None, sum_out=False, b_shape=("B", "S", H), rank=3, ln_mean=False):
    rng = np.random.default_rng(3)
    inits = {"g": rng.standard_normal(H).astype(F), "beta": rng.standard_normal(H).astype(F),
             "bias": rng.standard_normal(H).astype(F)}
    a_shape = ["B", "S", H][3 - rank:]
    b_shape = list(b_shape)[3 - rank:]
    if bias == "inner":  # Add(Add(bias, a), b): the Linear's bias before the residual
        n = [opt.node("Add", ["bias", "a"], ["ab"]), opt.node("Add", ["ab", "b"], ["s"])]
    elif bias == "outer":  # Add(Add(a, b), bias)
        n = [opt.node("Add", ["a", "b"], ["ab"]), opt.node("Add", ["ab", "bias"], ["s"])]
    else:
        n = [opt.node("Add", ["a", "b"], ["s"])]
    n.append(opt.node("LayerNormalization", ["s", "g", "beta"], ["y"] + (["mean"] if ln_mean else []),
                      axis=-1, epsilon=1e-6))
    outs = [opt.tensor("y", F, a_shape)]
    if sum_out:  # the residual sum read further on, as in a pre-norm block
        n.append(opt.node("Neg", ["s"], ["z"]))
        outs.append(opt.tensor("z", F, a_shape))
    if ln_mean:
        outs.append(opt.tensor("mean", F, None))
    ins = [opt.tensor("a", F, a_shape), opt.tensor("b", F, b_shape)]
    return opt.model(n, ins, outs, inits)


def feeds(opt, b_lead=2, rank=3):
    a = opt.rng.standard_normal((2, 3, H)).astype(F)
    b = opt.rng.standard_normal((b_lead, 3, H)).astype(F)
    return {"a": a[(0,) * (3 - rank)], "b": b[(0,) * (3 - rank)]}


@pytest.mark.parametrize("bias", [None, "inner", "outer"])
def test_skip_layer_norm_fused(opt, bias):
    m = sln_model(opt, bias)
    sess = opt.check(m, feeds(opt), rtol=1e-4, atol=1e-5)
    assert opt.ops(sess) == {"SkipLayerNormalization": 1}
    node = sess._graph.nodes[0]
    assert node.inputs[:2] == ["a", "b"] and node.outputs == ["y"]
    assert (len(node.inputs) == 5) == (bias is not None)
    assert node.attrs["epsilon"] == pytest.approx(1e-6)


def test_skip_layer_norm_sum_output(opt):
    m = sln_model(opt, "inner", sum_out=True)
    sess = opt.check(m, feeds(opt), rtol=1e-4, atol=1e-5)
    assert opt.ops(sess) == {"SkipLayerNormalization": 1, "Neg": 1}
    sln = [n for n in sess._graph.nodes if n.op_type == "SkipLayerNormalization"][0]
    assert sln.outputs == ["y", "", "", "s"]


def test_skip_layer_norm_broadcast_skip(opt):
    m = sln_model(opt, b_shape=(1, "S", H))
    sess = opt.check(m, feeds(opt, b_lead=1), rtol=1e-4, atol=1e-5)
    node = sess._graph.nodes[0]
    assert node.op_type == "SkipLayerNormalization" and node.inputs[:2] == ["a", "b"]
    # the [1, S, H] operand goes to `skip` whichever side of the Add it is on
    m2 = sln_model(opt, b_shape=(1, "S", H))
    m2.graph.node[0].input[:] = ["b", "a"]
    sess = opt.check(m2, feeds(opt, b_lead=1), rtol=1e-4, atol=1e-5)
    assert sess._graph.nodes[0].inputs[:2] == ["a", "b"]


def test_skip_layer_norm_idempotent(opt):
    ctx = placed(opt, sln_model(opt, "outer"))
    assert SkipLayerNormFusion().apply(ctx)
    assert not SkipLayerNormFusion().apply(ctx)


@pytest.mark.parametrize("kw", [dict(rank=2), dict(ln_mean=True)])
def test_skip_layer_norm_left_alone(opt, kw):
    m = sln_model(opt, **kw)
    assert not SkipLayerNormFusion().apply(placed(opt, m))
    sess = opt.check(m, feeds(opt, rank=kw.get("rank", 3)), rtol=1e-4, atol=1e-5)
    assert "SkipLayerNormalization" not in opt.ops(sess)


def test_skip_layer_norm_disabled(opt):
    sess = opt.session(sln_model(opt), "all", disabled=["SkipLayerNormFusion"])
    assert opt.ops(sess) == {"Add": 1, "LayerNormalization": 1}
