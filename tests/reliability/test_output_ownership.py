"""Outputs are the caller's own (issue 16, item 5/6): never a view of a feed or a constant, never
read-only, never the same array as another output; as onnxruntime, which always returns fresh arrays."""
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortlite


def _model(nodes, inputs, outputs, inits=()):
    g = h.make_graph(nodes, "g", inputs, outputs, list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


X = h.make_tensor_value_info("x", T.FLOAT, [2, 3])


def _out(name, shape=None, elem=T.FLOAT):
    return h.make_tensor_value_info(name, elem, shape)


SHAPE6 = h.make_tensor("shape", T.INT64, [1], [6])
PERM = [1, 0]

CASES = {
    "identity": ([h.make_node("Identity", ["x"], ["y"])], [_out("y")], []),
    "flatten": ([h.make_node("Flatten", ["x"], ["y"], axis=0)], [_out("y")], []),
    "transpose": ([h.make_node("Transpose", ["x"], ["y"], perm=PERM)], [_out("y")], []),
    "cast_same": ([h.make_node("Cast", ["x"], ["y"], to=T.FLOAT)], [_out("y")], []),
    "reshape": ([h.make_node("Reshape", ["x", "shape"], ["y"])], [_out("y")], [SHAPE6]),
    "graph_input": ([], [_out("x")], []),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("path", ["run", "run_options", "ort_values", "iobinding"])
def test_outputs_never_alias_the_feed(case, path):
    nodes, outs, inits = CASES[case]
    data = _model(nodes, [X], outs, inits)
    sess = ortlite.InferenceSession(data)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    before = x.copy()
    for _ in range(2):  # the second run takes the checked-before fast path
        if path == "run":
            y = sess.run(None, {"x": x})[0]
        elif path == "run_options":
            y = sess.run(None, {"x": x}, ortlite.RunOptions())[0]
        elif path == "ort_values":
            y = sess.run_with_ort_values(None, {"x": ortlite.OrtValue.ortvalue_from_numpy(x)})[0].numpy()
        else:
            b = sess.io_binding()
            b.bind_cpu_input("x", x)
            b.bind_output(outs[0].name)
            sess.run_with_iobinding(b)
            y = b.copy_outputs_to_cpu()[0]
        assert y.flags.writeable
        y += 5
        np.testing.assert_array_equal(x, before)
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert not np.shares_memory(ref, x)  # what onnxruntime does


def test_constant_output_is_writeable_and_fresh():
    c = h.make_tensor("c", T.FLOAT, [3], [1, 2, 3])
    data = _model([h.make_node("Identity", ["c"], ["y"])], [X], [_out("y"), _out("c")], [c])
    sess = ortlite.InferenceSession(data)
    x = np.zeros((2, 3), np.float32)
    for _ in range(2):
        y, c_out = sess.run(None, {"x": x})
        assert y.flags.writeable and c_out.flags.writeable
        assert not np.shares_memory(y, c_out)
        y += 1
        c_out += 1
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], [1, 2, 3])
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert all(r.flags.writeable for r in ref)


def test_same_array_to_two_outputs_gives_distinct_arrays():
    data = _model([h.make_node("Relu", ["x"], ["r"]), h.make_node("Identity", ["r"], ["a"]),
                   h.make_node("Identity", ["r"], ["b"]), h.make_node("Reshape", ["r", "shape"], ["c"])],
                  [X], [_out("a"), _out("b"), _out("c"), _out("r")], [SHAPE6])
    sess = ortlite.InferenceSession(data)
    outs = sess.run(None, {"x": np.ones((2, 3), np.float32)})
    for i in range(len(outs)):
        for j in range(i):
            assert not np.shares_memory(outs[i], outs[j]), (i, j)


def test_ordinary_outputs_are_not_copied():
    """An output a kernel made fresh is neither checked nor copied: no cost for the common case."""
    data = _model([h.make_node("Relu", ["x"], ["r"]), h.make_node("Mul", ["r", "r"], ["y"])], [X], [_out("y")])
    sess = ortlite.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert not sess._plan.own_slots
    data = _model([h.make_node("Relu", ["x"], ["y"]), h.make_node("Identity", ["x"], ["z"])], [X],
                  [_out("y"), _out("z")])
    plan = ortlite.InferenceSession(data, providers=["CPUExecutionProvider"])._plan
    assert plan.slot_of["z"] in plan.own_slots
    x = np.ones((2, 3), np.float32)
    y, z = plan.run([x])
    y2, z2 = plan.own_outputs([y, z], plan.output_slots, [x])
    assert y2 is y and z2 is not z  # checked, fresh: returned as it is; the feed itself: copied


def test_sequence_output_of_a_sequence_input_is_a_new_list():
    seq_in = h.make_tensor_sequence_value_info("s", T.FLOAT, None)
    seq_out = h.make_tensor_sequence_value_info("t", T.FLOAT, None)
    data = _model([h.make_node("Identity", ["s"], ["t"])], [seq_in], [seq_out])
    sess = ortlite.InferenceSession(data)
    feed = [np.ones(2, np.float32), np.zeros(3, np.float32)]
    out = sess.run(None, {"s": feed})[0]
    assert out is not feed
    assert not any(np.shares_memory(a, b) for a, b in zip(out, feed))


def test_if_branch_constant_and_expand_view_are_owned():
    c = h.make_tensor("c", T.FLOAT, [3], [1, 2, 3])
    branch = h.make_graph([h.make_node("Identity", ["c"], ["b"])], "br", [], [_out("b", [3])], [c])
    cond = h.make_tensor_value_info("cond", T.BOOL, [])
    data = _model([h.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
                   h.make_node("Relu", ["x"], ["r"]), h.make_node("Expand", ["r", "shape"], ["e"])],
                  [cond, X], [_out("y"), _out("e")], [h.make_tensor("shape", T.INT64, [3], [4, 2, 3])])
    sess = ortlite.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = {"cond": np.array(True), "x": np.ones((2, 3), np.float32)}
    y, e = sess.run(None, feed)
    assert y.flags.writeable and e.flags.writeable and e.shape == (4, 2, 3)
    y += 10
    np.testing.assert_array_equal(sess.run(None, feed)[0], [1, 2, 3])
