"""Stream ordering of the CUDA provider, on the strict stand-in (which logs the stream of every
copy, kernel, synchronize and exchange: strict_backend.STREAM_LOG).

The rule (onnxruntime's): a device value made through OrtValue (from numpy, DLPack,
update_inplace) is complete when the call returns; a session computes on its own stream and a
run synchronizes it before returning unless RunOptions has
disable_synchronize_execution_providers=1; every copy into or out of a session's buffers runs on
the session's stream; values a session hands out carry that stream, and reading them
(numpy(), __dlpack__(stream=...), __cuda_array_interface__) is ordered after it.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper

import ortlite
from cuda_provider import strict_backend as sb

CUDA = "CUDAExecutionProvider"


@pytest.fixture
def log(strict_cuda):
    sb.STREAM_LOG.clear()
    return sb.STREAM_LOG


def _model():
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Mul", ["h", "h"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _session():
    sess = ortlite.InferenceSession(_model(), providers=[CUDA])
    return sess, sess._device_providers[0].backend.stream.id


def _after(log, what):
    """The log entries after the last one whose name starts with ``what``."""
    k = max(i for i, e in enumerate(log) if e[0].startswith(what))
    return log[k + 1:]


X = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)


def test_ortvalue_from_numpy_is_complete_when_it_returns(log):
    v = ortlite.OrtValue.ortvalue_from_numpy(X, "cuda", 0)
    (copy,) = [e for e in log if e[0] == "host_to_device"]
    assert ("synchronize", copy[1], None) in log[log.index(copy):], log
    log.clear()
    v.update_inplace(X * 2)
    (s,) = [e for e in log if e[0] == "set"]
    assert ("synchronize", s[1], None) in log[log.index(s):], log
    np.testing.assert_array_equal(v.numpy(), X * 2)


def test_a_run_computes_on_the_session_stream_and_synchronizes_it(log):
    sess, stream = _session()
    log.clear()
    y = sess.run(None, {"x": X})[0]
    np.testing.assert_array_equal(y, np.maximum(X, 0) ** 2)
    kernels = [e for e in log if e[0].startswith("kernel")]
    assert kernels and {e[1] for e in kernels} == {stream}, log
    copies = [e for e in log if e[0] in ("host_to_device", "device_to_host")]
    assert copies and {e[1] for e in copies} == {stream}, log
    assert ("synchronize", stream, None) in _after(log, "kernel"), log


def test_disable_synchronize_leaves_the_stream_running(log):
    sess, stream = _session()
    io = sess.io_binding()
    io.bind_ortvalue_input("x", ortlite.OrtValue.ortvalue_from_numpy(X, "cuda", 0))
    io.bind_output("y", "cuda")
    ro = ortlite.RunOptions()
    ro.add_run_config_entry("disable_synchronize_execution_providers", "1")
    log.clear()
    sess.run_with_iobinding(io, ro)
    assert ("synchronize", stream, None) not in log, log
    log.clear()
    y = io.get_outputs()[0]
    np.testing.assert_array_equal(y.numpy(), np.maximum(X, 0) ** 2)  # read on the session's stream, then waited for
    assert log[0] == ("device_to_host", stream, None) and ("synchronize", stream, None) in log, log
    sess.run_with_iobinding(io)  # default: synchronized
    assert ("synchronize", stream, None) in _after(log, "kernel"), log


def test_bound_outputs_are_filled_on_the_session_stream(log):
    sess, stream = _session()
    io = sess.io_binding()
    io.bind_ortvalue_input("x", ortlite.OrtValue.ortvalue_from_numpy(X, "cuda", 0))
    out = ortlite.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32, "cuda", 0)
    io.bind_ortvalue_output("y", out)
    log.clear()
    sess.run_with_iobinding(io)
    fills = [e for e in log if e[0] == "setitem"]
    assert fills and {e[1] for e in fills} == {stream}, log
    np.testing.assert_array_equal(out.numpy(), np.maximum(X, 0) ** 2)


def test_outputs_handed_out_carry_the_session_stream(log):
    sess, stream = _session()
    io = sess.io_binding()
    io.bind_cpu_input("x", X)
    io.bind_output("y", "cuda")
    sess.run_with_iobinding(io)
    y = io.get_outputs()[0]
    log.clear()
    y.__dlpack__(stream=77)  # a consumer on stream 77: ordered after the session's stream
    assert log == [("dlpack", stream, 77)], log
    log.clear()
    assert y.__cuda_array_interface__["stream"] == stream
    assert log == [("cuda_array_interface", stream, None)], log
    assert [v.tolist() for v in io.copy_outputs_to_cpu()] == [(np.maximum(X, 0) ** 2).tolist()]


def test_from_dlpack_orders_the_producer_and_completes(log):
    producer = sb.SArr(X.copy())  # a "CuPy array" made elsewhere
    v = ortlite.OrtValue.from_dlpack(producer)
    (imp,) = [e for e in log if e[0] == "from_dlpack"]
    (asked,) = [e for e in log if e[0] == "dlpack"]
    assert asked[2] is not None, "the producer must be given the consumer's stream"
    assert ("synchronize", imp[1], None) in log[log.index(imp):], log
    sess, stream = _session()
    np.testing.assert_array_equal(sess.run_with_ort_values(None, {"x": v})[0].numpy(), np.maximum(X, 0) ** 2)


def test_parallel_execution_runs_every_kernel_on_the_session_stream(log):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Neg", ["x"], ["c"]), helper.make_node("Sum", ["a", "b", "c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    so = ortlite.SessionOptions()
    so.execution_mode = ortlite.ExecutionMode.ORT_PARALLEL
    so.inter_op_num_threads = 3
    sess = ortlite.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                    so, providers=[CUDA])
    stream = sess._device_providers[0].backend.stream.id
    log.clear()
    y = sess.run(None, {"x": X})[0]
    np.testing.assert_allclose(y, np.maximum(X, 0) + 1 / (1 + np.exp(-X)) - X, rtol=1e-6)
    kernels = [e for e in log if e[0].startswith("kernel")]
    assert len(kernels) == 4 and {e[1] for e in kernels} == {stream}, log


def test_overridable_initializer_is_copied_to_the_device_once(log):
    from onnx import numpy_helper

    w = np.full((2, 3), 2.0, np.float32)
    nodes = [helper.make_node("Mul", ["x", "w"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                       helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    sess = ortlite.InferenceSession(m.SerializeToString(), providers=[CUDA])
    for _ in range(2):
        log.clear()
        np.testing.assert_array_equal(sess.run(None, {"x": X})[0], X * 2)
        assert [e[0] for e in log].count("host_to_device") == 1, log  # x only; w stays on the device
        assert sess._last_copies[0] == 2  # x in, y out
    np.testing.assert_array_equal(sess.run(None, {"x": X, "w": w * 3})[0], X * 6)  # still overridable
