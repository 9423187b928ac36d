"""The core's compiling-provider machinery (groups, safety, fallback, engine cache, EP context),
driven by a fake compiler (tests/compiling/fake_compiler.py) so every rule is checked exactly."""
import json
import logging
import os
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ortlite
from ortlite.errors import Fail, ProviderFallbackWarning

FAKE = "FakeCompilerExecutionProvider"
CPU = "CPUExecutionProvider"


def mlp(seed=0, hidden=8):
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((4, hidden)).astype(np.float32)
    w2 = rng.standard_normal((hidden, 3)).astype(np.float32)
    nodes = [
        h.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
        h.make_node("Relu", ["a"], ["r"], name="relu"),
        h.make_node("Sigmoid", ["r"], ["s"], name="sig"),
        h.make_node("MatMul", ["s", "w2"], ["b"], name="mm2"),
        h.make_node("Relu", ["b"], ["y"], name="relu2"),
    ]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 3])],
                     [nh.from_array(w1, "w1"), nh.from_array(w2, "w2")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def reference(model, x):
    return ortlite.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, {"x": x})[0]


def session(model, opts, **kw):
    so = kw.pop("so", None)
    return ortlite.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model,
                                    so, providers=[(FAKE, opts), CPU], **kw)


X = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)


def test_whole_model_is_one_group(fake_compiler):
    m = mlp()
    s = session(m, {"ops": "MatMul,Relu,Sigmoid"})
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)
    rep = s.get_placement()
    assert rep.counts() == {FAKE: 5}
    assert len({n.group for n in rep}) == 1 and rep[0].group
    assert [b.cache for b in s.engine_builds] == ["off"]
    assert fake_compiler.log == [("compile", rep[0].group)]


def test_refused_node_splits_groups_with_reasons(fake_compiler):
    m = mlp()
    s = session(m, {"ops": "MatMul,Relu"})
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)
    rep = s.get_placement()
    sig = rep.node("sig")
    assert sig.provider == CPU
    assert sig.refused == ((FAKE, "the fake compiler has no Sigmoid"),)
    groups = {n.group for n in rep if n.provider == FAKE}
    assert len(groups) == 2
    assert "the fake compiler has no Sigmoid" in rep.summary()


def test_group_that_would_form_a_cycle_is_split(fake_compiler):
    # relu -> sig (refused) -> mm2, and relu -> add <- mm2 : proposing {relu, mm2, add} as one group
    # would need sig's output inside and outside at once
    w = np.ones((4, 4), np.float32)
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Sigmoid", ["r"], ["s"], name="sig"),
             h.make_node("MatMul", ["s", "w"], ["m"], name="mm"),
             h.make_node("Add", ["r", "m"], ["y"], name="add")]
    g = h.make_graph(nodes, "cyc", [h.make_tensor_value_info("x", T.FLOAT, [2, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 4])], [nh.from_array(w, "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    s = session(m, {"ops": "Relu,MatMul,Add", "one_group": "1"})
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], reference(m, x), rtol=1e-6)
    rep = s.get_placement()
    assert rep.node("relu").group != rep.node("mm").group
    assert rep.node("mm").group == rep.node("add").group
    assert rep.node("sig").provider == CPU


def test_groups_below_the_minimum_size_fall_back(fake_compiler):
    m = mlp()
    s = session(m, {"ops": "MatMul,Relu", "min_subgraph_size": "3"})
    rep = s.get_placement()
    assert rep.counts() == {CPU: 5}
    assert "smaller than FakeCompilerExecutionProvider's minimum of 3 (min_subgraph_size)" in rep.node("mm1").refused[0][1]
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)


def test_compile_failure_of_one_group(fake_compiler):
    m = mlp()
    with pytest.warns(ProviderFallbackWarning, match=r"CompileError: the fake compiler refuses \['Sigmoid'\]; "
                                                     r"its nodes run on the next providers"):
        s = session(m, {"ops": "MatMul,Relu,Sigmoid", "fail_ops": "Sigmoid"})
    rep = s.get_placement()
    assert rep.counts() == {CPU: 5}
    assert "compiling its group failed: CompileError" in rep.node("mm1").refused[0][1]
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)


def test_build_is_logged(fake_compiler, caplog):
    with caplog.at_level(logging.INFO, logger="ortlite"):
        session(mlp(), {"ops": "MatMul,Relu,Sigmoid"})
    text = caplog.text
    assert "building group 'FakeCompiler_mlp_0' of 5 node(s) (ops: MatMul, Relu, Sigmoid) (no engine cache)" in text
    assert "built FakeCompiler_mlp_0 in" in text


