"""NoopElimination (ortlite/optimizer/eliminate_noop.py)."""
import numpy as np
import pytest

from ortlite.optimizer.eliminate_noop import NoopElimination

F = np.float32
X = np.linspace(-2, 2, 24, dtype=F).reshape(2, 3, 4)


def _wrap(opt, node, inits=None, x_shape=(2, 3, 4), dtype=F, y_dtype=None):
    """x -> Relu -> r -> node(r, ...) -> o -> Neg -> y."""
    nodes = [opt.node("Relu", ["x"], ["r"]), node, opt.node("Neg", ["o"], ["y"])]
    ins = [opt.tensor("x", dtype, list(x_shape))]
    return opt.model(nodes, ins, [opt.tensor("y", y_dtype or dtype, None)], inits or {})


CASES = [
    ("Add", ["r", "c"], {"c": np.zeros((), F)}, {}),
    ("Add", ["c", "r"], {"c": np.zeros((1, 4), F)}, {}),
    ("Sub", ["r", "c"], {"c": np.zeros((3, 1), F)}, {}),
    ("Mul", ["c", "r"], {"c": np.ones((1,), F)}, {}),
    ("Mul", ["r", "c"], {"c": np.ones((2, 3, 4), F)}, {}),
    ("Div", ["r", "c"], {"c": np.ones((), F)}, {}),
    ("Pad", ["r", "p"], {"p": np.zeros(6, np.int64)}, {"mode": "reflect"}),
    ("Slice", ["r", "s", "e"], {"s": np.array([0, 0], np.int64), "e": np.array([2**63 - 1, 4], np.int64)}, {}),
    ("Slice", ["r", "s", "e", "a", "st"], {"s": np.array([-3], np.int64), "e": np.array([3], np.int64),
                                           "a": np.array([-2], np.int64), "st": np.array([1], np.int64)}, {}),
    ("Expand", ["r", "sh"], {"sh": np.array([3, 1], np.int64)}, {}),
    ("Cast", ["r"], {}, {"to": 1}),
]


@pytest.mark.parametrize("op,ins,inits,attrs", CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(CASES)])
def test_noop_removed(opt, op, ins, inits, attrs):
    m = _wrap(opt, opt.node(op, ins, ["o"], **attrs), inits)
    ctx, first, second = opt.run_pass(NoopElimination, m)
    assert first and not second
    assert op not in opt.ops(ctx.graph)
    sess = opt.check(m, {"x": X}, rtol=0, atol=0)
    assert op not in opt.ops(sess)


NOT_NOOP = [
    ("Add", ["r", "c"], {"c": np.full((), 1e-30, F)}, {}),  # not zero
    ("Sub", ["c", "r"], {"c": np.zeros((), F)}, {}),  # 0 - x
    ("Div", ["c", "r"], {"c": np.ones((), F)}, {}),  # 1 / x
    ("Add", ["r", "c"], {"c": np.zeros((1, 1, 1, 1), F)}, {}),  # broadcasting adds a dim
    ("Mul", ["r", "c"], {"c": np.ones((2, 1, 4), F)}, {"_x_shape": (2, 1, 4)}),  # fine...
    ("Mul", ["r", "c"], {"c": np.ones((3, 4), F)}, {"_x_shape": (2, 1, 4)}),  # ...but this grows x
    ("Pad", ["r", "p"], {"p": np.array([0, 0, 0, 0, 0, 1], np.int64)}, {}),
    ("Slice", ["r", "s", "e"], {"s": np.array([1], np.int64), "e": np.array([2**63 - 1], np.int64)}, {}),
    ("Slice", ["r", "s", "e"], {"s": np.array([0], np.int64), "e": np.array([1], np.int64)}, {}),
    ("Expand", ["r", "sh"], {"sh": np.array([2, 2, 3, 4], np.int64)}, {}),
    ("Cast", ["r"], {}, {"to": 11}),
]


@pytest.mark.parametrize("op,ins,inits,attrs", NOT_NOOP, ids=[f"{c[0]}{i}" for i, c in enumerate(NOT_NOOP)])
def test_not_noop_kept(opt, op, ins, inits, attrs):
    attrs = dict(attrs)
    x_shape = attrs.pop("_x_shape", (2, 3, 4))
    y_dtype = np.float64 if op == "Cast" else F
    m = _wrap(opt, opt.node(op, ins, ["o"], **attrs), inits, x_shape=x_shape, y_dtype=y_dtype)
    ctx, first, _ = opt.run_pass(NoopElimination, m)
    x = np.linspace(-2, 2, int(np.prod(x_shape)), dtype=F).reshape(x_shape)
    if op == "Mul" and inits["c"].shape == x_shape:
        assert first
    else:
        assert not first and opt.ops(ctx.graph)[op] == 1
    opt.check(m, {"x": x}, rtol=0, atol=0)


