"""Bad input gets an error that names what was wrong and what was expected."""
import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import TensorProto, helper

import ortlite as ort

# These tests are about the API and the CPU provider: OpenVINO, when installed, would come first by default.
CPU_ONLY = ["CPUExecutionProvider"]


@pytest.fixture
def sess(mlp_model):
    return ort.InferenceSession(mlp_model[0].SerializeToString(), providers=CPU_ONLY)


def fixed_model():
    return make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )


def test_unknown_input_name(sess):
    with pytest.raises(ort.InvalidArgument, match=r"Invalid input name: 'z'. Valid inputs: \['x'\]"):
        sess.run(None, {"x": np.ones((1, 4), np.float32), "z": np.ones(1)})


def test_missing_input(sess):
    with pytest.raises(ort.InvalidArgument, match=r"Required inputs \(\['x'\]\) are missing from input feed"):
        sess.run(None, {})


def test_wrong_dtype(sess):
    with pytest.raises(ort.InvalidArgument, match=r"input 'x'. Actual: \(tensor\(double\)\) , expected: \(tensor\(float\)\)|input 'x'. Actual: \(tensor\(double\)\), expected: \(tensor\(float\)\)"):
        sess.run(None, {"x": np.ones((1, 4), np.float64)})


def test_wrong_rank(sess):
    with pytest.raises(ort.InvalidArgument, match=r"Invalid rank for input: x Got: 3 Expected: 2 \(expected shape \[batch, 4\]"):
        sess.run(None, {"x": np.ones((1, 4, 1), np.float32)})


def test_wrong_fixed_dim(sess):
    with pytest.raises(ort.InvalidArgument, match=r"invalid dimensions for input: x .*index: 1 Got: 5 Expected: 4"):
        sess.run(None, {"x": np.ones((1, 5), np.float32)})


def test_wrong_output_name(sess):
    with pytest.raises(ort.InvalidArgument, match=r"Invalid output name: 'nope'. Valid outputs: \['y'\]"):
        sess.run(["nope"], {"x": np.ones((1, 4), np.float32)})


def test_feed_not_a_dict(sess):
    with pytest.raises(ort.InvalidArgument, match="input_feed must be a dict"):
        sess.run(None, [np.ones((1, 4), np.float32)])


def test_not_an_array():
    s = ort.InferenceSession(fixed_model().SerializeToString(), providers=CPU_ONLY)
    with pytest.raises(ort.InvalidArgument, match="input 'x' must be a numpy array"):
        s.run(None, {"x": object()})


def test_missing_file(tmp_path):
    with pytest.raises(ort.NoSuchFile, match=r"nothere.onnx failed: file doesn't exist"):
        ort.InferenceSession(str(tmp_path / "nothere.onnx"), providers=CPU_ONLY)
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError
        ort.InferenceSession(str(tmp_path / "nothere.onnx"), providers=CPU_ONLY)


def test_not_onnx(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"this is not a protobuf \x00\xff\xfe" * 10)
    with pytest.raises(ort.InvalidProtobuf, match="not an ONNX model or truncated|hold no ONNX model"):
        ort.InferenceSession(str(p), providers=CPU_ONLY)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ort.InvalidProtobuf, match="the file is empty"):
        ort.InferenceSession(str(p), providers=CPU_ONLY)


def test_truncated(tmp_path, mlp_model):
    data = mlp_model[0].SerializeToString()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises((ort.InvalidProtobuf, ort.InvalidGraph), match="truncated|invalid ONNX graph|no ONNX model"):
        ort.InferenceSession(str(p), providers=CPU_ONLY)


def test_invalid_graph_names_the_checker_problem():
    m = make_model(
        [helper.make_node("Relu", ["x_typo"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ort.InvalidGraph, match="invalid ONNX graph:.*x_typo"):
        ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)


def test_ir_version_too_new():
    m = fixed_model()
    m.ir_version = onnx.IR_VERSION + 5
    with pytest.raises(NotImplementedError, match=f"IR version {onnx.IR_VERSION + 5} is newer"):
        ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)


def test_opset_too_new():
    m = fixed_model()
    m.opset_import[0].version = onnx.defs.onnx_opset_version() + 3
    with pytest.raises(NotImplementedError, match="opset .* is newer than the newest ortlite knows"):
        ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)


def test_op_without_kernel_names_op_domain_opset():
    m = make_model(
        [helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        extra_opsets=[("com.example", 1)],
    )
    with pytest.raises(NotImplementedError, match=r"FancyOp.*domain 'com.example', opset 1 on \[CPUExecutionProvider\]; registered: none"):
        ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)


