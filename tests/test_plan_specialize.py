"""Plan-time specialization (registry ``Direct``) and the session's fixed-cost run path."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import ortlite
from ortlite.errors import InvalidArgument, RuntimeException
from ortlite.registry import Direct

CPU = ["CPUExecutionProvider"]


def _session(nodes, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return ortlite.InferenceSession(m.SerializeToString(), providers=CPU)


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _neg_relu(shape, t=TensorProto.FLOAT):
    return _session([helper.make_node("Neg", ["x"], ["a"], name="neg"), helper.make_node("Relu", ["a"], ["y"], name="relu")],
                    [_vi("x", shape, t)], [_vi("y", shape, t)])


def test_unary_known_rank_is_one_ufunc_call():
    s = _neg_relu([4])
    assert [type(st.fn) for st in s._plan.steps] == [Direct, Direct]
    assert "_tuple" not in s._plan.source.split("except _Pass")[0].split("try:")[1]
    y = s.run(None, {"x": np.array([1, -2, np.nan, -0.0], np.float32)})[0]
    assert y.dtype == np.float32 and type(y) is np.ndarray
    np.testing.assert_array_equal(y, [0, 2, np.nan, 0])  # Relu keeps NaN


def test_unary_int_and_rank0_and_unknown_rank():
    s = _neg_relu([2], TensorProto.INT32)
    assert type(s._plan.steps[1].fn) is Direct
    y = s.run(None, {"x": np.array([-3, 4], np.int32)})[0]
    assert y.dtype == np.int32 and y.tolist() == [3, 0]
    for shape in ([], None):  # rank 0 (a ufunc would give a numpy scalar) or unknown: the general kernel
        s = _neg_relu(shape)
        assert not any(type(st.fn) is Direct for st in s._plan.steps)
    y = _neg_relu([]).run(None, {"x": np.array(-3, np.float32)})[0]
    assert type(y) is np.ndarray and y.shape == () and y == 3


def test_binary_specialization_rules():
    def add(sa, sb, t=TensorProto.FLOAT):
        return _session([helper.make_node("Add", ["a", "b"], ["y"], name="add")], [_vi("a", sa, t), _vi("b", sb, t)],
                        [_vi("y", None, t)])

    assert type(add([2], [])._plan.steps[0].fn) is Direct
    s0 = add([], [])  # two scalars: the ufunc's numpy scalar made a 0-d array, as the kernel's _arr does
    assert type(s0._plan.steps[0].fn) is Direct
    y0 = s0.run(None, {"a": np.array(1, np.float32), "b": np.array(3, np.float32)})[0]
    assert type(y0) is np.ndarray and y0.shape == () and y0.dtype == np.float32 and y0 == 4
    assert type(add([2], [2], TensorProto.BFLOAT16)._plan.steps[0].fn) is not Direct
    s = add([2], [])
    y = s.run(None, {"a": np.array([1, 2], np.float32), "b": np.array(3, np.float32)})[0]
    assert y.dtype == np.float32 and y.tolist() == [4, 5]


def test_direct_failure_names_the_node():
    s = _session([helper.make_node("Add", ["a", "b"], ["y"], name="the_add")], [_vi("a", ["n"]), _vi("b", ["m"])],
                 [_vi("y", None)])
    assert type(s._plan.steps[0].fn) is Direct
    with pytest.raises(RuntimeException, match="Add node. Name:'the_add'.*float32\\[2\\].*float32\\[3\\]"):
        s.run(None, {"a": np.ones(2, np.float32), "b": np.ones(3, np.float32)})


def test_run_fast_path_keeps_the_checks():
    s = _neg_relu([1, "n"])
    x = np.ones((1, 3), np.float32)
    for _ in range(2):  # the second run takes the checked-before path
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], np.zeros((1, 3)))
    assert s.run(["y"], {"x": x})[0].shape == (1, 3)
    with pytest.raises(InvalidArgument, match="Unexpected input data type"):
        s.run(None, {"x": x.astype(np.float64)})
    with pytest.raises(InvalidArgument, match="Got invalid dimensions"):
        s.run(None, {"x": np.ones((2, 3), np.float32)})
    with pytest.raises(InvalidArgument, match="Invalid rank"):
        s.run(None, {"x": np.ones(3, np.float32)})
    with pytest.raises(InvalidArgument, match="Invalid input name"):
        s.run(None, {"x": x, "z": x})
    with pytest.raises(InvalidArgument, match="missing"):
        s.run(None, {})
    with pytest.raises(InvalidArgument, match="Invalid output name"):
        s.run(["nope"], {"x": x})
    opts = ortlite.RunOptions()
    opts.terminate = True
    with pytest.raises(Exception, match="terminate"):
        s.run(None, {"x": x}, opts)
    # a list feed is converted and checked, never taken as is
    assert s.run(None, {"x": [[1.0, -1.0]]})[0].tolist() == [[0.0, 1.0]]


def test_run_fast_path_with_an_overridable_initializer():
    w = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [_vi("x", [2]), _vi("w", [2])],
                          [_vi("y", [2])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=CPU)
    x = np.zeros(2, np.float32)
    for _ in range(2):
        assert s.run(None, {"x": x})[0].tolist() == [1, 2]
        assert s.run(None, {"x": x, "w": np.ones(2, np.float32)})[0].tolist() == [1, 1]
