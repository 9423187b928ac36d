"""EliminateIdentity and EliminateDropout (ortlite/optimizer/eliminate_identity.py)."""
import numpy as np
from onnx import TensorProto, helper

from ortlite.optimizer.eliminate_identity import EliminateDropout, EliminateIdentity

F = np.float32


def _identity_model(opt, out_is_identity=False):
    # x -> Relu -> r -> Identity -> i -> Neg -> y (and optionally i is itself a graph output)
    nodes = [
        opt.node("Relu", ["x"], ["r"], name="relu"),
        opt.node("Identity", ["r"], ["i"], name="id"),
        opt.node("Neg", ["i"], ["y"], name="neg"),
    ]
    outs = [opt.tensor("y", F, [2, 3])] + ([opt.tensor("i", F, [2, 3])] if out_is_identity else [])
    return opt.model(nodes, [opt.tensor("x", F, [2, 3])], outs)


def test_identity_removed_and_idempotent(opt):
    ctx, first, second = opt.run_pass(EliminateIdentity, _identity_model(opt))
    assert first and not second
    assert opt.ops(ctx.graph) == {"Relu": 1, "Neg": 1}
    assert [n for n in ctx.graph.nodes if n.op_type == "Neg"][0].inputs == ["r"]


def test_identity_output_rewires_producer(opt):
    m = _identity_model(opt, out_is_identity=True)
    ctx, first, second = opt.run_pass(EliminateIdentity, m)
    assert first and not second
    relu = [n for n in ctx.graph.nodes if n.op_type == "Relu"][0]
    assert relu.outputs == ["i"]  # the graph output keeps its name
    x = np.arange(6, dtype=F).reshape(2, 3) - 2
    sess = opt.check(m, {"x": x})
    assert "Identity" not in opt.ops(sess)


def test_identity_of_graph_input_to_output_kept(opt):
    # the input and the output are both named: the Identity is the copy between them
    m = opt.model([opt.node("Identity", ["x"], ["y"])], [opt.tensor("x", F, [2])], [opt.tensor("y", F, [2])])
    ctx, first, _ = opt.run_pass(EliminateIdentity, m)
    assert not first and opt.ops(ctx.graph) == {"Identity": 1}
    opt.check(m, {"x": np.ones(2, F)})


def test_identity_between_two_outputs_kept(opt):
    nodes = [opt.node("Relu", ["x"], ["r"]), opt.node("Identity", ["r"], ["y"])]
    m = opt.model(nodes, [opt.tensor("x", F, [2])], [opt.tensor("r", F, [2]), opt.tensor("y", F, [2])])
    ctx, first, _ = opt.run_pass(EliminateIdentity, m)
    assert not first
    opt.check(m, {"x": np.array([-1, 2], F)})


def test_identity_session_and_disable(opt):
    m = _identity_model(opt)
    x = np.linspace(-1, 1, 6, dtype=F).reshape(2, 3)
    assert "Identity" not in opt.ops(opt.check(m, {"x": x}))
    kept = opt.session(m, "all", disabled=["EliminateIdentity"])
    assert opt.ops(kept)["Identity"] == 1
    np.testing.assert_array_equal(kept.run(None, {"x": x})[0], -np.maximum(x, 0))


def test_identity_read_by_subgraph(opt):
    # If's branches read the Identity's output from the outer scope
    then_g = helper.make_graph([opt.node("Neg", ["i"], ["t"])], "then", [], [opt.tensor("t", F, [2])])
    else_g = helper.make_graph([opt.node("Abs", ["i"], ["e"])], "else", [], [opt.tensor("e", F, [2])])
    nodes = [
        opt.node("Relu", ["x"], ["r"]),
        opt.node("Identity", ["r"], ["i"]),
        opt.node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2]), opt.tensor("c", np.bool_, [])], [opt.tensor("y", F, [2])])
    x = np.array([-1, 3], F)
    for c in (True, False):
        sess = opt.check(m, {"x": x, "c": np.array(c)})
        assert "Identity" not in opt.ops(sess)


def _dropout_model(opt, opset=17, mask_out=False, training=None, mask_used=False):
    ins = ["r"]
    inits = {}
    inputs = [opt.tensor("x", F, [2, 3])]
    if training is not None:
        ins += ["ratio", "tm"]
        inits["ratio"] = np.array(0.5, F)
        if training == "fed":
            inputs.append(opt.tensor("tm", np.bool_, []))
        else:
            inits["tm"] = np.array(training)
    outs = ["d"] + (["mask"] if mask_out or mask_used else [])
    nodes = [opt.node("Relu", ["x"], ["r"]), opt.node("Dropout", ins, outs), opt.node("Neg", ["d"], ["y"])]
    outputs = [opt.tensor("y", F, [2, 3])]
    if mask_used:
        nodes.append(opt.node("Not", ["mask"], ["nm"]))
        outputs.append(opt.tensor("nm", np.bool_, [2, 3]))
    return opt.model(nodes, inputs, outputs, inits, opset=opset)


def test_dropout_removed(opt):
    for kw in ({}, {"mask_out": True}, {"training": False}):
        ctx, first, second = opt.run_pass(EliminateDropout, _dropout_model(opt, **kw))
        assert first and not second, kw
        assert "Dropout" not in opt.ops(ctx.graph)


def test_dropout_old_opsets(opt):
    x = np.linspace(-1, 1, 6, dtype=F).reshape(2, 3)
    for opset in (7, 10, 12):
        m = _dropout_model(opt, opset=opset)
        sess = opt.check(m, {"x": x})
        assert "Dropout" not in opt.ops(sess)


def test_dropout_kept_when_mask_used_or_training(opt):
    for kw in ({"mask_used": True}, {"training": True}, {"training": "fed"}):
        ctx, first, _ = opt.run_pass(EliminateDropout, _dropout_model(opt, **kw))
        assert not first, kw
        assert opt.ops(ctx.graph)["Dropout"] == 1


def test_dropout_session_and_disable(opt):
    m = _dropout_model(opt, training=False)
    x = np.linspace(-1, 1, 6, dtype=F).reshape(2, 3)
    assert "Dropout" not in opt.ops(opt.check(m, {"x": x}))
    assert opt.ops(opt.session(m, "all", disabled=["EliminateDropout"]))["Dropout"] == 1
    opt.check(_dropout_model(opt, mask_used=True), {"x": x}, onnxruntime=False)


def test_dropout_as_graph_output(opt):
    nodes = [opt.node("Relu", ["x"], ["r"]), opt.node("Dropout", ["r"], ["y"])]
    m = opt.model(nodes, [opt.tensor("x", F, [3])], [opt.tensor("y", F, [3])])
    sess = opt.check(m, {"x": np.array([-1, 0, 2], F)})
    assert opt.ops(sess) == {"Relu": 1}
    assert sess.get_outputs()[0].name == "y"


def test_identity_on_sequence(opt):
    seq = helper.make_tensor_sequence_value_info("s2", TensorProto.FLOAT, None)
    nodes = [
        opt.node("SequenceConstruct", ["x", "x"], ["s"]),
        opt.node("Identity", ["s"], ["s1"]),
        opt.node("SequenceLength", ["s1"], ["n"]),
        opt.node("Identity", ["s1"], ["s2"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2])], [opt.tensor("n", np.int64, []), seq])
    sess = opt.check(m, {"x": np.ones(2, F)}, onnxruntime=False)
    # the inner one goes; the one naming the output stays (its input has another reader)
    assert opt.ops(sess)["Identity"] == 1
