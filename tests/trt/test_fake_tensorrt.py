"""The fake ``tensorrt`` module (fake_tensorrt.py) behaves as the notes say real TensorRT 10.x / 11.x does."""
import gc
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ortlite
from helpers import make_model
from trt import fake_tensorrt_memory as devmem


class ListLogger:
    """An ILogger subclass recording (severity name, message)."""

    def __new__(cls, trt):
        class _L(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.records = []

            def log(self, severity, msg):
                self.records.append((severity.name, msg))

            def errors(self):
                return [m for s, m in self.records if s in ("ERROR", "INTERNAL_ERROR")]

        return _L()


def _chain_model(ops=("Relu", "Abs", "Exp", "Neg"), dynamic=True):
    names = ["x"] + [f"t{i}" for i in range(len(ops) - 1)] + ["y"]
    nodes = [helper.make_node(op, [names[i]], [names[i + 1]], name=f"n{i}") for i, op in enumerate(ops)]
    dim = "batch" if dynamic else 2
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 3])])


def _mlp(dtype=np.float32, dynamic=True):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
             helper.make_node("Relu", ["hb"], ["y"], name="relu")]
    dim = "batch" if dynamic else 2
    return make_model(nodes, [helper.make_tensor_value_info("x", et, [dim, 4])],
                      [helper.make_tensor_value_info("y", et, [dim, 3])],
                      [onnx.numpy_helper.from_array(W, "W"), onnx.numpy_helper.from_array(b, "b")])


def _build(trt, model, profile=((1, 4), (2, 4), (8, 4)), flags=0, logger=None, config_fn=None):
    logger = logger or ListLogger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    if profile is not None:
        p = builder.create_optimization_profile()
        p.set_shape(network.get_input(0).name, *profile)
        assert config.add_optimization_profile(p) == 0
    if config_fn:
        config_fn(config)
    return builder.build_serialized_network(network, config), logger


def _engine(trt, plan, logger=None):
    return trt.Runtime(logger or ListLogger(trt)).deserialize_cuda_engine(plan)


def _strict_cupy():
    from cuda_provider.strict_backend import FAKE_CUPY

    return FAKE_CUPY


def _run(trt, engine, x, out_shape, out_dtype=np.float32, xp=None):
    """Run one input/one output through a new context on strict-CuPy buffers; returns the host result."""
    xp = xp or _strict_cupy()
    ctx = engine.create_execution_context()
    dx = xp.asarray(x)
    dy = xp.empty(out_shape, out_dtype)
    assert ctx.set_input_shape("x", x.shape)
    assert tuple(ctx.get_tensor_shape("y")) == out_shape
    assert ctx.set_tensor_address("x", dx.data.ptr)
    assert ctx.set_tensor_address("y", dy.data.ptr)
    assert ctx.execute_async_v3(7)
    return xp.asnumpy(dy)


# --------------------------------------------------------------------------------------------- API surface


