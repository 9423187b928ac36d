"""Graph validity at session creation: what onnxruntime refuses (type errors, undefined inputs, cycles)
is refused naming the node; what it runs (nodes out of order, IR 1-2 with opset_import, untyped
outputs) runs. Each case is checked against onnxruntime side by side."""
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T, helper as h

import ortlite
from ortlite.errors import Fail, InvalidGraph, OrtliteError

X = h.make_tensor_value_info("X", T.FLOAT, [2])
Y = h.make_tensor_value_info("Y", T.FLOAT, [2])


def _model(nodes, outputs=None, inputs=None, inits=(), value_info=(), ir=8, opset=17):
    g = h.make_graph(nodes, "g", inputs or [X], outputs or [Y], list(inits), value_info=list(value_info))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = ir
    return m.SerializeToString()


def _ort(data):
    so = ort.SessionOptions()
    so.log_severity_level = 4
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


ACCEPTED = {
    "out_of_order": _model([h.make_node("Relu", ["T"], ["Y"], name="b"), h.make_node("Neg", ["X"], ["T"], name="a")]),
    "ir0_with_opset": _model([h.make_node("Neg", ["X"], ["Y"])], ir=0, opset=13),
    "ir1_with_opset": _model([h.make_node("Neg", ["X"], ["Y"])], ir=1, opset=6),
    "ir2_with_opset": _model([h.make_node("Neg", ["X"], ["Y"])], ir=2, opset=6),
    "untyped_output": _model([h.make_node("Neg", ["X"], ["Y"])], outputs=[onnx.ValueInfoProto(name="Y")]),
    "shapeless_output": _model([h.make_node("Neg", ["X"], ["Y"])], outputs=[h.make_tensor_value_info("Y", T.FLOAT, None)]),
}


BRANCH_OUT_OF_ORDER = _model([
    h.make_node("Constant", [], ["c"], value=h.make_tensor("c", T.BOOL, [], [True])),
    h.make_node("If", ["c"], ["Y"], name="if",
                then_branch=h.make_graph([h.make_node("Neg", ["U"], ["Z"]), h.make_node("Abs", ["X"], ["U"])],
                                         "then", [], [h.make_tensor_value_info("Z", T.FLOAT, [2])]),
                else_branch=h.make_graph([h.make_node("Abs", ["X"], ["Z"])], "else", [],
                                         [h.make_tensor_value_info("Z", T.FLOAT, [2])]))])


