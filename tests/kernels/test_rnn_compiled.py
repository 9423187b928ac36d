"""The compiled recurrences (kernels._jit.rnn_loop, dq_lstm) against onnxruntime and against the
numpy loops they replace: every direction, batch 1 and more, initial states, sequence_lens,
layout 1, GRU's linear_before_reset, clip, peepholes, float64, NaN propagation."""
from __future__ import annotations

import numpy as np
import pytest

import ortlite
from ortlite.kernels import _jit

from test_rnn_fast import _case, _reference

ort = pytest.importorskip("onnxruntime")


def _session(model, path):
    sess = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"])
    pk = sess._plan.steps[0].fn.fast
    assert pk is not None and (pk.jit is not None) == (path == "compiled")
    return sess


CASES = [dict(op=op, direction=d, B=b, lens=lens, init=init, layout=layout, **extra)
         for op, extra in (("RNN", {}), ("LSTM", {}), ("GRU", {"linear_before_reset": 0}),
                           ("GRU", {"linear_before_reset": 1}))
         for d in ("forward", "reverse", "bidirectional")
         for b, lens, init, layout in ((1, False, False, 0), (3, True, True, 0), (2, True, True, 1))]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_against_onnxruntime(kw, jit_path):
    kw = dict(kw)
    op = kw.pop("op")
    kw["H"] = 12
    model, feeds = _case(op, **kw)
    got = _session(model, jit_path).run(None, feeds)
    for w, g in zip(_reference(op, kw), got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("kw", [dict(op="LSTM", peep=True, clip=0.9), dict(op="LSTM", input_forget=1, peep=True),
                                dict(op="GRU", linear_before_reset=1, clip=0.7), dict(op="RNN", clip=0.5)],
                         ids=["lstm-peep-clip", "lstm-input-forget", "gru-lbr-clip", "rnn-clip"])
def test_clip_peepholes_input_forget(kw, jit_path):
    kw = dict(kw)
    op = kw.pop("op")
    model, feeds = _case(op, **kw)
    got = _session(model, jit_path).run(None, feeds)
    for w, g in zip(_reference(op, kw), got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6)


def test_compiled_matches_numpy_float64_and_nan(monkeypatch):
    if not _jit.available():
        pytest.skip(f"compiled kernels unavailable: {_jit.unavailable_reason()}")
    for op in ("RNN", "GRU", "LSTM"):
        model, feeds = _case(op, T=6, B=3, H=20)
        feeds["X"][0, 1, 0] = np.nan  # batch row 1 (within its length in both directions): NaN, never 0
        comp = _session(model, "compiled").run(None, feeds)
        with monkeypatch.context() as mp:
            mp.setitem(_jit._state, "numba", None)
            ref = _session(model, "numpy").run(None, feeds)
        for c, r in zip(comp, ref):
            np.testing.assert_array_equal(np.isnan(c), np.isnan(r))
            assert np.isnan(c[:, :, 1]).any() if c.ndim == 4 else np.isnan(c[:, 1]).all()
            np.testing.assert_allclose(c, r, rtol=1e-5, atol=2e-6)
    # float64: libm's tanh in the compiled loop, equal to numpy's within rounding
    for op in ("GRU", "LSTM"):
        fn = _jit.rnn_loop(op, np.float64)
        assert fn is not None


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_dynamic_quantize_lstm_paths(direction, jit_path):
    """DynamicQuantizeLSTM's step loop (compiled or numpy) against the exact-integer reference."""
    import exact_int
    from onnx import helper, numpy_helper

    from ortlite.types import onnx_elem_type

    rng = np.random.default_rng(3)
    t, b, i, h = 6, 2, 10, 24
    d = 2 if direction == "bidirectional" else 1
    w = rng.integers(-128, 128, (d, i, 4 * h)).astype(np.int8)
    r = rng.integers(-128, 128, (d, h, 4 * h)).astype(np.int8)
    ws = (rng.random((d, 4 * h)) * 0.01 + 0.005).astype(np.float32)
    rs = (rng.random((d,)) * 0.01 + 0.005).astype(np.float32)
    wz, rz = np.zeros((d, 4 * h), np.int8), np.zeros((d,), np.int8)
    x = rng.standard_normal((t, b, i)).astype(np.float32)
    bias = (rng.standard_normal((d, 8 * h)) * 0.1).astype(np.float32)
    h0, c0 = rng.standard_normal((2, d, b, h)).astype(np.float32)
    inputs = [("x", x), ("w", w), ("r", r), ("bias", bias), ("", None), ("h0", h0), ("c0", c0), ("", None),
              ("ws", ws), ("wz", wz), ("rs", rs), ("rz", rz)]
    consts = {"w", "r", "ws", "wz", "rs", "rz"}
    node = helper.make_node("DynamicQuantizeLSTM", [n for n, _ in inputs], ["y", "yh", "yc"], domain="com.microsoft",
                            hidden_size=h, direction=direction)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
                                        for n, a in inputs if n and n not in consts],
                          [helper.make_tensor_value_info(n, 1, None) for n in ("y", "yh", "yc")],
                          [numpy_helper.from_array(a, n) for n, a in inputs if n in consts])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    sess = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert (sess._plan.steps[0].fn.loop is not None) == (jit_path == "compiled")
    got = sess.run(None, {n: a for n, a in inputs if n and n not in consts})
    want = exact_int.dynamic_quantize_lstm(x, w, r, bias, h0, c0, ws, wz, rs, rz, direction)
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-4, atol=1e-5)
