"""Fast paths for loop bodies and tiny models (issue 15): the one-step recurrence (kernels/rnn.py
``_one_step``), the Direct bindings of Squeeze / Unsqueeze / Cast (kernels/_direct.py), the small-conv
route that skips the geometry on repeated shapes (``_ConvCore._tiny_fast``) and Loop's direct body
calls. Each against onnxruntime or the path it replaces, on the compiled and the numpy paths."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite.registry import Direct

from test_rnn_fast import _case, _reference

ort = pytest.importorskip("onnxruntime")


# --------------------------------------------------------------------------- one-step recurrences

@pytest.mark.parametrize("init", [True, False], ids=["h0", "no-h0"])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_one_step_against_onnxruntime(op, direction, B, init, jit_path, monkeypatch):
    from ortlite.kernels import rnn

    calls = []
    real = rnn._Recurrent._one_step
    monkeypatch.setattr(rnn._Recurrent, "_one_step", lambda self, *a: calls.append(1) or real(self, *a))
    kw = dict(T=1, B=B, H=10, direction=direction, lens=False, init=init)
    if op == "GRU":
        kw["linear_before_reset"] = 1
    model, feeds = _case(op, **kw)
    sess = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    for w, g in zip(_reference(op, kw), got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6)
    assert bool(calls) == (jit_path == "compiled")
    if init:  # the state is a fresh array: the feed is never updated in place
        again = sess.run(None, feeds)
        for a, b in zip(got, again):
            np.testing.assert_array_equal(a, b)
        assert not np.shares_memory(got[1], feeds["h0"])


def test_one_step_equals_the_full_loop_and_keeps_nan():
    from ortlite.kernels import _jit

    if not _jit.available():
        pytest.skip(f"compiled kernels unavailable: {_jit.unavailable_reason()}")
    for op in ("GRU", "LSTM"):
        model, feeds = _case(op, T=1, B=2, H=16, direction="forward", lens=False, init=True)
        feeds["h0"][0, 1, 3] = np.nan
        sess = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"])
        k = sess._plan.steps[0].fn
        one = sess.run(None, feeds)
        x, h0 = feeds["X"], feeds["h0"]
        c0 = feeds.get("c0")
        full = k._fast_run(x, k.fast, None, h0, c0, x.dtype, None)  # the general path, same compiled loop
        for a, b in zip(one, full):
            np.testing.assert_array_equal(a, b)
        assert np.isnan(one[1][0, 1]).all() and not np.isnan(one[1][0, 0]).any()


# --------------------------------------------------------------------------- Direct Squeeze / Unsqueeze / Cast

def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize("axes, shape", [([0], (1, 3, 4)), ([-1], (2, 3, 1)), ([0, 2], (1, 3, 1)),
                                         ([2, -1], (4, 5, 1))])
def test_direct_squeeze(axes, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    m = _model([helper.make_node("Squeeze", ["x", "a"], ["y"])], [_vi("x", TensorProto.FLOAT, list(shape))],
               [_vi("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.array(axes, np.int64), "a")])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert type(s._plan.steps[0].fn) is Direct
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = s.run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert not np.shares_memory(got, x)  # an output never aliases a feed


def test_direct_squeeze_refuses_a_dim_that_is_not_1():
    m = _model([helper.make_node("Squeeze", ["x", "a"], ["y"])], [_vi("x", TensorProto.FLOAT, [None, 3])],
               [_vi("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.array([0], np.int64), "a")])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert type(s._plan.steps[0].fn) is Direct
    assert s.run(None, {"x": np.ones((1, 3), np.float32)})[0].shape == (3,)
    with pytest.raises(Exception, match="Squeeze"):
        s.run(None, {"x": np.ones((2, 3), np.float32)})


@pytest.mark.parametrize("axes, shape", [([0], (3, 4)), ([-1], (3,)), ([0, 3], (2, 3)), ([0, -1], ()),
                                         ([2, 0], (5,))])
def test_direct_unsqueeze(axes, shape):
    x = np.asarray(np.random.default_rng(1).standard_normal(shape), dtype=np.float32)
    m = _model([helper.make_node("Unsqueeze", ["x", "a"], ["y"])], [_vi("x", TensorProto.FLOAT, list(shape))],
               [_vi("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.array(axes, np.int64), "a")])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert type(s._plan.steps[0].fn) is Direct
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = s.run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_unsqueeze_repeated_or_bad_axes_keep_the_kernel():
    from ortlite.kernels import _direct

    assert _direct._unsqueeze_key([0, 0], 1) is None
    assert _direct._unsqueeze_key([1, -2], 1) is None  # the same axis of the rank-2 result
    assert _direct._unsqueeze_key([3], 1) is None  # out of range: the kernel raises its error
    assert _direct._unsqueeze_key([0, -1], 1) == (None, slice(None), None)


def test_squeeze_unsqueeze_opset11_attributes():
    m = _model([helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, -1]),
                helper.make_node("Squeeze", ["u"], ["y"], axes=[-1])],
               [_vi("x", TensorProto.FLOAT, [2, 3])], [_vi("y", TensorProto.FLOAT, None)], opset=11)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert all(type(st.fn) is Direct for st in s._plan.steps)
    assert s.run(None, {"x": x})[0].shape == (1, 2, 3)


CASTS = [(TensorProto.BOOL, TensorProto.INT64, np.bool_), (TensorProto.BOOL, TensorProto.FLOAT, np.bool_),
         (TensorProto.INT64, TensorProto.INT32, np.int64), (TensorProto.INT32, TensorProto.FLOAT, np.int32),
         (TensorProto.INT64, TensorProto.DOUBLE, np.int64), (TensorProto.FLOAT, TensorProto.DOUBLE, np.float32),
         (TensorProto.UINT8, TensorProto.INT8, np.uint8)]


@pytest.mark.parametrize("src, dst, npt", CASTS)
def test_direct_cast(src, dst, npt):
    rng = np.random.default_rng(2)
    if npt is np.bool_:
        x = rng.random((3, 4)) > 0.5
    elif np.dtype(npt).kind == "f":
        x = rng.standard_normal((3, 4)).astype(npt)
        x[0, 0] = np.nan  # NaN propagates
    else:
        info = np.iinfo(npt)
        x = rng.integers(info.min, info.max, (3, 4), dtype=npt, endpoint=True)
    m = _model([helper.make_node("Cast", ["x"], ["y"], to=dst)], [_vi("x", src, [3, 4])], [_vi("y", dst, None)])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert type(s._plan.steps[0].fn) is Direct
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = s.run(None, {"x": x})[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("src, dst", [(TensorProto.FLOAT, TensorProto.INT64), (TensorProto.DOUBLE, TensorProto.FLOAT),
                                      (TensorProto.FLOAT, TensorProto.FLOAT16), (TensorProto.INT64, TensorProto.FLOAT16),
                                      (TensorProto.FLOAT, TensorProto.STRING)])
def test_cast_that_could_warn_keeps_the_kernel(src, dst):
    from ortlite.kernels import _direct

    class Ctx:
        xp = np

        def input_rank(self, i):
            return 2

        def input_dtype(self, i):
            return np.dtype(helper.tensor_dtype_to_np_dtype(src))

    assert _direct.cast(Ctx(), to=dst) is None


# --------------------------------------------------------------------------- small conv: the repeated-shape route

@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_tiny_conv_route_equals_first_call(batch, bias, relu):
    from ortlite.kernels import conv

    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 65, 9)).astype(np.float32)
    x[0, 0, 4] = np.nan
    w = rng.standard_normal((64, 65, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32) if bias else None
    core = conv._ConvCore("Conv", np, w, "NOTSET", [1], 1, [3], [1, 1], [1])

    def act(xp, y):
        xp.maximum(y, 0, out=y)

    a = core.run(x, w, b, act=act if relu else None)
    assert x.shape in core._tiny_route
    c = core.run(x, w, b, act=act if relu else None)  # the route
    np.testing.assert_array_equal(a, c)
    assert np.isnan(c[0, :, 3:6]).any()
    # Z, another dtype: the general path still
    z = rng.standard_normal(a.shape).astype(np.float32)
    np.testing.assert_allclose(core.run(x, w, b, z=z), core.run(x, w, b) + z, rtol=1e-6, atol=1e-6)


def test_tiny_conv_model_against_onnxruntime():
    rng = np.random.default_rng(4)
    w = numpy_helper.from_array(rng.standard_normal((8, 4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    m = _model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1]), helper.make_node("Relu", ["c"], ["y"])],
               [_vi("x", TensorProto.FLOAT, [1, 4, 10])], [_vi("y", TensorProto.FLOAT, None)], [w, b])
    s = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    r = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for _ in range(3):
        x = rng.standard_normal((1, 4, 10)).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], r.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- Loop: direct body calls

def _counter_loop(trip, profile=False):
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["iter"], ["it_f"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["it_f", "ax"], ["scan"])],
        "body", [_vi("iter", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []),
                 _vi("acc_in", TensorProto.FLOAT, [2])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out", TensorProto.FLOAT, [2]), _vi("scan", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(2, np.float32), "one"), numpy_helper.from_array(np.array([0], np.int64), "ax")])
    m = _model([helper.make_node("Loop", ["M", "c", "a0"], ["acc", "scans"], body=body)],
               [_vi("M", TensorProto.INT64, []), _vi("c", TensorProto.BOOL, []), _vi("a0", TensorProto.FLOAT, [2])],
               [_vi("acc", TensorProto.FLOAT, [2]), _vi("scans", TensorProto.FLOAT, None)])
    so = ortlite.SessionOptions()
    so.enable_profiling = profile
    return m, so


@pytest.mark.parametrize("trip", [0, 1, 5])
def test_loop_direct_body_calls(trip):
    m, so = _counter_loop(trip)
    feeds = {"M": np.array(trip, np.int64), "c": np.array(True), "a0": np.zeros(2, np.float32)}
    got = ortlite.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_loop_in_a_profiled_run_records_its_body(tmp_path):
    import json

    m, so = _counter_loop(3, profile=True)
    so.profile_file_prefix = str(tmp_path / "p")
    s = ortlite.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    s.run(None, {"M": np.array(3, np.int64), "c": np.array(True), "a0": np.zeros(2, np.float32)})
    events = json.load(open(s.end_profiling()))
    body = [e for e in events if e.get("args", {}).get("parent")]
    assert len([e for e in body if e.get("args", {}).get("op_name") == "Add"]) == 3

