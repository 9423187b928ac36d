"""The OpenVINO provider through InferenceSession, for real: whole-model and partial claims, outputs
against the CPU provider and onnxruntime, the engine cache, compile-failure fallback, EP context."""
import concurrent.futures
import os
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

pytest.importorskip("openvino")

import onnxruntime  # noqa: E402

import ortlite  # noqa: E402
from ortlite import zoo  # noqa: E402
from ortlite.errors import ProviderFallbackWarning  # noqa: E402

OV = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"


def ov_session(model, opts=None, so=None):
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ortlite.InferenceSession(src, so, providers=[(OV, dict(opts or {})), CPU])


def check_against_cpu_and_onnxruntime(model, feeds, sess, rtol=1e-4, atol=1e-4):
    got = sess.run(None, feeds)
    cpu = ortlite.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, feeds)
    ort = onnxruntime.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, feeds)
    for g, c, o in zip(got, cpu, ort):
        np.testing.assert_allclose(g, c, rtol=rtol, atol=atol)
        np.testing.assert_allclose(g, o, rtol=rtol, atol=atol)
    return got


@pytest.mark.parametrize("build", [
    lambda: zoo.demo(batch=2),
    lambda: zoo.mobilenet_v2(batch=1, size=64),
    lambda: zoo.bert_tiny(batch=2, seq=16),
    lambda: zoo.gpt2(batch=1, seq=8, layers=2, hidden=64, heads=2, vocab=100),
    lambda: zoo.yolo_style(batch=1, size=64),
    lambda: zoo.lstm_text(batch=2, seq=8, vocab=50, emb=16, hidden=16),
], ids=["cnn", "mobilenet_v2", "bert_tiny", "gpt2_small", "yolo_style", "lstm"])
def test_whole_models_are_one_group(build):
    model = build()
    sess = ov_session(model)
    rep = sess.get_placement()
    assert rep.counts() == {OV: len(rep)}, rep.summary()
    assert len(sess.engine_builds) == 1
    check_against_cpu_and_onnxruntime(model, zoo.example_inputs(model), sess)


