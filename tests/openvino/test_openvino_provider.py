"""OpenVINOExecutionProvider on its own: options, claim_groups on IR graphs, compile + runner checked
against onnxruntime, engine serialization, concurrent runs, compile failures."""
from __future__ import annotations

import json
import logging
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

pytest.importorskip("openvino")

from ortlite.errors import InvalidArgument  # noqa: E402
from ortlite.providers.base import CompileError  # noqa: E402

F = TP.FLOAT


# ---- models ---------------------------------------------------------------------------------

def make(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=(), value_info=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits), value_info=list(value_info))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(g, opset_imports=ops, producer_name="ortlite-tests")
    m.ir_version = 8
    return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def w(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def ir_graph(model):
    """ortlite's IR of ``model`` after ONNX shape inference (as a session builds it)."""
    from ortlite.ir import Graph

    inferred = onnx.shape_inference.infer_shapes(model)
    opsets = {("" if op.domain == "ai.onnx" else op.domain): op.version for op in model.opset_import}
    return Graph.from_proto(inferred.graph, opsets, {}, None)


def spec_of(model, name="g"):
    """A GroupSpec covering the whole of ``model`` (its graph inputs and outputs)."""
    from ortlite import types as ot
    from ortlite.compiling.spec import GroupSpec, TensorSpec

    def ts(v):
        return TensorSpec(v.name, ot.np_dtype(v.type.tensor_type.elem_type), ot.type_proto_shape(v.type))

    inits = {i.name for i in model.graph.initializer}
    return GroupSpec(name, "OpenVINOExecutionProvider", model,
                     [ts(v) for v in model.graph.input if v.name not in inits],
                     [ts(v) for v in model.graph.output],
                     [n.name for n in model.graph.node], [n.op_type for n in model.graph.node])


def ort_run(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def cnn_model():
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm -> Relu; x: [N, 3, 8, 8] (symbolic batch)."""
    r = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["g"], name="gemm", transB=1),
        helper.make_node("Relu", ["g"], ["y"], name="relu2"),
    ]
    inits = [w("cw", r.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3),
             w("cb", r.standard_normal(4).astype(np.float32)),
             w("gw", r.standard_normal((10, 64)).astype(np.float32) * 0.2),
             w("gb", r.standard_normal(10).astype(np.float32))]
    return make(nodes, [vi("x", F, ["N", 3, 8, 8])], [vi("y", F, ["N", 10])], inits)


def transformer_model(d=16):
    """Attention + MLP block on x: [B, S, d]: MatMul, Transpose, Div, Softmax, Add, LayerNormalization,
    Gelu written with Erf."""
    r = np.random.default_rng(2)

    def mat(*s):
        return (r.standard_normal(s) * 0.3).astype(np.float32)

    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Div", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "v"], ["av"]),
        helper.make_node("Add", ["av", "x"], ["res"]),
        helper.make_node("LayerNormalization", ["res", "ln_g", "ln_b"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["ln", "w1"], ["h"]),
        helper.make_node("Div", ["h", "sqrt2"], ["hd"]),
        helper.make_node("Erf", ["hd"], ["he"]),
        helper.make_node("Add", ["he", "one"], ["he1"]),
        helper.make_node("Mul", ["h", "he1"], ["hm"]),
        helper.make_node("Mul", ["hm", "half"], ["gelu"]),
        helper.make_node("MatMul", ["gelu", "w2"], ["o"]),
        helper.make_node("Add", ["o", "ln"], ["y"]),
    ]
    inits = [w("wq", mat(d, d)), w("wk", mat(d, d)), w("wv", mat(d, d)), w("scale", np.float32(np.sqrt(d))),
             w("ln_g", 1 + mat(d)), w("ln_b", mat(d)), w("w1", mat(d, 4 * d)), w("w2", mat(4 * d, d)),
             w("sqrt2", np.float32(np.sqrt(2))), w("one", np.float32(1)), w("half", np.float32(0.5))]
    return make(nodes, [vi("x", F, ["B", "S", d])], [vi("y", F, ["B", "S", d])], inits)


def int64_model():
    """Embedding Gather with int64 ids, Shape -> Gather -> Unsqueeze -> Concat -> Reshape, and int64
    arithmetic; outputs the reshaped embeddings, the computed (int64) shape and ids + ids."""
    r = np.random.default_rng(3)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
        helper.make_node("Shape", ["e"], ["shp"]),
        helper.make_node("Gather", ["shp", "i0"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Concat", ["b1", "m1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["e", "newshape"], ["y"]),
        helper.make_node("Add", ["ids", "ids"], ["ids2"]),
    ]
    inits = [w("emb", r.standard_normal((50, 8)).astype(np.float32)), w("i0", np.array(0, np.int64)),
             w("ax0", np.array([0], np.int64)), w("m1", np.array([-1], np.int64))]
    return make(nodes, [vi("ids", TP.INT64, ["B", "S"])],
                [vi("y", F, ["B", None]), vi("newshape", TP.INT64, [2]), vi("ids2", TP.INT64, ["B", "S"])], inits)


def claim(prov, model):
    g = ir_graph(model)
    groups, refused = prov.claim_groups(g, g.nodes)
    by_name = {n.name: refused[id(n)] for n in g.nodes if id(n) in refused}
    return [[n.name for n in grp] for grp in groups], by_name


def check_against_ort(prov, model, feeds_list, engine=None):
    spec = spec_of(model)
    engine = engine or prov.compile(spec)
    run = prov.make_runner(engine, spec)
    for feeds in feeds_list:
        want = ort_run(model, feeds)
        got = run(*[feeds[t.name] for t in spec.inputs])
        assert isinstance(got, tuple) and len(got) == len(want)
        for a, b in zip(want, got):
            assert b.dtype == a.dtype and b.shape == a.shape
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    return spec, engine, run


# ---- availability and options ------------------------------------------------------------------

def test_available_with_cpu(prov):
    from ortlite import providers

    assert prov.availability() == (True, "")
    assert providers.availability("OpenVINOExecutionProvider")[0]
    assert prov.device_type == "cpu" and prov.family == "openvino" and prov.compiles


def test_unknown_option_lists_the_valid_ones(make_provider):
    with pytest.raises(ValueError, match="unknown provider option 'device'") as e:
        make_provider(device="CPU")
    for name in ("device_type", "precision", "num_of_threads", "num_streams", "cache_dir", "load_config",
                 "disable_dynamic_shapes", "min_subgraph_size"):
        assert name in str(e.value)


def test_bad_precision_names_the_valid_values(make_provider):
    with pytest.raises(InvalidArgument, match=r"precision='INT8'.*FP32, ACCURACY"):
        make_provider(precision="INT8")
    p = make_provider(precision="accuracy")
    assert p.get_provider_options()["precision"] == "ACCURACY"
    assert p.compile_config["EXECUTION_MODE_HINT"] == "ACCURACY"
    assert "INFERENCE_PRECISION_HINT" not in p.compile_config


def test_precision_fp16_on_cpu_follows_its_capabilities(make_provider):
    from ortlite.providers.openvino.engine import get_core

    if "FP16" in get_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert make_provider(precision="FP16").compile_config["INFERENCE_PRECISION_HINT"] == "f16"
    else:
        with pytest.raises(InvalidArgument, match="precision='FP16'.*no FP16 in OPTIMIZATION_CAPABILITIES"):
            make_provider(precision="FP16")


def test_unavailable_device_refused_with_the_available_ones(make_provider):
    from ortlite.providers.openvino.engine import get_core

    avail = list(get_core().available_devices)
    with pytest.raises(InvalidArgument, match=r"device 'XPU' is not available here; available devices: ") as e:
        make_provider(device_type="XPU")
    assert all(d in str(e.value) for d in avail)
    with pytest.raises(InvalidArgument, match="device 'XPU'"):
        make_provider(device_type="HETERO:XPU,CPU")
    with pytest.raises(InvalidArgument, match="unknown mode 'FOO'"):
        make_provider(device_type="FOO:CPU")
    p = make_provider(device_type="HETERO:CPU")
    assert p.device == "HETERO:CPU" and p.ov_options.devices == ["CPU"]


def test_deprecated_device_with_precision_suffix(make_provider):
    with pytest.warns(UserWarning, match="deprecated"):
        p = make_provider(device_type="CPU_FP32")
    assert p.device == "CPU" and p.ov_options.precision == "FP32"


@pytest.mark.parametrize("key,value,match", [
    ("num_of_threads", "0", "num_of_threads='0': expected a positive integer"),
    ("num_streams", "two", "num_streams='two': expected a positive integer"),
    ("disable_dynamic_shapes", "maybe", "disable_dynamic_shapes='maybe': expected true/false"),
    ("model_priority", "URGENT", "model_priority='URGENT': expected one of LOW, MEDIUM, HIGH, DEFAULT"),
    ("min_subgraph_size", "-1", "min_subgraph_size='-1'"),
])
def test_bad_values_are_refused(make_provider, key, value, match):
    with pytest.raises(InvalidArgument, match=match):
        make_provider(**{key: value})


def test_options_map_to_openvino_properties(make_provider, tmp_path):
    p = make_provider(num_of_threads="2", num_streams=1, disable_dynamic_shapes="True", min_subgraph_size="3",
                      cache_dir=str(tmp_path), enable_qdq_optimizer="false")
    cfg = p.compile_config
    assert cfg["INFERENCE_NUM_THREADS"] == 2 and cfg["NUM_STREAMS"] == 1
    assert cfg["PERFORMANCE_HINT"] == "LATENCY" and cfg["INFERENCE_PRECISION_HINT"] == "f32"
    assert "CACHE_DIR" not in cfg  # cache_dir is ortlite's engine cache, not OpenVINO's
    opts = p.get_provider_options()
    assert opts["num_of_threads"] == "2" and opts["disable_dynamic_shapes"] == "true"
    assert p.min_group_size == 3 and p.engine_cache_dir == str(tmp_path)


def test_compiled_model_gets_the_options(make_provider, tmp_path):
    cfg = tmp_path / "ov.json"
    cfg.write_text(json.dumps({"CPU": {"ENABLE_CPU_PINNING": False, "INFERENCE_NUM_THREADS": 2}}))
    p = make_provider(num_streams="2", precision="ACCURACY", load_config=str(cfg))
    engine = p.compile(spec_of(cnn_model()))
    cm = engine.compiled
    assert int(cm.get_property("NUM_STREAMS")) == 2 and int(cm.get_property("INFERENCE_NUM_THREADS")) == 2
    assert str(cm.get_property("EXECUTION_MODE_HINT")).endswith("ACCURACY")
    x = np.random.default_rng(11).standard_normal((2, 3, 8, 8)).astype(np.float32)
    check_against_ort(p, cnn_model(), [{"x": x}], engine=engine)


def test_load_config_file_is_read(make_provider, tmp_path):
    path = tmp_path / "ov.json"
    path.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "THROUGHPUT"},
                                "GPU": {"ANY_GPU_PROPERTY": "x"}}))  # a device not here: kept, unused
    p = make_provider(load_config=str(path))
    cfg = p.compile_config
    assert cfg["INFERENCE_NUM_THREADS"] == 1 and cfg["PERFORMANCE_HINT"] == "THROUGHPUT"
    p2 = make_provider(load_config='{"CPU": {"EXECUTION_MODE_HINT": "ACCURACY"}}')  # a JSON string works too
    assert p2.compile_config["EXECUTION_MODE_HINT"] == "ACCURACY"
    assert "INFERENCE_PRECISION_HINT" not in p2.compile_config  # one of the two, load_config's
    assert p.cache_key_fields()["options"]["load_config"] != p2.cache_key_fields()["options"]["load_config"]


@pytest.mark.parametrize("text,match", [
    ('{"CPPU": {"NUM_STREAMS": 1}}', "unknown device 'CPPU'"),
    ('{"CPU": {"NO_SUCH_PROPERTY": 1}}', "device 'CPU' has no settable property NO_SUCH_PROPERTY.*NUM_STREAMS"),
    ('{"CPU": {"FULL_DEVICE_NAME": "x"}}', "no settable property FULL_DEVICE_NAME"),  # read-only
    ("[1, 2]", "must hold a JSON object"),
    ("{not json", "not valid JSON"),
    ("/no/such/file.json", "no such file exists"),
])
def test_load_config_refusals(make_provider, text, match):
    with pytest.raises(InvalidArgument, match=match):
        make_provider(load_config=text)


def test_cache_key_fields(prov, make_provider):
    import openvino

    f = prov.cache_key_fields()
    assert f["compiler"] == f"openvino {openvino.__version__}"
    assert f["device"].startswith("CPU | ")  # plus FULL_DEVICE_NAME and the ISA capabilities
    assert f["options"]["precision"] == "FP32"
    assert make_provider(num_of_threads=1).cache_key_fields() != f


# ---- claim_groups ------------------------------------------------------------------------------

def test_cnn_is_one_group(prov):
    groups, refused = claim(prov, cnn_model())
    assert groups == [["conv", "relu", "pool", "flat", "gemm", "relu2"]] and refused == {}


def test_transformer_block_is_one_group(prov):
    groups, refused = claim(prov, transformer_model())
    assert len(groups) == 1 and len(groups[0]) == 18 and refused == {}


@pytest.mark.parametrize("domain,op", [("custom.dom", "FooBar"), ("com.microsoft", "Inverse")])
def test_op_without_frontend_conversion_splits_two_groups(prov, domain, op):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("Abs", ["a"], ["a2"], name="abs"),
             helper.make_node(op, ["a2"], ["b"], name="odd", domain=domain),
             helper.make_node("Sigmoid", ["b"], ["c"], name="sig"),
             helper.make_node("Tanh", ["c"], ["y"], name="tanh")]
    m = make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])], extra_opsets=[(domain, 1)],
             value_info=[vi("b", F, ["N", 8])])  # the exporter typed the custom op's output
    groups, refused = claim(prov, m)
    assert groups == [["r1", "abs"], ["sig", "tanh"]]
    assert refused == {"odd": f"OpenVINO's ONNX frontend has no conversion for {op} (domain '{domain}', opset 1)"}


def test_an_op_after_a_refused_one_is_judged_with_its_input_types(prov):
    # In the first conversion QuickGelu reads a framework node's untyped output and fails to convert
    # too; asked again with its input typed (from the graph), OpenVINO converts it.
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("FooBar", ["a"], ["b"], name="odd", domain="custom.dom"),
             helper.make_node("QuickGelu", ["b"], ["c"], name="qg", domain="com.microsoft", alpha=1.702),
             helper.make_node("Tanh", ["c"], ["y"], name="tanh")]
    m = make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])],
             extra_opsets=[("custom.dom", 1), ("com.microsoft", 1)],
             value_info=[vi("b", F, ["N", 8]), vi("c", F, ["N", 8])])
    groups, refused = claim(prov, m)
    assert groups == [["r1"], ["qg", "tanh"]]
    assert list(refused) == ["odd"]


def test_untyped_output_of_a_refused_op_refuses_its_readers(prov):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"),
             helper.make_node("FooBar", ["a"], ["b"], name="odd", domain="custom.dom"),
             helper.make_node("Sigmoid", ["b"], ["y"], name="sig")]
    m = make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])], extra_opsets=[("custom.dom", 1)])
    groups, refused = claim(prov, m)
    assert groups == [["r1"]]
    assert "type of its input 'b' is unknown" in refused["sig"]


def test_control_flow_is_refused(prov):
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["o"])], "then", [], [vi("o", F, ["N", 8])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["o"])], "else", [], [vi("o", F, ["N", 8])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc", "x"], ["acc_out"])],
        "body", [vi("i", TP.INT64, []), vi("cond_in", TP.BOOL, []), vi("acc", F, ["N", 8])],
        [vi("cond_out", TP.BOOL, []), vi("acc_out", F, ["N", 8])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
             helper.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["i"], then_branch=then_g, else_branch=else_g, name="if"),
             helper.make_node("Loop", ["n", "", "i"], ["l"], body=body, name="loop"),
             helper.make_node("Abs", ["l"], ["y"], name="abs")]
    m = make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])],
             [w("zero", np.float32(0)), w("n", np.array(3, np.int64))],
             value_info=[vi("l", F, ["N", 8])])  # OpenVINO's CPU takes no value of unknown rank
    groups, refused = claim(prov, m)
    assert groups == [["sum", "gt"], ["abs"]]
    assert refused["if"] == "If holds subgraphs: control flow runs on the host in ortlite"
    assert refused["loop"] == "Loop holds subgraphs: control flow runs on the host in ortlite"


def test_sequences_strings_and_float64_are_refused(prov):
    nodes = [helper.make_node("SequenceConstruct", ["x", "x"], ["seq"], name="seqc"),
             helper.make_node("SequenceAt", ["seq", "one"], ["z"], name="seqat"),
             helper.make_node("Exp", ["z"], ["y"], name="exp"),
             helper.make_node("Cast", ["x"], ["d"], to=TP.DOUBLE, name="to64"),
             helper.make_node("Sqrt", ["d"], ["y64"], name="sqrt64"),
             helper.make_node("Cast", ["x"], ["s"], to=TP.STRING, name="tostr")]
    m = make(nodes, [vi("x", F, ["N", 8])],
             [vi("y", F, ["N", 8]), vi("y64", TP.DOUBLE, ["N", 8]), vi("s", TP.STRING, ["N", 8])],
             [w("one", np.array(1, np.int64))])
    groups, refused = claim(prov, m)
    assert groups == [["exp"]]
    assert refused["seqc"] == refused["seqat"] == "'seq' is a sequence: OpenVINO runs tensors only"
    assert "float64" in refused["to64"] and "float64" in refused["sqrt64"]
    assert "string tensors" in refused["tostr"]


def test_big_weights_reach_the_query_without_their_data(prov):
    r = np.random.default_rng(4)
    nodes = [helper.make_node("MatMul", ["x", "big"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    m = make(nodes, [vi("x", F, ["N", 600])], [vi("y", F, ["N", 600])],
             [w("big", r.standard_normal((600, 600)).astype(np.float32))])  # 1.4 MB
    groups, refused = claim(prov, m)
    assert groups == [["mm", "relu"]] and refused == {}


def test_a_model_the_frontend_cannot_load_is_split_to_the_failing_node(prov, monkeypatch):
    from ortlite.providers.openvino import claim as claim_mod

    real = claim_mod.convert

    def convert(model):
        if any(n.op_type == "Tanh" for n in model.graph.node):
            raise RuntimeError("Exception from src/frontends/onnx:\nsimulated failure on Tanh")
        return real(model)

    monkeypatch.setattr(claim_mod, "convert", convert)
    nodes = [helper.make_node(op, [a], [b], name=op.lower()) for op, a, b in
             [("Relu", "x", "a"), ("Abs", "a", "b"), ("Tanh", "b", "c"), ("Neg", "c", "d"), ("Exp", "d", "y")]]
    m = make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])])
    groups, refused = claim(prov, m)
    assert groups == [["relu", "abs"], ["neg", "exp"]]
    assert refused == {"tanh": "OpenVINO's ONNX frontend cannot convert Tanh (domain 'ai.onnx'): "
                               "simulated failure on Tanh"}


# ---- compile and run -----------------------------------------------------------------------------

def test_cnn_matches_onnxruntime_with_dynamic_batch(prov):
    r = np.random.default_rng(5)
    feeds = [{"x": r.standard_normal((n, 3, 8, 8)).astype(np.float32)} for n in (1, 3)]
    check_against_ort(prov, cnn_model(), feeds)  # one engine, batch 1 then 3


def test_transformer_block_matches_onnxruntime(prov):
    r = np.random.default_rng(6)
    feeds = [{"x": r.standard_normal(s).astype(np.float32)} for s in ((1, 5, 16), (2, 7, 16))]
    check_against_ort(prov, transformer_model(), feeds)


def test_int64_ops_keep_their_dtypes(prov):
    r = np.random.default_rng(7)
    feeds = [{"ids": r.integers(0, 50, s).astype(np.int64)} for s in ((2, 3), (4, 1))]
    spec, _, run = check_against_ort(prov, int64_model(), feeds)
    assert [t.dtype for t in spec.outputs] == [np.float32, np.int64, np.int64]


def test_empty_batch_and_scalars(prov):
    x = np.zeros((0, 3, 8, 8), np.float32)
    check_against_ort(prov, cnn_model(), [{"x": x}])  # OpenVINO's MaxPool refuses batch 0: host path
    m = make([helper.make_node("Mul", ["a", "b"], ["y"])], [vi("a", F, []), vi("b", F, [])], [vi("y", F, [])])
    check_against_ort(prov, m, [{"a": np.array(3, np.float32), "b": np.array(-2, np.float32)}])


def test_bfloat16_values_cross_bit_for_bit(prov):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    m = make([helper.make_node("Mul", ["x", "x"], ["y"]), helper.make_node("Cast", ["y"], ["z"], to=F)],
             [vi("x", TP.BFLOAT16, ["N"])], [vi("y", TP.BFLOAT16, ["N"]), vi("z", F, ["N"])])
    spec = spec_of(m)
    run = prov.make_runner(prov.compile(spec), spec)
    y, z = run(np.array([1.5, -2.25, 3.0], dtype=ml_dtypes.bfloat16))
    assert y.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y.astype(np.float32), [2.25, 5.0625, 9.0])
    np.testing.assert_array_equal(z, [2.25, 5.0625, 9.0])


def test_serialize_deserialize_round_trip(prov):
    m = transformer_model()
    spec = spec_of(m)
    engine = prov.compile(spec)
    blob = prov.serialize(engine)
    assert isinstance(blob, bytes) and len(blob) > 0
    run1 = prov.make_runner(engine, spec)
    run2 = prov.make_runner(prov.deserialize(blob, spec), spec)
    x = np.random.default_rng(8).standard_normal((2, 4, 16)).astype(np.float32)
    np.testing.assert_array_equal(run2(x)[0], run1(x)[0])
    np.testing.assert_allclose(run2(x)[0], ort_run(m, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_deserialize_from_a_memory_mapped_blob(prov, tmp_path):
    # the core hands big cache entries over as a copy-on-write numpy.memmap of the file
    m = cnn_model()
    spec = spec_of(m)
    path = tmp_path / "engine.blob"
    path.write_bytes(prov.serialize(prov.compile(spec)))
    blob = np.memmap(path, dtype=np.uint8, mode="c")
    run = prov.make_runner(prov.deserialize(blob, spec), spec)
    x = np.random.default_rng(12).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(x)[0], ort_run(m, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_runner_is_safe_from_eight_threads(prov):
    m = transformer_model()
    spec = spec_of(m)
    run = prov.make_runner(prov.compile(spec), spec)
    r = np.random.default_rng(9)
    xs = [r.standard_normal((1 + k % 3, 2 + k % 5, 16)).astype(np.float32) for k in range(24)]
    want = [run(x)[0] for x in xs]
    bad, errors = [], []

    def work(k):
        try:
            for _ in range(10):
                for j in range(k, len(xs), 8):
                    if not np.array_equal(run(xs[j])[0], want[j]):
                        bad.append(j)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not bad


def test_ports_are_matched_by_name(prov):
    # OpenVINO drops the unread input 'x' and keeps outputs in its own order: the runner still takes
    # spec.inputs and returns spec.outputs, in their order.
    m = make([helper.make_node("Relu", ["y"], ["a"]), helper.make_node("Identity", ["a"], ["i"]),
              helper.make_node("Neg", ["a"], ["n"])],
             [vi("x", F, ["N"]), vi("y", F, ["N"])], [vi("n", F, ["N"]), vi("a", F, ["N"]), vi("i", F, ["N"])])
    spec = spec_of(m)
    spec.outputs = spec.outputs[::-1]
    run = prov.make_runner(prov.compile(spec), spec)
    i, a, n = run(np.array([7.0], np.float32), np.array([1.0, -2.0], np.float32))
    np.testing.assert_array_equal(a, [1, 0])
    np.testing.assert_array_equal(i, [1, 0])
    np.testing.assert_array_equal(n, [-1, 0])


def test_outputs_are_copies(prov):
    m = make([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["N", 4])], [vi("y", F, ["N", 4])])
    spec = spec_of(m)
    run = prov.make_runner(prov.compile(spec), spec)
    a = run(np.ones((2, 4), np.float32))[0]
    run(np.full((2, 4), 5, np.float32))
    np.testing.assert_array_equal(a, 1)


def test_disable_dynamic_shapes_compiles_per_shape(make_provider, caplog):
    p = make_provider(disable_dynamic_shapes="true")
    m = cnn_model()
    spec = spec_of(m)
    engine = p.compile(spec)
    assert p.serialize(engine) is None  # compiled per shape at run time: nothing to cache
    r = np.random.default_rng(10)
    with caplog.at_level(logging.INFO, logger="ortlite"):
        check_against_ort(p, m, [{"x": r.standard_normal((n, 3, 8, 8)).astype(np.float32)} for n in (1, 2, 1)],
                          engine=engine)
    compiles = [rec.getMessage() for rec in caplog.records if "disable_dynamic_shapes" in rec.getMessage()]
    assert len(compiles) == 2 and "(1, 3, 8, 8)" in compiles[0] and "(2, 3, 8, 8)" in compiles[1]


def test_compile_failure_raises_compile_error(prov):
    m = cnn_model()
    m.graph.node[0].op_type = "Konv"  # no such op: OpenVINO's frontend cannot read the group
    with pytest.raises(CompileError, match="OpenVINO cannot read group 'g' of 6 node.*Konv"):
        prov.compile(spec_of(m))


def test_run_failure_is_one_line(prov):
    m = make([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", F, ["N", 6]), vi("s", TP.INT64, [2])],
             [vi("y", F, None)])
    spec = spec_of(m)
    run = prov.make_runner(prov.compile(spec), spec)
    assert run(np.ones((2, 6), np.float32), np.array([3, 4], np.int64))[0].shape == (3, 4)
    with pytest.raises(RuntimeError, match="OpenVINO inference failed: ") as e:
        run(np.ones((2, 6), np.float32), np.array([5, 5], np.int64))
    assert "\n" not in str(e.value) and "Exception from src/" not in str(e.value)