# ---- engine cache ------------------------------------------------------------------------------
def cached(tmp_path, model, **extra):
    return session(model, {"ops": "MatMul,Relu,Sigmoid", "cache_dir": str(tmp_path), **extra})


def test_cache_hit_on_a_second_session(fake_compiler, tmp_path):
    m = mlp()
    s1 = cached(tmp_path, m)
    assert [b.cache for b in s1.engine_builds] == ["miss"]
    entry = s1.engine_builds[0].path
    assert entry.startswith(str(tmp_path)) and os.path.exists(entry)
    meta = json.load(open(entry[:-len(".engine")] + ".json"))
    assert meta["fields"]["compiler"] == "fake 1.0" and meta["nodes"] == 5 and meta["size"] > 0
    assert "build_seconds" in meta
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    fake_compiler.log.clear()
    s2 = cached(tmp_path, m)
    assert [b.cache for b in s2.engine_builds] == ["hit"]
    assert [k for k, _ in fake_compiler.log] == ["load"]  # no compile
    np.testing.assert_array_equal(s2.run(None, {"x": X})[0], s1.run(None, {"x": X})[0])


def test_changed_weights_are_a_new_key(fake_compiler, tmp_path):
    """A retrained model with the same names must not reuse the old engine (onnxruntime's
    name-only TensorRT cache key does)."""
    s1 = cached(tmp_path, mlp(seed=0))
    s2 = cached(tmp_path, mlp(seed=1))
    assert [b.cache for b in s2.engine_builds] == ["miss"]
    assert s1.engine_builds[0].key != s2.engine_builds[0].key
    np.testing.assert_allclose(s2.run(None, {"x": X})[0], reference(mlp(seed=1), X), rtol=1e-6)


def test_options_that_change_the_result_are_in_the_key(fake_compiler, tmp_path):
    s1 = cached(tmp_path, mlp())
    s2 = cached(tmp_path, mlp(), precision="fp16")
    assert s1.engine_builds[0].key != s2.engine_builds[0].key


