"""AttentionFusion (ortlite/optimizer/fuse_attention.py)."""
import math

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from ortlite import zoo
from ortlite.optimizer.fuse_attention import AttentionFusion
from ortlite.partition import assign

F = np.float32
SMALL = dict(hidden=32, heads=2, vocab=50)


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def bert_feeds(m, pad=True):
    f = zoo.example_inputs(m)
    if pad:
        f["attention_mask"][:, -3:] = 0   # padded keys
        f["attention_mask"][0, :] = 0     # a fully masked row: uniform weights, as unfused
    return f


def block(mask=True, scale_op="Div", dynamic=True, k_perm="0231", out_extra=None, sm_axis=-1, hidden=32, heads=2):
    """One BERT self-attention block as bert_base exports it, with knobs to break it."""
    g = zoo.GraphBuilder(17, 0, {"batch_size": 2, "sequence_length": 6}, dynamic)
    B, S = g.dim("batch_size"), g.dim("sequence_length")
    dh = hidden // heads
    x = g.input("x", TensorProto.FLOAT, [B, S, hidden])
    if mask:
        mk = g.input("attention_mask", TensorProto.INT64, [B, S])
        mk = g.unsqueeze(g.unsqueeze(mk, [1], ""), [2], "")
        mk = g.op("Mul", [g.op("Sub", [g.const(1.0), g.op("Cast", [mk], to=TensorProto.FLOAT)]), g.const(-10000.0)])
    q = zoo._heads(g, g.linear(x, "/q", "q", hidden, hidden), "/a", heads, dh, [0, 2, 1, 3])
    if k_perm == "0231":
        k = zoo._heads(g, g.linear(x, "/k", "k", hidden, hidden), "/a", heads, dh, [0, 2, 3, 1])
    else:  # transpose_for_scores then key.transpose(-1, -2)
        k = zoo._heads(g, g.linear(x, "/k", "k", hidden, hidden), "/a", heads, dh, [0, 2, 1, 3])
        k = g.op("Transpose", [k], "/a", perm=[0, 1, 3, 2])
    v = zoo._heads(g, g.linear(x, "/v", "v", hidden, hidden), "/a", heads, dh, [0, 2, 1, 3])
    qk = g.op("MatMul", [q, k], "/a")
    s = g.op("Div", [qk, g.const(math.sqrt(dh))], "/a") if scale_op == "Div" else \
        g.op("Mul", [g.const(1 / math.sqrt(dh)), qk], "/a")
    if mask:
        s = g.op("Add", [s, mk], "/a")
    p = g.op("Softmax", [s], "/a", axis=sm_axis)
    ctx = zoo._merge_heads(g, g.op("MatMul", [p, v], "/a"), "/a", hidden)
    g.linear(ctx, "/o", "o", hidden, hidden)
    g.nodes[-1].output[0] = "y"
    g.output("y", TensorProto.FLOAT, [B, S, hidden])
    if out_extra:
        g.output(p if out_extra == "probs" else out_extra, TensorProto.FLOAT, [B, heads, S, S])
    return g.build("block")


def block_feeds(opt, mask=True):
    f = {"x": opt.rng.standard_normal((2, 6, 32)).astype(F)}
    if mask:
        f["attention_mask"] = np.ones((2, 6), np.int64)
        f["attention_mask"][1, 4:] = 0
    return f


def attention(sess):
    return [n for n in sess._graph.nodes if n.op_type == "Attention"]


def test_bert_fused(opt):
    m = zoo.bert_base(batch=2, seq=8, layers=2, **SMALL)
    sess = opt.check(m, bert_feeds(m), rtol=1e-4, atol=1e-5)
    att = attention(sess)
    assert len(att) == 2 and "Softmax" not in opt.ops(sess) and "Reshape" not in opt.ops(sess)
    a = att[0]
    assert a.attrs["num_heads"] == 2 and a.attrs["scale"] == pytest.approx(1 / math.sqrt(16))
    assert a.attrs["mask_filter_value"] == pytest.approx(zoo.F32_MIN)
    # one Cast of the raw mask to int32, shared by both layers; the float mask chain is gone
    casts = [n for n in sess._graph.nodes if n.op_type == "Cast"]
    assert len(casts) == 1 and casts[0].inputs == ["attention_mask"] and casts[0].attrs["to"] == TensorProto.INT32
    assert all(x.inputs[3] == casts[0].outputs[0] for x in att)
    assert not {"Sub", "Mul", "Softmax"} & set(opt.ops(sess))


def test_bert_static_shapes(opt):
    m = zoo.bert_base(batch=2, seq=8, layers=1, dynamic=False, **SMALL)
    sess = opt.check(m, bert_feeds(m), rtol=1e-4, atol=1e-5)
    assert len(attention(sess)) == 1


@pytest.mark.parametrize("kw", [dict(mask=False), dict(scale_op="Mul"), dict(k_perm="two_transposes"),
                                dict(dynamic=False)])
def test_block_variants(opt, kw):
    m = block(**kw)
    sess = opt.check(m, block_feeds(opt, kw.get("mask", True)), rtol=1e-4, atol=1e-5)
    att = attention(sess)
    assert len(att) == 1 and "Softmax" not in opt.ops(sess)
    assert len(att[0].inputs) == (4 if kw.get("mask", True) else 3)
    if kw.get("mask", True):
        assert att[0].attrs["mask_filter_value"] == -10000.0


def test_gpt2_causal(opt):
    m = zoo.gpt2(batch=2, seq=8, layers=2, n_positions=16, **SMALL)
    sess = opt.check(m, zoo.example_inputs(m), rtol=1e-4, atol=1e-5)
    att = attention(sess)
    assert len(att) == 2 and all(a.attrs["unidirectional"] == 1 and len(a.inputs) == 3 for a in att)
    assert not {"Split", "Where", "Slice", "Softmax"} & set(opt.ops(sess))


def test_gpt2_not_causal_constant_left_alone(opt):
    m = zoo.gpt2(batch=1, seq=8, layers=1, n_positions=16, **SMALL)
    for init in m.graph.initializer:
        if init.name == "transformer.h.0.attn.bias":  # an upper-triangular "causal" mask
            init.CopyFrom(numpy_helper.from_array(np.triu(np.ones((16, 16), bool))[None, None], init.name))
    sess = opt.check(m, zoo.example_inputs(m), rtol=1e-4, atol=1e-5)
    assert not attention(sess) and "Softmax" in opt.ops(sess)


def test_idempotent(opt):
    ctx = placed(opt, zoo.bert_base(batch=1, seq=8, layers=2, **SMALL))
    assert AttentionFusion().apply(ctx)
    assert not AttentionFusion().apply(ctx)
    assert sum(n.op_type == "Attention" for n in ctx.graph.nodes) == 2


@pytest.mark.parametrize("kw", [
    dict(out_extra="probs"),        # the attention probabilities are a graph output
    dict(sm_axis=2),                # softmax over the queries, not the keys
])
def test_left_alone(opt, kw):
    m = block(**kw)
    assert not AttentionFusion().apply(placed(opt, m))
    sess = opt.check(m, block_feeds(opt), rtol=1e-4, atol=1e-5)
    assert not attention(sess)


def test_disabled(opt):
    m = zoo.bert_base(batch=1, seq=8, layers=1, **SMALL)
    sess = opt.session(m, "all", disabled=["AttentionFusion"])
    assert not attention(sess) and opt.ops(sess)["Softmax"] == 1
