"""Profiling: onnxruntime's Chrome-trace JSON, per-node events that account for the run."""
import json
import os

import numpy as np

import ortlite as ort
from ortlite import zoo
from ortlite.profiling import summarize

# These tests are about the API and the CPU provider: OpenVINO, when installed, would come first by default.
CPU_ONLY = ["CPUExecutionProvider"]


def test_profile_of_a_bert_model(tmp_path):
    model = zoo.bert_base(layers=2, hidden=128, heads=4, seq=64, vocab=500)
    feeds = zoo.example_inputs(model)
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "bert")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=CPU_ONLY)
    plain = ort.InferenceSession(model.SerializeToString(), providers=CPU_ONLY)
    for _ in range(3):
        out = sess.run(None, feeds)
    for a, b in zip(out, plain.run(None, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    name = sess.end_profiling()
    assert name.startswith(str(tmp_path / "bert")) and name.endswith(".json") and os.path.exists(name)
    with open(name) as f:
        events = json.load(f)  # valid JSON: a list of complete events
    assert all(e["ph"] == "X" and {"name", "ts", "dur", "pid", "tid", "cat"} <= set(e) for e in events)
    runs = [e for e in events if e["cat"] == "Session" and e["name"] == "model_run"]
    nodes = [e for e in events if e["cat"] == "Node"]
    assert len(runs) == 3
    assert any(e["name"] == "session_initialization" for e in events)
    assert len(nodes) == 3 * len(sess._plan.steps)
    ev = nodes[0]
    assert ev["name"].endswith("_kernel_time") and ev["args"]["provider"] == "CPUExecutionProvider"
    assert ev["args"]["op_name"] and isinstance(ev["args"]["input_type_shape"], list)
    # per-node events add up to the run time (within 10%) for each run
    for run in runs:
        inside = [e for e in nodes if run["ts"] <= e["ts"] and e["ts"] + e["dur"] <= run["ts"] + run["dur"] + 1]
        total = sum(e["dur"] for e in inside)
        assert 0.9 * run["dur"] <= total <= 1.1 * run["dur"] + 5, (total, run["dur"])
    text = summarize(name)
    assert "MatMul" in text and "run(s)" in text
    assert sess.end_profiling() is None  # profiling ended


def test_no_profile_unless_enabled():
    m = zoo.demo()
    assert ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY).end_profiling() is None


# ---- nodes inside If / Loop bodies ---------------------------------------------------------------
def _if_model():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="then_relu")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="else_neg")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
             helper.make_node("Greater", ["s", "zero"], ["c"], name="positive"),
             helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="branch")]
    g = helper.make_graph(nodes, "if_model", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                          [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _loop_model(trips=10):
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("Add", ["acc_in", "step"], ["acc_out"], name="accumulate")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2])])
    g = helper.make_graph(
        [helper.make_node("Loop", ["M", "", "x"], ["y"], body=body, name="the_loop")], "loop_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [helper.make_tensor("M", TensorProto.INT64, [], [trips]),
         helper.make_tensor("step", TensorProto.FLOAT, [2], [1.0, 2.0])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _profiled(model, tmp_path, feeds, runs=1):
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "cf")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=CPU_ONLY)
    outs = [sess.run(None, feeds) for _ in range(runs)]
    name = sess.end_profiling()
    with open(name) as f:
        return outs, name, [e for e in json.load(f) if e["cat"] == "Node"]


def test_profile_lists_if_branch_nodes_with_their_parent(tmp_path):
    x = np.array([1, -2, 3, 4], np.float32)
    outs, name, nodes = _profiled(_if_model(), tmp_path, {"x": x}, runs=2)
    np.testing.assert_array_equal(outs[0][0], np.maximum(x, 0))
    body = [e for e in nodes if e["name"] == "then_relu_kernel_time"]
    assert len(body) == 2  # once per run: the branch taken
    assert all(e["args"]["parent"] == "branch" and e["args"]["op_name"] == "Relu" for e in body)
    assert e_has_shapes(body[0])
    assert not any(e["name"] == "else_neg_kernel_time" for e in nodes)
    top = [e for e in nodes if "parent" not in e["args"]]
    assert {e["name"] for e in top} >= {"branch_kernel_time", "sum_kernel_time"}
    # a body node's span lies inside its parent's
    parent = [e for e in nodes if e["name"] == "branch_kernel_time"]
    assert parent[0]["ts"] <= body[0]["ts"] and body[0]["ts"] + body[0]["dur"] <= parent[0]["ts"] + parent[0]["dur"] + 1
    _, _, nodes = _profiled(_if_model(), tmp_path, {"x": -x})
    assert [e["args"]["parent"] for e in nodes if e["name"] == "else_neg_kernel_time"] == ["branch"]


def e_has_shapes(ev):
    return ev["args"]["input_type_shape"] == [{"float": [4]}] and ev["args"]["output_type_shape"] == [{"float": [4]}]


def test_profile_lists_loop_body_nodes_once_per_iteration(tmp_path, capsys):
    x = np.array([0.5, 1.5], np.float32)
    outs, name, nodes = _profiled(_loop_model(10), tmp_path, {"x": x})
    np.testing.assert_allclose(outs[0][0], x + 10 * np.array([1, 2], np.float32))
    for body_node in ("accumulate", "keep_going"):
        evs = [e for e in nodes if e["name"] == f"{body_node}_kernel_time"]
        assert len(evs) == 10 and all(e["args"]["parent"] == "the_loop" for e in evs)
    assert len([e for e in nodes if e["name"] == "the_loop_kernel_time"]) == 1
    text = summarize(name)
    assert "21 node events" in text and "20 of the node events are inside If/Loop/Scan bodies" in text
    assert "the_loop/accumulate" in text and "the_loop/keep_going" in text
    from ortlite.cli import main

    main(["profile", name])
    out = capsys.readouterr().out
    assert "the_loop/accumulate" in out and "Add" in out


def test_trace_logs_body_nodes(monkeypatch, caplog):
    import logging

    monkeypatch.setenv("ORTLITE_TRACE", "1")
    sess = ort.InferenceSession(_loop_model(3).SerializeToString(), providers=CPU_ONLY)
    with caplog.at_level(logging.WARNING, logger="ortlite"):
        sess.run(None, {"x": np.zeros(2, np.float32)})
    lines = [r.getMessage() for r in caplog.records if "[trace]" in r.getMessage()]
    assert sum("the_loop/accumulate" in m for m in lines) == 3
    assert sum("the_loop " in m or m.rstrip().endswith("the_loop") or " the_loop " in m for m in lines) >= 1


def test_no_profiler_leaks_into_later_plain_runs(tmp_path):
    _profiled(_loop_model(2), tmp_path, {"x": np.zeros(2, np.float32)})
    from ortlite import plan

    assert getattr(plan._active, "ctx", None) is None