def test_kernel_failure_names_the_node():
    m = make_model(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="the_reshape")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None]), helper.make_tensor_value_info("s", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    with pytest.raises(ort.RuntimeException, match="Reshape node. Name:'the_reshape'"):
        sess.run(None, {"x": np.ones(5, np.float32), "s": np.array([3], np.int64)})


def test_disable_cpu_fallback_with_cpu_only_is_fine(mlp_model):
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    ort.InferenceSession(mlp_model[0].SerializeToString(), so, providers=CPU_ONLY)


def _symbolic_matmul():
    """MatMul of X [a, b] and W [c, d]: the mismatch shows only at run time."""
    return make_model(
        [helper.make_node("MatMul", ["X", "W"], ["Y"], name="mm")],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["a", "b"]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, ["c", "d"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )


@pytest.mark.parametrize("path", ["run", "profiled", "parallel", "trace"])
def test_kernel_failure_lists_the_input_shapes_and_dtypes(path, monkeypatch, tmp_path):
    so = ort.SessionOptions()
    if path == "profiled":
        so.enable_profiling = True
        so.profile_file_prefix = str(tmp_path / "prof")
    elif path == "parallel":
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = 2
    elif path == "trace":
        monkeypatch.setenv("ORTLITE_TRACE", "1")
    sess = ort.InferenceSession(_symbolic_matmul().SerializeToString(), so, providers=CPU_ONLY)
    with pytest.raises(ort.RuntimeException, match=r"MatMul node. Name:'mm' Status Message: ValueError: .*; "
                                                   r"inputs: X float32\[3, 2\], W float32\[4, 3\]$"):
        sess.run(None, {"X": np.ones((3, 2), np.float32), "W": np.ones((4, 3), np.float32)})


def test_kernel_failure_inputs_absent_and_non_tensor():
    """A missing optional input shows as '', a sequence by its length."""
    resize = make_model(
        [helper.make_node("Resize", ["X", "", "scales"], ["Y"], name="rs")],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 2, 2]),
         helper.make_tensor_value_info("scales", TensorProto.FLOAT, ["k"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(ort.RuntimeException, match=r"Name:'rs' .*; inputs: X float32\[1, 1, 2, 2\], '', scales float32\[3\]$"):
        ort.InferenceSession(resize.SerializeToString(), providers=CPU_ONLY).run(
            None, {"X": np.ones((1, 1, 2, 2), np.float32), "scales": np.ones(3, np.float32)})
    seq = make_model(
        [helper.make_node("SequenceConstruct", ["a", "b"], ["S"]), helper.make_node("SequenceAt", ["S", "i"], ["Y"], name="at")],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(ort.RuntimeException, match=r"SequenceAt node. Name:'at' .*; inputs: S sequence of 2, i int64\[\]$"):
        ort.InferenceSession(seq.SerializeToString(), providers=CPU_ONLY).run(
            None, {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32), "i": np.array(5)})


def test_kernel_failure_inside_an_if_branch_names_the_inner_node():
    then = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["o"], name="inner_reshape")], "then", [],
                             [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "else", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    m = make_model(
        [helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other)],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [None]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    feed = {"c": np.array(True), "x": np.ones(5, np.float32), "s": np.array([3], np.int64)}
    with pytest.raises(ort.RuntimeException, match=r"Reshape node. Name:'inner_reshape' .*; inputs: x float32\[5\], s int64\[1\]$"):
        sess.run(None, feed)


def test_kernel_failure_describes_device_arrays_without_copying_them():
    """The pretend device's arrays raise on host arithmetic: the message reads only .shape and .dtype."""
    from ortlite import ortvalue, providers
    from partition.pretend_device import PretendDeviceExecutionProvider as Dev

    providers.register_provider(Dev, priority=0)
    try:
        sess = ort.InferenceSession(_symbolic_matmul().SerializeToString(), providers=[Dev.name, "CPUExecutionProvider"])
        assert [p.provider for p in sess.get_placement()] == [Dev.name]
        with pytest.raises(ort.RuntimeException,  # the device copies of X and W
                           match=r"Name:'mm' .*; inputs: X@pretend float32\[3, 2\], W@pretend float32\[4, 3\]$"):
            sess.run(None, {"X": np.ones((3, 2), np.float32), "W": np.ones((4, 3), np.float32)})
    finally:
        providers.unregister_provider(Dev.name)
        ortvalue._device_providers.clear()
