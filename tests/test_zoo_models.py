"""End-to-end model tests: every ortlite.zoo builder against onnxruntime (the oracle).

The fast tests use reduced sizes (2 transformer layers, small vocab); the full-size
ResNet-50, BERT-base and GPT-2 runs are marked slow.
"""
import json

import numpy as np
import onnx
import pytest

import ortlite
from ortlite import zoo

ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-3, 1e-4


def _oracle(model):
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def check_against_ort(model, feeds=None, seed=0, dims=None):
    """Run ``model`` through onnxruntime and ortlite; assert every output matches. Returns max abs errors."""
    onnx.checker.check_model(model)
    feeds = zoo.example_inputs(model, seed=seed, dims=dims) if feeds is None else feeds
    expected = _oracle(model).run(None, feeds)
    sess = ortlite.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    assert names == [o.name for o in model.graph.output]
    got = sess.run(None, feeds)
    assert len(got) == len(expected)
    errs = {}
    for name, g, e in zip(names, got, expected):
        g = np.asarray(g)
        assert g.dtype == e.dtype, f"{name}: dtype {g.dtype} != {e.dtype}"
        assert g.shape == e.shape, f"{name}: shape {g.shape} != {e.shape}"
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=f"output {name!r}")
        errs[name] = float(np.max(np.abs(g.astype(np.float64) - e))) if e.size else 0.0
    return errs


# --- CNNs ------------------------------------------------------------------

def test_demo():
    check_against_ort(zoo.demo())


def test_demo_dynamic_batch():
    check_against_ort(zoo.demo(), dims={"batch_size": 3})


@pytest.mark.slow
def test_resnet50():
    check_against_ort(zoo.resnet50())


def test_resnet_small():
    # the ResNet-50 graph pattern with one bottleneck per stage, at 64x64
    check_against_ort(zoo.resnet50(layers=(1, 1, 1, 1), size=64), dims={"batch_size": 2})


def test_mobilenet_v2():
    check_against_ort(zoo.mobilenet_v2(size=160))


def test_yolo_style():
    m = zoo.yolo_style(size=160)
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim][1:] == [3 * (400 + 100 + 25), 85]
    check_against_ort(m)


# --- transformers ----------------------------------------------------------

def test_bert_2_layers():
    check_against_ort(zoo.bert_base(layers=2, seq=64, vocab=1000))


def test_bert_padding_mask():
    m = zoo.bert_base(layers=2, seq=64, vocab=1000, hidden=256, heads=4)
    feeds = zoo.example_inputs(m, dims={"batch_size": 2})
    feeds["attention_mask"][1, 40:] = 0
    check_against_ort(m, feeds)


def test_bert_opset18():
    m = zoo.bert_base(layers=2, seq=64, vocab=1000, opset=18)
    assert m.opset_import[0].version == 18
    check_against_ort(m)


@pytest.mark.slow
def test_bert_base_full():
    check_against_ort(zoo.bert_base(layers=12, seq=128))


def test_gpt2_2_layers():
    check_against_ort(zoo.gpt2(layers=2, vocab=1000))


@pytest.mark.slow
def test_gpt2_full():
    check_against_ort(zoo.gpt2(layers=12, vocab=50257))


# --- recurrent and control flow --------------------------------------------

@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_lstm_text(cell):
    check_against_ort(zoo.lstm_text(cell=cell), dims={"batch_size": 2})


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["then", "else"])
@pytest.mark.parametrize("n", [1, 4])
def test_control_flow(sign, n):
    m = zoo.control_flow()
    feeds = zoo.example_inputs(m)
    feeds["x"] = (feeds["x"] * sign).astype(np.float32)
    feeds["n"] = np.array(n, np.int64)
    check_against_ort(m, feeds)


# --- the builders themselves ----------------------------------------------

@pytest.mark.parametrize("name", sorted(set(zoo.MODELS) - {"resnet50", "bert_base", "gpt2"}))
def test_builders_full_check(name):
    m = zoo.MODELS[name]()
    onnx.checker.check_model(m, full_check=True)
    feeds = zoo.example_inputs(m)
    assert [i.name for i in m.graph.input] == list(feeds)


def test_torch_style_names_and_ranges():
    r = zoo.resnet50(layers=(1, 1, 1, 1), size=64)
    nodes = {n.name for n in r.graph.node}
    assert {"/conv1/Conv", "/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/relu_2/Relu", "/fc/Gemm"} <= nodes
    assert "layer1.0.conv1.weight" in {t.name for t in r.graph.initializer}
    assert r.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch_size"

    b = zoo.bert_base(layers=1, seq=16, vocab=100, hidden=64, heads=2)
    ops = [n.op_type for n in b.graph.node]
    for op in ("Erf", "LayerNormalization", "Softmax", "Shape", "Concat", "Reshape", "Tanh", "Gemm"):
        assert op in ops, op
    ranges = json.loads({p.key: p.value for p in b.metadata_props}[zoo.RANGES_KEY])
    assert ranges["input_ids"] == [0, 100]
    feeds = zoo.example_inputs(b, dims={"sequence_length": 7})
    assert feeds["input_ids"].shape == (1, 7) and feeds["input_ids"].max() < 100
    assert (feeds["attention_mask"] == 1).all()

    g = zoo.gpt2(layers=1, vocab=100, hidden=64, heads=2)
    split = next(n for n in g.graph.node if n.op_type == "Split")
    assert len(split.input) == 2
    assert {"Range", "Where", "Pow", "Tanh"} <= {n.op_type for n in g.graph.node}

    y = zoo.yolo_style(size=64)
    resize = next(n for n in y.graph.node if n.op_type == "Resize")
    assert list(resize.input)[1] == "" and len(resize.input) == 3


def test_gpt2_is_causal():
    m = zoo.gpt2(layers=1, vocab=100, hidden=64, heads=2)
    feeds = zoo.example_inputs(m, dims={"sequence_length": 12})
    other = {"input_ids": feeds["input_ids"].copy()}
    other["input_ids"][0, 6:] = (other["input_ids"][0, 6:] + 1) % 100
    sess = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"])
    a, b = sess.run(None, feeds)[0], sess.run(None, other)[0]
    np.testing.assert_array_equal(a[:, :6], b[:, :6])
    assert np.abs(a[:, 6:] - b[:, 6:]).max() > 1e-3