def test_symbolic_shape(opt):
    # Expand to [1, 1] and Add of a [1] zero keep a [B, S] input's shape; a [4] constant may not
    nodes = [
        opt.node("Expand", ["x", "sh"], ["a"]),
        opt.node("Add", ["a", "z1"], ["b"]),
        opt.node("Mul", ["b", "o4"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, ["B", "S"])], [opt.tensor("y", F, None)],
                  {"sh": np.array([1, 1], np.int64), "z1": np.zeros(1, F), "o4": np.ones(4, F)})
    ctx, first, second = opt.run_pass(NoopElimination, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Mul": 1}
    opt.check(m, {"x": np.ones((3, 4), F)})


def test_noop_between_input_and_output(opt):
    # int Add of 0 goes; the same-type Cast then copies graph input x to graph output y: kept
    nodes = [opt.node("Add", ["x", "z"], ["a"]), opt.node("Cast", ["a"], ["y"], to=7)]
    m = opt.model(nodes, [opt.tensor("x", np.int64, [3])], [opt.tensor("y", np.int64, [3])],
                  {"z": np.zeros((), np.int64)})
    ctx, first, _ = opt.run_pass(NoopElimination, m)
    assert first
    # the Cast's input is now x (int64), but it produces the graph output y from a graph input:
    # it stays as the copy between the two names
    assert opt.ops(ctx.graph) == {"Cast": 1}
    opt.check(m, {"x": np.array([1, -2, 3], np.int64)})


def test_noop_producing_graph_output(opt):
    nodes = [opt.node("Relu", ["x"], ["r"]), opt.node("Mul", ["r", "one"], ["y"])]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3, 4])], [opt.tensor("y", F, [2, 3, 4])], {"one": np.ones((), F)})
    sess = opt.check(m, {"x": X})
    assert opt.ops(sess) == {"Relu": 1}
    # the x -> y copy stays when the noop reads the graph input
    m2 = opt.model([opt.node("Mul", ["x", "one"], ["y"])], [opt.tensor("x", F, [2, 3, 4])],
                   [opt.tensor("y", F, [2, 3, 4])], {"one": np.ones((), F)})
    assert opt.ops(opt.check(m2, {"x": X})) == {"Mul": 1}


def test_unsqueeze_squeeze_pairs(opt):
    nodes = [
        opt.node("Relu", ["x"], ["r"]),
        opt.node("Unsqueeze", ["r", "a1"], ["u"]),
        opt.node("Squeeze", ["u", "a1n"], ["s"]),  # axes [1, -1] normalized = [1, 4] on rank 5
        opt.node("Squeeze", ["s", "a0"], ["q"]),  # x dim 0 is 1: Squeeze/Unsqueeze cancels
        opt.node("Unsqueeze", ["q", "a0"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [1, 3, 4])], [opt.tensor("y", F, [1, 3, 4])],
                  {"a1": np.array([1, 4], np.int64), "a1n": np.array([1, -1], np.int64), "a0": np.array([0], np.int64)})
    ctx, first, second = opt.run_pass(NoopElimination, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Relu": 1}
    assert ctx.graph.nodes[0].outputs == ["y"]
    sess = opt.check(m, {"x": X[:1]})
    assert opt.ops(sess) == {"Relu": 1}
    assert opt.ops(opt.session(m, "all", disabled=["NoopElimination"]))["Squeeze"] == 2


def test_unsqueeze_squeeze_not_cancelling(opt):
    nodes = [
        opt.node("Unsqueeze", ["x", "a1"], ["u"]),
        opt.node("Squeeze", ["u", "a2"], ["s"]),  # different axes
        opt.node("Squeeze", ["x"], ["q"]),  # no axes: x's symbolic dim may be 1
        opt.node("Unsqueeze", ["q", "a0"], ["q2"]),
        opt.node("Add", ["s", "q2"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [1, "N"])], [opt.tensor("y", F, None)],
                  {"a1": np.array([0], np.int64), "a2": np.array([1], np.int64), "a0": np.array([0], np.int64)})
    ctx, first, _ = opt.run_pass(NoopElimination, m)
    assert not first
    opt.check(m, {"x": np.ones((1, 3), F)})


def test_unsqueeze_with_other_reader(opt):
    # the Unsqueeze has a second reader: only the Squeeze goes
    nodes = [
        opt.node("Unsqueeze", ["x", "a"], ["u"]),
        opt.node("Squeeze", ["u", "a"], ["s"]),
        opt.node("Neg", ["s"], ["y1"]),
        opt.node("Neg", ["u"], ["y2"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3])], [opt.tensor("y1", F, [2, 3]), opt.tensor("y2", F, [1, 2, 3])],
                  {"a": np.array([0], np.int64)})
    ctx, first, second = opt.run_pass(NoopElimination, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Unsqueeze": 1, "Neg": 2}
    opt.check(m, {"x": X[0, :2, :3].copy()})


def test_old_opset_attribute_forms(opt):
    nodes = [
        opt.node("Relu", ["x"], ["r"]),
        opt.node("Unsqueeze", ["r"], ["u"], axes=[0]),
        opt.node("Squeeze", ["u"], ["s"], axes=[0]),
        opt.node("Pad", ["s"], ["p"], pads=[0, 0, 0, 0, 0, 0]),
        opt.node("Slice", ["p"], ["o"], starts=[0], ends=[1000], axes=[2]),
        opt.node("Neg", ["o"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3, 4])], [opt.tensor("y", F, [2, 3, 4])], opset=9)
    ctx, first, second = opt.run_pass(NoopElimination, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Relu": 1, "Neg": 1}
    opt.check(m, {"x": X})


def test_cast_int_same_type(opt):
    nodes = [opt.node("Abs", ["x"], ["a"]), opt.node("Cast", ["a"], ["c"], to=6), opt.node("Neg", ["c"], ["y"])]
    m = opt.model(nodes, [opt.tensor("x", np.int32, [4])], [opt.tensor("y", np.int32, [4])])
    assert opt.ops(opt.check(m, {"x": np.array([1, -2, 3, -4], np.int32)})) == {"Abs": 1, "Neg": 1}
