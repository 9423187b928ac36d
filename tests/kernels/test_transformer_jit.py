"""The compiled transformer loops (kernels._transformer_jit) against the numpy paths they replace
and onnxruntime: Gelu / BiasGelu / FastGelu, SkipLayerNormalization (all four outputs, skip
broadcast over the batch), SkipSimplifiedLayerNormalization, LayerNormalization (ONNX 17 and
the pre-17 registration, several axes, float16 / float64), SimplifiedLayerNormalization and
Softmax, on many shapes, with NaN / inf rows. The numpy path is forced by binding the session
with the loop getters returning None (what happens without numba or with ORTLITE_JIT=0).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite.kernels import _transformer_jit as tj
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)
needs_jit = pytest.mark.skipif(tj._nb() is None, reason="numba not available (or ORTLITE_JIT=0)")

MS = "com.microsoft"
RNG = np.random.default_rng(2024)


def randn(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def _model(op, inputs, n_out=1, consts=(), domain=MS, opset=17, out_types=None, **attrs):
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, [n for n, _ in inputs], outs, domain=domain, **attrs)
    g_in = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
            for n, a in inputs if n and n not in consts]
    inits = [numpy_helper.from_array(a, n) for n, a in inputs if n and n in consts]
    t0 = onnx_elem_type(inputs[0][1].dtype)
    g_out = [helper.make_tensor_value_info(n, (out_types or {}).get(i, t0), None) for i, n in enumerate(outs)]
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain == MS else [])
    m = helper.make_model(helper.make_graph([node], "g", g_in, g_out, inits), opset_imports=opsets)
    m.ir_version = 9
    return m.SerializeToString(), {n: a for n, a in inputs if n and n not in consts}


def _ortlite(model, feeds, compiled):
    if compiled:
        s = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"])
    else:
        mp = pytest.MonkeyPatch()
        for name in ("gelu", "norm_rows", "softmax_rows"):
            mp.setattr(tj, name, lambda *a: None)
        try:
            s = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"])
        finally:
            mp.undo()
    return s.run(None, feeds)


def three(op, inputs, rtol, atol, n_out=1, vs_ort=True, **kw):
    """(compiled, numpy path, onnxruntime or None) outputs, the first two compared."""
    m, feeds = _model(op, inputs, n_out, **kw)
    a, b = _ortlite(m, feeds, True), _ortlite(m, feeds, False)
    for x, y in zip(a, b):  # the rows _with_specials filled may differ in the statistics: from row 3 on
        assert x.dtype == y.dtype and x.shape == y.shape
        x, y = x.reshape(-1, x.shape[-1])[3:], y.reshape(-1, y.shape[-1])[3:]
        np.testing.assert_allclose(x.astype(np.float64), y.astype(np.float64), rtol=rtol, atol=atol)
    c = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds) if vs_ort else None
    if c is not None:
        for x, y in zip(a, c):
            assert x.dtype == y.dtype and x.shape == y.shape
    return a, b, c


def gelu64(x):
    x = np.asarray(x, np.float64)
    return x * 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2))


def _with_specials(x):
    """x with NaN, +inf, -inf in its first rows (when it has rows enough)."""
    x = x.copy()
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] >= 4 and flat.shape[1] >= 4:
        flat[0, 1] = np.nan
        flat[1, 2] = np.inf
        flat[2, 3] = -np.inf
    return x


# =========================================================================== Gelu family

@needs_jit
def test_compiled_gelu_accuracy_dense():
    """The same bounds as the numpy path's (test_transformer_perf_paths: test_gelu_f32_accuracy_dense)."""
    x = np.concatenate([np.linspace(-16, 16, 320000), randn(100000, scale=3),
                        np.geomspace(1e-38, 2, 2000), -np.geomspace(1e-38, 14, 2000)]).astype(np.float32)
    x = x.reshape(-1, 1000)
    got = tj.run_gelu(tj.gelu(tj.GELU_ERF), x, None).reshape(-1)
    x = x.reshape(-1)
    want = gelu64(x)
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    err = np.abs(got - want)
    pos = x >= 0
    assert np.all(err[pos] <= 2.5 * ulp[pos])
    mid = (x < 0) & (x >= -2.5)
    assert np.all(err[mid] <= 8e-7 * np.abs(want[mid]) + 1e-45)
    tail = (x < -2.5) & (np.abs(want) > 1e-37)
    assert np.all(err[tail] <= 1.0 * ulp[tail])
    sp = np.zeros((1, 300), np.float32)
    sp[0, :6] = [np.nan, np.inf, -np.inf, 40.0, -40.0, -0.0]
    y = tj.run_gelu(tj.gelu(tj.GELU_ERF), sp, None)[0]
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == 0 and y[3] == 40 and y[4] == 0 and y[5] == 0


