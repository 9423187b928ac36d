"""The numpy fast paths behind the transformer / RNN benchmarks, pinned against onnxruntime
(and float64 references where onnxruntime is itself less accurate).

Covered: float32 Gelu / BiasGelu (polynomial + float64 tail), FastGelu, the com.microsoft
Attention fast path (transposed scores, pre-scaled Q), SkipLayerNormalization /
LayerNormalization row statistics, MatMul / Gemm weight layouts (C order for GEMMs, Fortran
order for single rows, so identical weight columns give identical outputs) and the LSTM
fast path (one tanh over the four gates). Arrays are large enough to span several of the
kernels' blocks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)

MS = "com.microsoft"
F32 = TensorProto.FLOAT
RNG = np.random.default_rng(77)


def randn(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def _model(op, inputs, outputs, consts=(), domain=MS, opset=17, **attrs):
    out_names = ["" if n.startswith("_") else n for n in outputs]
    node = helper.make_node(op, [n for n, _ in inputs], out_names, domain=domain, **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
                    for n, a in inputs if n and n not in consts]
    inits = [numpy_helper.from_array(a, n) for n, a in inputs if n and n in consts]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items() if not n.startswith("_")]
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain == MS else [])
    m = helper.make_model(helper.make_graph([node], "g", graph_inputs, outs, inits), opset_imports=opsets)
    m.ir_version = 9
    return m.SerializeToString(), {n: a for n, a in inputs if n and n not in consts}


def ours(model, feeds):
    return ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def theirs(model, feeds):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def both(op, inputs, outputs=None, consts=(), domain=MS, opset=17, rtol=1e-5, atol=1e-5, **attrs):
    m, feeds = _model(op, inputs, outputs or {"y": F32}, consts, domain, opset, **attrs)
    a, b = ours(m, feeds), theirs(m, feeds)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(x.astype(np.float64), y.astype(np.float64), rtol=rtol, atol=atol)
    return a, b


def gelu64(x):
    x = np.asarray(x, np.float64)
    return x * 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2))


# =========================================================================== Gelu

def test_gelu_f32_accuracy_dense():
    from ortlite.kernels.elementwise import gelu

    x = np.concatenate([np.linspace(-16, 16, 320001), randn(100000, scale=3),
                        np.geomspace(1e-38, 2, 2000), -np.geomspace(1e-38, 14, 2000)]).astype(np.float32)
    got = gelu(np, x)
    want = gelu64(x)
    assert got.dtype == np.float32
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    err = np.abs(got - want)
    pos = x >= 0
    assert np.all(err[pos] <= 2.5 * ulp[pos])  # x - (tiny correction): a couple of ulp
    mid = (x < 0) & (x >= -2.5)
    assert np.all(err[mid] <= 8e-7 * np.abs(want[mid]) + 1e-45)
    tail = (x < -2.5) & (np.abs(want) > 1e-37)  # float64 tail: correctly rounded or next to it
    assert np.all(err[tail] <= 1.0 * ulp[tail])
    special = gelu(np, np.float32([np.nan, np.inf, 0.0, 40.0, -40.0]))
    assert np.isnan(special[0]) and special[1] == np.inf and special[2] == 0 and special[3] == 40 and special[4] == 0


@pytest.mark.parametrize("shape", [(3, 70000), (1, 128, 3072), (5,)])
def test_bias_gelu_and_gelu_vs_onnxruntime(shape):
    x = randn(*shape, scale=2.5)
    b = randn(shape[-1])
    # onnxruntime's float32 erf is within ~1e-7 absolute: compare absolutely, and against float64
    both("BiasGelu", [("x", x), ("b", b)], rtol=3e-7, atol=3e-7)
    both("Gelu", [("x", x)], rtol=3e-7, atol=3e-7)
    got = ours(*_model("BiasGelu", [("x", x), ("b", b)], {"y": F32}))[0]
    want = gelu64(x.astype(np.float64) + b.astype(np.float32))
    np.testing.assert_allclose(got, gelu64((x + b).astype(np.float32)), rtol=1e-6, atol=1e-30)
    assert np.max(np.abs(got - want)) < 1e-5


def test_onnx_gelu20_float16_and_bias_gelu_constant_bias():
    x = randn(4, 40000, scale=3)
    m, f = _model("Gelu", [("x", x.astype(np.float16))], {"y": TensorProto.FLOAT16}, domain="", opset=20)
    got = ours(m, f)[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), gelu64(x.astype(np.float16).astype(np.float32)),
                               rtol=2e-3, atol=2e-3)
    b = randn(40000)
    both("BiasGelu", [("x", x), ("b", b)], consts={"b"}, rtol=3e-7, atol=3e-7)


@pytest.mark.parametrize("with_bias", [False, True])
def test_fast_gelu_large_vs_onnxruntime(with_bias):
    x = randn(2, 64, 3072, scale=3)
    inputs = [("x", x)] + ([("b", randn(3072))] if with_bias else [])
    both("FastGelu", inputs, rtol=1e-5, atol=1e-6)
    m, f = _model("Gelu", [("x", x)], {"y": F32}, domain="", opset=20, approximate="tanh")
    xd = x.astype(np.float64)
    want = xd / (1 + np.exp(-2 * math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))
    np.testing.assert_allclose(ours(m, f)[0], want, rtol=1e-5, atol=1e-30)


# =========================================================================== Attention

def _attn_inputs(b, s, hin, hidden, w_scale=0.2):
    return [("x", randn(b, s, hin)), ("w", randn(hin, 3 * hidden, scale=w_scale)), ("bias", randn(3 * hidden))]


@pytest.mark.parametrize("mask_kind", [None, "lengths", "raw2d", "raw3d", "start_end"])
@pytest.mark.parametrize("unidirectional", [0, 1])
@pytest.mark.parametrize("const_bias", [False, True])
def test_attention_fast_path(mask_kind, unidirectional, const_bias):
    b, s, n, hidden = 2, 24, 4, 32
    inputs = _attn_inputs(b, s, 20, hidden)
    if mask_kind == "lengths":
        inputs.append(("m", np.array([17, 24], np.int32)))
    elif mask_kind == "raw2d":
        inputs.append(("m", (RNG.random((b, s)) > 0.3).astype(np.int32)))
    elif mask_kind == "raw3d":
        inputs.append(("m", (RNG.random((b, s, s)) > 0.3).astype(np.int32)))
    elif mask_kind == "start_end":
        inputs.append(("m", np.array([20, 24, 3, 0], np.int32)))
    consts = {"w", "bias"} if const_bias else {"w"}
    both("Attention", inputs, consts=consts, num_heads=n, unidirectional=unidirectional, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("scale", [0.0, 0.3])
def test_attention_fast_path_scales_and_filter(scale):
    # head size 6: the default scale 1/sqrt(6) is not a power of two (scores scaled afterwards)
    b, s, n, hidden = 1, 9, 2, 12
    inputs = _attn_inputs(b, s, 12, hidden) + [("m", np.array([[1, 1, 1, 0, 1, 1, 0, 1, 1]], np.int32))]
    both("Attention", inputs, consts={"w", "bias"}, num_heads=n, scale=scale, mask_filter_value=-1e4,
         rtol=1e-4, atol=2e-5)
    inputs = _attn_inputs(b, s, 12, hidden) + [("m", np.array([0], np.int32))]  # all keys masked
    both("Attention", inputs, consts={"w"}, num_heads=n, mask_filter_value=float(np.finfo(np.float32).min),
         rtol=1e-4, atol=2e-5)


def test_attention_fast_path_matches_general_path():
    b, s, n, hidden = 2, 16, 4, 32
    inputs = _attn_inputs(b, s, 32, hidden) + [("m", np.array([[1] * 16, [1] * 10 + [0] * 6], np.int32))]
    m, f = _model("Attention", inputs, {"y": F32}, consts={"w", "bias"}, num_heads=n, unidirectional=1)
    sess = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"])
    kern = [st.fn for st in sess._plan.steps if st.node.op_type == "Attention"][0]
    assert kern.fast is not None
    fast = sess.run(None, f)[0]
    saved, kern.fast = kern.fast, None
    try:
        general = sess.run(None, f)[0]
    finally:
        kern.fast = saved
    np.testing.assert_allclose(fast, general, rtol=2e-6, atol=1e-6)


# =========================================================================== normalizations

@pytest.mark.parametrize("n_out", [1, 4])
@pytest.mark.parametrize("with_bias", [False, True])
def test_skip_layer_norm_fast_path(n_out, with_bias):
    x, skip = randn(2, 50, 768), randn(2, 50, 768)
    inputs = [("x", x), ("skip", skip), ("gamma", randn(768)), ("beta", randn(768))]
    if with_bias:
        inputs.append(("bias", randn(768)))
    outs = {"y": F32} if n_out == 1 else {"y": F32, "mean": F32, "inv": F32, "sum": F32}
    a, _ = both("SkipLayerNormalization", inputs, outs, epsilon=1e-12, rtol=1e-4, atol=2e-5)
    if n_out == 4:
        want = x + skip + (inputs[4][1] if with_bias else 0)
        np.testing.assert_array_equal(a[3], want)  # the pre-norm sum is kept intact
    both("SkipLayerNormalization", [("x", x), ("skip", randn(50, 768)), ("gamma", randn(768))], epsilon=1e-5,
         rtol=1e-4, atol=2e-5)


def test_layer_norm_rows_with_large_mean():
    # two-pass statistics: rows far from 0 keep their variance (a one-pass E[x^2] - E[x]^2 would not)
    x = (1000.0 + randn(64, 256)).astype(np.float32)
    g, bb = randn(256), randn(256)
    m, f = _model("LayerNormalization", [("x", x), ("g", g), ("b", bb)], {"y": F32, "mean": F32, "inv": F32},
                  domain="", opset=17, epsilon=1e-5)
    y, mean, inv = ours(m, f)
    xd = x.astype(np.float64)
    md = xd.mean(axis=1, keepdims=True)
    invd = 1 / np.sqrt(((xd - md) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, (xd - md) * invd * g + bb, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(inv, invd, rtol=1e-4)
    np.testing.assert_allclose(mean, md, rtol=1e-6)
    both("LayerNormalization", [("x", randn(3, 7, 96)), ("g", g[:96]), ("b", bb[:96])], domain="", opset=17,
         rtol=1e-4, atol=2e-5)


# =========================================================================== MatMul / Gemm layouts

@pytest.mark.parametrize("rows", [1, 3, 64])
@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_constant_weight_layouts(op, rows):
    # 1, 3 and 64 rows take the gemv, the transposed (B^T A^T) and the plain product of a packed
    # weight (kernels/math.py _Weight). Each output is checked against float64 within the error
    # bound of any summation order (K * eps32 * sum |a||w|), not for bit-identity: how a BLAS kernel
    # rounds its edge columns differs between CPUs (OpenBLAS's Haswell and SkylakeX kernels do).
    k, n = 2048, 1000
    col = randn(k, 1)
    w = np.repeat(col, n, axis=1)
    w[:, 7] = randn(k)  # one different column
    a = randn(rows, k)
    consts = {"w"}
    inputs = [("a", a), ("w", w)] + ([("c", np.full(n, 0.25, np.float32))] if op == "Gemm" else [])
    if op == "Gemm":
        consts = {"w", "c"}
    m, f = _model(op, inputs, {"y": F32}, consts=consts, domain="", opset=13)
    y = ours(m, f)[0]
    want = a.astype(np.float64) @ w.astype(np.float64) + (0.25 if op == "Gemm" else 0.0)
    bound = k * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64)) + 1e-6
    err = np.abs(y - want)
    assert (err <= bound).all(), f"max error {err.max()} beyond the summation bound at {np.argmax(err - bound)}"
    np.testing.assert_allclose(y, theirs(m, f)[0], rtol=1e-4, atol=1e-3)


def test_matmul_rows_change_between_runs():
    w = randn(300, 200)
    m, _ = _model("MatMul", [("a", randn(1, 300)), ("w", w)], {"y": F32}, consts={"w"}, domain="", opset=13)
    # dynamic rows: a symbolic first dim
    import onnx

    mp = onnx.load_model_from_string(m)
    mp.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    sess = ortlite.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
    for rows in (1, 5, 1, 2):
        a = randn(rows, 300)
        np.testing.assert_allclose(sess.run(None, {"a": a})[0], a.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)


def test_transposed_gemm_and_batched_matmul():
    a, w = randn(2, 5, 64), randn(64, 48)
    both("MatMul", [("a", a), ("w", w)], consts={"w"}, domain="", opset=13, rtol=1e-5, atol=1e-5)
    both("Gemm", [("a", randn(64, 7)), ("w", randn(48, 64)), ("c", randn(48))], consts={"w"}, domain="",
         opset=13, transA=1, transB=1, alpha=0.5, beta=2.0, rtol=1e-5, atol=1e-5)


# =========================================================================== LSTM

@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_fast_path(direction, with_state, monkeypatch):
    """The compiled recurrence (kernels._jit, numba) and the numpy loop agree closely (different
    summation order and tanh), and each matches onnxruntime."""
    from ortlite.kernels import _jit

    t, b, i, h = 9, 3, 7, 16
    d = 2 if direction == "bidirectional" else 1
    w, r, bias = randn(d, 4 * h, i), randn(d, 4 * h, h), randn(d, 8 * h)
    x = randn(t, b, i)
    inputs = [("x", x), ("w", w), ("r", r), ("bias", bias), ("", None)]
    if with_state:
        inputs += [("h0", randn(d, b, h)), ("c0", randn(d, b, h))]
    m, f = _model("LSTM", inputs, {"y": F32, "yh": F32, "yc": F32}, consts={"w", "r", "bias"}, domain="",
                  opset=14, direction=direction, hidden_size=h)
    results = {}
    for path in ("compiled", "numpy"):
        with monkeypatch.context() as mp:
            if path == "numpy":
                mp.setitem(_jit._state, "numba", None)
            elif not _jit.available():
                continue
            sess = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"])
            kern = sess._plan.steps[0].fn
            assert kern.fast is not None and (kern.fast.jit is not None) == (path == "compiled")
            results[path] = sess.run(None, f)
    want = theirs(m, f)
    for outs in results.values():
        for a, o in zip(outs, want):
            np.testing.assert_allclose(a, o, rtol=1e-5, atol=2e-6)
    if "compiled" in results:
        for a, g in zip(results["compiled"], results["numpy"]):
            np.testing.assert_allclose(a, g, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("rows", [1, 16, 100])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_fused_matmul_constant_weight(rows, trans_b):
    a, b = randn(1, rows, 96), randn(80, 96) if trans_b else randn(96, 80)
    both("FusedMatMul", [("a", a), ("b", b)], consts={"b"}, transB=trans_b, alpha=0.5, rtol=1e-5, atol=1e-5)
    both("FusedMatMul", [("a", randn(96, rows)), ("b", b)], consts={"b"}, transA=1, transB=trans_b,
         rtol=1e-5, atol=1e-5)


def test_lstm_fast_path_restores_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    t, b, i, h = 4, 1, 5, 8
    inputs = [("x", randn(t, b, i)), ("w", randn(1, 4 * h, i)), ("r", randn(1, 4 * h, h)), ("bias", randn(1, 8 * h))]
    m, f = _model("LSTM", inputs, {"y": F32}, consts={"w", "r", "bias"}, domain="", opset=14, hidden_size=h)
    sess = ortlite.InferenceSession(m, providers=["CPUExecutionProvider"])
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        sess.run(None, f)
        counts = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    assert counts <= {2}, counts  # the recurrence ran single-threaded and put the count back
