"""RemoveUnused (ortlite/optimizer/remove_unused.py)."""
import numpy as np
from onnx import helper

from ortlite.optimizer.remove_unused import RemoveUnused

F = np.float32


def _model(opt):
    nodes = [
        opt.node("Relu", ["x"], ["r"]),
        opt.node("Exp", ["r"], ["dead1"]),  # a dead chain
        opt.node("Mul", ["dead1", "w_dead"], ["dead2"]),
        opt.node("TopK", ["r", "k"], ["v", "i"]),  # indices unused: the node stays (values used)
        opt.node("Add", ["v", "w"], ["y"]),
    ]
    inits = {"w": np.ones(2, F), "w_dead": np.ones(4, F), "k": np.array([2], np.int64), "unread": np.zeros(3, F)}
    return opt.model(nodes, [opt.tensor("x", F, [4])], [opt.tensor("y", F, [2])], inits)


def test_dead_nodes_and_constants(opt):
    m = _model(opt)
    ctx, first, second = opt.run_pass(RemoveUnused, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Relu": 1, "TopK": 1, "Add": 1}
    assert set(ctx.constants) == {"w", "k"}
    sess = opt.check(m, {"x": np.array([3, -1, 2, 5], F)})
    assert opt.ops(sess) == {"Relu": 1, "TopK": 1, "Add": 1}
    assert "w_dead" not in sess._plan.slot_of
    kept = opt.session(m, disabled=["RemoveUnused"])
    assert opt.ops(kept)["Exp"] == 1


def test_extended_level_too(opt):
    # runs after partitioning (every node has a provider) as well
    m = _model(opt)
    sess = opt.check(m, {"x": np.array([3, -1, 2, 5], F)}, level="extended")
    assert "Exp" not in opt.ops(sess)


def test_outputs_fed_and_subgraph_reads_kept(opt):
    then_g = helper.make_graph([opt.node("Add", ["a", "w_then"], ["t"])], "then", [], [opt.tensor("t", F, [2])])
    else_g = helper.make_graph([opt.node("Neg", ["a"], ["e"])], "else", [], [opt.tensor("e", F, [2])])
    nodes = [
        opt.node("Abs", ["x"], ["a"]),
        opt.node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    inits = {"w_then": np.ones(2, F), "const_out": np.full(2, 7, F), "over": np.zeros(2, F)}
    m = opt.model(nodes, [opt.tensor("x", F, [2]), opt.tensor("c", np.bool_, []), opt.tensor("over", F, [2])],
                  [opt.tensor("y", F, [2]), opt.tensor("const_out", F, [2])], inits)
    ctx, first, _ = opt.run_pass(RemoveUnused, m)
    assert not first  # Abs is read by the branches; w_then by then; const_out is an output; over is fed
    assert set(ctx.constants) == {"w_then", "const_out"}
    for c in (True, False):
        sess = opt.check(m, {"x": np.array([-1, 2], F), "c": np.array(c)})
        assert opt.ops(sess) == {"Abs": 1, "If": 1}


def test_custom_domain_kept(opt):
    nodes = [opt.node("Relu", ["x"], ["y"]), opt.node("Thing", ["x"], ["unused"], domain="my.custom")]
    m = opt.model(nodes, [opt.tensor("x", F, [2])], [opt.tensor("y", F, [2])])
    m.opset_import.append(helper.make_opsetid("my.custom", 1))
    ctx, first, _ = opt.run_pass(RemoveUnused, m)
    assert not first and opt.ops(ctx.graph)["Thing"] == 1


def test_subgraph_dead_nodes(opt):
    # the body's own dead node goes when the body is compiled
    then_g = helper.make_graph([opt.node("Neg", ["x"], ["t"]), opt.node("Exp", ["x"], ["dead"])], "then", [],
                              [opt.tensor("t", F, [2])])
    else_g = helper.make_graph([opt.node("Abs", ["x"], ["e"])], "else", [], [opt.tensor("e", F, [2])])
    m = opt.model([opt.node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                  [opt.tensor("x", F, [2]), opt.tensor("c", np.bool_, [])], [opt.tensor("y", F, [2])])
    sess = opt.check(m, {"x": np.array([-1, 2], F), "c": np.array(True)})
    node = sess._graph.nodes[0]
    assert [n.op_type for n in node.subgraphs["then_branch"].nodes] == ["Neg"]
