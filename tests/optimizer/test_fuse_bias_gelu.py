"""BiasGeluFusion (ortlite/optimizer/fuse_bias_gelu.py)."""
import math

import numpy as np
import pytest
from onnx import helper

from ortlite.optimizer.fuse_bias_gelu import BiasGeluFusion
from ortlite.partition import assign

F = np.float32
H = 8
MS = "com.microsoft"


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def contrib_model(opt, op="Gelu", bias_shape=(H,), add_out=False):
    """Add(bias, x) -> com.microsoft Gelu / FastGelu."""
    inits = {"bias": np.random.default_rng(4).standard_normal(bias_shape).astype(F)}
    n = [opt.node("Add", ["bias", "x"], ["a"]), opt.node(op, ["a"], ["y"], domain=MS)]
    outs = [opt.tensor("y", F, [2, 3, H])] + ([opt.tensor("a", F, [2, 3, H])] if add_out else [])
    m = opt.model(n, [opt.tensor("x", F, [2, 3, H])], outs, inits)
    m.opset_import.append(helper.make_opsetid(MS, 1))
    return m


def erf_model(opt):
    """Add(bias, x) then the erf GELU as torch exports it (GeluFusion runs first)."""
    inits = {"bias": np.random.default_rng(4).standard_normal(H).astype(F), "k": np.array(math.sqrt(2), F),
             "one": np.array(1.0, F), "half": np.array(0.5, F)}
    n = [opt.node("Add", ["bias", "x"], ["h"]), opt.node("Div", ["h", "k"], ["s"]), opt.node("Erf", ["s"], ["e"]),
         opt.node("Add", ["e", "one"], ["a"]), opt.node("Mul", ["h", "a"], ["m"]),
         opt.node("Mul", ["m", "half"], ["y"])]
    return opt.model(n, [opt.tensor("x", F, [2, 3, H])], [opt.tensor("y", F, [2, 3, H])], inits)


def feeds(opt):
    return {"x": opt.rng.standard_normal((2, 3, H)).astype(F)}


def test_bias_gelu_after_gelu_fusion(opt):
    sess = opt.check(erf_model(opt), feeds(opt), rtol=1e-5, atol=1e-6)
    assert opt.ops(sess) == {"BiasGelu": 1}
    node = sess._graph.nodes[0]
    assert node.inputs == ["x", "bias"] and node.outputs == ["y"]
    assert "BiasGelu" not in opt.ops(opt.session(erf_model(opt), "all", disabled=["BiasGeluFusion"]))


@pytest.mark.parametrize("op,fused", [("Gelu", "BiasGelu"), ("FastGelu", "FastGelu")])
def test_bias_gelu_direct(opt, op, fused):
    m = contrib_model(opt, op)
    ctx = placed(opt, m)
    assert BiasGeluFusion().apply(ctx)
    assert not BiasGeluFusion().apply(ctx)
    assert [(n.op_type, n.inputs) for n in ctx.graph.nodes] == [(fused, ["x", "bias"])]
    ref = opt.session(m, "disable").run(None, f := feeds(opt))[0]
    got = opt.session(m, "all").run(None, f)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(bias_shape=(3, H)), dict(bias_shape=(1,)), dict(add_out=True)])
def test_bias_gelu_left_alone(opt, kw):
    m = contrib_model(opt, **kw)
    ctx = placed(opt, m)
    assert not BiasGeluFusion().apply(ctx)
    assert opt.ops(ctx.graph) == {"Add": 1, "Gelu": 1}
