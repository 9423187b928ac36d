"""GeluFusion / FastGeluFusion (ortlite/optimizer/fuse_gelu.py)."""
import math

import numpy as np
import pytest
from onnx import numpy_helper

from ortlite.optimizer.fuse_gelu import FastGeluFusion, GeluFusion
from ortlite.partition import assign

F = np.float32


def placed(opt, m):
    """A PassContext on ``m`` with every node placed (extended passes need providers)."""
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def _c(opt, name, v):
    return opt.node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, F)))


def erf_model(opt, order="bert", extra_output=None, half=0.5, div=True):
    """x * 0.5 * (1 + erf(x / sqrt2)) in one of torch's orderings."""
    n = [_c(opt, "k", 1.4142135381698608 if div else 1 / math.sqrt(2)), _c(opt, "one", 1.0), _c(opt, "half", half),
         opt.node("Div" if div else "Mul", ["x", "k"], ["s"]), opt.node("Erf", ["s"], ["e"]),
         opt.node("Add", ["e", "one"], ["a"])]
    if order == "bert":  # (x * (1 + erf)) * 0.5
        n += [opt.node("Mul", ["x", "a"], ["m"]), opt.node("Mul", ["m", "half"], ["y"])]
    elif order == "half_first":  # (x * 0.5) * (1 + erf)
        n += [opt.node("Mul", ["x", "half"], ["m"]), opt.node("Mul", ["m", "a"], ["y"])]
    elif order == "half_last":  # x * ((1 + erf) * 0.5)
        n += [opt.node("Mul", ["a", "half"], ["m"]), opt.node("Mul", ["x", "m"], ["y"])]
    outs = [opt.tensor("y", F, [2, 8])] + ([opt.tensor(extra_output, F, [2, 8])] if extra_output else [])
    return opt.model(n, [opt.tensor("x", F, [2, 8])], outs)


def tanh_model(opt, cube="pow", c3=0.044715):
    n = [_c(opt, "h", 0.5), _c(opt, "c3", c3), _c(opt, "k", math.sqrt(2 / math.pi)), _c(opt, "one", 1.0),
         _c(opt, "three", 3.0),
         opt.node("Mul", ["h", "x"], ["half"])]
    if cube == "pow":
        n.append(opt.node("Pow", ["x", "three"], ["cube"]))
    else:
        n += [opt.node("Mul", ["x", "x"], ["sq"]), opt.node("Mul", ["sq", "x"], ["cube"])]
    n += [opt.node("Mul", ["c3", "cube"], ["cs"]), opt.node("Add", ["x", "cs"], ["inner"]),
          opt.node("Mul", ["k", "inner"], ["ti"]), opt.node("Tanh", ["ti"], ["t"]),
          opt.node("Add", ["one", "t"], ["a"]), opt.node("Mul", ["half", "a"], ["y"])]
    return opt.model(n, [opt.tensor("x", F, [2, 8])], [opt.tensor("y", F, [2, 8])])


def feeds(opt):
    return {"x": (opt.rng.standard_normal((2, 8)) * 2).astype(F)}


@pytest.mark.parametrize("order", ["bert", "half_first", "half_last"])
@pytest.mark.parametrize("div", [True, False])
def test_erf_gelu_fused(opt, order, div):
    m = erf_model(opt, order, div=div)
    sess = opt.check(m, feeds(opt), rtol=1e-5, atol=1e-6)
    assert opt.ops(sess) == {"Gelu": 1}
    assert sess._graph.nodes[0].outputs == ["y"]


def test_gelu_idempotent_and_direct(opt):
    ctx = placed(opt, erf_model(opt))
    assert GeluFusion().apply(ctx)
    assert not GeluFusion().apply(ctx)
    assert opt.ops(ctx.graph) == {"Gelu": 1}


def test_gelu_left_alone(opt):
    # an intermediate that is a graph output, and a wrong constant
    for m in (erf_model(opt, extra_output="e"), erf_model(opt, half=0.6)):
        ctx = placed(opt, m)
        assert not GeluFusion().apply(ctx)
        assert "Erf" in opt.ops(ctx.graph)
        assert "Gelu" not in opt.ops(opt.check(m, feeds(opt)))


def test_gelu_unplaced_nodes_not_fused(opt):
    ctx = opt.context(erf_model(opt))  # no provider: no kernel to check against
    assert not GeluFusion().apply(ctx)


def test_gelu_disabled(opt):
    sess = opt.session(erf_model(opt), "all", disabled=["GeluFusion"])
    assert opt.ops(sess)["Erf"] == 1 and "Gelu" not in opt.ops(sess)
    assert "Gelu" not in opt.ops(opt.session(erf_model(opt), "basic"))


@pytest.mark.parametrize("cube", ["pow", "mul"])
def test_fast_gelu_fused(opt, cube):
    m = tanh_model(opt, cube)
    sess = opt.check(m, feeds(opt), rtol=1e-5, atol=1e-6)
    assert opt.ops(sess) == {"FastGelu": 1}
    ctx = placed(opt, m)
    assert FastGeluFusion().apply(ctx) and not FastGeluFusion().apply(ctx)


def test_fast_gelu_left_alone(opt):
    m = tanh_model(opt, c3=0.05)
    assert not FastGeluFusion().apply(placed(opt, m))
    sess = opt.check(m, feeds(opt))
    assert "FastGelu" not in opt.ops(sess)
    assert "Tanh" in opt.ops(opt.session(tanh_model(opt), "all", disabled=["FastGeluFusion"]))
