"""onnxruntime-compatible surface: code written for onnxruntime runs with `import ortlite as ort`."""
import threading
import warnings

import numpy as np
import onnx
import pytest
from helpers import make_model, mlp_reference
from onnx import TensorProto, helper

import ortlite as ort

# These tests are about the API and the CPU provider: OpenVINO, when installed, would come first by default.
CPU_ONLY = ["CPUExecutionProvider"]


def test_plain_run(mlp_model):
    m, (W, b) = mlp_model
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, mlp_reference(x, W, b), rtol=1e-6, atol=1e-6)
    assert y.dtype == np.float32
    # output_names selects; a ModelProto and a path work too
    assert np.array_equal(sess.run(["y"], {"x": x})[0], y)
    assert np.array_equal(ort.InferenceSession(m, providers=CPU_ONLY).run(None, {"x": x})[0], y)


def test_model_from_path(tmp_path, mlp_model):
    m, (W, b) = mlp_model
    p = tmp_path / "mlp.onnx"
    onnx.save(m, p)
    x = np.ones((2, 4), np.float32)
    for src in (str(p), p):
        np.testing.assert_allclose(ort.InferenceSession(src, providers=CPU_ONLY).run(None, {"x": x})[0], mlp_reference(x, W, b), rtol=1e-6)


def test_describe_io(mlp_model):
    m, _ = mlp_model
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    (i,) = sess.get_inputs()
    (o,) = sess.get_outputs()
    assert (i.name, i.shape, i.type) == ("x", ["batch", 4], "tensor(float)")
    assert (o.name, o.shape, o.type) == ("y", ["batch", 3], "tensor(float)")
    assert sess.get_modelmeta().producer_name == "ortlite-tests"
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert sess.get_provider_options() == {"CPUExecutionProvider": {}}
    assert isinstance(sess.get_session_options(), ort.SessionOptions)
    assert sess.end_profiling() is None


def test_gpu_providers_first_fall_back_with_warning(mlp_model):
    m, (W, b) = mlp_model
    with pytest.warns(ort.ProviderFallbackWarning) as rec:
        sess = ort.InferenceSession(
            m.SerializeToString(),
            providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        )
    text = " ".join(str(w.message) for w in rec)
    assert "TensorrtExecutionProvider" in text and "CUDAExecutionProvider" in text
    assert "not available" in text
    assert sess.get_providers() == ["CPUExecutionProvider"]
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], mlp_reference(x, W, b), rtol=1e-6)


def test_tensorrt_alternate_spelling_and_options_tuple(mlp_model):
    m, _ = mlp_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ort.InferenceSession(
            m.SerializeToString(),
            providers=[("TensorRTExecutionProvider", {"trt_fp16_enable": True}), ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"],
        )
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_unknown_provider_is_an_error(mlp_model):
    m, _ = mlp_model
    with pytest.raises(ValueError, match="'CUDAProvider' is not an execution provider; valid names: .*CPUExecutionProvider"):
        ort.InferenceSession(m.SerializeToString(), providers=["CUDAProvider"])


def test_module_functions():
    assert ort.get_all_providers() == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                      "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert "CPUExecutionProvider" in ort.get_available_providers()
    assert ort.get_device() in ("CPU", "GPU")
    assert isinstance(ort.__version__, str)


@pytest.mark.parametrize("level", list(ort.GraphOptimizationLevel))
def test_every_optimization_level(mlp_model, level):
    m, (W, b) = mlp_model
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=CPU_ONLY)
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], mlp_reference(x, W, b), rtol=1e-6, atol=1e-6)


def test_thread_settings(mlp_model):
    m, (W, b) = mlp_model
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    sess = ort.InferenceSession(m.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x}, ort.RunOptions())[0], mlp_reference(x, W, b), rtol=1e-6)


def test_free_dimension_override(mlp_model):
    m, _ = mlp_model
    so = ort.SessionOptions()
    so.add_free_dimension_override_by_name("batch", 2)
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=CPU_ONLY)
    assert sess.get_inputs()[0].shape == [2, 4]
    sess.run(None, {"x": np.ones((2, 4), np.float32)})
    with pytest.raises(ort.InvalidArgument, match="index: 0 Got: 3 Expected: 2"):
        sess.run(None, {"x": np.ones((3, 4), np.float32)})


def test_iobinding_cpu(mlp_model):
    m, (W, b) = mlp_model
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    io = sess.io_binding()
    io.bind_cpu_input("x", x)
    io.bind_output("y")
    io.synchronize_inputs()
    sess.run_with_iobinding(io)
    io.synchronize_outputs()
    (y,) = io.copy_outputs_to_cpu()
    np.testing.assert_allclose(y, mlp_reference(x, W, b), rtol=1e-6)
    (ov,) = io.get_outputs()
    assert ov.device_name() == "cpu" and ov.shape() == [2, 3] and ov.data_type() == "tensor(float)"

    # outputs into a caller's buffer, by pointer and by OrtValue; inputs by pointer and OrtValue
    out = np.zeros((2, 3), np.float32)
    io.clear_binding_outputs()
    io.bind_output("y", "cpu", 0, np.float32, [2, 3], out.ctypes.data)
    io.clear_binding_inputs()
    io.bind_input("x", "cpu", 0, np.float32, [2, 4], x.ctypes.data)
    sess.run_with_iobinding(io)
    np.testing.assert_allclose(out, mlp_reference(x, W, b), rtol=1e-6)

    ov_out = ort.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32, "cpu", 0)
    io.clear_binding_outputs()
    io.bind_ortvalue_output("y", ov_out)
    io.clear_binding_inputs()
    io.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x))
    sess.run_with_iobinding(io)
    np.testing.assert_allclose(ov_out.numpy(), mlp_reference(x, W, b), rtol=1e-6)
    assert io.get_outputs()[0] is ov_out


