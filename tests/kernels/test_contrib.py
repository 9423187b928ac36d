"""com.microsoft contrib ops (kernels/contrib*.py) against onnxruntime and exact references.

Each op runs as a one-node model (opsets "" and "com.microsoft") with random data and a few
attribute combinations through ortlite and onnxruntime. The quantized ops are also checked
against exact integer math (tests/exact_int.py), which is the oracle for them: onnxruntime's
u8s8 GEMM is not exact on x86 CPUs without VNNI, and its comparisons ("onnxruntime" oracle
cases) are skipped where a probe shows that. Ops that onnxruntime has no CPU kernel for
(BiasSoftmax, BiasAdd, BiasSplitGelu, Attention with a 4-D mask, MultiHeadAttention with packed
QKV/KV) are checked against a numpy reference or an equivalent model onnxruntime does run. Two
end-to-end tests run a small BERT after onnxruntime's dynamic quantization (+ its graph
optimizer's DynamicQuantizeMatMul / MatMulIntegerToFloat fusions; against ONNX's reference
implementation) and after its transformer optimizer (Attention, EmbedLayerNormalization,
SkipLayerNormalization, BiasGelu).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import exact_int
import ortlite
from exact_int import require_exact_onnxruntime
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)

MS = "com.microsoft"
RNG = np.random.default_rng(2024)
F32 = TensorProto.FLOAT


def randn(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def rand_q(shape, dtype):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


def _model(op, inputs, outputs, consts=(), domain=MS, opset=17, **attrs):
    """inputs: list of (name, array) in node order, name '' for a missing optional input;
    outputs: {name: elem_type} (names starting with '_' leave the slot empty); consts: names made
    initializers."""
    out_names = ["" if n.startswith("_") else n for n in outputs]
    node = helper.make_node(op, [n for n, _ in inputs], out_names, domain=domain, **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
                    for n, a in inputs if n and n not in consts]
    inits = [numpy_helper.from_array(a, n) for n, a in inputs if n and n in consts]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items() if not n.startswith("_")]
    m = helper.make_model(helper.make_graph([node], "g", graph_inputs, outs, inits),
                          opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])
    m.ir_version = 9
    feeds = {n: a for n, a in inputs if n and n not in consts}
    return m.SerializeToString(), feeds


def ours(model, feeds):
    return ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def theirs(model, feeds, threads=0):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def check(a_list, b_list, rtol=1e-5, atol=1e-5, max_q_diff=0):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        assert a.shape == b.shape, (a.shape, b.shape)
        if a.dtype.kind in "iub":
            diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
            assert diff.max(initial=0) <= max_q_diff, f"quantized outputs differ by {diff.max()}"
        else:
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol)


def compare(op, inputs, outputs=None, consts=(), domain=MS, rtol=1e-5, atol=1e-5, max_q_diff=0, threads=0,
            opset=17, **attrs):
    outputs = outputs or {"y": F32}
    m, feeds = _model(op, inputs, outputs, consts, domain, opset, **attrs)
    res = ours(m, feeds)
    check(res, theirs(m, feeds, threads), rtol, atol, max_q_diff)
    return res


def gelu_ref(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


# =========================================================================== Gelu family

@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float16, 2e-3)])
def test_gelu_biasgelu(dtype, tol):
    x, b = randn(2, 5, 16, dtype=dtype, scale=3), randn(16, dtype=dtype)
    et = onnx_elem_type(np.dtype(dtype))
    compare("Gelu", [("x", x)], {"y": et}, rtol=tol, atol=tol)
    compare("BiasGelu", [("x", x), ("b", b)], {"y": et}, rtol=tol, atol=tol)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-6), (np.float16, 2e-3)])
def test_fast_gelu(with_bias, dtype, tol):
    x = randn(3, 4, 10, dtype=dtype, scale=3)
    inputs = [("x", x)] + ([("b", randn(10, dtype=dtype))] if with_bias else [])
    compare("FastGelu", inputs, {"y": onnx_elem_type(np.dtype(dtype))}, rtol=tol, atol=tol)


@pytest.mark.parametrize("alpha", [None, 1.0, -0.5])
def test_quick_gelu(alpha):
    kw = {} if alpha is None else {"alpha": alpha}
    compare("QuickGelu", [("x", randn(4, 33, scale=4))], **kw)
    compare("QuickGelu", [("x", randn(4, 33, dtype=np.float64, scale=4))], {"y": TensorProto.DOUBLE}, **kw)


def test_bias_split_gelu_and_bias_add():
    # no onnxruntime CPU kernel: numpy references
    x, b, s = randn(2, 6, 8), randn(8), randn(2, 6, 8)
    m, feeds = _model("BiasSplitGelu", [("x", x), ("b", b)], {"y": F32})
    t = (x + b).astype(np.float64)
    np.testing.assert_allclose(ours(m, feeds)[0], t[..., :4] * gelu_ref(t[..., 4:]), rtol=1e-5, atol=1e-6)
    m, feeds = _model("BiasAdd", [("x", x), ("b", b), ("s", s)], {"y": F32})
    np.testing.assert_allclose(ours(m, feeds)[0], x + b + s, rtol=1e-6)


@pytest.mark.parametrize("axis,inner,bshape", [(3, 0, (1, 1, 4, 5)), (2, 0, (4, 5)), (2, 1, (2, 1, 4, 5)),
                                                (-1, 1, (2, 3, 1, 5)), (1, 0, (1, 3, 4, 5))])
def test_bias_softmax(axis, inner, bshape):
    # CUDA-only in onnxruntime: softmax over the flattened dims from axis of data + bias
    x, b = randn(2, 3, 4, 5), randn(*bshape)
    m, feeds = _model("BiasSoftmax", [("x", x), ("b", b)], {"y": F32}, axis=axis, is_inner_broadcast=inner)
    t = (x + b).astype(np.float64)
    a = axis % 4
    flat = t.reshape(t.shape[:a] + (-1,))
    e = np.exp(flat - flat.max(-1, keepdims=True))
    np.testing.assert_allclose(ours(m, feeds)[0], (e / e.sum(-1, keepdims=True)).reshape(x.shape), rtol=1e-5, atol=1e-7)


# =========================================================================== normalizations

@pytest.mark.parametrize("skip_shape", [(2, 5, 16), (1, 5, 16), (5, 16)])
@pytest.mark.parametrize("beta,bias", [(True, True), (False, False), (True, False), (False, True)])
def test_skip_layer_norm(skip_shape, beta, bias):
    inputs = [("x", randn(2, 5, 16)), ("s", randn(*skip_shape)), ("g", randn(16)),
              ("bt", randn(16)) if beta else ("", None), ("bi", randn(16)) if bias else ("", None)]
    while inputs[-1][0] == "":
        inputs.pop()
    compare("SkipLayerNormalization", inputs, {"y": F32}, epsilon=1e-5)
    compare("SkipLayerNormalization", inputs, {"y": F32, "m": F32, "iv": F32, "sum": F32}, consts={"g", "bt"},
            rtol=1e-4, atol=1e-5)
    compare("SkipLayerNormalization", inputs, {"y": F32, "_m": F32, "_iv": F32, "sum": F32}, rtol=1e-5)


def test_skip_layer_norm_float16():
    inputs = [("x", randn(2, 3, 32, dtype=np.float16)), ("s", randn(2, 3, 32, dtype=np.float16)),
              ("g", randn(32, dtype=np.float16)), ("bt", randn(32, dtype=np.float16))]
    compare("SkipLayerNormalization", inputs, {"y": TensorProto.FLOAT16}, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("bias", [False, True])
def test_skip_simplified_layer_norm(bias):
    inputs = [("x", randn(2, 5, 16)), ("s", randn(2, 5, 16)), ("g", randn(16))] + ([("bi", randn(16))] if bias else [])
    compare("SkipSimplifiedLayerNormalization", inputs, {"y": F32}, epsilon=1e-6)
    compare("SkipSimplifiedLayerNormalization", inputs, {"y": F32, "m": F32, "iv": F32, "sum": F32}, rtol=1e-4)
    compare("SkipSimplifiedLayerNormalization", [("x", randn(7, 16)), ("s", randn(7, 16)), ("g", randn(16))])


@pytest.mark.parametrize("axis", [-1, 1])
def test_simplified_layer_norm(axis):
    x = randn(2, 3, 8)
    g = randn(*x.shape[axis % 3:])
    compare("SimplifiedLayerNormalization", [("x", x), ("g", g)], domain="", axis=axis, epsilon=1e-5)
    compare("SimplifiedLayerNormalization", [("x", x), ("g", g)], {"y": F32, "iv": F32}, domain="", axis=axis)
    x16 = x.astype(np.float16)
    compare("SimplifiedLayerNormalization", [("x", x16), ("g", g.astype(np.float16))], {"y": TensorProto.FLOAT16},
            domain="", axis=axis, rtol=3e-3, atol=3e-3)


@pytest.mark.parametrize("opset", [13, 17])
def test_layer_norm_before_opset_17(opset):
    # onnxruntime's contrib LayerNormalization serves models older than ONNX's LayerNormalization-17
    inputs = [("x", randn(2, 3, 8)), ("g", randn(8)), ("b", randn(8))]
    compare("LayerNormalization", inputs, {"y": F32, "m": F32, "iv": F32}, domain="", opset=opset, epsilon=1e-5,
            rtol=1e-5, atol=1e-5)


def _embed_inputs(b=2, s=6, hidden=16, seg=True, mask=True, pos=None, vocab=30):
    ids = RNG.integers(0, vocab, (b, s)).astype(np.int32)
    m = (np.arange(s)[None] < RNG.integers(1, s + 1, (b, 1))).astype(np.int32)
    return [("ids", ids), ("seg", RNG.integers(0, 2, (b, s)).astype(np.int32)) if seg else ("", None),
            ("we", randn(vocab, hidden)), ("pe", randn(12, hidden)), ("se", randn(2, hidden)) if seg else ("", None),
            ("g", randn(hidden)), ("bt", randn(hidden)), ("mask", m) if mask else ("", None)] + (
        [("pid", pos)] if pos is not None else [])


@pytest.mark.parametrize("seg,mask,pos", [(True, True, None), (False, False, None), (True, False, "batch"),
                                          (True, True, "one")])
def test_embed_layer_norm(seg, mask, pos):
    b, s = 2, 6
    pid = None
    if pos == "batch":
        pid = RNG.integers(0, 12, (b, s)).astype(np.int32)
    elif pos == "one":
        pid = (np.arange(s)[::-1]).reshape(1, s).astype(np.int32).copy()
    inputs = _embed_inputs(b, s, seg=seg, mask=mask, pos=pid)
    outs = {"y": F32, "mi": TensorProto.INT32, "es": F32}
    compare("EmbedLayerNormalization", inputs, outs, consts={"we", "pe", "se", "g", "bt"}, epsilon=1e-12,
            rtol=1e-4, atol=1e-5)
    compare("EmbedLayerNormalization", inputs, {"y": F32, "mi": TensorProto.INT32}, rtol=1e-4, atol=1e-5)


# =========================================================================== attention

def _attention_inputs(b=2, s=4, hin=16, sizes=(16, 16, 16)):
    return [("x", randn(b, s, hin)), ("w", randn(hin, sum(sizes), scale=0.3)), ("bias", randn(sum(sizes)))]


@pytest.mark.parametrize("mask_kind", [None, "lengths", "start_end", "raw2d", "raw3d"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention_masks(mask_kind, unidirectional):
    b, s = 2, 5
    inputs = _attention_inputs(b, s)
    if mask_kind == "lengths":
        inputs.append(("m", np.array([3, 5], np.int32)))
    elif mask_kind == "start_end":
        inputs.append(("m", np.array([4, 5, 1, 0], np.int32)))
    elif mask_kind == "raw2d":
        inputs.append(("m", np.array([[1, 1, 0, 1, 1], [1, 1, 1, 1, 0]], np.int32)))
    elif mask_kind == "raw3d":
        inputs.append(("m", RNG.integers(0, 2, (b, s, s)).astype(np.int32)))
    compare("Attention", inputs, consts={"w"}, num_heads=4, unidirectional=unidirectional, rtol=1e-4, atol=1e-5)


def test_attention_attributes():
    # qkv_hidden_sizes with a different V size, custom scale and mask_filter_value, attention_bias
    b, s = 2, 3
    inputs = _attention_inputs(b, s, hin=12, sizes=(8, 8, 16)) + [("m", np.array([[1, 0, 1], [1, 1, 1]], np.int32)),
                                                                 ("", None), ("ab", randn(1, 2, s, s))]
    compare("Attention", inputs, num_heads=2, qkv_hidden_sizes=[8, 8, 16], scale=0.3, mask_filter_value=-1e4,
            rtol=1e-4, atol=1e-5)
    # a fully masked row (length 0): onnxruntime's additive mask makes it uniform-ish, not zero
    inputs = _attention_inputs(2, 4) + [("m", np.array([0, 2], np.int32))]
    compare("Attention", inputs, num_heads=2, mask_filter_value=float(np.finfo(np.float32).min), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention_past_present(unidirectional):
    b, s, p, n, h = 2, 2, 3, 2, 8
    inputs = _attention_inputs(b, s, hin=8, sizes=(h, h, h)) + [
        ("m", np.ones((b, p + s), np.int32)), ("past", randn(2, b, n, p, h // n))]
    compare("Attention", inputs, {"y": F32, "present": F32}, num_heads=n, unidirectional=unidirectional,
            rtol=1e-4, atol=1e-5)


def test_attention_4d_mask_megatron():
    # onnxruntime's CPU kernel rejects 4-D masks; the Megatron form [B, 1, max_S, max_S] is the
    # raw mask of rows past..past+S: compare with the equivalent 3-D mask on onnxruntime.
    b, s, p, n, h, mx = 2, 2, 3, 2, 8, 7
    mask4 = np.tril(np.ones((mx, mx), np.int32))[None, None].repeat(b, 0)
    mask4[1, 0, :, 0] = 0
    base = _attention_inputs(b, s, hin=8, sizes=(h, h, h))
    past = ("past", randn(2, b, n, p, h // n))
    m4, f4 = _model("Attention", base + [("m", mask4), past], {"y": F32, "present": F32}, num_heads=n)
    m3, f3 = _model("Attention", base + [("m", np.ascontiguousarray(mask4[:, 0, p:p + s, :p + s])), past],
                    {"y": F32, "present": F32}, num_heads=n)
    check(ours(m4, f4), theirs(m3, f3), rtol=1e-4, atol=1e-5)


def test_attention_rotary_not_implemented():
    m, feeds = _model("Attention", _attention_inputs(), {"y": F32}, num_heads=2, do_rotary=1)
    with pytest.raises(Exception, match="rotary"):
        ours(m, feeds)


def _mha_qkv(b=2, s=3, L=5, n=2, d=4, dv=4):
    return randn(b, s, n * d), randn(b, L, n * d), randn(b, L, n * dv)


@pytest.mark.parametrize("mask_kind", [None, "lengths", "raw2d", "raw3d"])
@pytest.mark.parametrize("bias", [False, True])
def test_mha_masks(mask_kind, bias):
    b, s, L, n = 2, 3, 5, 2
    q, k, v = _mha_qkv(b, s, L, n)
    inputs = [("q", q), ("k", k), ("v", v), ("bias", randn(24)) if bias else ("", None)]
    if mask_kind == "lengths":
        inputs.append(("kpm", np.array([2, 5], np.int32)))
    elif mask_kind == "raw2d":
        inputs.append(("kpm", np.array([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]], np.int32)))
    elif mask_kind == "raw3d":
        inputs.append(("kpm", RNG.integers(0, 2, (b, s, L)).astype(np.int32)))
    while inputs[-1][0] == "":
        inputs.pop()
    compare("MultiHeadAttention", inputs, num_heads=n, rtol=1e-4, atol=1e-5)


def test_mha_bias_past_present_unidirectional():
    b, s, p, n, d = 2, 3, 4, 2, 4
    q, k, v = _mha_qkv(b, s, s, n, d)
    inputs = [("q", q), ("k", k), ("v", v), ("bias", randn(3 * n * d)), ("kpm", np.ones((b, p + s), np.int32)),
              ("ab", randn(b, n, s, p + s)), ("pk", randn(b, n, p, d)), ("pv", randn(b, n, p, d))]
    for uni in (0, 1):
        compare("MultiHeadAttention", inputs, {"y": F32, "pk_out": F32, "pv_out": F32}, num_heads=n,
                unidirectional=uni, scale=0.4, mask_filter_value=-1e5, rtol=1e-4, atol=1e-5)


def test_mha_qk_output_and_bnsh_kv():
    b, s, L, n, d = 2, 3, 5, 2, 4
    q, k, v = _mha_qkv(b, s, L, n, d)
    inputs = [("q", q), ("k", k), ("v", v), ("", None), ("", None), ("ab", randn(1, n, s, L))]
    compare("MultiHeadAttention", inputs, {"y": F32, "pk_out": F32, "pv_out": F32, "qk": F32}, num_heads=n,
            rtol=1e-4, atol=1e-5)
    # K/V already projected and split into heads (BNSH): the bias applies to Q only
    kb, vb = randn(b, n, L, d), randn(b, n, L, d)
    compare("MultiHeadAttention", [("q", q), ("k", kb), ("v", vb), ("bias", randn(3 * n * d))], num_heads=n,
            rtol=1e-4, atol=1e-5)


def test_mha_packed_forms():
    # packed QKV [B, S, N, 3, D] and packed KV [B, L, N, 2, D]: not on onnxruntime's CPU; compare
    # with the unpacked call
    b, s, n, d = 2, 4, 2, 4
    qkv = randn(b, s, n, 3, d)
    bias = randn(3 * n * d)
    mp, fp = _model("MultiHeadAttention", [("qkv", qkv), ("", None), ("", None), ("bias", bias)], {"y": F32},
                    num_heads=n)
    q, k, v = (np.ascontiguousarray(qkv[:, :, :, i]).reshape(b, s, n * d) for i in range(3))
    mu, fu = _model("MultiHeadAttention", [("q", q), ("k", k), ("v", v), ("bias", bias)], {"y": F32}, num_heads=n)
    check(ours(mp, fp), theirs(mu, fu), rtol=1e-4, atol=1e-5)
    kv = randn(b, 5, n, 2, d)
    mp, fp = _model("MultiHeadAttention", [("q", q), ("kv", kv)], {"y": F32}, num_heads=n)
    k, v = (np.ascontiguousarray(kv[:, :, :, i]).reshape(b, 5, n * d) for i in range(2))
    mu, fu = _model("MultiHeadAttention", [("q", q), ("k", k), ("v", v)], {"y": F32}, num_heads=n)
    check(ours(mp, fp), theirs(mu, fu), rtol=1e-4, atol=1e-5)


def _caches(max_pos, rd):
    inv = 1.0 / (10000 ** (np.arange(0, rd, 2) / rd))
    ang = np.arange(max_pos)[:, None] * inv[None]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


@pytest.mark.parametrize("layout", ["3d", "3d_no_heads", "4d"])
@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("pos_kind", ["offset", "batch"])
def test_rotary_embedding(layout, interleaved, pos_kind):
    b, s, n, d = 2, 5, 3, 8
    cos, sin = _caches(16, d)
    x = randn(b, n, s, d) if layout == "4d" else randn(b, s, n * d)
    pid = np.array([3], np.int64) if pos_kind == "offset" else RNG.integers(0, 16, (b, s)).astype(np.int64)
    attrs = {"interleaved": interleaved}
    if layout == "3d":
        attrs["num_heads"] = n
    compare("RotaryEmbedding", [("x", x), ("pid", pid), ("cos", cos), ("sin", sin)], **attrs)


def test_rotary_embedding_partial():
    b, s, n, d, rd = 1, 4, 2, 8, 4
    cos, sin = _caches(8, rd)
    compare("RotaryEmbedding", [("x", randn(b, s, n * d)), ("pid", np.array([0], np.int64)), ("cos", cos),
                                ("sin", sin)], num_heads=n, rotary_embedding_dim=rd)


@pytest.mark.parametrize("case", ["prompt", "decode", "window", "packed_rotary", "ragged_softcap"])
def test_group_query_attention(case):
    b, n, nkv, d = 2, 4, 2, 16  # onnxruntime's rotary wants head_size % 16 == 0
    i32 = np.int32
    if case in ("prompt", "window", "packed_rotary"):
        s, past_len = 5, 0
    else:
        s, past_len = 1, 6
    cap = past_len + s
    q, k, v = randn(b, s, n * d), randn(b, s, nkv * d), randn(b, s, nkv * d)
    pk, pv = randn(b, nkv, past_len, d), randn(b, nkv, past_len, d)
    seqlens = np.full((b,), past_len + s - 1, i32)
    if case == "ragged_softcap":  # decode with a shared buffer: entry 0 holds 3 past tokens, entry 1 holds 6
        seqlens = np.array([3, 6], i32)
    total = np.array(cap, i32)
    attrs = {"num_heads": n, "kv_num_heads": nkv}
    outs = {"y": F32, "pk_out": F32, "pv_out": F32}
    if case == "packed_rotary":
        cos, sin = _caches(16, d)
        inputs = [("qkv", np.concatenate([q, k, v], -1)), ("", None), ("", None), ("pk", pk), ("pv", pv),
                  ("sl", seqlens), ("tot", total), ("cos", cos), ("sin", sin)]
        attrs.update(do_rotary=1)
    else:
        inputs = [("q", q), ("k", k), ("v", v), ("pk", pk), ("pv", pv), ("sl", seqlens), ("tot", total)]
    if case == "window":
        attrs.update(local_window_size=2)
    if case == "ragged_softcap":
        attrs.update(softcap=2.0, scale=0.3)
    compare("GroupQueryAttention", inputs, outs, rtol=1e-4, atol=1e-5, **attrs)


# =========================================================================== fused ops

@pytest.mark.parametrize("act,params", [("", None), ("Relu", None), ("Tanh", None), ("Sigmoid", None),
                                        ("LeakyRelu", [0.2]), ("Clip", [-0.5, 0.7]), ("HardSigmoid", [0.3, 0.4])])
@pytest.mark.parametrize("with_z", [False, True])
def test_fused_conv(act, params, with_z):
    x, w, b = randn(1, 4, 7, 7), randn(6, 4, 3, 3, scale=0.3), randn(6)
    attrs = {"pads": [1, 1, 1, 1], "strides": [1, 1]}
    if act:
        attrs["activation"] = act
    if params:
        attrs["activation_params"] = params
    inputs = [("x", x), ("w", w), ("b", b)] + ([("z", randn(1, 6, 7, 7))] if with_z else [])
    compare("FusedConv", inputs, consts={"w"}, rtol=1e-4, atol=1e-5, **attrs)
    attrs = {k: v for k, v in attrs.items() if k.startswith("activation")}
    compare("FusedConv", [("x", x), ("w", randn(4, 2, 3, 3))], group=2, strides=[2, 2], dilations=[1, 1],
            rtol=1e-4, atol=1e-5, **attrs)


@pytest.mark.parametrize("act,attrs", [
    ("Relu", {}), ("LeakyRelu", {"activation_alpha": 0.3}), ("Tanh", {}), ("Sigmoid", {}),
    ("HardSigmoid", {"activation_alpha": 0.3, "activation_beta": 0.6}), ("Elu", {"activation_alpha": 0.7}),
    ("Softplus", {})])
def test_fused_gemm(act, attrs):
    a, bm, c = randn(4, 6), randn(5, 6), randn(5)
    if act:
        attrs = {**attrs, "activation": act}
    compare("FusedGemm", [("a", a), ("b", bm), ("c", c)], consts={"b"}, transB=1, alpha=0.5, beta=2.0,
            rtol=1e-5, atol=1e-5, **attrs)
    compare("FusedGemm", [("a", a.T.copy()), ("b", bm.T.copy())], transA=1, rtol=1e-5, atol=1e-5, **attrs)


@pytest.mark.parametrize("shapes,attrs", [
    (((3, 4, 5), (5, 6)), {"alpha": 2.0}),
    (((3, 5, 4), (3, 6, 5)), {"transA": 1, "transB": 1}),
    (((4, 3, 5), (3, 5, 6)), {"transBatchA": 1}),
    (((5, 3, 4), (3, 5, 6)), {"transBatchA": 1, "transA": 1}),
    (((3, 4, 5), (6, 3, 5)), {"transBatchB": 1, "transB": 1, "alpha": 0.5}),
    (((4, 2, 3, 5), (5, 2, 3, 6)), {"transBatchA": 1, "transBatchB": 1}),
])
def test_fused_matmul(shapes, attrs):
    a, b = randn(*shapes[0]), randn(*shapes[1])
    compare("FusedMatMul", [("a", a), ("b", b)], rtol=1e-5, atol=1e-5, **attrs)
    compare("FusedMatMul", [("a", a), ("b", b)], consts={"b"}, rtol=1e-5, atol=1e-5, **attrs)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 2])
def test_trilu(upper, k):
    # onnxruntime registers no CPU kernel for com.microsoft Trilu: compare with ONNX Trilu-14 on it
    for x, et in ((randn(2, 4, 5), F32), (RNG.integers(0, 9, (3, 3)).astype(np.int32), TensorProto.INT32)):
        inputs = [("x", x)] + ([("k", np.array(k, np.int64))] if k is not None else [])
        m, feeds = _model("Trilu", inputs, {"y": et}, upper=upper)
        m14, _ = _model("Trilu", inputs, {"y": et}, domain="", upper=upper)
        check(ours(m, feeds), theirs(m14, feeds))


# =========================================================================== quantization

def _against(oracle, probe, model, feeds, reference, rtol, atol, threads=0):
    """ortlite's outputs against ``reference`` (exact integer math, oracle "exact") or against
    onnxruntime (oracle "onnxruntime", skipped where its ``probe`` kernel is not exact here)."""
    got = ours(model, feeds)
    if oracle == "exact":
        check(got, [np.asarray(r) for r in reference], rtol, atol)
    else:
        require_exact_onnxruntime(*probe)
        check(got, theirs(model, feeds, threads), rtol, atol)


def _scaled(acc, scale, bias=None):
    """Exact integer sums times a float scale (+ bias), as float32."""
    y = acc.astype(np.float64) * np.asarray(scale, np.float64)
    return (y if bias is None else y + bias).astype(np.float32)


ORACLES = pytest.mark.parametrize("oracle", ["exact", "onnxruntime"])


@ORACLES
@pytest.mark.parametrize("b_dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_column,zp,bias,const_b", [(False, False, False, True), (True, True, True, True),
                                                       (False, True, True, False), (True, False, False, False)])
def test_dynamic_quantize_matmul(b_dtype, per_column, zp, bias, const_b, oracle):
    k, n = 12, 7
    a = randn(2, 3, k)
    bq = rand_q((k, n), b_dtype)
    scale = np.asarray(RNG.random(n if per_column else ()) * 0.05 + 0.01, np.float32)
    bz = rand_q(scale.shape, b_dtype) if zp else None
    bias_v = randn(n) if bias else None
    inputs = [("a", a), ("b", bq), ("bs", scale), ("bz", bz) if zp else ("", None),
              ("bias", bias_v) if bias else ("", None)]
    while inputs[-1][0] == "":
        inputs.pop()
    m, feeds = _model("DynamicQuantizeMatMul", inputs, {"y": F32}, consts={"b", "bs", "bz"} if const_b else ())
    aq, a_scale, a_zp = exact_int.dynamic_quantize_linear(a)
    want = _scaled(exact_int.matmul_integer(aq, bq, a_zp, bz), np.float32(a_scale) * scale, bias_v)
    _against(oracle, ("MatMulInteger", np.uint8, b_dtype), m, feeds, [want], 1e-5, 1e-5)


@ORACLES
@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)])
@pytest.mark.parametrize("per_column,bias", [(False, False), (True, True)])
def test_matmul_integer_to_float(a_dtype, b_dtype, per_column, bias, oracle):
    k, n = 9, 6
    a, bq = rand_q((2, 4, k), a_dtype), rand_q((k, n), b_dtype)
    a_scale = np.array(0.02, np.float32)
    bs = np.asarray(RNG.random(n if per_column else ()) * 0.05 + 0.01, np.float32)
    az, bz = rand_q((), a_dtype), rand_q(bs.shape, b_dtype)
    bias_v = randn(n) if bias else None
    inputs = [("a", a), ("b", bq), ("as", a_scale), ("bs", bs), ("az", az), ("bz", bz)] + (
        [("bias", bias_v)] if bias else [])
    probe = ("MatMulInteger", a_dtype, b_dtype)
    m, feeds = _model("MatMulIntegerToFloat", inputs, {"y": F32}, consts={"b", "bz"})
    want = _scaled(exact_int.matmul_integer(a, bq, az, bz), a_scale * bs, bias_v)
    _against(oracle, probe, m, feeds, [want], 1e-5, 1e-5)
    m, feeds = _model("MatMulIntegerToFloat", inputs[:4], {"y": F32})  # no zero points, no bias
    _against(oracle, probe, m, feeds, [_scaled(exact_int.matmul_integer(a, bq), a_scale * bs)], 1e-5, 1e-5)


@ORACLES
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("b", [1, 2])
def test_dynamic_quantize_lstm(direction, per_channel, b, oracle):
    # onnxruntime quantizes the hidden state per chunk of batch rows, one chunk per thread: with
    # 2 threads and batch <= 2 that is one row per chunk, which is what ortlite (and the reference) do
    t, i, h = 5, 6, 4
    d = 2 if direction == "bidirectional" else 1
    w, r = rand_q((d, i, 4 * h), np.int8), rand_q((d, h, 4 * h), np.int8)
    sshape = (d, 4 * h) if per_channel else (d,)
    ws = (RNG.random(sshape) * 0.02 + 0.01).astype(np.float32)
    rs = (RNG.random(sshape) * 0.02 + 0.01).astype(np.float32)
    wz = rz = np.zeros(sshape, np.int8)
    x, bias, h0, c0 = randn(t, b, i), randn(d, 8 * h, scale=0.1), randn(d, b, h), randn(d, b, h)
    inputs = [("x", x), ("w", w), ("r", r), ("bias", bias), ("", None), ("h0", h0), ("c0", c0), ("", None),
              ("ws", ws), ("wz", wz), ("rs", rs), ("rz", rz)]
    outs = {"y": F32, "yh": F32, "yc": F32}
    want = exact_int.dynamic_quantize_lstm(x, w, r, bias, h0, c0, ws, wz, rs, rz, direction)
    for consts in ({"w", "r", "ws", "wz", "rs", "rz"}, ()):  # pre-packed weights, then weights as inputs
        m, feeds = _model("DynamicQuantizeLSTM", inputs, outs, consts=consts, hidden_size=h, direction=direction)
        _against(oracle, ("MatMulInteger", np.uint8, np.int8), m, feeds, want, 1e-4, 1e-5, threads=2)


def _qparams(dtype, name):
    return [(f"{name}s", np.array(RNG.random() * 0.05 + 0.01, np.float32)), (f"{name}z", rand_q((), dtype))]


def _real(q, scale, zero_point):
    """Dequantized values in float64 (exact for 8-bit values and float32 scales)."""
    return exact_int.as_int(q, zero_point).astype(np.float64) * np.float64(scale)


# The 8-bit elementwise ops below use no integer GEMM: onnxruntime is compared unconditionally
# (within one unit, its lookup tables and fixed-point rescaling round differently), and the exact
# requantization of the op's formula in float64 is checked too.

@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("bshape", [(3, 4, 5), (5,), ()])
def test_qlinear_binary(op, dtype, bshape):
    inputs = ([("a", rand_q((3, 4, 5), dtype))] + _qparams(dtype, "a") + [("b", rand_q(bshape, dtype))] +
              _qparams(dtype, "b") + _qparams(dtype, "c"))
    (y,) = compare(op, inputs, {"y": onnx_elem_type(np.dtype(dtype))}, max_q_diff=1)
    v = dict(inputs)
    a, b = _real(v["a"], v["as"], v["az"]), _real(v["b"], v["bs"], v["bz"])
    exact_int.assert_requantized(y, (a + b if op == "QLinearAdd" else a * b) / np.float64(v["cs"]), v["cz"], dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("const", [False, True])
def test_qlinear_sigmoid(dtype, const):
    x = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype).reshape(16, 16)
    xs, xz, ys, yz = np.array(0.05, np.float32), rand_q((), dtype), np.array(1 / 256, np.float32), \
        np.array(np.iinfo(dtype).min, dtype)
    inputs = [("x", x), ("xs", xs), ("xz", xz), ("ys", ys), ("yz", yz)]
    (y,) = compare("QLinearSigmoid", inputs, {"y": onnx_elem_type(np.dtype(dtype))},
                   consts={"xs", "xz", "ys", "yz"} if const else (), max_q_diff=1)
    exact_int.assert_requantized(y, 1 / (1 + np.exp(-_real(x, xs, xz))) / np.float64(ys), yz, dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("axis", [1, -1])
def test_qlinear_concat(dtype, axis):
    ys, yz = np.array(0.04, np.float32), rand_q((), dtype)
    parts = [(rand_q((2, 3, 4), dtype), ys, yz),  # same quantization as the output: copied
             (rand_q((2, 3, 4), dtype), np.array(0.03, np.float32), rand_q((), dtype)),
             (rand_q((2, 3, 4), dtype), np.array(0.07, np.float32), rand_q((), dtype))]
    inputs = [("ys", ys), ("yz", yz)] + [(f"{k}{i}", v) for i, p in enumerate(parts) for k, v in zip("xsz", p)]
    (y,) = compare("QLinearConcat", inputs, {"y": onnx_elem_type(np.dtype(dtype))}, axis=axis, max_q_diff=1)
    real = np.concatenate([_real(*p) for p in parts], axis=axis) / np.float64(ys)
    exact_int.assert_requantized(y, real, yz, dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("channels_last", [0, 1])
def test_qlinear_global_average_pool(dtype, channels_last):
    x = rand_q((2, 5, 6, 3), dtype)
    xs, xz, ys, yz = np.array(0.03, np.float32), rand_q((), dtype), np.array(0.02, np.float32), rand_q((), dtype)
    inputs = [("x", x), ("xs", xs), ("xz", xz), ("ys", ys), ("yz", yz)]
    (y,) = compare("QLinearGlobalAveragePool", inputs, {"y": onnx_elem_type(np.dtype(dtype))},
                   channels_last=channels_last, max_q_diff=1)
    axes = (1, 2) if channels_last else (2, 3)
    real = exact_int.as_int(x, xz).sum(axis=axes, keepdims=True) / np.float64(x.shape[axes[0]] * x.shape[axes[1]])
    exact_int.assert_requantized(y, real * np.float64(xs) / np.float64(ys), yz, dtype)


# =========================================================================== end to end

@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    from ortlite import zoo

    import onnx

    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    onnx.save(zoo.bert_base(layers=2, hidden=64, heads=4, seq=16, vocab=100), str(path))
    return path


def _bert_feeds(model_path):
    from ortlite import zoo

    import onnx

    feeds = zoo.example_inputs(onnx.load(str(model_path)))
    feeds["attention_mask"][0, 12:] = 0  # some padding
    return feeds


def _compare_files(path, feeds, rtol, atol, ref=None):
    """ortlite on the model file against ``ref`` outputs, or against onnxruntime on the same file."""
    with open(path, "rb") as f:
        data = f.read()
    ref = theirs(data, feeds) if ref is None else ref
    res = ours(data, feeds)
    for a, b in zip(res, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@ORACLES
def test_e2e_quantized_bert(bert_path, tmp_path, oracle):
    import onnx
    from onnx.reference import ReferenceEvaluator
    from onnxruntime.quantization import quantize_dynamic

    qpath = tmp_path / "bert_q.onnx"
    quantize_dynamic(str(bert_path), str(qpath))
    feeds = _bert_feeds(bert_path)
    # onnxruntime's graph optimizer fuses MatMulInteger / DynamicQuantizeLinear (ONNX domain) into
    # DynamicQuantizeMatMul / MatMulIntegerToFloat
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    fpath = tmp_path / "bert_q_fused.onnx"
    so.optimized_model_filepath = str(fpath)
    ort.InferenceSession(str(qpath), so, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(fpath)).graph.node if n.domain == MS}
    assert {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} <= ops, ops
    if oracle == "exact":
        # ONNX's reference implementation (MatMulInteger in exact int32 numpy math) on the unfused
        # model; it has DequantizeLinear from opset 19 on, so the model is converted first
        qmodel = onnx.version_converter.convert_version(onnx.load(str(qpath)), 19)
        ref = ReferenceEvaluator(qmodel).run(None, feeds)
        _compare_files(qpath, feeds, 1e-4, 1e-4, ref)
        _compare_files(fpath, feeds, 1e-3, 1e-3, ref)
    else:
        require_exact_onnxruntime("MatMulInteger", np.uint8, np.int8)
        _compare_files(qpath, feeds, 1e-3, 1e-3)
        _compare_files(fpath, feeds, 1e-3, 1e-3)


def test_e2e_transformer_optimized_bert(bert_path, tmp_path):
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    opts = FusionOptions("bert")
    opts.enable_shape_inference = False  # symbolic shape inference needs sympy
    model = optimize_model(str(bert_path), model_type="bert", num_heads=4, hidden_size=64, opt_level=0,
                           optimization_options=opts)
    opath = tmp_path / "bert_opt.onnx"
    model.save_model_to_file(str(opath))
    ops = {n.op_type for n in onnx.load(str(opath)).graph.node if n.domain == MS}
    assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu"} <= ops, ops
    _compare_files(opath, _bert_feeds(bert_path), 1e-4, 1e-4)
