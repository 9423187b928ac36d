"""CUDAExecutionProvider on a real GPU (CuPy). Skipped, with CuPy's reason, without a device;
ci/gpu_check.sh runs them (``pytest -m cuda``)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite import zoo
from ortlite.errors import Fail

from .test_cuda_provider import CPU, CUDA, elementwise, ew_ref, mlp, with_cpu_only_op

pytestmark = pytest.mark.cuda


def cpu_run(model, feeds):
    return ortlite.InferenceSession(model, providers=[CPU]).run(None, feeds)


def test_mlp_on_the_gpu_matches_the_cpu(real_cuda):
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    assert {n.provider for n in s.get_placement().nodes} == {CUDA}
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], cpu_run(mlp(), {"x": x})[0], rtol=1e-3, atol=1e-4)
    assert s._last_copies[0] == 2


def test_iobinding_zero_copies_with_cupy_arrays(real_cuda):
    cp = real_cuda
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    x = cp.asarray(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    b = s.io_binding()
    b.bind_ortvalue_input("x", ortlite.OrtValue.from_dlpack(x))
    b.bind_output("y", "cuda")
    for _ in range(3):
        s.run_with_iobinding(b)
        assert s._last_copies == (0, 0)
    y = b.get_outputs()[0]
    assert y.device_name() == "cuda"
    ycp = cp.from_dlpack(y)  # zero-copy view
    assert int(ycp.data.ptr) == y.data_ptr()
    np.testing.assert_allclose(cp.asnumpy(ycp), cpu_run(mlp(), {"x": cp.asnumpy(x)})[0], rtol=1e-3, atol=1e-4)
    cai = y.__cuda_array_interface__
    assert cai["data"][0] == y.data_ptr() and tuple(cai["shape"]) == (3, 3)


def test_bind_input_pointer_and_ortvalue_on_device(real_cuda):
    cp = real_cuda
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    xv = ortlite.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    out = ortlite.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32, "cuda", 0)
    b = s.io_binding()
    b.bind_input("x", "cuda", 0, np.float32, [2, 4], xv.data_ptr())
    b.bind_output("y", "cuda", 0, np.float32, [2, 3], out.data_ptr())
    s.run_with_iobinding(b)
    b.synchronize_outputs()
    assert s._last_copies == (0, 0)
    np.testing.assert_allclose(out.numpy(), cpu_run(mlp(), {"x": x})[0], rtol=1e-3, atol=1e-4)


def test_torch_interop_through_dlpack(real_cuda):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    s = ortlite.InferenceSession(mlp(), providers=[CUDA, CPU])
    xt = torch.randn(5, 4, device="cuda")
    b = s.io_binding()
    b.bind_ortvalue_input("x", ortlite.OrtValue.from_dlpack(xt))
    b.bind_output("y", "cuda")
    s.run_with_iobinding(b)
    yt = torch.from_dlpack(b.get_outputs()[0])
    assert yt.device.type == "cuda" and tuple(yt.shape) == (5, 3)
    np.testing.assert_allclose(yt.cpu().numpy(), cpu_run(mlp(), {"x": xt.cpu().numpy()})[0], rtol=1e-3, atol=1e-4)


def test_cpu_fallback_node_copies_are_counted(real_cuda):
    s = ortlite.InferenceSession(with_cpu_only_op(), providers=[CUDA, CPU])
    x = np.array([[-1.0], [0.5], [2.0]], np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], -(np.maximum(x, 0) - 0.5) * 2, rtol=1e-6)
    assert s._last_copies[0] == 4  # x in, Scaler's input out and back, y out


def test_cuda_graph_replay(real_cuda):
    s = ortlite.InferenceSession(elementwise(), providers=[(CUDA, {"enable_cuda_graph": "1"}), CPU])
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = rng.standard_normal((2, 5)).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], ew_ref(x), rtol=1e-6)
    assert s._graph_runner.graph is not None


def test_gpu_mem_limit(real_cuda):
    big = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024, 1024])],
        [numpy_helper.from_array(np.ones((1024, 1024), np.float32), "w")])
    m = helper.make_model(big, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(Fail, match="gpu_mem_limit"):
        ortlite.InferenceSession(m.SerializeToString(), providers=[(CUDA, {"gpu_mem_limit": str(1 << 20)}), CPU])


# use_tf32=1 (onnxruntime's default) rounds GEMM operands to TF32: BERT-base and ResNet-50 end
# ~4e-3 away from float32; with use_tf32=0 they agree to float32 accumulation-order noise.
@pytest.mark.parametrize("tf32,tol", [("0", 2e-3), ("1", 2e-2)])
@pytest.mark.parametrize("make", [lambda: zoo.resnet50(batch=1), lambda: zoo.bert_base(batch=1, seq=32)],
                         ids=["resnet50", "bert_base"])
def test_zoo_models_match_the_cpu(real_cuda, make, tf32, tol):
    m = make()
    f = zoo.example_inputs(m)
    got = ortlite.InferenceSession(m, providers=[(CUDA, {"use_tf32": tf32}), CPU]).run(None, f)
    want = cpu_run(m, f)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_float16_model(real_cuda):
    nodes = [helper.make_node("Mul", ["x", "x"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=-1)]
    g = helper.make_graph(nodes, "h", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    x = np.random.default_rng(4).standard_normal((4, 8)).astype(np.float16)
    got = ortlite.InferenceSession(m.SerializeToString(), providers=[CUDA, CPU]).run(None, {"x": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), cpu_run(m.SerializeToString(), {"x": x})[0].astype(np.float32),
                               rtol=1e-2, atol=1e-3)
