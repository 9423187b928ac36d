"""The fusions on the zoo models: BERT / GPT-2 collapse to Attention + SkipLayerNorm + BiasGelu,
ResNet-50's Conv+Relu pairs become FusedConv, and the outputs stay those of ORT_DISABLE_ALL."""
import collections

import numpy as np
import pytest

import ortlite
from ortlite import zoo

L = ortlite.GraphOptimizationLevel


def _session(m, level):
    so = ortlite.SessionOptions()
    so.graph_optimization_level = level
    return ortlite.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _compare(m, feeds, rtol=1e-3, atol=1e-4):
    full, ref = _session(m, L.ORT_ENABLE_ALL), _session(m, L.ORT_DISABLE_ALL)
    for got, want in zip(full.run(None, feeds), ref.run(None, feeds)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return full, collections.Counter(n.op_type for n in full._graph.nodes)


def _bert(m, layers):
    feeds = zoo.example_inputs(m)
    feeds["attention_mask"][:, -5:] = 0
    sess, ops = _compare(m, feeds)
    kept = len(sess._graph.nodes) / len(m.graph.node)
    assert kept <= 0.35, (kept, ops)
    assert ops["Attention"] == layers
    assert ops["BiasGelu"] == layers and "Erf" not in ops
    assert ops["SkipLayerNormalization"] == 2 * layers + 1 and "LayerNormalization" not in ops
    assert not {"Softmax", "Reshape", "Transpose", "Div"} & set(ops)
    return sess


def test_bert_base_two_layers():
    _bert(zoo.bert_base(layers=2, seq=64), 2)


def _resnet(m):
    relus = sum(n.op_type == "Relu" for n in m.graph.node)
    sess, ops = _compare(m, zoo.example_inputs(m), rtol=1e-4, atol=1e-4)
    assert "Relu" not in ops and ops["FusedConv"] == relus
    # every residual Relu(Add(conv3, shortcut)) took the shortcut as FusedConv's Z input
    assert "Add" not in ops
    assert sum(len(n.inputs) == 4 for n in sess._graph.nodes if n.op_type == "FusedConv") == sum(
        n.op_type == "Add" for n in m.graph.node)


def test_resnet_small():
    _resnet(zoo.resnet50(layers=(1, 2, 1, 1), size=64))


def test_gpt2_small():
    m = zoo.gpt2(layers=2, hidden=64, heads=4, vocab=100, n_positions=128)
    sess, ops = _compare(m, zoo.example_inputs(m))
    assert ops["Attention"] == 2 and ops["FastGelu"] == 2 and ops["SkipLayerNormalization"] == 5
    assert len(sess._graph.nodes) / len(m.graph.node) <= 0.35


@pytest.mark.slow
def test_bert_base_full():
    _bert(zoo.bert_base(), 12)


@pytest.mark.slow
def test_resnet50_full():
    _resnet(zoo.resnet50())


@pytest.mark.slow
def test_gpt2_full():
    m = zoo.gpt2()
    sess, ops = _compare(m, zoo.example_inputs(m))
    assert ops["Attention"] == 12 and ops["FastGelu"] == 12