@needs_jit
def test_compiled_exp32():
    t = np.concatenate([np.linspace(-110, 95, 200001), [np.nan, np.inf, -np.inf, 0.0]]).astype(np.float32)
    exp32 = tj._exp32

    @tj._nb().njit
    def f(a, o):
        for i in range(a.size):
            o[i] = exp32(a[i])

    out = np.empty_like(t)
    f(t, out)
    with np.errstate(over="ignore"):
        want = np.exp(t.astype(np.float64))
    ok = (t >= -87.3) & (t <= 88.3)
    assert np.all(np.abs(out[ok] - want[ok]) <= 1.0 * np.spacing(want[ok].astype(np.float32)))
    assert np.isnan(out[-4]) and out[-3] == np.inf and out[-2] == 0 and out[-1] == 1
    assert np.all(out[t < -87.3] == 0) and np.all(out[t > 88.73] == np.inf)


@needs_jit
@pytest.mark.parametrize("shape", [(1, 64, 1024), (2, 7, 300), (3, 130), (1, 16, 3072)])
def test_bias_gelu_gelu_fast_gelu(shape):
    x = _with_specials(randn(*shape, scale=2.5))
    b = randn(shape[-1])
    a, n, o = three("BiasGelu", [("x", x), ("b", b)], rtol=1e-6, atol=1e-30)
    fin = np.isfinite(x + b)
    np.testing.assert_allclose(a[0][fin], gelu64((x + b).astype(np.float32)[fin]), rtol=1e-6, atol=1e-30)
    # onnxruntime: float32 erf, and Gelu(-inf) = NaN there (-0 here, the limit): finite inputs only
    np.testing.assert_allclose(a[0][fin], o[0][fin], rtol=3e-7, atol=3e-7)
    a, n, o = three("Gelu", [("x", x)], rtol=1e-6, atol=1e-30)
    fin = np.isfinite(x)
    np.testing.assert_allclose(a[0][fin], o[0][fin], rtol=3e-7, atol=3e-7)
    # FastGelu: the float32 exponent x (K0 + K1 x^2) rounds differently (FMA), a few 1e-6 relative
    # where it is large
    a, n, o = three("FastGelu", [("x", x), ("b", b)], rtol=2e-5, atol=1e-30)
    fin = np.isfinite(x + b)
    np.testing.assert_allclose(a[0][fin], o[0][fin], rtol=1e-5, atol=1e-6)
    a, n, o = three("FastGelu", [("x", x)], rtol=2e-5, atol=1e-30)
    np.testing.assert_allclose(a[0][fin], o[0][fin], rtol=1e-5, atol=1e-6)
    assert np.isnan(a[0].reshape(-1, shape[-1])[0, 1]) if x.size // shape[-1] >= 4 else True


@needs_jit
def test_gelu_float16_and_small():
    x = randn(4, 512, scale=3).astype(np.float16)
    a, n, _ = three("Gelu", [("x", x)], rtol=1e-3, atol=1e-4, vs_ort=False)
    assert a[0].dtype == np.float16
    np.testing.assert_allclose(a[0].astype(np.float64), gelu64(x.astype(np.float32)), rtol=2e-3, atol=1e-4)
    three("BiasGelu", [("x", randn(3, 5)), ("b", randn(5))], rtol=1e-7, atol=0)  # small: numpy path


