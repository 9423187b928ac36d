"""ConvAddFusion and ConvMulFusion (ortlite/optimizer/fold_conv_add_mul.py)."""
import numpy as np
import pytest

from ortlite.optimizer.fold_conv_add_mul import ConvAddFusion, ConvMulFusion

F = np.float32
RNG = np.random.default_rng(5)
W = RNG.standard_normal((4, 3, 3, 3)).astype(F)
B = RNG.standard_normal(4).astype(F)
X = RNG.standard_normal((2, 3, 6, 6)).astype(F)


def _model(opt, op, c, bias=True, c_first=False, extra=None, y_shape=(2, 4, 6, 6)):
    inits = {"W": W, "c": c}
    if bias:
        inits["B"] = B
    ins = ["z", "c"] if not c_first else ["c", "z"]
    nodes = [
        opt.node("Conv", ["x", "W"] + (["B"] if bias else []), ["z"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        opt.node(op, ins, ["y"]),
    ]
    outs = [opt.tensor("y", F, list(y_shape) if y_shape else None)]
    if extra:
        nodes.append(opt.node("Relu", ["z"], ["r"]))
        outs.append(opt.tensor("r", F, [2, 4, 6, 6]))
    return opt.model(nodes, [opt.tensor("x", F, [2, 3, 6, 6])], outs, inits)


SHAPES = [(4, 1, 1), (1, 4, 1, 1), (), (1,), (1, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("op,cls", [("Add", ConvAddFusion), ("Mul", ConvMulFusion)])
@pytest.mark.parametrize("bias", [True, False])
def test_folded(opt, op, cls, shape, bias):
    c = RNG.uniform(0.5, 2.0, shape).astype(F)
    m = _model(opt, op, c, bias=bias, c_first=(len(shape) % 2 == 1))
    ctx, first, second = opt.run_pass(cls, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Conv": 1}
    assert ctx.graph.nodes[0].outputs == ["y"]
    sess = opt.check(m, {"x": X}, rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"Conv": 1}


@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_disable(opt, op):
    m = _model(opt, op, np.full((4, 1, 1), 2.0, F))
    assert opt.ops(opt.session(m, disabled=["ConvAddFusion", "ConvMulFusion"]))[op] == 1


@pytest.mark.parametrize("op,cls", [("Add", ConvAddFusion), ("Mul", ConvMulFusion)])
@pytest.mark.parametrize("case", ["spatial", "rank_grows", "other_reader", "fed_c", "nonfinite"])
def test_preconditions(opt, op, cls, case):
    c = {
        "spatial": RNG.standard_normal((4, 6, 6)).astype(F),  # varies over space: not a per-channel op
        "rank_grows": RNG.standard_normal((1, 1, 4, 1, 1)).astype(F),
        "other_reader": np.full((4, 1, 1), 2.0, F),
        "fed_c": np.full((4, 1, 1), 2.0, F),
        "nonfinite": np.array([1, np.inf, 1, 1], F).reshape(4, 1, 1),
    }[case]
    m = _model(opt, op, c, extra=(case == "other_reader"), y_shape=None)
    if case == "fed_c":
        m.graph.input.append(opt.tensor("c", F, [4, 1, 1]))
    ctx, first, _ = opt.run_pass(cls, m)
    assert not first
    assert opt.ops(ctx.graph)[op] == 1
    if case != "nonfinite":
        opt.check(m, {"x": X}, rtol=1e-5, atol=1e-5)


def test_add_then_mul_chain(opt):
    nodes = [
        opt.node("Conv", ["x", "W", "B"], ["z"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        opt.node("Add", ["z", "a"], ["z2"]),
        opt.node("Mul", ["m", "z2"], ["y"]),
    ]
    inits = {"W": W, "B": B, "a": RNG.standard_normal((1, 4, 1, 1)).astype(F),
             "m": RNG.uniform(1, 2, (4, 1, 1)).astype(F)}
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3, 6, 6])], [opt.tensor("y", F, [2, 4, 6, 6])], inits)
    sess = opt.check(m, {"x": X}, rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"Conv": 1}


def test_conv1d_and_grouped(opt):
    w = RNG.standard_normal((6, 2, 3)).astype(F)  # 1-D conv, group 2
    nodes = [
        opt.node("Conv", ["x", "w"], ["z"], group=2, kernel_shape=[3]),
        opt.node("Mul", ["z", "c"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [1, 4, 8])], [opt.tensor("y", F, [1, 6, 6])],
                  {"w": w, "c": RNG.uniform(1, 2, (6, 1)).astype(F)})
    sess = opt.check(m, {"x": RNG.standard_normal((1, 4, 8)).astype(F)}, rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"Conv": 1}
