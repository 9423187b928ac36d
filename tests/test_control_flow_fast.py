"""If/Loop/Scan bodies run through Subgraph.call with their outer values picked by position."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite.errors import Fail, RuntimeException

CPU = ["CPUExecutionProvider"]
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _vi(name, t, shape):
    return helper.make_tensor_value_info(name, t, shape)


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _if_model(cond_const=None):
    """y = If(c): then x*a (reads x, a), else x-b (reads x, b): branches read different outer values."""
    then = helper.make_graph([helper.make_node("Mul", ["x", "a"], ["t"], name="mul")], "then", [], [_vi("t", F, [2])])
    els = helper.make_graph([helper.make_node("Sub", ["x", "b"], ["e"], name="sub")], "else", [], [_vi("e", F, [2])])
    inits = [numpy_helper.from_array(np.array([2, 3], np.float32), "a"),
             numpy_helper.from_array(np.array([1, 1], np.float32), "b")]
    nodes, inputs = [], [_vi("x", F, [2])]
    if cond_const is None:
        inputs.append(_vi("c", B, []))
    else:
        nodes.append(helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(cond_const))))
    nodes.append(helper.make_node("If", ["c"], ["y"], name="the_if", then_branch=then, else_branch=els))
    return _model(nodes, inputs, [_vi("y", F, [2])], inits)


def test_if_branches_read_their_own_outer_values():
    s = ortlite.InferenceSession(_if_model(), providers=CPU)
    x = np.array([1, 2], np.float32)
    assert s.run(None, {"x": x, "c": np.array(True)})[0].tolist() == [2, 6]
    assert s.run(None, {"x": x, "c": np.array(False)})[0].tolist() == [0, 1]
    assert s.run(None, {"x": x, "c": np.array([True])[0]})[0].tolist() == [2, 6]


@pytest.mark.parametrize("cond", [True, False])
def test_if_constant_condition(cond):
    s = ortlite.InferenceSession(_if_model(cond), providers=CPU)
    y = s.run(None, {"x": np.array([1, 2], np.float32)})[0]
    assert y.tolist() == ([2, 6] if cond else [0, 1])


def test_if_body_error_names_the_body_node():
    then = helper.make_graph([helper.make_node("Add", ["x", "z"], ["t"], name="bad_add")], "then", [], [_vi("t", F, None)])
    els = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_vi("e", F, None)])
    m = _model([helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=els)],
               [_vi("c", B, []), _vi("x", F, ["n"]), _vi("z", F, ["m"])], [_vi("y", F, None)])
    s = ortlite.InferenceSession(m, providers=CPU)
    with pytest.raises(RuntimeException, match="bad_add"):
        s.run(None, {"c": np.array(True), "x": np.ones(2, np.float32), "z": np.ones(3, np.float32)})


def test_loop_carried_scan_and_outer_values():
    """Loop 4 times: s += x * i (x from the outer scope), scan output s each iteration."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=F), helper.make_node("Mul", ["x", "fi"], ["xi"]),
         helper.make_node("Add", ["s_in", "xi"], ["s_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["s_out"], ["scan"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("s_in", F, [2])],
        [_vi("cond_out", B, []), _vi("s_out", F, [2]), _vi("scan", F, [2])])
    m = _model([helper.make_node("Loop", ["M", "", "s0"], ["s", "scans"], body=body)],
               [_vi("M", I64, []), _vi("s0", F, [2]), _vi("x", F, [2])], [_vi("s", F, [2]), _vi("scans", F, [None, 2])])
    s = ortlite.InferenceSession(m, providers=CPU)
    x = np.array([1, 10], np.float32)
    s_final, scans = s.run(None, {"M": np.array(4, np.int64), "s0": np.zeros(2, np.float32), "x": x})
    assert s_final.tolist() == [6, 60]
    assert scans[:, 0].tolist() == [0, 1, 3, 6]
    s_final, scans = s.run(None, {"M": np.array(0, np.int64), "s0": np.ones(2, np.float32), "x": x})
    assert s_final.tolist() == [1, 1] and scans.shape == (0, 2)  # onnxruntime: (0, 2) too


def test_loop_stops_on_condition():
    """Loop without a trip count: stops when the body's condition (i < 2) turns false."""
    body = helper.make_graph(
        [helper.make_node("Less", ["i", "two"], ["cond_out"]), helper.make_node("Identity", ["i"], ["scan"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, [])], [_vi("cond_out", B, []), _vi("scan", I64, [])])
    m = _model([helper.make_node("Loop", ["", "c"], ["scans"], body=body)], [_vi("c", B, []), _vi("two", I64, [])],
               [_vi("scans", I64, [None])])
    s = ortlite.InferenceSession(m, providers=CPU)
    assert s.run(None, {"c": np.array(True), "two": np.array(2, np.int64)})[0].tolist() == [0, 1, 2]
    assert s.run(None, {"c": np.array(False), "two": np.array(2, np.int64)})[0].tolist() == []


def test_outer_picker_names_what_is_missing():
    s = ortlite.InferenceSession(_if_model(), providers=CPU)
    branch = s._plan.steps[-1].fn.then_branch
    assert branch.outer_picker(("b", "x", "a"))((1, 2, 3)) == (2, 3)
    with pytest.raises(Fail, match="outer-scope values \\['a'\\]"):
        branch.outer_picker(("x",))


def test_profiling_records_body_nodes(tmp_path):
    so = ortlite.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "p")
    s = ortlite.InferenceSession(_if_model(), so, providers=CPU)
    s.run(None, {"x": np.array([1, 2], np.float32), "c": np.array(True)})
    import json

    events = json.load(open(s.end_profiling()))
    assert any(e.get("args", {}).get("parent") == "the_if" for e in events)