def _partial_model():
    """Conv -> Relu -> (com.microsoft BiasSoftmax: no OpenVINO conversion) ... -> SequenceConstruct/At and an If,
    around supported math."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    then = h.make_graph([h.make_node("Neg", ["m"], ["t"], name="neg")], "then", [],
                        [h.make_tensor_value_info("t", T.FLOAT, [2, 2])])
    els = h.make_graph([h.make_node("Abs", ["m"], ["e"], name="abs")], "else", [],
                       [h.make_tensor_value_info("e", T.FLOAT, [2, 2])])
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("ReduceMean", ["r", "axes"], ["sq"], keepdims=1, name="mean"),  # [1,4,1,1]
        h.make_node("Reshape", ["sq", "shp"], ["mat"], name="reshape"),  # [2,2]
        h.make_node("Add", ["mat", "eye"], ["mat1"], name="add_eye"),
        h.make_node("BiasSoftmax", ["mat1", "eye"], ["bs"], domain="com.microsoft", axis=-1, name="bias_softmax"),
        # onnx's shape inference knows no com.microsoft op: a Cast and a Reshape give the value a type again
        h.make_node("Cast", ["bs"], ["bsf"], to=T.FLOAT, name="cast"),
        h.make_node("Reshape", ["bsf", "shp"], ["inv"], name="reshape2"),
        h.make_node("MatMul", ["inv", "mat1"], ["m"], name="matmul"),
        h.make_node("SequenceConstruct", ["m", "m"], ["seq"], name="seq"),
        h.make_node("SequenceAt", ["seq", "one"], ["m2"], name="seq_at"),
        h.make_node("ReduceSum", ["m2"], ["s"], keepdims=0, name="sum"),
        h.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
        h.make_node("If", ["cond"], ["iff"], then_branch=then, else_branch=els, name="if"),
        h.make_node("Mul", ["iff", "two"], ["y"], name="mul"),
    ]
    inits = [nh.from_array(w, "w"), nh.from_array(np.array([2, 3], np.int64), "axes"),
             nh.from_array(np.array([2, 2], np.int64), "shp"), nh.from_array(np.eye(2, dtype=np.float32) * 3, "eye"),
             nh.from_array(np.int64(1), "one"), nh.from_array(np.float32(0), "zero"),
             nh.from_array(np.float32(2), "two")]
    g = h.make_graph(nodes, "partial", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 2])], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("com.microsoft", 1)])


def test_partial_claim_with_reasons():
    model = _partial_model()
    sess = ov_session(model)
    rep = sess.get_placement()
    by = {n.name: n for n in rep}
    assert by["bias_softmax"].provider == CPU
    assert "OpenVINO's ONNX frontend has no conversion for BiasSoftmax" in by["bias_softmax"].refused[0][1]
    assert by["seq"].provider == CPU and "sequence" in by["seq"].refused[0][1]
    assert by["if"].provider == CPU and "control flow runs on the host" in by["if"].refused[0][1]
    before = ("conv", "relu", "mean", "reshape", "add_eye")
    after = ("matmul", "sum", "gt", "mul")
    # the Cast reads a value of unknown type (made by the refused op): refused with that reason
    assert by["cast"].provider == CPU and "the type of its input 'bs' is unknown" in by["cast"].refused[0][1]
    for name in before + after + ("neg", "abs"):
        assert by[name].provider == OV, rep.summary()
    assert len({by[n].group for n in before}) == 1 and len({by[n].group for n in after}) <= 3
    assert by["conv"].group != by["matmul"].group
    assert by["neg"].group != by["abs"].group  # one engine per If branch
    assert "compiled groups" in rep.summary()
    for seed in range(3):  # both branches of the If
        x = np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32) * (1 if seed % 2 else -5)
        got = sess.run(None, {"x": x})[0]
        cpu = ortlite.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, cpu, rtol=1e-4, atol=1e-5)


def test_engine_cache_hit_rebuild_and_epcontext(tmp_path):
    model = zoo.demo(batch=1)
    feeds = zoo.example_inputs(model)
    cache = str(tmp_path / "cache")
    s1 = ov_session(model, {"cache_dir": cache})
    assert [b.cache for b in s1.engine_builds] == ["miss"]
    ref = s1.run(None, feeds)[0]
    from ortlite.providers.openvino import OpenVINOExecutionProvider

    orig = OpenVINOExecutionProvider.compile
    OpenVINOExecutionProvider.compile = lambda self, spec, progress=None: pytest.fail("compiled on a warm cache")
    try:
        s2 = ov_session(model, {"cache_dir": cache})
    finally:
        OpenVINOExecutionProvider.compile = orig
    assert [b.cache for b in s2.engine_builds] == ["hit"]
    np.testing.assert_array_equal(s2.run(None, feeds)[0], ref)
    entry = s1.engine_builds[0].path
    with open(entry, "r+b") as f:  # damage the blob: same size, other bytes
        f.seek(os.path.getsize(entry) // 2)
        f.write(b"\xff" * 64)
    s3 = ov_session(model, {"cache_dir": cache})
    assert [b.cache for b in s3.engine_builds] == ["rebuilt"]
    np.testing.assert_allclose(s3.run(None, feeds)[0], ref, rtol=1e-6)
    # EP context: a saved model whose engines load without compiling
    so = ortlite.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "ctx.onnx")
    ov_session(model, {"cache_dir": cache}, so)
    saved = onnx.load(str(tmp_path / "ctx.onnx"))
    assert [n.op_type for n in saved.graph.node] == ["EPContext"]
    OpenVINOExecutionProvider.compile = lambda self, spec, progress=None: pytest.fail("compiled from an EP context")
    try:
        s4 = ortlite.InferenceSession(str(tmp_path / "ctx.onnx"), providers=[OV, CPU])
    finally:
        OpenVINOExecutionProvider.compile = orig
    assert [b.cache for b in s4.engine_builds] == ["epcontext"]
    np.testing.assert_allclose(s4.run(None, feeds)[0], ref, rtol=1e-6)


def test_compile_failure_falls_back_to_cpu_with_a_warning(monkeypatch):
    from ortlite.providers.base import CompileError
    from ortlite.providers.openvino import OpenVINOExecutionProvider

    def fail(self, spec, progress=None):
        raise CompileError("pretend OpenVINO rejected it")
    monkeypatch.setattr(OpenVINOExecutionProvider, "compile", fail)
    model = zoo.demo(batch=1)
    with pytest.warns(ProviderFallbackWarning, match="could not compile group .*pretend OpenVINO rejected it"):
        sess = ov_session(model)
    assert sess.get_placement().counts() == {CPU: len(sess.get_placement())}
    check_against_cpu_and_onnxruntime(model, zoo.example_inputs(model), sess)


def test_concurrent_runs_on_one_session():
    model = zoo.demo(batch=1)
    sess = ov_session(model)
    xs = [zoo.example_inputs(model, seed=k) for k in range(16)]
    want = [sess.run(None, f)[0] for f in xs]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda f: sess.run(None, f)[0], xs * 4))
    for k, g in enumerate(got):
        np.testing.assert_array_equal(g, want[k % 16])


def test_default_priority_puts_openvino_before_cpu():
    assert ortlite.get_all_providers().index(OV) == ortlite.get_all_providers().index(CPU) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ortlite.InferenceSession(zoo.demo().SerializeToString())
    assert sess.get_providers()[:2] == [OV, CPU] or sess.get_providers()[-2:] == [OV, CPU]
