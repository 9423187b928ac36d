"""The recurrent kernels' fast loops (kernels/rnn.py) against onnxruntime: bidirectional runs with
sequence_lens, initial states, peepholes, layout 1, clip, input_forget, linear_before_reset and
non-default activations, with constant (pre-packed) weights and with weights fed as inputs."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite

ort = pytest.importorskip("onnxruntime")

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _case(op, *, T=7, B=3, I=5, H=6, direction="bidirectional", layout=0, lens=True, init=True, peep=False,
          const=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    arrays = {
        "X": rng.standard_normal((B, T, I) if layout else (T, B, I)).astype(np.float32),
        "W": (rng.standard_normal((D, G * H, I)) * 0.5).astype(np.float32),
        "R": (rng.standard_normal((D, G * H, H)) * 0.5).astype(np.float32),
        "B": (rng.standard_normal((D, 2 * G * H)) * 0.5).astype(np.float32),
    }
    names = ["X", "W", "R", "B", "", ""]
    if lens:
        lv = rng.integers(1, T + 1, size=B).astype(np.int32)
        lv[0] = T
        arrays["sl"] = lv
        names[4] = "sl"
    if init:
        shp = (B, D, H) if layout else (D, B, H)
        arrays["h0"] = rng.standard_normal(shp).astype(np.float32)
        names[5] = "h0"
        if op == "LSTM":
            arrays["c0"] = rng.standard_normal(shp).astype(np.float32)
            names.append("c0")
    if op == "LSTM" and peep:
        while len(names) < 7:
            names.append("")
        arrays["P"] = (rng.standard_normal((D, 3 * H)) * 0.5).astype(np.float32)
        names.append("P")
    while names and names[-1] == "":
        names.pop()
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=H, direction=direction, layout=layout, **attrs)
    const_names = {"W", "R", "B", "P"} if const else set()
    inits = [numpy_helper.from_array(arrays[n], n) for n in names if n in const_names]
    feeds = {n: arrays[n] for n in names if n and n not in const_names}
    from ortlite.types import onnx_elem_type

    g = helper.make_graph([node], "rnn",
                          [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
                           for n, a in feeds.items()],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model.SerializeToString(), feeds


def _reference(op, kw):
    """onnxruntime's outputs; it refuses layout 1, so that runs as the layout-0 model on transposed
    inputs with the outputs transposed back."""
    layout = kw.get("layout", 0)
    model, feeds = _case(op, **{**kw, "layout": 0})
    if layout:
        feeds = {n: (a.swapaxes(0, 1).copy() if n in ("X", "h0", "c0") else a) for n, a in _case(op, **kw)[1].items()}
    outs = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    if layout:  # Y [T, D, B, H] -> [B, T, D, H]; Y_h, Y_c [D, B, H] -> [B, D, H]
        outs = [outs[0].transpose(2, 0, 1, 3)] + [o.swapaxes(0, 1) for o in outs[1:]]
    return outs


def _check(op, **kw):
    model, feeds = _case(op, **kw)
    want = _reference(op, kw)
    got = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    for w, g_ in zip(want, got):
        np.testing.assert_allclose(g_, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("const", [True, False], ids=["const", "fed"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_lens_initial_states(op, direction, layout, const):
    _check(op, direction=direction, layout=layout, const=const)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.7])
def test_gru_linear_before_reset_clip(lbr, clip):
    kw = {"clip": clip} if clip is not None else {}
    _check("GRU", linear_before_reset=lbr, **kw)
    _check("GRU", linear_before_reset=lbr, lens=False, init=False, B=1, T=9, seed=1, **kw)


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.9])
def test_lstm_peepholes_clip(layout, clip):
    kw = {"clip": clip} if clip is not None else {}
    _check("LSTM", peep=True, layout=layout, **kw)
    _check("LSTM", peep=True, layout=layout, const=False, B=2, seed=2, **kw)


def test_lstm_input_forget():
    _check("LSTM", input_forget=1, peep=True)
    _check("LSTM", input_forget=1, lens=False, B=4, seed=3)


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
def test_batch_sizes(batch):
    # the per-step product takes a different route per batch size (gemv, gemv per row, gemm)
    for op in ("RNN", "GRU", "LSTM"):
        _check(op, B=batch, H=16, I=8, T=5, lens=False, seed=batch)
        _check(op, B=batch, H=16, I=8, T=5, seed=batch + 10)


def test_activations_and_clip():
    _check("LSTM", activations=["HardSigmoid", "Tanh", "Relu", "Sigmoid", "Affine", "Tanh"],
           activation_alpha=[0.3, 0.8], activation_beta=[0.4, 0.1], clip=1.5)
    _check("GRU", activations=["Tanh", "Sigmoid", "Sigmoid", "Relu"], clip=2.0, linear_before_reset=1)
    _check("RNN", activations=["Relu", "Sigmoid"], clip=0.5)
    _check("RNN", direction="forward", activations=["LeakyRelu"], activation_alpha=[0.2])


def test_zero_length_entry_state_is_initial():
    # a batch entry of length 0 outputs zeros and keeps its initial state
    model, feeds = _case("LSTM", B=3, lens=True)
    feeds["sl"] = np.array([7, 0, 3], dtype=np.int32)
    got = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert not got[0][:, :, 1].any()
    np.testing.assert_array_equal(got[1][:, 1], feeds["h0"][:, 1])
    np.testing.assert_array_equal(got[2][:, 1], feeds["c0"][:, 1])


def test_float64_and_unused_y():
    # onnxruntime has no double LSTM: compared with its float32 run
    rng = np.random.default_rng(5)
    T, B, I, H = 6, 2, 4, 5
    X = rng.standard_normal((T, B, I))
    W = rng.standard_normal((1, 4 * H, I)) * 0.5
    R = rng.standard_normal((1, 4 * H, H)) * 0.5

    def model(dt, elem):
        node = helper.make_node("LSTM", ["X", "W", "R"], ["", "Yh"], hidden_size=H)
        g = helper.make_graph([node], "l", [helper.make_tensor_value_info("X", elem, [T, B, I])],
                              [helper.make_tensor_value_info("Yh", elem, None)],
                              [numpy_helper.from_array(W.astype(dt), "W"), numpy_helper.from_array(R.astype(dt), "R")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
        m.ir_version = 8
        return m.SerializeToString()

    want = ort.InferenceSession(model(np.float32, TensorProto.FLOAT), providers=["CPUExecutionProvider"]).run(
        None, {"X": X.astype(np.float32)})[0]
    got = ortlite.InferenceSession(model(np.float64, TensorProto.DOUBLE), providers=["CPUExecutionProvider"]).run(
        None, {"X": X})[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture
def strict_cuda():
    """The CUDA provider over the strict CuPy stand-in (tests/cuda_provider): the same kernels with xp = CuPy."""
    pytest.importorskip("cupy")
    from cuda_provider import strict_cupy
    from cuda_provider.strict_backend import StrictCUDAExecutionProvider
    from ortlite import ortvalue, providers

    strict_cupy.reset()
    providers.register_provider(StrictCUDAExecutionProvider, priority=0)
    ortvalue._device_providers.clear()
    try:
        yield ["CUDAExecutionProvider", "CPUExecutionProvider"]
    finally:
        providers.unregister_provider(StrictCUDAExecutionProvider.name)
        ortvalue._device_providers.clear()


@pytest.mark.parametrize("kw", [
    dict(op="LSTM", peep=True, clip=0.9),
    dict(op="LSTM", layout=1, const=False),
    dict(op="GRU", linear_before_reset=1, lens=False),
    dict(op="GRU", direction="reverse", clip=1.0),
    dict(op="RNN", activations=["Relu", "Sigmoid"]),
], ids=["lstm-peep-clip", "lstm-layout1-fed", "gru-lbr", "gru-reverse-clip", "rnn-acts"])
def test_on_strict_cupy(kw, strict_cuda):
    import warnings

    kw = dict(kw)
    op = kw.pop("op")
    model, feeds = _case(op, **kw)
    want = _reference(op, kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ortlite.InferenceSession(model, providers=strict_cuda)
        got = sess.run(None, feeds)
    assert sess.get_placement().counts().get("CUDAExecutionProvider", 0) == 1
    for w, g_ in zip(want, got):
        np.testing.assert_allclose(g_, w, rtol=1e-5, atol=1e-6)
