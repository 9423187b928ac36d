"""TensorrtExecutionProvider on the TensorRT stand-in (fake_tensorrt.py, 10.x and 11.x personalities) and
the CUDA provider over the strict CuPy stand-in: claims, exclusions, builds, profiles, the engine cache,
precision, IOBinding copies, concurrency, cancellation."""
import concurrent.futures
import logging
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ortlite
from ortlite import zoo
from ortlite.errors import InvalidArgument, ProviderFallbackWarning

TRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"


@pytest.fixture
def trt_env(fake_trt, strict_cuda):
    """The fake tensorrt installed, CUDA on the strict stand-in, TensorRT's availability asked again."""
    from ortlite.providers import _availability_cache

    _availability_cache.pop(TRT, None)
    yield fake_trt
    _availability_cache.pop(TRT, None)


def session(model, opts=None, **kw):
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderFallbackWarning)
        return ortlite.InferenceSession(src, kw.pop("so", None), providers=[(TRT, dict(opts or {})), CPU], **kw)


def cpu_run(model, feeds):
    return ortlite.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, feeds)


def static(model):
    """``model`` with its symbolic input dims fixed to 1/2 (so engines build at session creation)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param:
                d.ClearField("dim_param")
                d.dim_value = 2
    return m


def mlp(dynamic=True):
    rng = np.random.default_rng(0)
    nodes = [h.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"), h.make_node("Relu", ["a"], ["r"], name="relu"),
             h.make_node("NonZero", ["r"], ["nz"], name="nonzero"),
             h.make_node("Shape", ["nz"], ["nzs"], name="nz_shape"),
             h.make_node("MatMul", ["r", "w2"], ["b"], name="mm2"), h.make_node("Sigmoid", ["b"], ["y"], name="sig")]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", T.FLOAT, ["N" if dynamic else 2, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, None), h.make_tensor_value_info("nzs", T.INT64, None)],
                     [nh.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
                      nh.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_available_with_the_reason_otherwise(monkeypatch):
    import sys

    from ortlite.providers import _availability_cache, availability

    _availability_cache.pop(TRT, None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    ok, why = availability(TRT)
    assert not ok and "tensorrt Python package is not installed" in why
    _availability_cache.pop(TRT, None)


def test_whole_model_is_one_engine(trt_env):
    model = static(zoo.demo(batch=2))
    feeds = zoo.example_inputs(model)
    sess = session(model)
    rep = sess.get_placement()
    assert rep.counts() == {TRT: len(rep)}, rep.summary()
    assert [b.cache for b in sess.engine_builds] == ["off"]
    for g, w in zip(sess.run(None, feeds), cpu_run(model, feeds)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert trt_env._fake.STATS.builds == 1


def test_partial_claim_recurses_and_reports_the_parser(trt_env):
    trt_env._fake.SUPPORT.unsupported_ops = {"NonZero"}
    model = mlp(dynamic=False)
    sess = session(model)
    rep = sess.get_placement()
    nz = rep.node("nonzero")
    assert nz.provider == CPU and nz.refused[0][0] == TRT
    assert "TensorRT's ONNX parser" in nz.refused[0][1] and "NonZero" in nz.refused[0][1]
    assert rep.node("mm1").provider == TRT and rep.node("mm2").provider == TRT
    assert rep.node("mm1").group == rep.node("mm2").group
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    for g, w in zip(sess.run(None, {"x": x}), cpu_run(model, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert trt_env._fake.STATS.support_queries >= 2  # the first answer marks everything unknown


def test_op_types_to_exclude(trt_env):
    model = mlp(dynamic=False)
    sess = session(model, {"trt_op_types_to_exclude": "Sigmoid,NonZero"})
    rep = sess.get_placement()
    assert rep.node("sig").provider == CPU
    assert rep.node("sig").refused[0][1] == "Sigmoid is in trt_op_types_to_exclude"


def test_min_subgraph_size(trt_env):
    trt_env._fake.SUPPORT.unsupported_ops = {"NonZero", "Relu"}
    sess = session(mlp(dynamic=False), {"trt_min_subgraph_size": "3"})
    assert all(n.provider == CPU for n in sess.get_placement())


def test_dynamic_shapes_build_at_first_run_and_rebuild_past_the_profile(trt_env, caplog):
    model = zoo.demo(batch=1)  # batch_size is symbolic
    sess = session(model)
    assert trt_env._fake.STATS.builds == 0  # waits for shapes
    with caplog.at_level(logging.INFO, logger="ortlite"):
        for batch in (2, 3, 4, 2):  # 2 builds up to batch 2; 3 and 4 need up to 4: one rebuild; 2 fits
            feeds = zoo.example_inputs(model, dims={"batch_size": batch})
            np.testing.assert_allclose(sess.run(None, feeds)[0], cpu_run(model, feeds)[0], rtol=1e-5, atol=1e-5)
    assert trt_env._fake.STATS.builds == 2
    assert "rebuilding" in caplog.text and "'input': (3, 3, 64, 64)" in caplog.text


def test_explicit_profiles(trt_env):
    model = zoo.demo(batch=1)
    opts = {"trt_profile_min_shapes": "input:1x3x64x64", "trt_profile_opt_shapes": "input:2x3x64x64",
            "trt_profile_max_shapes": "input:4x3x64x64"}
    sess = session(model, opts)
    assert trt_env._fake.STATS.builds == 1
    feeds = zoo.example_inputs(model, dims={"batch_size": 3})
    np.testing.assert_allclose(sess.run(None, feeds)[0], cpu_run(model, feeds)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="outside its optimization profile"):
        sess.run(None, zoo.example_inputs(model, dims={"batch_size": 5}))


def test_engine_cache_hit_and_weight_change(trt_env, tmp_path):
    opts = {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(tmp_path)}
    m1 = static(zoo.demo(batch=2, seed=0))
    s1 = session(m1, opts)
    assert [b.cache for b in s1.engine_builds] == ["miss"]
    s2 = session(m1, opts)
    assert [b.cache for b in s2.engine_builds] == ["hit"] and trt_env._fake.STATS.builds == 1
    s3 = session(static(zoo.demo(batch=2, seed=1)), opts)  # same names, other weights
    assert [b.cache for b in s3.engine_builds] == ["miss"] and trt_env._fake.STATS.builds == 2
    feeds = zoo.example_inputs(m1)
    np.testing.assert_allclose(s2.run(None, feeds)[0], cpu_run(m1, feeds)[0], rtol=1e-5, atol=1e-5)


def test_a_plan_from_another_device_is_rebuilt(trt_env, tmp_path):
    opts = {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(tmp_path)}
    m = static(zoo.demo(batch=2))
    session(m, opts)
    trt_env._fake.FAULTS.fail_next_deserialize = 1  # the cached plan is refused (other TensorRT / GPU)
    s = session(m, opts)
    assert [b.cache for b in s.engine_builds] == ["rebuilt"]


def test_build_failure_falls_back_with_the_logged_reason(trt_env):
    trt_env._fake.FAULTS.fail_next_build = 1
    with pytest.warns(ProviderFallbackWarning, match="TensorRT could not build"):
        sess = ortlite.InferenceSession(static(zoo.demo(batch=2)).SerializeToString(), providers=[TRT, CPU])
    assert all(n.provider == CPU for n in sess.get_placement())


def test_fp16(trt_env):
    model = static(zoo.demo(batch=2))
    feeds = zoo.example_inputs(model)
    sess = session(model, {"trt_fp16_enable": "1"})
    got = sess.run(None, feeds)[0]
    np.testing.assert_allclose(got, cpu_run(model, feeds)[0], rtol=2e-2, atol=2e-2)
    assert got.dtype == np.float32
    assert sess.get_placement().counts() == {TRT: len(sess.get_placement())}


def test_fp16_on_11_without_the_converter_refuses(fake_trt11, strict_cuda, monkeypatch):
    import sys

    from ortlite.providers import _availability_cache

    _availability_cache.pop(TRT, None)
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.warns(ProviderFallbackWarning, match="no FP16 builder flag.*onnxconverter-common"):
        ortlite.InferenceSession(static(zoo.demo(batch=2)).SerializeToString(),
                                 providers=[(TRT, {"trt_fp16_enable": "1"}), CPU])


def test_int8_needs_qdq(trt_env):
    with pytest.warns(ProviderFallbackWarning, match="INT8 from calibration is out of scope"):
        ortlite.InferenceSession(static(zoo.demo(batch=2)).SerializeToString(),
                                 providers=[(TRT, {"trt_int8_enable": "1"}), CPU])
    with pytest.raises(InvalidArgument, match="calibration table is out of scope"):
        ortlite.InferenceSession(static(zoo.demo(batch=2)).SerializeToString(),
                                 providers=[(TRT, {"trt_int8_calibration_table_name": "t.cache"}), CPU])


def test_qdq_int8_model(trt_env):
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 8])
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), h.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             h.make_node("MatMul", ["dq", "w"], ["y"])]
    g = h.make_graph(nodes, "qdq", [x], [h.make_tensor_value_info("y", T.FLOAT, [2, 4])],
                     [nh.from_array(np.float32(0.05), "s"), nh.from_array(np.int8(0), "z"),
                      nh.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    sess = session(m, {"trt_int8_enable": "1"})
    assert sess.get_placement().counts() == {TRT: 3}
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)}
    np.testing.assert_allclose(sess.run(None, feeds)[0], cpu_run(m, feeds)[0], rtol=1e-5, atol=1e-5)


def test_iobinding_on_the_device_makes_no_copy(trt_env):
    model = static(zoo.demo(batch=2))
    feeds = zoo.example_inputs(model)
    sess = session(model)
    x = ortlite.OrtValue.ortvalue_from_numpy(feeds["input"], "cuda", 0)
    io = sess.io_binding()
    io.bind_ortvalue_input("input", x)
    io.bind_output("output", "cuda")
    for _ in range(2):
        sess.run_with_iobinding(io)
        assert sess.get_placement().last_run_copies == 0
    np.testing.assert_allclose(io.copy_outputs_to_cpu()[0], cpu_run(model, feeds)[0], rtol=1e-5, atol=1e-5)


def test_concurrent_runs(trt_env):
    model = static(zoo.demo(batch=2))
    sess = session(model)
    xs = [zoo.example_inputs(model, seed=k) for k in range(8)]
    want = [cpu_run(model, f)[0] for f in xs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda f: sess.run(None, f)[0], xs * 3))
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, want[k % 8], rtol=1e-5, atol=1e-5)


def test_build_cancelled_by_the_progress_monitor(trt_env, monkeypatch):
    """Ctrl-C during a build sets the cancel event; the monitor's step_complete then returns False and
    TensorRT returns no engine: the session creation stops with KeyboardInterrupt, nothing half-built."""
    from ortlite.providers.tensorrt import engine as eng

    real = eng.make_progress_monitor

    def cancelling(trt, label, progress, cancel):
        cancel.set()  # as the SIGINT handler would
        return real(trt, label, progress, cancel)
    monkeypatch.setattr(eng, "make_progress_monitor", cancelling)
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        session(static(zoo.demo(batch=2)))


def test_options_are_validated(trt_env):
    with pytest.raises(InvalidArgument, match="unknown option.*trt_fp16_enabled.*valid options: .*trt_fp16_enable"):
        session(zoo.demo(), {"trt_fp16_enabled": "1"})
    with pytest.raises(InvalidArgument, match="trt_builder_optimization_level=9 is not valid; expected 0 to 5"):
        session(zoo.demo(), {"trt_builder_optimization_level": "9"})
    with pytest.warns(UserWarning, match="trt_dla_enable is accepted but ignored"):
        ortlite.InferenceSession(static(zoo.demo(batch=2)).SerializeToString(),
                                 providers=[(TRT, {"trt_dla_enable": "1"}), CPU])


def test_timing_cache_is_written_and_reused(trt_env, tmp_path):
    opts = {"trt_timing_cache_enable": "1", "trt_timing_cache_path": str(tmp_path)}
    session(static(zoo.demo(batch=2)), opts)
    files = [p for p in tmp_path.iterdir() if p.suffix == ".timing"]
    assert len(files) == 1 and "sm_" in files[0].name
    size = files[0].stat().st_size
    session(static(zoo.demo(batch=2, seed=3)), opts)
    assert files[0].stat().st_size >= size


def test_data_dependent_output_through_an_output_allocator(trt_env):
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("NonZero", ["r"], ["nz"], name="nonzero"),
             h.make_node("Cast", ["nz"], ["y"], to=T.INT64, name="cast")]
    g = h.make_graph(nodes, "dds", [h.make_tensor_value_info("x", T.FLOAT, [3, 4])],
                     [h.make_tensor_value_info("y", T.INT64, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    sess = session(m)
    rep = sess.get_placement()
    assert rep.counts() == {TRT: len(rep)} and rep.node("nonzero").provider == TRT, rep.summary()
    for seed in range(3):  # a different number of non-zeros each run
        x = np.random.default_rng(seed).standard_normal((3, 4)).astype(np.float32)
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], cpu_run(m, {"x": x})[0])


def test_epcontext_model_loads_engines_without_building(trt_env, tmp_path):
    model = static(zoo.demo(batch=2))
    feeds = zoo.example_inputs(model)
    so = ortlite.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "ctx.onnx")
    session(model, {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(tmp_path / "engines")}, so=so)
    builds = trt_env._fake.STATS.builds
    saved = onnx.load(str(tmp_path / "ctx.onnx"))
    assert [n.op_type for n in saved.graph.node] == ["EPContext"]
    sess = ortlite.InferenceSession(str(tmp_path / "ctx.onnx"), providers=[TRT, CPU])
    assert trt_env._fake.STATS.builds == builds  # nothing built, nothing parsed
    assert [b.cache for b in sess.engine_builds] == ["epcontext"]
    np.testing.assert_allclose(sess.run(None, feeds)[0], cpu_run(model, feeds)[0], rtol=1e-5, atol=1e-5)


def test_bench_reports_build_cache_and_precision(trt_env, tmp_path):
    from ortlite.bench import ortlite_runner

    model = static(zoo.demo(batch=2))
    r = ortlite_runner(model.SerializeToString(), zoo.example_inputs(model), TRT)
    assert r.result.engine_build_ms is not None
    assert r.result.engine_cache.startswith("off; ")


def test_damaged_cache_entry_is_rebuilt(trt_env, tmp_path):
    opts = {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(tmp_path)}
    m = static(zoo.demo(batch=2))
    entry = session(m, opts).engine_builds[0].path
    data = bytearray(open(entry, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(entry, "wb").write(bytes(data))
    s = session(m, opts)
    assert [b.cache for b in s.engine_builds] == ["rebuilt"]
    feeds = zoo.example_inputs(m)
    np.testing.assert_allclose(s.run(None, feeds)[0], cpu_run(m, feeds)[0], rtol=1e-5, atol=1e-5)


def test_engines_and_cuda_kernels_share_the_device(trt_env):
    """A node TensorRT may not take runs on the CUDA provider: values between the engine and the CUDA
    kernel stay on the device, on one stream (the session's CUDA provider's)."""
    model = mlp(dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderFallbackWarning)
        sess = ortlite.InferenceSession(model.SerializeToString(), providers=[
            (TRT, {"trt_op_types_to_exclude": "Sigmoid,NonZero,Shape"}), "CUDAExecutionProvider", CPU])
    rep = sess.get_placement()
    assert rep.node("sig").provider == "CUDAExecutionProvider" and rep.node("mm2").provider == TRT
    trt_prov = next(p for p in sess._providers if p.name == TRT)
    cuda_prov = next(p for p in sess._providers if p.name == "CUDAExecutionProvider")
    assert trt_prov.cuda is cuda_prov  # one pool, one stream
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    got = sess.run(None, {"x": x})
    for g, w in zip(got, cpu_run(model, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert not [c for c in rep.copies if c.value in ("b", "r")]  # engine <-> CUDA kernel: no copy
