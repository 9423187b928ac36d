"""CUDAExecutionProvider without a GPU: options, availability and fallback, and - on the numpy
stand-in backend (fake_cuda.py) - device OrtValues, IOBinding with zero copies, DLPack, memory
limits and the CUDA-graph bookkeeping. The same behaviour on a real GPU: test_cuda_device.py."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite.errors import Fail, InvalidArgument
from ortlite.providers import cuda as cuda_mod
from ortlite.providers.cuda import CudaOptions, parse_options

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def mlp():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
             helper.make_node("Relu", ["hb"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                          [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W"),
                           numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def elementwise(shape=(2, 5)):
    """y = relu(x * 2 + c): only elementwise kernels (capturable as a CUDA graph)."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["a"], name="mul"),
             helper.make_node("Add", ["a", "c"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "ew", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
                          [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                           numpy_helper.from_array(np.linspace(-1, 1, shape[-1]).astype(np.float32), "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def ew_ref(x, shape=(2, 5)):
    return np.maximum(x * 2 + np.linspace(-1, 1, shape[-1]).astype(np.float32), 0)


def with_cpu_only_op():
    """Relu (CUDA) -> ai.onnx.ml Scaler (a CPU-only kernel) -> Neg (CUDA)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Scaler", ["r"], ["s"], domain="ai.onnx.ml", name="scale", offset=[0.5], scale=[2.0]),
             helper.make_node("Neg", ["s"], ["y"], name="neg")]
    g = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    m.ir_version = 8
    return m.SerializeToString()


# ------------------------------------------------------------------------------ options

def test_option_defaults_are_onnxruntimes():
    o = parse_options({})
    assert o == CudaOptions()
    assert (o.device_id, o.gpu_mem_limit, o.arena_extend_strategy, o.cudnn_conv_algo_search) == \
        (0, 0, "kNextPowerOfTwo", "EXHAUSTIVE")
    assert o.do_copy_in_default_stream and o.use_tf32 and not o.enable_cuda_graph
    s = o.as_strings()
    assert s["device_id"] == "0" and s["enable_cuda_graph"] == "0" and s["has_user_compute_stream"] == "0"
    assert all(isinstance(v, str) for v in s.values())


def test_option_values_parse():
    o = parse_options({"device_id": "1", "gpu_mem_limit": 2 * 1024 ** 3, "arena_extend_strategy": "1",
                       "cudnn_conv_algo_search": "heuristic", "do_copy_in_default_stream": "false",
                       "user_compute_stream": "0x7f00", "enable_cuda_graph": "1", "use_tf32": 0})
    assert o.device_id == 1 and o.gpu_mem_limit == 2 * 1024 ** 3
    assert o.arena_extend_strategy == "kSameAsRequested" and o.cudnn_conv_algo_search == "HEURISTIC"
    assert not o.do_copy_in_default_stream and o.user_compute_stream == 0x7F00
    assert o.enable_cuda_graph and not o.use_tf32
    assert o.as_strings()["has_user_compute_stream"] == "1"


@pytest.mark.parametrize("opts,words", [
    ({"device_id": "gpu0"}, ["device_id", "integer"]),
    ({"device_id": -1}, ["device_id", ">= 0"]),
    ({"gpu_mem_limit": "lots"}, ["gpu_mem_limit", "integer"]),
    ({"arena_extend_strategy": "kDouble"}, ["kNextPowerOfTwo", "kSameAsRequested"]),
    ({"cudnn_conv_algo_search": "FAST"}, ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]),
    ({"enable_cuda_graph": "yes"}, ["enable_cuda_graph", "0/1"]),
    ({"cuda_mem_limit": "1"}, ["unknown provider option 'cuda_mem_limit'", "gpu_mem_limit"]),
])
def test_option_errors_name_the_option_and_the_choices(opts, words):
    with pytest.raises(InvalidArgument) as e:
        parse_options(opts)
    for w in words:
        assert w in str(e.value)


def test_onnxruntime_only_options_are_accepted_with_a_warning():
    with pytest.warns(UserWarning, match="cudnn_conv_use_max_workspace"):
        o = parse_options({"cudnn_conv_use_max_workspace": "1"})
    assert o == CudaOptions()


# ------------------------------------------------------------------------------ no GPU here

def test_unavailable_with_the_reason_and_sessions_fall_back():
    ok, why = cuda_mod._probe_cupy()
    if ok:
        pytest.skip("CuPy sees a device here: the fallback path is not taken")
    assert why and ("CuPy" in why)
    assert CUDA not in ortlite.get_available_providers() and CUDA in ortlite.get_all_providers()
    assert ortlite.get_unavailable_providers()[CUDA] == why
    with pytest.warns(ortlite.ProviderFallbackWarning, match=f"{CUDA} is not available here.*CuPy"):
        s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    assert s.get_providers() == [CPU]
    x = np.ones((2, 4), np.float32)
    ref = ortlite.InferenceSession(mlp(), providers=[CPU]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], ref)
    with pytest.raises(ValueError, match="device 'cuda' is not available.*CuPy"):
        ortlite.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        s.io_binding().bind_output("y", "cuda")


def test_fallback_disabled_is_an_error_naming_the_reason(monkeypatch):
    ok, _ = cuda_mod._probe_cupy()
    if ok:
        pytest.skip("CuPy sees a device here")
    so = ortlite.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Fail, match="no execution provider is available"):
            ortlite.InferenceSession(mlp(), so, providers=[CUDA])


# ------------------------------------------------------------------------------ on the stand-in

def test_run_on_device_counts_copies(fake_cuda):
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    assert s.get_providers() == [CUDA, CPU]
    assert {n.provider for n in s.get_placement().nodes} == {CUDA}
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    ref = ortlite.InferenceSession(mlp(), providers=[CPU]).run(None, {"x": x})[0]
    np.testing.assert_allclose(s.run(None, {"x": x})[0], ref, rtol=1e-6)
    assert s._last_copies == (2, x.nbytes + ref.nbytes)  # the input in, the output out
    assert s.get_provider_options()[CUDA]["device_id"] == "0"
    backend = s._providers[0].backend
    assert backend.entered >= 2  # kernels prepared and runs made inside the provider's context


def test_iobinding_on_device_makes_no_copies(fake_cuda):
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    ref = ortlite.InferenceSession(mlp(), providers=[CPU]).run(None, {"x": x})[0]
    xv = ortlite.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    assert xv.device_name() == "cuda" and isinstance(xv.data_ptr(), int)
    b = s.io_binding()
    b.bind_ortvalue_input("x", xv)
    b.bind_output("y", "cuda")
    for _ in range(3):
        s.run_with_iobinding(b)
        assert s._last_copies == (0, 0)
    (y,) = b.get_outputs()
    assert y.device_name() == "cuda" and y.shape() == [3, 3]
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(b.copy_outputs_to_cpu()[0], ref, rtol=1e-6)


def test_bind_raw_device_pointers(fake_cuda):
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    ref = ortlite.InferenceSession(mlp(), providers=[CPU]).run(None, {"x": x})[0]
    xin = ortlite.OrtValue.ortvalue_from_shape_and_type([2, 4], np.float32, "cuda", 0)
    xin.update_inplace(x)
    yout = ortlite.OrtValue.ortvalue_from_shape_and_type([2, 3], TensorProto.FLOAT, "cuda", 0)
    b = s.io_binding()
    b.bind_input("x", "cuda", 0, np.float32, [2, 4], xin.data_ptr())
    b.bind_output("y", "cuda", 0, np.float32, [2, 3], yout.data_ptr())
    s.run_with_iobinding(b)
    assert s._last_copies == (0, 0)
    np.testing.assert_allclose(yout.numpy(), ref, rtol=1e-6)  # written into the caller's buffer
    assert b.get_outputs()[0].data_ptr() == yout.data_ptr()


def test_cpu_only_op_falls_back_with_counted_copies(fake_cuda, caplog):
    caplog.set_level("WARNING", logger="ortlite")
    s = ortlite.InferenceSession(with_cpu_only_op(), providers=[CUDA, CPU])
    by_node = {n.name: n.provider for n in s.get_placement().nodes}
    assert by_node == {"relu": CUDA, "scale": CPU, "neg": CUDA}
    assert "Scaler" in caplog.text
    x = np.array([[-1.0], [0.5], [2.0]], np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], -(np.maximum(x, 0) - 0.5) * 2)
    b = s.io_binding()
    b.bind_ortvalue_input("x", ortlite.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    b.bind_output("y", "cuda")
    s.run_with_iobinding(b)
    assert s._last_copies[0] == 2  # to the host for Scaler and back: counted, never hidden


def test_gpu_mem_limit_is_enforced_with_a_clear_error(fake_cuda):
    with pytest.raises(Fail, match=r"device memory exhausted.*gpu_mem_limit=16 bytes"):
        ortlite.InferenceSession(mlp(), providers=[(CUDA, {"gpu_mem_limit": "16"}), CPU])
    s = ortlite.InferenceSession(mlp(), providers=[(CUDA, {"gpu_mem_limit": str(1 << 20)}), CPU])
    assert s._providers[0].memory_info()["limit_bytes"] == 1 << 20


def test_provider_options_round_trip(fake_cuda):
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU],
                                 provider_options=[{"user_compute_stream": "4096", "use_tf32": "0"}, {}])
    opts = s.get_provider_options()[CUDA]
    assert opts["user_compute_stream"] == "4096" and opts["has_user_compute_stream"] == "1"
    assert opts["use_tf32"] == "0"
    with pytest.raises(InvalidArgument, match="unknown provider option 'bogus'"):
        ortlite.InferenceSession(mlp(), providers=[(CUDA, {"bogus": "1"}), CPU])


# ------------------------------------------------------------------------------ DLPack

def test_dlpack_on_the_host_shares_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = ortlite.OrtValue.from_dlpack(a)
    assert v.device_name() == "cpu" and v.shape() == [2, 3]
    a[0, 0] = 42
    assert v.numpy()[0, 0] == 42  # no copy
    back = np.from_dlpack(v)
    back[1, 2] = -1
    assert a[1, 2] == -1
    assert v.__dlpack_device__() == (1, 0)
    with pytest.raises(AttributeError, match="not in CUDA memory"):
        v.__cuda_array_interface__  # noqa: B018
    flags = ortlite.OrtValue.from_dlpack(np.array([1, 0, 1], np.uint8), is_bool_tensor=True)
    assert flags.numpy().dtype == np.bool_ and flags.numpy().tolist() == [True, False, True]
    with pytest.raises(TypeError, match="__dlpack_device__"):
        ortlite.OrtValue.from_dlpack(a.__dlpack__())


def test_dlpack_from_a_cuda_producer(fake_cuda):
    from cuda_provider.fake_cuda import FakeCudaTensor

    host = np.arange(4, dtype=np.float32)
    v = ortlite.OrtValue.from_dlpack(FakeCudaTensor(host))
    assert v.device_name() == "cuda" and v.device().device_id() == 0
    np.testing.assert_array_equal(v.numpy(), host)


# ------------------------------------------------------------------------------ CUDA graphs

def test_cuda_graph_capture_and_replay(fake_cuda):
    s = ortlite.InferenceSession(elementwise(), providers=[(CUDA, {"enable_cuda_graph": "1"}), CPU])
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x1})[0], ew_ref(x1), rtol=1e-6)  # warm-up run, then capture
    backend = s._providers[0].backend
    assert backend.captures == 1
    runner = s._graph_runner
    for _ in range(2):
        x = rng.standard_normal((2, 5)).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], ew_ref(x), rtol=1e-6)  # replayed
        assert s._last_copies[0] == 2  # the host input into the graph's buffer, the output back
    assert runner.graph.launches == 2 and backend.captures == 1
    # inputs already on the device: copied device to device into the graph's buffers, no host copies
    b = s.io_binding()
    x = rng.standard_normal((2, 5)).astype(np.float32)
    b.bind_ortvalue_input("x", ortlite.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    b.bind_output("y", "cuda")
    s.run_with_iobinding(b)
    assert s._last_copies == (0, 0)
    np.testing.assert_allclose(b.get_outputs()[0].numpy(), ew_ref(x), rtol=1e-6)


def test_cuda_graph_refuses_new_shapes(fake_cuda):
    shape = ["n", 5]
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = ortlite.InferenceSession(m.SerializeToString(), providers=[(CUDA, {"enable_cuda_graph": "1"}), CPU])
    s.run(None, {"x": np.ones((2, 5), np.float32)})
    with pytest.raises(InvalidArgument, match=r"fixed input shapes.*x: \[2, 5\] float32 -> \[3, 5\] float32"):
        s.run(None, {"x": np.ones((3, 5), np.float32)})


def test_cuda_graph_refused_naming_what_blocks_it(fake_cuda):
    with pytest.raises(Fail, match=r"enable_cuda_graph=1 cannot be honoured.*FusedGemm 'mm/FusedGemm[^']*' calls cuBLAS"):
        ortlite.InferenceSession(mlp(), providers=[(CUDA, {"enable_cuda_graph": "1"}), CPU])
    with pytest.raises(Fail, match=r"Scaler 'scale' runs on CPUExecutionProvider"):
        ortlite.InferenceSession(with_cpu_only_op(), providers=[(CUDA, {"enable_cuda_graph": "1"}), CPU])


def test_registering_a_stand_in_restores_the_real_provider(fake_cuda):
    from ortlite import providers

    providers.unregister_provider(CUDA)
    assert providers.provider_class(CUDA) is cuda_mod.CUDAExecutionProvider
    assert providers.all_provider_names() == ["TensorrtExecutionProvider", CUDA, "OpenVINOExecutionProvider", CPU]
    providers.register_provider(fake_cuda, priority=0)  # the fixture's teardown unregisters it