# =========================================================================== normalizations

def _skip_case(shape, skip_shape, beta=True, bias=True, scale=1.0, offset=0.0):
    h = shape[-1]
    ins = [("x", _with_specials(randn(*shape, scale=scale) + np.float32(offset))), ("s", randn(*skip_shape)),
           ("g", randn(h)), ("be", randn(h) if beta else None), ("bi", randn(h) if bias else None)]
    while ins[-1][1] is None:
        ins.pop()
    return [(n if a is not None else "", a) for n, a in ins]


@needs_jit
@pytest.mark.parametrize("shape,skip_shape,beta,bias", [
    ((1, 64, 256), (1, 64, 256), True, True),
    ((2, 16, 768), (16, 768), True, False),
    ((3, 5, 300), (1, 5, 300), False, True),
    ((128, 64), (128, 64), False, False),
])
@pytest.mark.parametrize("n_out", [1, 4])
def test_skip_layer_norm(shape, skip_shape, beta, bias, n_out):
    ins = _skip_case(shape, skip_shape, beta, bias)
    types = {1: TensorProto.FLOAT, 2: TensorProto.FLOAT}
    a, n, o = three("SkipLayerNormalization", ins, rtol=2e-5, atol=2e-5, n_out=n_out, out_types=types, epsilon=1e-12)
    for x, y in zip(a, o):  # onnxruntime's mean of a row holding inf is NaN (inf here): from row 3 on
        np.testing.assert_allclose(x.reshape(-1, x.shape[-1])[3:], y.reshape(-1, y.shape[-1])[3:], rtol=1e-4, atol=1e-4)
    y = a[0].reshape(-1, shape[-1])
    assert np.all(np.isnan(y[:3])) and np.all(np.isfinite(y[3:]))


@needs_jit
def test_skip_layer_norm_large_mean_and_float64():
    """Rows far from 0: the corrected two-pass statistics keep the variance exact."""
    ins = _skip_case((2, 32, 512), (2, 32, 512), scale=1.0, offset=3000.0)
    x, s = ins[0][1].astype(np.float64), ins[1][1].astype(np.float64)
    a, _, _ = three("SkipLayerNormalization", ins, rtol=1e-3, atol=2e-3, n_out=3, vs_ort=False, epsilon=1e-12,
                    out_types={1: TensorProto.FLOAT, 2: TensorProto.FLOAT})
    v = (x + s + ins[4][1]).reshape(-1, 512)[3:]
    want = (v - v.mean(1, keepdims=True)) / np.sqrt(v.var(1, keepdims=True) + 1e-12)
    want = want * ins[2][1] + ins[3][1]
    np.testing.assert_allclose(a[0].reshape(-1, 512)[3:], want, rtol=1e-3, atol=2e-3)
    ins64 = [(nm, v.astype(np.float64)) for nm, v in _skip_case((2, 8, 384), (8, 384))]
    three("SkipLayerNormalization", ins64, rtol=1e-12, atol=1e-12, n_out=4, vs_ort=False, epsilon=1e-12,
          out_types={1: TensorProto.FLOAT, 2: TensorProto.FLOAT})


@needs_jit
@pytest.mark.parametrize("shape,skip_shape", [((1, 64, 256), (1, 64, 256)), ((2, 9, 320), (9, 320))])
def test_skip_simplified_layer_norm(shape, skip_shape):
    ins = _skip_case(shape, skip_shape, beta=False, bias=True)
    ins = [ins[0], ins[1], ins[2], ("", None), ins[4]]
    ins = [(nm, a) for nm, a in ins if nm]
    h = shape[-1]
    x, s, g, bi = (a for _, a in ins)
    a, n, _ = three("SkipSimplifiedLayerNormalization", [("x", x), ("s", s), ("g", g), ("bi", bi)],
                    rtol=2e-5, atol=2e-5, n_out=4, vs_ort=False, epsilon=1e-6,
                    out_types={1: TensorProto.FLOAT, 2: TensorProto.FLOAT})
    v = (x.astype(np.float64) + s + bi).reshape(-1, h)[3:]
    want = v / np.sqrt((v * v).mean(1, keepdims=True) + 1e-6) * g
    np.testing.assert_allclose(a[0].reshape(-1, h)[3:], want, rtol=2e-5, atol=2e-5)
    assert np.all(a[1] == 0)


