"""CommonSubexpressionElimination (ortlite/optimizer/common_subexpression.py)."""
import numpy as np
from onnx import helper

from ortlite.optimizer.common_subexpression import CommonSubexpressionElimination as CSE

F = np.float32


def _torch_like(opt):
    """Two Shape -> Gather(const 1) -> Unsqueeze chains on the same input (constants equal by
    value, different names), plus a Relu computed twice: each pair collapses."""
    nodes = [
        opt.node("Shape", ["x"], ["s1"]),
        opt.node("Gather", ["s1", "i1"], ["g1"], axis=0),
        opt.node("Unsqueeze", ["g1", "ax1"], ["u1"]),
        opt.node("Shape", ["x"], ["s2"]),
        opt.node("Gather", ["s2", "i2"], ["g2"], axis=0),
        opt.node("Unsqueeze", ["g2", "ax2"], ["u2"]),
        opt.node("Concat", ["u1", "u2"], ["shape"], axis=0),
        opt.node("Relu", ["x"], ["r1"]),
        opt.node("Relu", ["x"], ["r2"]),
        opt.node("Add", ["r1", "r2"], ["a"]),
        opt.node("Reshape", ["a", "shape"], ["y"]),
    ]
    inits = {"i1": np.array(1, np.int64), "i2": np.array(1, np.int64),
             "ax1": np.array([0], np.int64), "ax2": np.array([0], np.int64)}
    return opt.model(nodes, [opt.tensor("x", F, ["N", "N"])], [opt.tensor("y", F, None)], inits)


def test_chains_collapse(opt):
    m = _torch_like(opt)
    ctx, first, second = opt.run_pass(CSE, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Shape": 1, "Gather": 1, "Unsqueeze": 1, "Concat": 1, "Relu": 1, "Add": 1,
                                  "Reshape": 1}
    concat = [n for n in ctx.graph.nodes if n.op_type == "Concat"][0]
    assert concat.inputs[0] == concat.inputs[1]
    x = np.linspace(-1, 1, 9, dtype=F).reshape(3, 3)
    sess = opt.check(m, {"x": x})
    assert opt.ops(sess)["Shape"] == 1
    assert opt.ops(opt.session(m, "all", disabled=["CommonSubexpressionElimination"]))["Shape"] == 2


def test_different_attributes_or_inputs_kept(opt):
    nodes = [
        opt.node("Softmax", ["x"], ["a"], axis=0),
        opt.node("Softmax", ["x"], ["b"], axis=1),
        opt.node("Sub", ["x", "c"], ["c1"]),
        opt.node("Sub", ["c", "x"], ["c2"]),  # operand order matters
        opt.node("Mul", ["x", "w1"], ["m1"]),
        opt.node("Mul", ["x", "w2"], ["m2"]),  # same shape, different values
        opt.node("Sum", ["a", "b", "c1", "c2", "m1", "m2"], ["y"]),
    ]
    inits = {"c": np.ones((), F), "w1": np.array([1, 2], F), "w2": np.array([1, 3], F)}
    m = opt.model(nodes, [opt.tensor("x", F, [2, 2])], [opt.tensor("y", F, [2, 2])], inits)
    ctx, first, _ = opt.run_pass(CSE, m)
    assert not first
    opt.check(m, {"x": np.array([[1, 2], [3, 4]], F)})


def test_random_and_subgraph_nodes_kept(opt):
    then_g = helper.make_graph([opt.node("Neg", ["x"], ["t"])], "then", [], [opt.tensor("t", F, [2])])
    else_g = helper.make_graph([opt.node("Abs", ["x"], ["e"])], "else", [], [opt.tensor("e", F, [2])])
    nodes = [
        opt.node("RandomUniformLike", ["x"], ["r1"], seed=1.0),
        opt.node("RandomUniformLike", ["x"], ["r2"], seed=1.0),
        opt.node("If", ["c"], ["i1"], then_branch=then_g, else_branch=else_g),
        opt.node("If", ["c"], ["i2"], then_branch=then_g, else_branch=else_g),
        opt.node("Sum", ["r1", "r2", "i1", "i2"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2]), opt.tensor("c", np.bool_, [])], [opt.tensor("y", F, [2])])
    ctx, first, _ = opt.run_pass(CSE, m)
    assert not first
    assert opt.ops(ctx.graph) == {"RandomUniformLike": 2, "If": 2, "Sum": 1}


def test_graph_outputs(opt):
    # the second Neg produces a graph output: it is kept and the first one's reader moves to it
    nodes = [
        opt.node("Neg", ["x"], ["n1"]),
        opt.node("Exp", ["n1"], ["e"]),
        opt.node("Neg", ["x"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [3])], [opt.tensor("e", F, [3]), opt.tensor("y", F, [3])])
    ctx, first, second = opt.run_pass(CSE, m)
    assert first and not second
    assert [n.op_type for n in ctx.graph.nodes] == ["Neg", "Exp"]
    assert ctx.graph.nodes[0].outputs == ["y"] and ctx.graph.nodes[1].inputs == ["y"]
    opt.check(m, {"x": np.array([-1, 0, 2], F)})
    # both produce graph outputs: both stay
    m2 = opt.model([opt.node("Neg", ["x"], ["a"]), opt.node("Neg", ["x"], ["b"])], [opt.tensor("x", F, [3])],
                   [opt.tensor("a", F, [3]), opt.tensor("b", F, [3])])
    ctx, first, _ = opt.run_pass(CSE, m2)
    assert not first
    opt.check(m2, {"x": np.array([-1, 0, 2], F)})


def test_reader_in_subgraph(opt):
    # a duplicate read by an If branch from the outer scope: the branch is renamed too
    then_g = helper.make_graph([opt.node("Neg", ["b"], ["t"])], "then", [], [opt.tensor("t", F, [2])])
    else_g = helper.make_graph([opt.node("Abs", ["b"], ["e"])], "else", [], [opt.tensor("e", F, [2])])
    nodes = [
        opt.node("Exp", ["x"], ["a"]),
        opt.node("Exp", ["x"], ["b"]),
        opt.node("If", ["c"], ["i"], then_branch=then_g, else_branch=else_g),
        opt.node("Add", ["a", "i"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2]), opt.tensor("c", np.bool_, [])], [opt.tensor("y", F, [2])])
    for c in (True, False):
        sess = opt.check(m, {"x": np.array([0.5, -1], F), "c": np.array(c)})
        assert opt.ops(sess)["Exp"] == 1


def test_multi_output_nodes(opt):
    nodes = [
        opt.node("TopK", ["x", "k"], ["v1", "i1"], axis=-1),
        opt.node("TopK", ["x", "k"], ["v2", "i2"], axis=-1),
        opt.node("Add", ["v1", "v2"], ["y"]),
        opt.node("Add", ["i1", "i2"], ["z"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 5])], [opt.tensor("y", F, [2, 2]), opt.tensor("z", np.int64, [2, 2])],
                  {"k": np.array([2], np.int64)})
    sess = opt.check(m, {"x": np.arange(10, dtype=F).reshape(2, 5)[:, ::-1].copy()})
    assert opt.ops(sess)["TopK"] == 1