def test_branch_out_of_order_is_sorted():
    """onnxruntime 1.32 sorts the main graph but refuses an unsorted If branch; ortlite sorts both."""
    with pytest.raises(Exception, match="topologically sorted"):
        _ort(BRANCH_OUT_OF_ORDER)
    got = ortlite.InferenceSession(BRANCH_OUT_OF_ORDER).run(None, {"X": np.array([-1.0, 2.0], np.float32)})[0]
    np.testing.assert_array_equal(got, [-1.0, -2.0])


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_accepted_like_onnxruntime(case):
    data = ACCEPTED[case]
    x = np.array([-1.0, 2.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _ort(data).run(None, {"X": x})[0]
        got = ortlite.InferenceSession(data).run(None, {"X": x})[0]
    np.testing.assert_array_equal(got, expected)


REFUSED = {
    "output_declared_string": (
        _model([h.make_node("Relu", ["X"], ["Y"], name="relu")], outputs=[h.make_tensor_value_info("Y", T.STRING, [2])]),
        r"'Y' is declared tensor\(string\) but node 'relu' \(Relu\) computes tensor\(float\)"),
    "output_declared_double": (
        _model([h.make_node("Relu", ["X"], ["Y"], name="relu")], outputs=[h.make_tensor_value_info("Y", T.DOUBLE, [2])]),
        r"'Y' is declared tensor\(double\) but node 'relu' \(Relu\) computes tensor\(float\)"),
    "value_info_wrong": (
        _model([h.make_node("Neg", ["X"], ["T"], name="neg"), h.make_node("Relu", ["T"], ["Y"], name="relu")],
               value_info=[h.make_tensor_value_info("T", T.INT64, [2])]),
        r"'T' is declared tensor\(int64\) but node 'neg' \(Neg\) computes tensor\(float\)"),
    "matmulinteger_on_floats": (
        _model([h.make_node("MatMulInteger", ["X", "X"], ["Y"], name="mm")],
               outputs=[h.make_tensor_value_info("Y", T.INT32, [])]),
        r"type 'tensor\(float\)' of input 'X' of node 'mm' \(MatMulInteger\) is invalid: MatMulInteger expects "
        r"tensor\(int8\), tensor\(uint8\)"),
    "add_uint4_initializer": (
        _model([h.make_node("Add", ["X", "U"], ["Y"], name="add")], inits=[h.make_tensor("U", T.UINT4, [2], [1, 2])]),
        r"type 'tensor\(uint4\)' of input 'U' of node 'add' \(Add\) is invalid"),
    "type_variable_bound_twice": (
        _model([h.make_node("Add", ["X", "I"], ["Y"], name="add")], inputs=[X, h.make_tensor_value_info("I", T.INT64, [2])]),
        r"type parameter T of node 'add' \(Add\) is bound to different types: tensor\(float\) \(input 'X'\) and "
        r"tensor\(int64\) \(input 'I'\)"),
    "undefined_input": (
        _model([h.make_node("Add", ["X", "Z"], ["Y"], name="add")]),
        r"node 'add' \(Add\) reads input 'Z', which is not a graph input, initializer, or output of another node"),
    "undefined_input_untyped_output": (  # the checker's 'benign' complaint no longer hides it
        _model([h.make_node("Add", ["X", "Z"], ["Y"], name="add")], outputs=[onnx.ValueInfoProto(name="Y")]),
        r"node 'add' \(Add\) reads input 'Z'"),
    "undefined_input_out_of_order": (
        _model([h.make_node("Relu", ["T"], ["Y"], name="b"), h.make_node("Add", ["X", "Z"], ["T"], name="a")]),
        r"node 'a' \(Add\) reads input 'Z'"),
    "undefined_in_branch": (
        _model([h.make_node("Constant", [], ["c"], value=h.make_tensor("c", T.BOOL, [], [True])),
                h.make_node("If", ["c"], ["Y"], name="if",
                            then_branch=h.make_graph([h.make_node("Neg", ["nowhere"], ["Z"], name="inner")], "then", [],
                                                     [h.make_tensor_value_info("Z", T.FLOAT, [2])]),
                            else_branch=h.make_graph([h.make_node("Abs", ["X"], ["Z"])], "else", [],
                                                     [h.make_tensor_value_info("Z", T.FLOAT, [2])]))]),
        r"node 'inner' \(Neg\) reads input 'nowhere'.* or an outer-scope value"),
    "cycle": (
        _model([h.make_node("Relu", ["T"], ["U"], name="b"), h.make_node("Add", ["X", "U"], ["T"], name="a"),
                h.make_node("Relu", ["T"], ["Y"], name="c")]),
        r"the graph is not acyclic: a cycle runs through node 'b' \(Relu\)"),
    "reads_own_output": (
        _model([h.make_node("Add", ["X", "Y"], ["Y"], name="self")]),
        r"node 'self' \(Add\) reads its own output 'Y'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_like_onnxruntime(case):
    data, message = REFUSED[case]
    with pytest.raises(Exception):
        _ort(data)
    with pytest.raises(InvalidGraph, match=message):
        ortlite.InferenceSession(data)


def test_custom_domain_ops_skip_the_type_check():
    """No onnx schema (com.microsoft here): nothing to check types against, the kernel decides."""
    g = h.make_graph([h.make_node("Gelu", ["X"], ["Y"], domain="com.microsoft", name="gelu")], "g", [X], [Y])
    data = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]).SerializeToString()
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_allclose(ortlite.InferenceSession(data).run(None, {"X": x})[0], _ort(data).run(None, {"X": x})[0],
                               rtol=1e-5)


def test_internal_errors_become_ortlite_errors(monkeypatch):
    """An unexpected exception inside session creation is a Fail with the cause kept."""
    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ortlite.session.Graph, "toposort", broken)
    with pytest.raises(Fail, match="session creation failed: ZeroDivisionError: boom") as e:
        ortlite.InferenceSession(ACCEPTED["out_of_order"])
    assert isinstance(e.value.__cause__, ZeroDivisionError)


@pytest.mark.slow
def test_node_suite_loads_wherever_onnxruntime_loads():
    """Every node-suite model: if ortlite refuses it, onnxruntime must refuse it too."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))
    import node_suite

    wrongly_refused = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data, *_ in node_suite.load_cases():
            try:
                ortlite.InferenceSession(data, providers=["CPUExecutionProvider"])
            except OrtliteError as e:
                try:
                    _ort(data)
                except Exception:  # noqa: BLE001 - both refuse
                    continue
                wrongly_refused.append(f"{name}: {e}")
    assert not wrongly_refused, "\n".join(wrongly_refused)


# ---- a graph output named as a graph input or initializer (issue 16, fuzz tree/rename_output/*) ----------

_SEQ_MAP = h.make_sequence_type_proto(h.make_map_type_proto(T.INT64, h.make_tensor_type_proto(T.FLOAT, [])))
_RELU = h.make_node("Relu", ["X"], ["Y"], name="relu")
_W = h.make_tensor("W", T.FLOAT, [3], [1.0, 2.0, 3.0])
PASS_THROUGH = {
    "input_same_type": ([_RELU], [Y, h.make_tensor_value_info("X", T.FLOAT, [2])], ()),
    "input_declared_int64": ([_RELU], [Y, h.make_tensor_value_info("X", T.INT64, [2])], ()),
    "input_declared_seq_map": ([_RELU], [Y, h.make_value_info("X", _SEQ_MAP)], ()),
    "input_declared_other_shape": ([_RELU], [Y, h.make_tensor_value_info("X", T.FLOAT, [5, 5])], ()),
    "input_untyped": ([_RELU], [Y, onnx.ValueInfoProto(name="X")], ()),
    "input_only_no_nodes": ([], [h.make_value_info("X", _SEQ_MAP)], ()),
    "input_twice": ([_RELU], [Y, h.make_tensor_value_info("X", T.FLOAT, [2]), h.make_tensor_value_info("X", T.INT64, [2])], ()),
    "initializer_declared_seq_map": ([_RELU], [Y, h.make_value_info("W", _SEQ_MAP)], (_W,)),
}


@pytest.mark.parametrize("case", sorted(PASS_THROUGH))
def test_output_named_as_input_passes_it_through(case):
    """onnxruntime returns the feed (or the initializer) whatever type the output declares, and reports the
    value's own type for it; ortlite does the same (a copy: outputs never alias a feed)."""
    nodes, outputs, inits = PASS_THROUGH[case]
    data = _model(nodes, outputs=outputs, inits=inits)
    x = np.array([-1.0, 2.0], np.float32)
    ref_sess, sess = _ort(data), ortlite.InferenceSession(data)
    ref, got = ref_sess.run(None, {"X": x}), sess.run(None, {"X": x})
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.dtype == g.dtype
        np.testing.assert_array_equal(g, r)
    assert [(o.name, o.type, o.shape) for o in sess.get_outputs()] == \
        [(o.name, o.type, o.shape) for o in ref_sess.get_outputs()]
    for g in got:
        assert not np.shares_memory(g, x)


def test_value_info_naming_an_input_is_not_read():
    """A value_info entry giving a graph input another type: onnxruntime keeps the input's type."""
    data = _model([_RELU], value_info=[h.make_tensor_value_info("X", T.INT64, [2])])
    x = np.array([-1.0, 2.0], np.float32)
    expected = _ort(data).run(None, {"X": x})[0]
    got = ortlite.InferenceSession(data).run(None, {"X": x})[0]
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_fuzz_mutant_output_renamed_to_input():
    """The fuzz mutant itself: the ZipMap output renamed to the classifier's input X."""
    sys.path.insert(0, os.path.dirname(__file__))
    from mutator import mutant

    case = mutant("tree", "rename_output", 3001)
    assert [o.name for o in onnx.load_from_string(case.model).graph.output] == ["label", "X"]
    ref = _ort(case.model).run(None, case.feeds)
    got = ortlite.InferenceSession(case.model).run(None, case.feeds)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], case.feeds["X"])
    np.testing.assert_array_equal(got[1], ref[1])


DEFINED_TWICE = {
    "node_writes_input": [h.make_node("Neg", ["X"], ["T"], name="neg"), h.make_node("Relu", ["T"], ["X"], name="relu")],
    "node_writes_input_in_place": [h.make_node("Relu", ["X"], ["X"], name="relu")],
    "two_nodes_one_output": [_RELU, h.make_node("Neg", ["X"], ["Y"], name="neg")],
    "node_writes_initializer": [_RELU, h.make_node("Neg", ["X"], ["W"], name="neg")],
}


@pytest.mark.parametrize("case", sorted(DEFINED_TWICE))
def test_value_defined_twice_is_refused(case):
    """What onnxruntime refuses ("Duplicate definition of name"), ortlite refuses naming the value."""
    nodes = DEFINED_TWICE[case]
    name = nodes[-1].output[0]
    outputs = [h.make_tensor_value_info(name, T.FLOAT, [2])] if name != "Y" else None
    data = _model(nodes, outputs=outputs, inits=(_W,) if name == "W" else ())
    with pytest.raises(Exception, match="Duplicate definition|already|defined"):
        _ort(data)
    with pytest.raises(InvalidGraph, match=f"'{name}'"):
        ortlite.InferenceSession(data)