@needs_jit
@pytest.mark.parametrize("shape,axis", [((1, 64, 768), -1), ((4, 6, 50), 1), ((2, 3, 256), -1), ((300, 2), -1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_layer_norm(shape, axis, dtype):
    tail = shape[axis % len(shape):]
    x = _with_specials(randn(*shape, scale=2.0) + np.float32(1.0)).astype(dtype)
    ins = [("x", x), ("g", randn(*tail).astype(dtype)), ("b", randn(*tail).astype(dtype))]
    tol = {np.float16: 2e-3, np.float32: 1e-4, np.float64: 1e-12}[dtype]  # rows of 2: ill-conditioned
    a, n, o = three("LayerNormalization", ins, rtol=tol, atol=tol, n_out=3, domain="", axis=axis, epsilon=1e-5,
                    vs_ort=dtype != np.float16, out_types={1: TensorProto.FLOAT, 2: TensorProto.FLOAT})
    if o is not None:  # from row 3 on (onnxruntime's mean of a row holding inf is NaN, inf here)
        for p, q in zip(a, o):
            p, q = p.reshape(-1, p.shape[-1])[3:], q.reshape(-1, q.shape[-1])[3:]
            np.testing.assert_allclose(p.astype(np.float64), q.astype(np.float64), rtol=max(tol, 1e-4),
                                       atol=max(tol, 1e-4))
    # the pre-17 registration (onnxruntime's fusions emit it into older models)
    three("LayerNormalization", ins[:2], rtol=tol, atol=tol, domain="", opset=13, axis=axis, vs_ort=False)


@needs_jit
@pytest.mark.parametrize("shape,axis", [((1, 64, 768), -1), ((5, 4, 70), 1)])
def test_simplified_layer_norm(shape, axis):
    tail = shape[axis % len(shape):]
    x = _with_specials(randn(*shape))
    g = randn(*tail)
    a, _, _ = three("SimplifiedLayerNormalization", [("x", x), ("g", g)], rtol=2e-5, atol=2e-5,
                    n_out=2, domain="", axis=axis, epsilon=1e-5, vs_ort=False)
    xv = x.astype(np.float64).reshape(-1, int(np.prod(tail)))
    want = xv / np.sqrt((xv * xv).mean(1, keepdims=True) + 1e-5) * g.reshape(1, -1)
    np.testing.assert_allclose(a[0].reshape(xv.shape)[3:], want[3:], rtol=2e-5, atol=2e-5)
    assert np.all(np.isnan(a[0].reshape(xv.shape)[0]))


# =========================================================================== Softmax

@needs_jit
@pytest.mark.parametrize("shape", [(1, 4, 64, 64), (2, 12, 16, 16), (3, 1000), (1, 2, 7, 129)])
def test_softmax(shape):
    x = _with_specials(randn(*shape, scale=4.0))
    flat = x.reshape(-1, shape[-1])
    if flat.shape[0] > 5:
        flat[4] = -np.inf  # a fully masked row: NaN, as in onnxruntime
        flat[5, ::2] = np.float32(np.finfo(np.float32).min)  # float32's lowest: exactly 0
    a, n, o = three("Softmax", [("x", x)], rtol=1e-6, atol=1e-7, domain="", axis=-1)
    np.testing.assert_allclose(a[0], o[0], rtol=1e-5, atol=1e-7)
    y = a[0].reshape(-1, shape[-1])
    if flat.shape[0] > 5:
        assert np.all(np.isnan(y[[0, 1, 4]])) and np.all(y[5, ::2] == 0) and np.all(y[2, 3] == 0)
        np.testing.assert_allclose(y[[2, 3]].sum(1), 1, rtol=1e-5)
        np.testing.assert_allclose(y[5:].sum(1), 1, rtol=1e-5)
