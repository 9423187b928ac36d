"""NaN, +-inf through activations, clips, Max/Min and the fused Conv / Gemm epilogues (issue 16, item 1),
against onnxruntime, with the compiled loops (numba) on and off and with the fusions on and off.

MaxPool / GlobalMaxPool / ReduceMax / ReduceMin are checked against numpy instead: ortlite propagates NaN
as the ONNX reference does, while onnxruntime's result depends on where the NaN sits in the window."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from onnx import helper as h

import ortlite
from ortlite.kernels import _jit

ort = pytest.importorskip("onnxruntime")

V = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 1.0, 2.0], np.float32)
_UNFUSED = ["fuse_conv_activation", "fuse_gemm_activation"]


def _model(nodes, x_shape, inits=(), opset=17):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)]).SerializeToString()


def _t(name, a):
    a = np.asarray(a, np.float32)
    return h.make_tensor(name, TensorProto.FLOAT, a.shape, a.ravel())


_BOUNDS = [_t("lo", -0.5), _t("hi", 1.5)]


def _conv_act(act, depthwise, c=64, hw=14):
    """Conv (+ act): big enough for the compiled epilogue (a 1x1 conv over 64 channels) or depthwise 3x3."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    x.reshape(-1)[::7] = V[np.arange(x.size // 7 + 1) % len(V)][: x.reshape(-1)[::7].size]
    w = rng.standard_normal((c, 1, 3, 3) if depthwise else (c, c, 1, 1)).astype(np.float32)
    ins = ["c"] + (["lo", "hi"] if act == "Clip" else [])
    kw = {"alpha": 0.1} if act == "LeakyRelu" else {}
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], group=c if depthwise else 1, pads=[1] * 4 if depthwise else [0] * 4),
             h.make_node(act, ins, ["y"], **kw)]
    return _model(nodes, x.shape, [_t("w", w)] + (_BOUNDS if act == "Clip" else [])), x


CASES = {
    **{f"Conv+{a}": (lambda a=a: _conv_act(a, False)) for a in ("Relu", "Clip", "LeakyRelu", "HardSigmoid")},
    **{f"ConvDW+{a}": (lambda a=a: _conv_act(a, True)) for a in ("Relu", "Clip", "LeakyRelu", "HardSigmoid")},
    "Conv1x1+Relu(issue)": lambda: (_model([h.make_node("Conv", ["x", "w"], ["c"]), h.make_node("Relu", ["c"], ["y"])],
                                           (1, 1, 1, 3), [_t("w", np.ones((1, 1, 1, 1)))]),
                                    np.array([np.nan, -1, 1], np.float32).reshape(1, 1, 1, 3)),
    "Gemm+Relu": lambda: (_model([h.make_node("Gemm", ["x", "w"], ["c"]), h.make_node("Relu", ["c"], ["y"])], (1, 8),
                                 [_t("w", np.eye(8))]), V[None]),
    **{op: (lambda op=op, kw=kw: (_model([h.make_node(op, ["x"], ["y"], **kw)], (8,), opset=20), V))
       for op, kw in [("Relu", {}), ("LeakyRelu", {"alpha": 0.1}), ("HardSigmoid", {}), ("HardSwish", {}),
                      ("Elu", {}), ("Selu", {}), ("Celu", {}), ("Sigmoid", {}), ("Softplus", {}),
                      ("ThresholdedRelu", {}), ("Softsign", {})]},
    "Clip": lambda: (_model([h.make_node("Clip", ["x", "lo", "hi"], ["y"])], (8,), _BOUNDS), V),
    "Clip6": lambda: (_model([h.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)], (8,), opset=6), V),
    "PRelu": lambda: (_model([h.make_node("PRelu", ["x", "s"], ["y"])], (8,), [_t("s", [0.1])]), V),
    "Max": lambda: (_model([h.make_node("Max", ["x", "w"], ["y"])], (8,), [_t("w", np.roll(V, 3))]), V),
    "Min": lambda: (_model([h.make_node("Min", ["x", "w"], ["y"])], (8,), [_t("w", np.roll(V, 3))]), V),
}


@pytest.fixture(params=["jit", "nojit"])
def jit(request, monkeypatch):
    if request.param == "nojit":
        monkeypatch.setitem(_jit._state, "numba", None)
    elif not _jit.available():
        pytest.skip(f"numba: {_jit.unavailable_reason()}")
    return request.param


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_nan_like_onnxruntime(name, fused, jit):
    mb, x = CASES[name]()
    ref = ort.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    kw = {} if fused else {"disabled_optimizers": _UNFUSED}
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"], **kw).run(None, {"x": x})[0]
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, equal_nan=True)


def _pool_cases():
    x = np.stack([V, np.roll(V, 3)]).reshape(1, 1, 4, 4)
    x2 = np.stack([V, np.roll(V, 3), np.ones(8, np.float32)]).T.copy()
    return {
        "MaxPool": (_model([h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])], x.shape), x,
                    np.stack([[np.max(x[0, 0, i:i + 2, j:j + 2]) for j in range(3)] for i in range(3)])[None, None]),
        "GlobalMaxPool": (_model([h.make_node("GlobalMaxPool", ["x"], ["y"])], x.shape), x,
                          np.max(x, axis=(2, 3), keepdims=True)),
        "ReduceMax": (_model([h.make_node("ReduceMax", ["x"], ["y"], axes=[1])], x2.shape), x2, np.max(x2, 1, keepdims=True)),
        "ReduceMin": (_model([h.make_node("ReduceMin", ["x"], ["y"], axes=[1])], x2.shape), x2, np.min(x2, 1, keepdims=True)),
    }


@pytest.mark.parametrize("name", ["MaxPool", "GlobalMaxPool", "ReduceMax", "ReduceMin"])
def test_nan_propagates_through_max_reductions(name, jit):
    with np.errstate(invalid="ignore"):
        mb, x, want = _pool_cases()[name]
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_all_nan_image_gives_nan_logits(jit):
    """The issue's symptom: an all-NaN image through a small CNN must not give finite logits."""
    rng = np.random.default_rng(3)
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4), h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "w2"], ["c2"]), h.make_node("Relu", ["c2"], ["r2"]),
             h.make_node("GlobalAveragePool", ["r2"], ["g"]), h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("Gemm", ["f", "wf"], ["y"])]
    mb = _model(nodes, (1, 3, 16, 16), [_t("w1", rng.standard_normal((32, 3, 3, 3))),
                                       _t("w2", rng.standard_normal((64, 32, 1, 1))), _t("wf", rng.standard_normal((64, 10)))])
    x = np.full((1, 3, 16, 16), np.nan, np.float32)
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.isnan(got).all()