@pytest.mark.parametrize("damage", ["truncate_blob", "garbage_sidecar", "other_fields", "undeserializable"])
def test_a_bad_cache_entry_is_deleted_and_rebuilt(fake_compiler, tmp_path, caplog, damage):
    m = mlp()
    entry = cached(tmp_path, m).engine_builds[0].path
    side = entry[:-len(".engine")] + ".json"
    if damage == "truncate_blob":
        data = open(entry, "rb").read()
        open(entry, "wb").write(data[:len(data) // 2])
    elif damage == "garbage_sidecar":
        open(side, "w").write("{not json")
    elif damage == "other_fields":
        meta = json.load(open(side))
        meta["fields"]["compiler"] = "fake 0.9"
        json.dump(meta, open(side, "w"))
    else:  # a blob the provider cannot load, with a sidecar that matches it
        import hashlib
        blob = b"garbage"
        open(entry, "wb").write(blob)
        meta = json.load(open(side))
        meta.update(size=len(blob), sha256=hashlib.sha256(blob).hexdigest())
        json.dump(meta, open(side, "w"))
    fake_compiler.log.clear()
    with caplog.at_level(logging.WARNING, logger="ortlite"):
        s = cached(tmp_path, m)
    assert [b.cache for b in s.engine_builds] == ["rebuilt"]
    assert [k for k, _ in fake_compiler.log] == ["compile"]
    assert "rebuilding" in caplog.text or "rebuilt" in caplog.text
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)
    assert [b.cache for b in cached(tmp_path, m).engine_builds] == ["hit"]


# ---- EP context ------------------------------------------------------------------------------------
def save_ctx(tmp_path, m, cache_dir=None):
    so = ortlite.SessionOptions()
    path = str(tmp_path / "model_ctx.onnx")
    so.optimized_model_filepath = path
    opts = {"ops": "MatMul,Relu"}
    if cache_dir:
        opts["cache_dir"] = cache_dir
    s = session(m, opts, so=so)
    return s, path


@pytest.mark.parametrize("with_cache", [False, True])
def test_epcontext_save_and_reload(fake_compiler, tmp_path, with_cache):
    m = mlp()
    s1, path = save_ctx(tmp_path, m, str(tmp_path / "cache") if with_cache else None)
    saved = onnx.load(path)
    ctx = [n for n in saved.graph.node if n.op_type == "EPContext"]
    assert len(ctx) == 2 and all(n.domain == "com.microsoft" for n in ctx)
    attrs = {a.name: h.get_attribute_value(a) for a in ctx[0].attribute}
    assert attrs["embed_mode"] == 0 and attrs["source"] == FAKE.encode() and attrs["main_context"] == 1
    rel = attrs["ep_cache_context"].decode()
    assert not os.path.isabs(rel)
    assert rel.startswith("cache/" if with_cache else "model_ctx_ctx/")
    assert os.path.exists(os.path.join(tmp_path, rel))
    assert {i.name for i in saved.graph.initializer} == set()  # the weights live in the engines
    assert [n.op_type for n in saved.graph.node if n.op_type != "EPContext"] == ["Sigmoid"]
    fake_compiler.log.clear()
    s2 = ortlite.InferenceSession(path, providers=[(FAKE, {"ops": "MatMul,Relu"}), CPU])
    assert [k for k, _ in fake_compiler.log] == ["load", "load"]  # neither query nor compile
    assert [b.cache for b in s2.engine_builds] == ["epcontext", "epcontext"]
    np.testing.assert_allclose(s2.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)
    assert s2.get_placement().counts() == {FAKE: 2, CPU: 1}


def test_epcontext_refusals(fake_compiler, tmp_path):
    m = mlp()
    _, path = save_ctx(tmp_path, m)
    with pytest.raises(Fail, match="loaded from bytes or a ModelProto, so there is no directory"):
        ortlite.InferenceSession(open(path, "rb").read(), providers=[(FAKE, {}), CPU])
    with pytest.raises(Exception, match="engine compiled by .FakeCompilerExecutionProvider., which is not among"):
        ortlite.InferenceSession(path, providers=[CPU])
    saved = onnx.load(path)

    def variant(name, **attrs):
        v = onnx.ModelProto()
        v.CopyFrom(saved)
        n = next(n for n in v.graph.node if n.op_type == "EPContext")
        for a in n.attribute:
            if a.name in attrs:
                a.CopyFrom(h.make_attribute(a.name, attrs[a.name]))
        p = str(tmp_path / name)
        onnx.save(v, p)
        return p
    cases = {
        "embed.onnx": ({"embed_mode": 1}, "embedded in the model"),
        "escape.onnx": ({"ep_cache_context": "../../etc/passwd"}, "leaves the model's directory"),
        "missing.onnx": ({"ep_cache_context": "nothing_here.engine"}, "engine file is missing"),
        "shared.onnx": ({"main_context": 0}, "main_context=0"),
    }
    for name, (attrs, msg) in cases.items():
        with pytest.raises(Fail, match=msg):
            ortlite.InferenceSession(variant(name, **attrs), providers=[(FAKE, {}), CPU])
    entry = os.path.join(tmp_path, next(a for a in next(n for n in saved.graph.node if n.op_type == "EPContext").attribute
                                        if a.name == "ep_cache_context").s.decode())
    data = bytearray(open(entry, "rb").read())
    data[-1] ^= 0xFF  # same size, other bytes
    open(entry, "wb").write(bytes(data))
    with pytest.raises(Fail, match="does not match the SHA-256 in its sidecar"):
        ortlite.InferenceSession(path, providers=[(FAKE, {}), CPU])
    data[-1] ^= 0xFF
    open(entry, "wb").write(bytes(data))
    fake_compiler.version = "2.0"
    try:
        with pytest.raises(Fail, match=r"built for another configuration \(compiler: saved 'fake 1.0', here 'fake 2.0'\)"):
            ortlite.InferenceSession(path, providers=[(FAKE, {}), CPU])
    finally:
        fake_compiler.version = "1.0"


def test_groups_inside_control_flow_bodies(fake_compiler):
    then = h.make_graph([h.make_node("Relu", ["x"], ["t1"]), h.make_node("Neg", ["t1"], ["t"])], "then", [],
                        [h.make_tensor_value_info("t", T.FLOAT, [2, 4])])
    els = h.make_graph([h.make_node("Sigmoid", ["x"], ["e"])], "else", [],
                       [h.make_tensor_value_info("e", T.FLOAT, [2, 4])])
    nodes = [h.make_node("ReduceSum", ["x"], ["sum"], keepdims=0, name="sum"),
             h.make_node("Greater", ["sum", "zero"], ["c"], name="gt"),
             h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=els, name="if")]
    g = h.make_graph(nodes, "cf", [h.make_tensor_value_info("x", T.FLOAT, [2, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 4])], [nh.from_array(np.float32(0), "zero")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    s = session(m, {"ops": "Relu,Neg"})
    for sign in (1, -1):
        x = sign * np.abs(X[:, :4]).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], reference(m, x), rtol=1e-6)
    assert len(s.engine_builds) == 1 and s.engine_builds[0].nodes == 2


