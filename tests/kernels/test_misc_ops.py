"""Focused tests for kernels/rnn.py, quant.py, random.py, signal.py, text.py, detection.py.

The node suite feeds RNN weights as inputs, quantizes small vectors and draws few boxes; these
tests add constant (pre-packed) weights, sequence_lens with both directions, layout 1, clip and
custom activations, per-axis / blocked / float8 quantization, larger NMS and TF-IDF problems and
seed reproducibility, against onnxruntime on one-node models (against numpy where ORT lacks the case).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import exact_int
import ortlite
from exact_int import require_exact_onnxruntime
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")


def _model(node, feeds, inits, opset, out_types=None, out_ranks=None):
    """A one-node model; outputs untyped (fine for onnxruntime) unless ``out_types`` gives their dtypes."""
    import onnx

    inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape)) for n, a in feeds.items()]
    names = [n for n in node.output if n]
    if out_types is None:
        outputs = [helper.make_value_info(n, onnx.TypeProto()) for n in names]
    else:
        ranks = out_ranks or [0] * len(names)
        outputs = [helper.make_tensor_value_info(n, onnx_elem_type(dt), [None] * r)
                   for n, dt, r in zip(names, out_types, ranks)]
    graph = helper.make_graph([node], "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(a, n) for n, a in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model.SerializeToString()


def run_both(node, feeds, opset, inits=None):
    """(ortlite outputs, onnxruntime outputs) of a one-node model."""
    want = ort.InferenceSession(_model(node, feeds, inits, opset), providers=["CPUExecutionProvider"]).run(None, feeds)
    model = _model(node, feeds, inits, opset, [w.dtype for w in want], [w.ndim for w in want])
    got = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    return got, want


def assert_same(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        if g.dtype == object:
            assert g.tolist() == w.tolist()
        else:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol)


rng = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------- RNNs

def _rnn_inputs(op, D, T, B, I, H, layout, with_lens=True):
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    W = rng.standard_normal((D, G * H, I)).astype(np.float32) * 0.5
    R = rng.standard_normal((D, G * H, H)).astype(np.float32) * 0.5
    Bi = rng.standard_normal((D, 2 * G * H)).astype(np.float32) * 0.1
    X = rng.standard_normal((T, B, I) if layout == 0 else (B, T, I)).astype(np.float32)
    lens = np.array([T, 2, T - 1][:B], dtype=np.int32) if with_lens else None
    h0 = rng.standard_normal((D, B, H) if layout == 0 else (B, D, H)).astype(np.float32)
    return X, W, R, Bi, lens, h0


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_rnn_const_weights_seq_lens(op, direction, layout):
    # onnxruntime's CPU RNNs reject layout 1: compare against layout 0 on transposed data.
    D = 2 if direction == "bidirectional" else 1
    X, W, R, Bi, lens, h0 = _rnn_inputs(op, D, 5, 3, 4, 6, 0)
    feeds = {"X": X, "sequence_lens": lens, "initial_h": h0}
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h"]
    extra = {}
    outs = ["Y", "Y_h"]
    if op == "LSTM":
        names += ["initial_c", "P"]
        feeds["initial_c"] = h0 * 0.5
        extra["P"] = rng.standard_normal((D, 18)).astype(np.float32) * 0.1
        outs.append("Y_c")
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    inits = {"W": W, "R": R, "B": Bi, **extra}
    node = helper.make_node(op, names, outs, hidden_size=6, direction=direction, **attrs)
    got, want = run_both(node, feeds, 14, inits=inits)
    assert_same(got, want, rtol=1e-4, atol=1e-5)
    if layout == 1:
        feeds1 = {k: (v if k == "sequence_lens" else np.ascontiguousarray(np.swapaxes(v, 0, 1)))
                  for k, v in feeds.items()}
        node = helper.make_node(op, names, outs, hidden_size=6, direction=direction, layout=1, **attrs)
        model = _model(node, feeds1, inits, 14, [np.float32] * len(outs), [4] + [3] * (len(outs) - 1))
        got1 = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds1)
        np.testing.assert_allclose(got1[0].transpose(1, 2, 0, 3), want[0], rtol=1e-4, atol=1e-5)
        for g, w in zip(got1[1:], want[1:]):
            np.testing.assert_allclose(g.transpose(1, 0, 2), w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_rnn_activations_clip_inputs(op):
    # Weights as graph inputs (packed per call), clip, non-default activations with alpha/beta,
    # and only Y_h requested.
    X, W, R, Bi, _, _ = _rnn_inputs(op, 2, 4, 2, 3, 5, 0, with_lens=False)
    acts = (["HardSigmoid", "ScaledTanh", "Affine"] if op == "LSTM" else ["HardSigmoid", "LeakyRelu"]) * 2
    alphas = [0.3, 0.9, 0.7, 0.25, 0.8, 0.6] if op == "LSTM" else [0.3, 0.2, 0.25, 0.15]
    betas = [0.4, 1.1, 0.1, 0.45, 1.2, 0.05] if op == "LSTM" else [0.4, 0.45]
    node = helper.make_node(op, ["X", "W", "R", "B"], ["", "Y_h"], hidden_size=5, direction="bidirectional",
                            clip=0.8, activations=acts, activation_alpha=alphas, activation_beta=betas)
    got, want = run_both(node, {"X": X, "W": W, "R": R, "B": Bi}, 14)
    assert_same(got, want, rtol=1e-4, atol=1e-5)


def test_lstm_input_forget_float64():
    # onnxruntime has no double LSTM: compare with its float32 result.
    X, W, R, Bi, _, _ = _rnn_inputs("LSTM", 1, 4, 2, 3, 5, 0, with_lens=False)
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y", "Y_h", "Y_c"], hidden_size=5, input_forget=1)
    _, want = run_both(node, {"X": X, "W": W, "R": R}, 14)
    f64 = {"X": X.astype(np.float64), "W": W.astype(np.float64), "R": R.astype(np.float64)}
    model = _model(node, f64, None, 14, [np.float64] * 3, [4, 3, 3])
    got = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, f64)
    assert all(g.dtype == np.float64 for g in got)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_rnn_float16_keeps_dtype():
    X, W, R, Bi, _, _ = _rnn_inputs("RNN", 1, 3, 2, 3, 4, 0, with_lens=False)
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=4)
    f16 = {k: v.astype(np.float16) for k, v in {"X": X, "W": W, "R": R, "B": Bi}.items()}
    model = _model(node, f16, None, 14, [np.float16, np.float16], [4, 3])
    y, yh = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, f16)
    ref = ort.InferenceSession(_model(node, {"X": X, "W": W, "R": R, "B": Bi}, None, 14),
                               providers=["CPUExecutionProvider"]).run(None, {"X": X, "W": W, "R": R, "B": Bi})
    assert y.dtype == np.float16 and yh.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), ref[0], atol=1e-2)


# -------------------------------------------------------------------------------------------- quant

def test_quantize_per_axis_float16_int8():
    x = (rng.standard_normal((2, 3, 4)) * 10).astype(np.float16)
    scale = np.array([0.1, 0.2, 0.3], dtype=np.float16)
    zp = np.array([-3, 0, 5], dtype=np.int8)
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], axis=1)
    got, want = run_both(node, {"x": x}, 21, inits={"s": scale, "zp": zp})
    assert_same(got, want, atol=0)
    real = x.astype(np.float32) / scale.astype(np.float32).reshape(3, 1)
    np.testing.assert_array_equal(got[0], exact_int.requantize(real, zp.reshape(3, 1), np.int8))
    node = helper.make_node("DequantizeLinear", ["y", "s", "zp"], ["x"], axis=1)
    got, want = run_both(node, {"y": got[0]}, 21, inits={"s": scale, "zp": zp})
    assert_same(got, want, rtol=1e-3)


@pytest.mark.parametrize("zp_type", [TensorProto.INT4, TensorProto.UINT4, TensorProto.UINT8])
def test_quantize_blocked(zp_type):
    # onnxruntime's Python API cannot return 4-bit tensors: compare with the formula in numpy.
    from ortlite.types import np_dtype

    x = (rng.standard_normal((4, 10)) * 3).astype(np.float32)
    scale = (rng.random((4, 3)) + 0.2).astype(np.float32)
    zp = helper.make_tensor("zp", zp_type, [4, 3], [1] * 12)
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], axis=1, block_size=4)
    m = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 10])],
        [helper.make_tensor_value_info("y", zp_type, [4, 10])],
        initializer=[numpy_helper.from_array(scale, "s"), zp]),
        opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    got = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    dt = np_dtype(zp_type)
    assert got.dtype == dt
    lo, hi = {TensorProto.INT4: (-8, 7), TensorProto.UINT4: (0, 15), TensorProto.UINT8: (0, 255)}[zp_type]
    want = np.clip(np.rint(x / np.repeat(scale, 4, axis=1)[:, :10]) + 1, lo, hi)
    np.testing.assert_array_equal(got.astype(np.int32), want.astype(np.int32))


@pytest.mark.parametrize("fp8", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2])
@pytest.mark.parametrize("saturate", [0, 1])
def test_quantize_float8_saturate(fp8, saturate):
    # onnxruntime's Python API cannot return float8 tensors: compare after a DequantizeLinear.
    x = np.array([0.0, 1.3, -2.7, 1e5, -1e6, 3.3e-3, 447.0, 500.0], dtype=np.float32)
    zp = helper.make_tensor("zp", fp8, [], [0.0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], saturate=saturate),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    m = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
        initializer=[numpy_helper.from_array(np.array(2.0, np.float32), "s"), zp]),
        opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    got = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("oracle", ["exact", "onnxruntime"])
@pytest.mark.parametrize("b_dtype", [np.int8, np.uint8])
def test_qlinear_matmul_per_column_large_k(b_dtype, oracle):
    bi = np.iinfo(b_dtype)
    a = rng.integers(0, 256, (3, 2, 300), dtype=np.uint8)
    a[0] = rng.integers(200, 256, (2, 300))  # large activations: where int16 pair sums overflow
    b = rng.integers(bi.min, bi.max + 1, (300, 7)).astype(b_dtype)
    node = helper.make_node("QLinearMatMul", ["a", "as", "azp", "b", "bs", "bzp", "ys", "yzp"], ["y"])
    inits = {"as": np.array(0.02, np.float32), "azp": np.array(120, np.uint8),
             "bs": (rng.random(7) * 0.01 + 0.001).astype(np.float32), "bzp": np.full(7, bi.min // 2 + 64, b_dtype),
             "ys": np.array(0.5, np.float32), "yzp": np.array(128, np.uint8)}
    if oracle == "onnxruntime":
        require_exact_onnxruntime("MatMulInteger", np.uint8, b_dtype)
        got, want = run_both(node, {"a": a, "b": b}, 10, inits=inits)
        assert got[0].dtype == np.uint8
        assert np.abs(got[0].astype(int) - want[0].astype(int)).max() <= 1  # fixed-point requantization
        return
    model = _model(node, {"a": a, "b": b}, inits, 10, [np.uint8], [3])
    got = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})[0]
    acc = exact_int.matmul_integer(a, b, inits["azp"], inits["bzp"])
    real = acc * (np.float64(inits["as"]) * inits["bs"].astype(np.float64) / np.float64(inits["ys"]))
    exact_int.assert_requantized(got, real, inits["yzp"], np.uint8)


def test_dynamic_quantize_linear():
    x = (rng.standard_normal((5, 7)) * 4 + 1).astype(np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "zp"])
    for feed in (x, np.zeros((3,), np.float32), np.abs(x), -np.abs(x)):
        got, want = run_both(node, {"x": feed}, 11)
        assert_same(got, want, atol=0)
        y, scale, zp = exact_int.dynamic_quantize_linear(feed)  # the spec's formula
        np.testing.assert_array_equal(got[0], y)
        assert got[1] == scale and got[2] == zp


# ------------------------------------------------------------------------------------------- random

def test_random_seed_reproducible_and_dtype():
    node = helper.make_node("RandomNormal", [], ["y"], shape=[3, 4], seed=5.0, dtype=TensorProto.FLOAT16)
    model = helper.make_model(helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [3, 4])]),
                              opset_imports=[helper.make_opsetid("", 17)])
    sess = ortlite.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a, b = sess.run(None, {})[0], sess.run(None, {})[0]
    assert a.dtype == np.float16 and a.shape == (3, 4)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op", ["RandomUniformLike", "Bernoulli", "Multinomial"])
def test_random_like_shapes(op):
    x = np.full((2, 1000), 0.3, np.float32) if op != "Multinomial" else np.log(np.array([[0.1, 0.9], [0.5, 0.5]], np.float32))
    attrs = {"sample_size": 4000} if op == "Multinomial" else {}
    node = helper.make_node(op, ["x"], ["y"], seed=1.0, **attrs)
    model = _model(node, {"x": x}, None, 15, [np.int32 if op == "Multinomial" else np.float32], [2])
    y = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    if op == "RandomUniformLike":
        assert y.dtype == np.float32 and y.shape == x.shape and 0 <= y.min() and y.max() < 1
    elif op == "Bernoulli":
        assert y.dtype == np.float32 and abs(y.mean() - 0.3) < 0.03
    else:
        assert y.dtype == np.int32 and y.shape == (2, 4000)
        assert abs(y[0].mean() - 0.9) < 0.03 and abs(y[1].mean() - 0.5) < 0.03


# ------------------------------------------------------------------------------------------- signal

@pytest.mark.parametrize("onesided,inverse", [(0, 0), (1, 0), (0, 1)])
def test_dft_axis_input_and_length(onesided, inverse):
    x = rng.standard_normal((2, 5, 6, 1 if (onesided and not inverse) else 2)).astype(np.float32)
    node = helper.make_node("DFT", ["x", "n", "axis"], ["y"], onesided=onesided, inverse=inverse)
    got, want = run_both(node, {"x": x}, 20, inits={"n": np.array(8, np.int64), "axis": np.array(1, np.int64)})
    assert_same(got, want, rtol=1e-4, atol=1e-5)


def test_stft_complex_and_window():
    x = rng.standard_normal((2, 40, 2)).astype(np.float32)
    node = helper.make_node("STFT", ["x", "step", "w", "len"], ["y"], onesided=0)
    inits = {"step": np.array(6, np.int64), "w": np.hanning(10).astype(np.float32), "len": np.array(10, np.int64)}
    got, want = run_both(node, {"x": x}, 17, inits=inits)
    assert_same(got, want, rtol=1e-4, atol=1e-5)


def test_windows_and_mel():
    for op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
        for periodic in (0, 1):
            node = helper.make_node(op, ["n"], ["y"], periodic=periodic, output_datatype=TensorProto.DOUBLE)
            got, want = run_both(node, {}, 17, inits={"n": np.array(9, np.int64)})
            assert_same(got, want, rtol=1e-6, atol=1e-7)
    node = helper.make_node("MelWeightMatrix", ["m", "n", "r", "lo", "hi"], ["y"])
    inits = {"m": np.array(10, np.int64), "n": np.array(64, np.int64), "r": np.array(16000, np.int64),
             "lo": np.array(100.0, np.float32), "hi": np.array(7000.0, np.float32)}
    got, want = run_both(node, {}, 17, inits=inits)
    assert_same(got, want)


# --------------------------------------------------------------------------------------------- text

def test_string_normalizer_insensitive_stopwords():
    x = np.array(["Monday", "tuesday", "MONDAY", "", "Wednesday"], dtype=object)
    node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="LOWER",
                            is_case_sensitive=0, stopwords=["monday"], locale="C")
    got, want = run_both(node, {"x": x}, 10)
    assert_same(got, want)


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
@pytest.mark.parametrize("strings", [False, True])
def test_tfidf_random(mode, strings):
    pool = [2, 3, 5, 4, 5, 6, 7, 8, 6, 7, 2, 3, 9, 9, 9]  # 3 unigrams, then 6 bigrams
    x = rng.integers(1, 10, (4, 30)).astype(np.int64)
    attrs = dict(max_gram_length=2, min_gram_length=1, max_skip_count=3, mode=mode, ngram_counts=[0, 3],
                 ngram_indexes=[8, 0, 3, 1, 2, 5, 4, 7, 6], weights=[float(i) + 0.5 for i in range(9)])
    if strings:
        attrs["pool_strings"] = [f"w{v}" for v in pool]
        xs = np.array([[f"w{v}" for v in row] for row in x], dtype=object)
    else:
        attrs["pool_int64s"] = pool
        xs = x
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], **attrs)
    got, want = run_both(node, {"x": xs}, 9)
    assert_same(got, want)
    got, want = run_both(node, {"x": xs[0]}, 9)
    assert_same(got, want)


def test_string_split_and_regex():
    x = np.array([["a,b,,c", ""], ["x", "1,2"]], dtype=object)
    node = helper.make_node("StringSplit", ["x"], ["y", "n"], delimiter=",", maxsplit=2)
    got, want = run_both(node, {"x": x}, 20)
    assert_same(got, want)
    node = helper.make_node("RegexFullMatch", ["x"], ["y"], pattern=r"[a-z](,\w*)*")
    got, want = run_both(node, {"x": x}, 20)
    assert_same(got, want)


# ---------------------------------------------------------------------------------------- detection

@pytest.mark.parametrize("center", [0, 1])
def test_nms_random(center):
    n = 200
    xy = rng.random((2, n, 2)).astype(np.float32) * 10
    wh = rng.random((2, n, 2)).astype(np.float32) * 3 + 0.1
    boxes = np.concatenate([xy, wh], -1) if center else np.concatenate([xy, xy + wh], -1)
    scores = rng.random((2, 3, n)).astype(np.float32)
    node = helper.make_node("NonMaxSuppression", ["b", "s", "m", "iou", "st"], ["y"], center_point_box=center)
    inits = {"m": np.array(25, np.int64), "iou": np.array(0.4, np.float32), "st": np.array(0.2, np.float32)}
    got, want = run_both(node, {"b": boxes, "s": scores}, 11, inits=inits)
    assert_same(got, want, atol=0)


@pytest.mark.parametrize("opset", [10, 13, 19])
def test_quant_older_opsets(opset):
    x = (rng.standard_normal((3, 4)) * 5).astype(np.float32)
    per_axis = opset >= 13
    scale = np.array([0.1, 0.2, 0.3], np.float32) if per_axis else np.array(0.07, np.float32)
    zp = np.array([1, 2, 3], np.uint8) if per_axis else np.array(9, np.uint8)
    attrs = {"axis": 0} if per_axis else {}
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], **attrs)
    got, want = run_both(q, {"x": x}, opset, inits={"s": scale, "zp": zp})
    assert_same(got, want, atol=0)
    bcast = (3, 1) if per_axis else ()
    np.testing.assert_array_equal(got[0], exact_int.requantize(x / scale.reshape(bcast), zp.reshape(bcast), np.uint8))
    dq = helper.make_node("DequantizeLinear", ["y", "s", "zp"], ["x"], **attrs)
    got, want = run_both(dq, {"y": got[0]}, opset, inits={"s": scale, "zp": zp})
    assert_same(got, want)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_rnn_opset7(op):
    X, W, R, Bi, _, h0 = _rnn_inputs(op, 1, 4, 2, 3, 5, 0, with_lens=False)
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, ["X", "W", "R", "B", "", "initial_h"], outs, hidden_size=5, direction="reverse")
    got, want = run_both(node, {"X": X, "initial_h": h0}, 7, inits={"W": W, "R": R, "B": Bi})
    assert_same(got, want, rtol=1e-4, atol=1e-5)