def test_version_specific_members(fake_trt):
    trt = fake_trt
    v10 = trt.__version__.startswith("10.")
    removed = [(trt.BuilderFlag, "FP16"), (trt.BuilderFlag, "INT8"), (trt.BuilderFlag, "BF16"),
               (trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"), (trt.OnnxParser, "supports_model"),
               (trt.Builder, "platform_has_fast_fp16"), (trt.IBuilderConfig, "int8_calibrator"),
               (trt.TacticSource, "CUDNN")]
    for owner, name in removed:
        assert hasattr(owner, name) == v10, name
        if not v10:
            with pytest.raises(AttributeError):
                getattr(owner, name)
    assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == (1 if v10 else 0)
    assert int(trt.BuilderFlag.VERSION_COMPATIBLE) == (13 if v10 else 12)
    assert int(trt.BuilderFlag.TF32) == 6
    for name in ("supports_model_v2", "num_subgraphs", "get_subgraph_nodes", "is_subgraph_supported"):
        assert hasattr(trt.OnnxParser, name)
    assert trt.nptype(trt.float16) is np.float16 and trt.volume([2, 3, 4]) == 24
    with pytest.raises(TypeError):
        trt.nptype(trt.bfloat16)
    assert trt.Logger.WARNING == trt.ILogger.Severity.WARNING
    d = trt.Dims([2, -1, 3])
    assert d == [2, -1, 3] and d[-1] == 3 and d[0:2] == (2, -1) and len(d) == 3
    with pytest.raises(IndexError):
        d[3]
    b = trt.Builder(trt.Logger())
    with pytest.raises(TypeError):  # pybind refuses a plain int for an enum parameter
        b.create_builder_config().set_flag(6)
    with pytest.warns(DeprecationWarning):
        with b:
            pass


# --------------------------------------------------------------------------------------------- parser


def _query(trt, model, logger=None):
    logger = logger or ListLogger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.supports_model_v2(model.SerializeToString())
    subs = [(parser.get_subgraph_nodes(i), parser.is_subgraph_supported(i)) for i in range(parser.num_subgraphs)]
    return ok, subs, parser, network


def test_support_query_splits_at_failing_node(fake_trt):
    trt, fake = fake_trt, fake_trt._fake
    fake.SUPPORT.unsupported_ops = {"Abs"}
    ok, subs, parser, network = _query(trt, _chain_model())
    assert not ok
    assert subs == [([0], False), ([2, 3], False)]  # "unknown" until the whole model parses
    assert parser.num_errors == 1
    err = parser.get_error(0)
    assert err.code() == trt.ErrorCode.UNSUPPORTED_NODE and err.node() == 1
    assert (err.node_name(), err.node_operator()) == ("n1", "Abs")
    assert str(err).startswith("In node 1 with name: n1 and operator: Abs (")
    assert "UNSUPPORTED_NODE: No importer registered for op: Abs" in str(err)
    assert network.num_inputs == 1 and network.get_input(0).name == "x"
    assert tuple(network.get_input(0).shape) == (-1, 3) and network.get_input(0).dtype == trt.float32
    # the caller recurses on each False subgraph: alone, they are supported
    ok, subs, _, _ = _query(trt, _chain_model(("Exp", "Neg")))
    assert ok and subs == [([0, 1], True)]


def test_support_query_localises_one_node_per_call(fake_trt):
    fake_trt._fake.SUPPORT.unsupported_ops = {"Abs"}
    ok, subs, parser, _ = _query(fake_trt, _chain_model(("Relu", "Abs", "Exp", "Abs", "Neg")))
    assert not ok and parser.num_errors == 2  # static errors for both...
    assert subs == [([0, 1, 2], False), ([4], False)]  # ...but only the last one is cut


def test_supports_model_v1_only_on_10(fake_trt10):
    fake_trt10._fake.SUPPORT.unsupported_ops = {"Abs"}
    logger = ListLogger(fake_trt10)
    parser = fake_trt10.OnnxParser(fake_trt10.Builder(logger).create_network(), logger)
    with pytest.warns(DeprecationWarning):
        ok, subs = parser.supports_model(_chain_model().SerializeToString())
    assert not ok and [list(s[0]) for s in subs] == [[0], [2, 3]]


def test_unsupported_input_dtype_cuts_its_consumers(fake_trt):
    nodes = [helper.make_node("Cast", ["d"], ["dc"], to=TensorProto.FLOAT, name="c"),
             helper.make_node("Relu", ["x"], ["y"], name="r")]
    m = make_model(nodes, [helper.make_tensor_value_info("d", TensorProto.DOUBLE, [2]),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("dc", TensorProto.FLOAT, [2]),
                    helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    ok, subs, parser, _ = _query(fake_trt, m)
    assert not ok and subs == [([1], False)]
    assert parser.get_error(0).node() == -1 and parser.get_error(0).file() == "d"


def test_garbage_model_fails_parse(fake_trt):
    logger = ListLogger(fake_trt)
    parser = fake_trt.OnnxParser(fake_trt.Builder(logger).create_network(), logger)
    assert parser.parse(b"\x00garbage") is False
    assert parser.get_error(0).code() == fake_trt.ErrorCode.MODEL_DESERIALIZE_FAILED
    assert logger.errors()


# --------------------------------------------------------------------------------------------- build


def test_dynamic_input_without_profile_fails_build(fake_trt):
    plan, logger = _build(fake_trt, _mlp(), profile=None)
    assert plan is None
    assert any("no optimization profile" in m for m in logger.errors())
    assert fake_trt._fake.STATS.build_failures == 1 and fake_trt._fake.STATS.builds == 0


def test_profile_inconsistent_raises_runtime_error(fake_trt):
    p = fake_trt.Builder(fake_trt.Logger()).create_optimization_profile()
    with pytest.raises(RuntimeError):
        p.set_shape("x", (4, 4), (2, 4), (8, 4))


def test_forced_failure_and_cancellation(fake_trt):
    trt, fake = fake_trt, fake_trt._fake
    fake.FAULTS.fail_next_build = 1
    plan, logger = _build(trt, _mlp())
    assert plan is None and logger.errors()
    assert _build(trt, _mlp())[0] is not None  # only the next one

    calls = []

    class Cancel(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            calls.append(("start", phase_name, threading.get_ident()))

        def step_complete(self, phase_name, step):
            calls.append(("step", step))
            return step < 1

        def phase_finish(self, phase_name):
            calls.append(("finish", phase_name))

    def attach(config):
        config.progress_monitor = Cancel()

    plan, logger = _build(trt, _mlp(), config_fn=attach)
    assert plan is None and any("cancel" in m for m in logger.errors())
    assert [c[0] for c in calls] == ["start", "step", "step", "finish"]


def test_unsupported_op_build_fails(fake_trt):
    fake_trt._fake.SUPPORT.unsupported_ops = {"Abs"}
    logger = ListLogger(fake_trt)
    builder = fake_trt.Builder(logger)
    network = builder.create_network()
    assert not fake_trt.OnnxParser(network, logger).parse(_chain_model(dynamic=False).SerializeToString())
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None


def test_precision_flags_on_strongly_typed_10x(fake_trt10):
    trt = fake_trt10
    st = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    plan, logger = _build(trt, _mlp(), flags=st, config_fn=lambda c: c.set_flag(trt.BuilderFlag.FP16))
    assert plan is None and any("strongly typed" in m for m in logger.errors())
    plan, _ = _build(trt, _mlp(), flags=st)
    assert plan is not None


def test_timing_cache_round_trip(fake_trt):
    trt, fake = fake_trt, fake_trt._fake
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    cache = config.create_timing_cache(b"")
    assert config.set_timing_cache(cache, False)
    plan, _ = _build(trt, _mlp(), config_fn=lambda c: c.set_timing_cache(cache, False))
    assert plan is not None
    blob = bytes(cache.serialize())
    again = config.create_timing_cache(blob)
    assert bytes(again.serialize()) == blob and len(blob) > 20
    fake.DEVICE.cc = "sm_80"
    other = builder.create_builder_config().create_timing_cache(b"")
    assert not cache.combine(other, False) and cache.combine(other, True)
    config2 = builder.create_builder_config()
    assert config2.set_timing_cache(again, False) is False  # cache from sm_90 on an sm_80 device
    assert config2.set_timing_cache(again, True) is True
    again.reset()
    assert bytes(again.serialize()) != blob


# --------------------------------------------------------------------------------------------- engines


def test_build_deserialize_execute_matches_cpu(fake_trt, strict_cuda):
    trt, fake = fake_trt, fake_trt._fake
    model = _mlp()
    plan, _ = _build(trt, model)
    assert isinstance(plan, trt.IHostMemory) and plan.nbytes == len(bytes(plan)) == memoryview(plan).nbytes
    engine = _engine(trt, plan)
    assert engine is not None and fake.STATS.deserializations == 1
    assert engine.num_io_tensors == 2 and [engine.get_tensor_name(i) for i in range(2)] == ["x", "y"]
    assert engine[-1] == "y"
    assert engine.get_tensor_mode("x") == trt.TensorIOMode.INPUT
    assert engine.get_tensor_mode("nope") == trt.TensorIOMode.NONE
    assert engine.get_tensor_dtype("nope") == trt.DataType.FLOAT
    assert tuple(engine.get_tensor_shape("x")) == (-1, 4)
    with pytest.raises(ValueError):
        len(engine.get_tensor_shape("nope"))
    assert [tuple(d) for d in engine.get_tensor_profile_shape("x", 0)] == [(1, 4), (2, 4), (8, 4)]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    want = ortlite.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(_run(trt, engine, x, (5, 3)), want, rtol=1e-6)
    # serialize() round-trips
    engine2 = _engine(trt, engine.serialize())
    np.testing.assert_allclose(_run(trt, engine2, x, (5, 3)), want, rtol=1e-6)
    ctx = engine.create_execution_context()
    assert not ctx.set_input_shape("x", (9, 4))  # outside the profile
    assert not ctx.set_input_shape("y", (2, 3))  # not an input
    assert not ctx.set_tensor_address("nope", 0)
    assert not ctx.execute_async_v3(1)  # nothing set


def test_registered_numpy_buffers(fake_trt):
    trt = fake_trt
    plan, _ = _build(trt, _mlp(dynamic=False), profile=None)
    engine = _engine(trt, plan)
    ctx = engine.create_execution_context()
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    y = np.zeros((2, 3), np.float32)
    assert ctx.all_binding_shapes_specified and ctx.infer_shapes() == []
    assert ctx.set_tensor_address("x", devmem.register_device_buffer(x))
    assert ctx.set_tensor_address("y", devmem.register_device_buffer(y))
    assert ctx.get_tensor_address("x") == x.ctypes.data
    assert ctx.execute_async_v3(0)
    ref = ortlite.InferenceSession(_mlp(dynamic=False).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(y, ref.run(None, {"x": x})[0], rtol=1e-6)
    assert y.any()


def test_foreign_plans_refused(fake_trt):
    trt, fake = fake_trt, fake_trt._fake
    plan, _ = _build(trt, _mlp())
    other_version = "11.4.0" if trt.__version__.startswith("10.") else "10.16.1"
    other = fake.personality(other_version)
    logger = ListLogger(other)
    assert other.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert any("not compatible with this version" in m for m in logger.errors())
    fake.DEVICE.cc = "sm_89"
    logger = ListLogger(trt)
    assert _engine(trt, plan, logger) is None and any("incompatible device" in m for m in logger.errors())
    assert _engine(trt, b"garbage", logger) is None
    assert fake.STATS.deserialize_failures == 3
    # a hardware-compatible plan moves between Ampere+ devices
    hw = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    plan, _ = _build(trt, _mlp(), config_fn=lambda c: setattr(c, "hardware_compatibility_level", hw))
    fake.DEVICE.cc = "sm_90"
    assert _engine(trt, plan) is not None


def test_misaligned_address_refused(fake_trt, strict_cuda):
    trt = fake_trt
    engine = _engine(trt, _build(trt, _mlp())[0])
    ctx = engine.create_execution_context()
    buf = _strict_cupy().empty((64,), np.float32)
    assert ctx.set_tensor_address("x", buf.data.ptr)
    assert ctx.set_tensor_address("x", buf[64:].data.ptr)  # 256 bytes in: aligned
    assert ctx.set_tensor_address("x", buf[1:].data.ptr) is False  # 4 bytes in


def test_freed_buffer_fails_loudly(fake_trt, strict_cuda):
    trt = fake_trt
    engine = _engine(trt, _build(trt, _mlp())[0])
    xp = _strict_cupy()
    ctx = engine.create_execution_context()
    dx, dy = xp.asarray(np.ones((2, 4), np.float32)), xp.empty((2, 3), np.float32)
    assert ctx.set_input_shape("x", (2, 4))
    assert ctx.set_tensor_address("x", dx.data.ptr) and ctx.set_tensor_address("y", dy.data.ptr)
    del dx
    gc.collect()
    with pytest.raises(AssertionError, match="freed"):
        ctx.execute_async_v3(1)
    ctx2 = engine.create_execution_context()
    assert ctx2.set_input_shape("x", (2, 4))
    unknown = np.ones((2, 4), np.float32)  # never registered: not device memory
    assert ctx2.set_tensor_address("x", unknown.ctypes.data & ~255 or 256)
    assert ctx2.set_tensor_address("y", dy.data.ptr)
    with pytest.raises(AssertionError):
        ctx2.execute_async_v3(1)
    small = xp.empty((1, 3), np.float32)  # too small for the output
    ctx3 = engine.create_execution_context()
    dx = xp.asarray(np.ones((2, 4), np.float32))
    assert ctx3.set_input_shape("x", (2, 4)) and ctx3.set_tensor_address("x", dx.data.ptr)
    assert ctx3.set_tensor_address("y", small.data.ptr)
    with pytest.raises(AssertionError, match="past the end"):
        ctx3.execute_async_v3(1)


def test_fp16(fake_trt, strict_cuda):
    trt = fake_trt
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    if trt.__version__.startswith("10."):
        # weak typing + FP16 flag: float32 I/O, half precision inside
        plan, _ = _build(trt, _mlp(), config_fn=lambda c: c.set_flag(trt.BuilderFlag.FP16))
        engine = _engine(trt, plan)
        assert engine.get_tensor_dtype("x") == trt.float32
        got = _run(trt, engine, x, (3, 3))
        want = _run(trt, _engine(trt, _build(trt, _mlp())[0]), x, (3, 3))
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
        np.testing.assert_array_equal(got, got.astype(np.float16).astype(np.float32))
    # strongly typed (11.x always; 10.x when asked): a float16 model has HALF I/O
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if trt.__version__.startswith("10.") else 0
    engine = _engine(trt, _build(trt, _mlp(np.float16), flags=flags)[0])
    assert engine.get_tensor_dtype("x") == trt.float16 and engine.get_tensor_dtype("y") == trt.DataType.HALF
    got = _run(trt, engine, x.astype(np.float16), (3, 3), np.float16)
    assert got.dtype == np.float16


def test_qdq_int8_builds_on_both(fake_trt, strict_cuda):
    trt = fake_trt
    s = onnx.numpy_helper.from_array(np.array(0.05, np.float32), "s")
    z = onnx.numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [s, z], opset=13)
    engine = _engine(trt, _build(trt, m)[0])
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(_run(trt, engine, x, (2, 4)), np.round(x / 0.05) * 0.05, atol=1e-6)


def test_data_dependent_output_uses_allocator(fake_trt, strict_cuda):
    trt = fake_trt
    xp = _strict_cupy()
    m = make_model([helper.make_node("NonZero", ["x"], ["y"], name="nz")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [1, "n"])])
    engine = _engine(trt, _build(trt, m, profile=None)[0])
    ctx = engine.create_execution_context()
    assert tuple(ctx.get_tensor_shape("y")) == (1, -1)
    seen = {}

    class Alloc(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buf = None

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            self.buf = xp.empty((size,), np.uint8)
            seen["size"] = size
            return self.buf.data.ptr

        def notify_shape(self, tensor_name, shape):
            seen["shape"] = tuple(shape)

    alloc = Alloc()
    x = xp.asarray(np.array([0, 1, 0, 2, 3, 0], np.float32))
    assert ctx.set_tensor_address("x", x.data.ptr)
    assert ctx.set_output_allocator("y", alloc)
    assert ctx.execute_async_v3(3)
    assert seen == {"size": 24, "shape": (1, 3)}
    np.testing.assert_array_equal(xp.asnumpy(alloc.buf).view(np.int64), [1, 3, 4])


def test_concurrent_execution(fake_trt, strict_cuda):
    trt = fake_trt
    engine = _engine(trt, _build(trt, _mlp())[0])
    ref = ortlite.InferenceSession(_mlp().SerializeToString(), providers=["CPUExecutionProvider"])
    errors = []

    def work(seed):
        try:
            x = np.random.default_rng(seed).standard_normal((seed % 8 + 1, 4)).astype(np.float32)
            for _ in range(5):
                got = _run(trt, engine, x, (x.shape[0], 3))
                np.testing.assert_allclose(got, ref.run(None, {"x": x})[0], rtol=1e-6)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