# ---- a compiling provider on a device: copies at the group's boundary, shape math on the host --------
DEV = "FakeDeviceCompilerExecutionProvider"


def test_device_group_boundary_copies(fake_device_compiler):
    m = mlp()
    s = ortlite.InferenceSession(m.SerializeToString(), providers=[(DEV, {"ops": "MatMul,Relu"}), CPU])
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference(m, X), rtol=1e-6)
    rep = s.get_placement()
    moves = sorted((c.value, c.src, c.dst) for c in rep.copies)
    # x in; the first group's output out to the CPU Sigmoid; its output back in; y out
    assert moves == [("r", "pretend", "cpu"), ("s", "cpu", "pretend"), ("x", "cpu", "pretend")]
    assert rep.last_run_copies == 4


def test_device_group_leaves_shape_math_on_the_host(fake_device_compiler):
    # Shape -> Gather -> Unsqueeze -> Concat feeds Reshape's shape, which a CPU Reshape reads on the host:
    # the device compiler may claim them, but they stay on the host (no shape copied back mid-run)
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Shape", ["r"], ["shp"], name="shape"),
             h.make_node("Gather", ["shp", "zero"], ["n"], axis=0, name="gather"),
             h.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
             h.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0, name="concat"),
             h.make_node("Reshape", ["r", "newshape"], ["y"], name="reshape")]
    g = h.make_graph(nodes, "shp", [h.make_tensor_value_info("x", T.FLOAT, ["N", 2, 2])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     [nh.from_array(np.int64(0), "zero"), nh.from_array(np.array([0], np.int64), "ax"),
                      nh.from_array(np.array([-1], np.int64), "minus1")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    s = ortlite.InferenceSession(m.SerializeToString(),
                                 providers=[(DEV, {"ops": "Relu,Shape,Gather,Unsqueeze,Concat"}), CPU])
    x = np.random.default_rng(3).standard_normal((3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], x.clip(0).reshape(3, -1))
    rep = s.get_placement()
    for name in ("gather", "unsq", "concat"):
        assert rep.node(name).provider == CPU, rep.summary()
        assert "kept on the host" in rep.node(name).refused[0][1]
    assert rep.node("relu").provider == DEV
    assert not [c for c in rep.copies if c.value in ("shp", "n", "n1", "newshape")]


def test_warm_cache_skips_the_capability_query(fake_compiler, tmp_path):
    m = mlp()
    cached(tmp_path, m)
    assert fake_compiler.claims == [5]
    assert [p for p in os.listdir(tmp_path) if "_claims_" in p]
    s = cached(tmp_path, m)
    assert fake_compiler.claims == [5]  # answered from the cache
    assert s.get_placement().counts() == {FAKE: 5}
    cached(tmp_path, mlp(seed=3))  # other weights: asked again
    assert fake_compiler.claims == [5, 5]


def test_names_made_by_the_optimizer_are_the_same_in_every_session(fake_compiler, tmp_path):
    """Conv+BatchNormalization folding makes new weight names; they must not depend on how many
    sessions the process made before, or the engine cache would never hit."""
    rng = np.random.default_rng(0)
    c = 4
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             h.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"], name="bn"),
             h.make_node("Relu", ["bn"], ["y"], name="relu")]
    inits = [nh.from_array(rng.standard_normal((c, 3, 1, 1)).astype(np.float32), "w")] + [
        nh.from_array(rng.random(c).astype(np.float32) + 0.5, n) for n in ("s", "b", "m", "v")]
    g = h.make_graph(nodes, "cbn", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 4, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, c, 4, 4])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    opts = {"ops": "Conv,Relu", "cache_dir": str(tmp_path)}
    first = session(m, opts)
    ortlite.InferenceSession(m.SerializeToString(), providers=[CPU])  # other sessions in between
    again = session(m, opts)
    assert [b.cache for b in first.engine_builds] == ["miss"]
    assert [b.cache for b in again.engine_builds] == ["hit"]