def test_ortvalue():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = ort.OrtValue.ortvalue_from_numpy(a)
    assert v.is_tensor() and v.has_value() and v.shape() == [2, 3]
    assert v.data_type() == "tensor(float)" and v.device_name() == "cpu"
    assert v.element_type() == TensorProto.FLOAT
    assert v.numpy() is a  # aliases on the CPU, as onnxruntime does
    assert v.data_ptr() == a.ctypes.data
    v.update_inplace(np.ones((2, 3), np.float32))
    assert a.sum() == 6
    with pytest.raises(ValueError, match="not available"):
        ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0)
    bf = ort.OrtValue.ortvalue_from_shape_and_type([2], TensorProto.BFLOAT16)
    assert bf.data_type() == "tensor(bfloat16)"


def test_run_with_ort_values(mlp_model):
    m, (W, b) = mlp_model
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    x = np.ones((1, 4), np.float32)
    (y,) = sess.run_with_ort_values(["y"], {"x": ort.OrtValue.ortvalue_from_numpy(x)})
    np.testing.assert_allclose(y.numpy(), mlp_reference(x, W, b), rtol=1e-6)


def test_concurrent_runs_are_safe(mlp_model):
    m, (W, b) = mlp_model
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((8, 4)).astype(np.float32) for _ in range(8)]
    errors = []

    def work(x):
        for _ in range(50):
            y = sess.run(None, {"x": x})[0]
            if not np.allclose(y, mlp_reference(x, W, b), rtol=1e-5, atol=1e-6):
                errors.append("mismatch")

    threads = [threading.Thread(target=work, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_overridable_initializers():
    w = onnx.numpy_helper.from_array(np.full((2,), 2.0, np.float32), "w")
    m = make_model(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [w],
    )
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    assert [a.name for a in sess.get_inputs()] == ["x"]
    assert [a.name for a in sess.get_overridable_initializers()] == ["w"]
    x = np.ones(2, np.float32)
    assert sess.run(None, {"x": x})[0].tolist() == [2.0, 2.0]
    assert sess.run(None, {"x": x, "w": np.full(2, 3.0, np.float32)})[0].tolist() == [3.0, 3.0]


def test_ir3_initializers_listed_as_inputs():
    w = onnx.numpy_helper.from_array(np.full((2,), 2.0, np.float32), "w")
    m = make_model(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [w], opset=8, ir_version=3,
    )
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    assert [a.name for a in sess.get_inputs()] == ["x"]
    assert sess.get_overridable_initializers() == []
    assert sess.run(None, {"x": np.ones(2, np.float32)})[0].tolist() == [2.0, 2.0]


def test_external_data(tmp_path):
    big = np.random.default_rng(5).standard_normal((64, 64)).astype(np.float32)
    m = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [onnx.numpy_helper.from_array(big, "w")],
    )
    p = tmp_path / "ext.onnx"
    onnx.save(m, p, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    x = np.ones((1, 64), np.float32)
    np.testing.assert_allclose(ort.InferenceSession(str(p), providers=CPU_ONLY).run(None, {"x": x})[0], x @ big, rtol=1e-5)


def test_model_local_function_and_unused_domain():
    fn = helper.make_function(
        "custom.fn", "Scale2", ["a"], ["b"],
        [helper.make_node("Constant", [], ["two"], value=helper.make_tensor("t", TensorProto.FLOAT, [], [2.0])),
         helper.make_node("Mul", ["a", "two"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    m = make_model(
        [helper.make_node("Scale2", ["x"], ["h"], domain="custom.fn"), helper.make_node("Relu", ["h"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        functions=[fn], extra_opsets=[("custom.fn", 1), ("ai.onnx.ml", 3), ("com.example.unused", 7)],
    )
    sess = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY)
    assert sess.run(None, {"x": np.array([-1, 0, 2], np.float32)})[0].tolist() == [0.0, 0.0, 4.0]


def test_parallel_execution_mode_runs_branches_concurrently():
    rng = np.random.default_rng(7)
    inits, nodes, outs = [], [], []
    for b in range(4):  # four independent heavy branches joined at the end
        w = rng.standard_normal((256, 256)).astype(np.float32) / 16
        inits.append(onnx.numpy_helper.from_array(w, f"w{b}"))
        prev = "x"
        for k in range(3):
            nodes.append(helper.make_node("MatMul", [prev, f"w{b}"], [f"b{b}_{k}"]))
            prev = f"b{b}_{k}"
        outs.append(prev)
    nodes.append(helper.make_node("Sum", outs, ["y"]))
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 256])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 256])], inits)
    x = rng.standard_normal((512, 256)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY).run(None, {"x": x})[0]
    so = ort.SessionOptions()
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    so.inter_op_num_threads = 4
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=CPU_ONLY)
    seen = 0
    for _ in range(10):
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref, rtol=1e-5, atol=1e-4)
        seen = max(seen, sess._plan.last_run_threads)
    assert seen > 1  # branches ran on more than one thread (at least once: scheduling varies)
