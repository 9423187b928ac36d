"""Direct (wrapper-free) bindings of issue 15's per-node costs: Gemm / MatMul / FusedGemm with a constant
weight, ArgMax / ArgMin, ReduceSum / ReduceMean with constant axes, Reshape and Pad (checked targets kept per
input shape), integer-scalar Div, Pow by a constant 1 / 2 / 3, and binary ops on two scalars.

Each is checked against onnxruntime and bit-for-bit against the kernel it replaces (the same session built
with every specializer off), NaN included, and that a bad shape still raises the kernel's error."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite import registry
from ortlite.registry import Direct

ort = pytest.importorskip("onnxruntime")

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17, ms=False):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(g, opset_imports=ops)


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def _session(m, **kw):
    so = ortlite.SessionOptions()
    so.graph_optimization_level = ortlite.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ortlite.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _kernel_session(m, monkeypatch):
    """The same model with every specializer off: the kernels' own results."""
    orig = registry.KernelDef.bind
    with monkeypatch.context() as mp:
        mp.setattr(registry.KernelDef, "bind",
                   lambda self, ctx, attrs: orig(dataclasses.replace(self, specialize=None), ctx, attrs))
        return _session(m)


def _check(m, feeds, monkeypatch, op, exact_ort=False, direct=True, ort_too=True):
    """Runs ``m``: the node ``op`` bound Direct (or not), bit-identical to the kernel, and (``ort_too``) equal
    to onnxruntime. ``ort_too=False`` where the kernel already differs from onnxruntime on purpose or by an
    older decision (ArgMax over NaN, the mean of nothing, Reshape of 0 elements with a -1)."""
    s = _session(m)
    kinds = {st.node.op_type: type(st.fn) for st in s._plan.steps}
    assert (kinds[op] is Direct) == direct, kinds
    got = s.run(None, feeds)
    ref = _kernel_session(m, monkeypatch).run(None, feeds)
    for g, r in zip(got, ref):
        assert type(g) is np.ndarray and g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_array_equal(g, r)  # bit-identical to the kernel
    if not ort_too:
        return s, got
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, r, w in zip(got, ref, want):
        assert type(g) is np.ndarray and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, r)  # bit-identical to the kernel
        if exact_ort or g.dtype.kind != "f":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)
    return s, got


# --------------------------------------------------------------------------- Gemm / MatMul / FusedGemm

@pytest.mark.parametrize("rows", [1, 3, 40])
@pytest.mark.parametrize("kn", [(16, 32), (128, 500), (64, 1)])
@pytest.mark.parametrize("bias", [None, "vec", "row", "scalar"])
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0)])
def test_gemm_constant_weight(rows, kn, bias, alpha, beta, monkeypatch):
    k, n = kn
    rng = np.random.default_rng(rows + k)
    b = rng.standard_normal((k, n)).astype(np.float32)
    inits = [_init("B", b)]
    ins = ["A", "B"]
    if bias is not None:
        c = {"vec": rng.standard_normal(n), "row": rng.standard_normal((1, n)), "scalar": rng.standard_normal(())}[bias]
        inits.append(_init("C", c.astype(np.float32)))
        ins.append("C")
    m = _model([helper.make_node("Gemm", ins, ["Y"], alpha=alpha, beta=beta)], [_vi("A", F32, [rows, k])],
               [_vi("Y", F32, None)], inits)
    a = rng.standard_normal((rows, k)).astype(np.float32)
    a[0, 0] = np.nan
    _, (y,) = _check(m, {"A": a}, monkeypatch, "Gemm")
    assert np.isnan(y[0]).all() and (rows == 1 or not np.isnan(y[1:]).any())


def test_gemm_rows_one_identical_columns_give_identical_outputs(monkeypatch):
    """One row keeps the Fortran-order gemv: identical weight columns give bit-identical outputs (a tie that
    ArgMax resolves as onnxruntime does)."""
    rng = np.random.default_rng(3)
    b = rng.standard_normal((128, 500)).astype(np.float32)
    b[:, 7] = b[:, 400]
    m = _model([helper.make_node("Gemm", ["A", "B"], ["Y"])], [_vi("A", F32, [1, 128])], [_vi("Y", F32, None)],
               [_init("B", b)])
    _, (y,) = _check(m, {"A": rng.standard_normal((1, 128)).astype(np.float32)}, monkeypatch, "Gemm")
    assert y[0, 7] == y[0, 400]


def test_gemm_bad_shape_and_kept_kernels(monkeypatch):
    b = np.ones((4, 3), np.float32)
    m = _model([helper.make_node("Gemm", ["A", "B"], ["Y"])], [_vi("A", F32, [None, None])], [_vi("Y", F32, None)],
               [_init("B", b)])
    s = _session(m)
    assert type(s._plan.steps[0].fn) is Direct
    with pytest.raises(Exception, match="Gemm"):
        s.run(None, {"A": np.ones((1, 5), np.float32)})
    # transA, a fed B, float16 and a C that grows the result keep the kernel
    for node, inits, ins in [
        (helper.make_node("Gemm", ["A", "B"], ["Y"], transA=1), [_init("B", b)], [_vi("A", F32, [4, 2])]),
        (helper.make_node("Gemm", ["A", "B"], ["Y"]), [], [_vi("A", F32, [2, 4]), _vi("B", F32, [4, 3])]),
        (helper.make_node("Gemm", ["A", "B", "C"], ["Y"]), [_init("B", b), _init("C", np.ones((2, 3), np.float32))],
         [_vi("A", F32, [2, 4])]),
        (helper.make_node("Gemm", ["A", "B"], ["Y"]), [_init("B", b.astype(np.float16))],
         [_vi("A", TensorProto.FLOAT16, [2, 4])]),
    ]:
        s = _session(_model([node], ins, [_vi("Y", ins[0].type.tensor_type.elem_type, None)], inits))
        assert type(s._plan.steps[0].fn) is not Direct


@pytest.mark.parametrize("rows", [1, 2, 33])
def test_matmul_constant_weight(rows, monkeypatch):
    rng = np.random.default_rng(rows)
    b = rng.standard_normal((24, 10))
    m = _model([helper.make_node("MatMul", ["A", "B"], ["Y"])], [_vi("A", TensorProto.DOUBLE, [rows, 24])],
               [_vi("Y", TensorProto.DOUBLE, None)], [_init("B", b)])
    a = rng.standard_normal((rows, 24))
    a[-1, 3] = np.nan
    _, (y,) = _check(m, {"A": a}, monkeypatch, "MatMul")
    assert np.isnan(y[-1]).all()


@pytest.mark.parametrize("act", ["Relu", "Sigmoid", "Tanh", "LeakyRelu"])
@pytest.mark.parametrize("rows", [1, 5])
def test_fused_gemm_constant_weight(act, rows, monkeypatch):
    rng = np.random.default_rng(7)
    kw = {"activation": act} if act else {}
    if act == "LeakyRelu":
        kw["activation_alpha"] = 0.2
    node = helper.make_node("FusedGemm", ["A", "B", "C"], ["Y"], domain="com.microsoft", **kw)
    m = _model([node], [_vi("A", F32, [rows, 64])], [_vi("Y", F32, None)],
               [_init("B", rng.standard_normal((64, 3)).astype(np.float32)),
                _init("C", rng.standard_normal(3).astype(np.float32))], ms=True)
    a = (rng.standard_normal((rows, 64)) * 20).astype(np.float32)
    a[0, 1] = np.nan
    _, (y,) = _check(m, {"A": a}, monkeypatch, "FusedGemm")
    assert np.isnan(y[0]).all()


# --------------------------------------------------------------------------- ArgMax / ArgMin

@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("shape, axis, keepdims", [((1, 500), 1, 0), ((3, 4, 5), -1, 1), ((3, 4, 5), 0, 0),
                                                   ((6,), 0, 1), ((2, 1), 1, 0)])
def test_direct_arg(op, shape, axis, keepdims, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype(np.float32)  # ties: the first index
    m = _model([helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims)], [_vi("x", F32, list(shape))],
               [_vi("y", TensorProto.INT64, None)])
    _check(m, {"x": x}, monkeypatch, op)
    x.reshape(-1)[min(2, x.size - 1)] = np.nan  # numpy's NaN rule, as the kernel (onnxruntime skips NaN)
    _check(m, {"x": x}, monkeypatch, op, ort_too=False)


def test_arg_select_last_index_and_rank1_scalar_keep_the_kernel():
    m = _model([helper.make_node("ArgMax", ["x"], ["y"], axis=0, keepdims=0)], [_vi("x", F32, [5])],
               [_vi("y", TensorProto.INT64, None)])
    assert type(_session(m)._plan.steps[0].fn) is not Direct
    m = _model([helper.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1)], [_vi("x", F32, [2, 5])],
               [_vi("y", TensorProto.INT64, None)])
    assert type(_session(m)._plan.steps[0].fn) is not Direct


# --------------------------------------------------------------------------- ReduceSum / ReduceMean

@pytest.mark.parametrize("op, opset", [("ReduceSum", 13), ("ReduceSum", 11), ("ReduceMean", 17), ("ReduceMean", 18)])
@pytest.mark.parametrize("shape, axes, keepdims", [((1, 16), None, 0), ((1, 16), None, 1), ((1, 64, 5), [2], 0),
                                                   ((2, 3, 4), [0, -1], 1), ((2, 3, 4), [1], 0), ((7,), [0], 0),
                                                   ((3, 0, 2), [2], 0), ((3, 0, 2), None, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_direct_reduce(op, opset, shape, axes, keepdims, dtype, monkeypatch):
    if op == "ReduceMean" and dtype == np.int32:
        pytest.skip("integer means keep the kernel")
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    if x.size and dtype != np.int32:
        x.reshape(-1)[0] = np.nan
    inits, ins, kw = [], ["x"], {"keepdims": keepdims}
    if axes is not None:
        if opset >= (13 if op == "ReduceSum" else 18):
            inits.append(_init("axes", np.array(axes, np.int64)))
            ins.append("axes")
        else:
            kw["axes"] = axes
    m = _model([helper.make_node(op, ins, ["y"], **kw)], [_vi("x", elem, list(shape))], [_vi("y", elem, None)],
               inits, opset=opset)
    # the mean of nothing: the kernel's NaN identity (onnxruntime gives 0), kept by the direct call
    _check(m, {"x": x}, monkeypatch, op, exact_ort=dtype == np.int32, ort_too=bool(x.size) or op == "ReduceSum")


def test_reduce_noop_and_fed_axes_keep_the_kernel():
    m = _model([helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)], [_vi("x", F32, [2, 3])],
               [_vi("y", F32, None)], opset=13)
    assert type(_session(m)._plan.steps[0].fn) is not Direct
    m = _model([helper.make_node("ReduceSum", ["x", "a"], ["y"])],
               [_vi("x", F32, [2, 3]), _vi("a", TensorProto.INT64, [1])], [_vi("y", F32, None)], opset=13)
    assert type(_session(m)._plan.steps[0].fn) is not Direct


# --------------------------------------------------------------------------- Reshape / Pad

def _shape_chain_reshape(opset=17):
    """x [N, 512] -> Reshape(x, Concat(N, 1, -1)): the target from a shape chain, as vad exports it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "one", "neg"], ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["y"])]
    inits = [_init("zero", np.array(0, np.int64)), _init("ax0", np.array([0], np.int64)),
             _init("one", np.array([1], np.int64)), _init("neg", np.array([-1], np.int64))]
    return _model(nodes, [_vi("x", F32, ["N", 512])], [_vi("y", F32, None)], inits, opset=opset)


def test_direct_reshape_from_a_shape_chain(monkeypatch):
    m = _shape_chain_reshape()
    s = _session(m)
    assert type([st for st in s._plan.steps if st.node.op_type == "Reshape"][0].fn) is Direct
    for n in (1, 3, 1, 0):  # shapes change between runs; 0 rows too
        x = np.random.default_rng(n).standard_normal((n, 512)).astype(np.float32)
        _check(m, {"x": x}, monkeypatch, "Reshape", ort_too=n > 0)  # onnxruntime refuses a -1 over 0 elements


@pytest.mark.parametrize("shape, target, allowzero", [((2, 3, 4), [0, -1], 0), ((2, 3, 4), [4, 0, 2], 0),
                                                      ((2, 3, 4), [24], 0), ((0, 3), [3, 0], 1),
                                                      ((0, 3), [0, -1], 0)])
def test_direct_reshape_fed_target(shape, target, allowzero, monkeypatch):
    m = _model([helper.make_node("Reshape", ["x", "t"], ["y"], allowzero=allowzero)],
               [_vi("x", F32, list(shape)), _vi("t", TensorProto.INT64, [len(target)])], [_vi("y", F32, None)],
               opset=14)
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    feeds = {"x": x, "t": np.array(target, np.int64)}
    for _ in range(2):  # the second run takes the kept target
        s, _ = _check(m, feeds, monkeypatch, "Reshape", ort_too=not (0 in shape and -1 in target))


def test_direct_reshape_bad_targets_raise_every_time():
    m = _model([helper.make_node("Reshape", ["x", "t"], ["y"])],
               [_vi("x", F32, [2, 3]), _vi("t", TensorProto.INT64, [2])], [_vi("y", F32, None)], opset=14)
    s = _session(m)
    x = np.ones((2, 3), np.float32)
    for _ in range(2):
        with pytest.raises(Exception, match="cannot take 'shape'"):
            s.run(None, {"x": x, "t": np.array([4, 2], np.int64)})
        with pytest.raises(Exception, match="more than one -1"):
            s.run(None, {"x": x, "t": np.array([-1, -1], np.int64)})
    assert s.run(None, {"x": x, "t": np.array([3, -1], np.int64)})[0].shape == (3, 2)
    # a target of another dtype with the same bytes is another key
    assert s.run(None, {"x": x, "t": np.array([6, 1], np.int64)})[0].shape == (6, 1)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
@pytest.mark.parametrize("shape, pads", [((1, 1, 512), [0, 0, 64, 0, 0, 64]), ((2, 3, 4), [0, 1, 2, 0, 2, 3]),
                                         ((2, 5), [0, 0, 0, 0]), ((3, 1), [1, 0, 2, 0])])
def test_direct_pad(mode, shape, pads, monkeypatch):
    m = _model([helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)], [_vi("x", F32, [None] * len(shape))],
               [_vi("y", F32, None)], [_init("p", np.array(pads, np.int64))], opset=19)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[-1] = np.nan
    for _ in range(2):  # first run: the kernel; second: the kept gathers
        _check(m, {"x": x}, monkeypatch, "Pad", exact_ort=True)
    s = _session(m)
    if mode == "reflect" and max(pads) > 1:  # too wide for a dim: the kernel's error, every time
        small = np.ones((2,) * len(shape), np.float32)
        for _ in range(2):
            with pytest.raises(Exception, match="reflect"):
                s.run(None, {"x": small})
    if any(pads):
        with pytest.raises(Exception, match="empty"):
            s.run(None, {"x": np.ones((0,) * len(shape), np.float32)})


def test_pad_constant_mode_and_negative_pads_keep_the_kernel():
    for mode, pads in (("constant", [0, 1, 0, 1]), ("reflect", [0, -1, 0, 1])):
        m = _model([helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)], [_vi("x", F32, [3, 4])],
                   [_vi("y", F32, None)], [_init("p", np.array(pads, np.int64))], opset=19)
        assert type(_session(m)._plan.steps[0].fn) is not Direct


# --------------------------------------------------------------------------- Div / Pow / scalar binary ops

@pytest.mark.parametrize("a, b", [(16000, 8000), (7, 2), (-7, 2), (7, -2), (-7, -2), (0, 5), (5, 0),
                                  (np.iinfo(np.int64).min, -1), (np.iinfo(np.int64).min, 1)])
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_direct_integer_scalar_div(a, b, dtype, monkeypatch):
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if dtype == np.int32 and abs(a) > 2 ** 31:
        a = np.iinfo(np.int32).min
    m = _model([helper.make_node("Div", ["a", "b"], ["y"])], [_vi("a", elem, []), _vi("b", elem, [])],
               [_vi("y", elem, None)])
    feeds = {"a": np.array(a, dtype), "b": np.array(b, dtype)}
    if b == 0 or (a == np.iinfo(dtype).min and b == -1):  # onnxruntime traps: the kernel's result is kept
        s = _session(m)
        assert type(s._plan.steps[0].fn) is Direct
        np.testing.assert_array_equal(s.run(None, feeds)[0], _kernel_session(m, monkeypatch).run(None, feeds)[0])
        return
    _check(m, feeds, monkeypatch, "Div")


@pytest.mark.parametrize("e, edt", [(2.0, np.float32), (3.0, np.float32), (1.0, np.float32), (2, np.int64),
                                    (0.5, np.float32)])
def test_direct_pow_constant_exponent(e, edt, monkeypatch):
    x = np.random.default_rng(4).standard_normal((1, 65, 9)).astype(np.float32)
    x[0, 0, 0] = np.nan
    x[0, 0, 1] = np.inf
    m = _model([helper.make_node("Pow", ["x", "e"], ["y"])], [_vi("x", F32, [1, 65, 9])], [_vi("y", F32, None)],
               [_init("e", np.array(e, edt))])
    if e == 0.5:
        x = np.abs(x)
    _check(m, {"x": x}, monkeypatch, "Pow", direct=e != 0.5)


@pytest.mark.parametrize("op", ["Greater", "Equal", "Add", "Mul", "And"])
def test_scalar_binary_ops_give_arrays(op, monkeypatch):
    elem, dt = (TensorProto.BOOL, np.bool_) if op == "And" else (TensorProto.INT64, np.int64)
    m = _model([helper.make_node(op, ["a", "b"], ["y"])], [_vi("a", elem, []), _vi("b", elem, [])],
               [_vi("y", TensorProto.BOOL if op in ("Greater", "Equal", "And") else elem, None)])
    _check(m, {"a": np.array(3, dt), "b": np.array(1, dt)}, monkeypatch, op)



@pytest.mark.parametrize("op", ["Sqrt", "Exp", "Log", "Reciprocal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quiet_unary_direct(op, dtype, monkeypatch, recwarn):
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    x = np.array([[4.0, -1.0, 0.0, np.nan, np.inf, -np.inf, 1e30, 800.0]], dtype)
    m = _model([helper.make_node(op, ["x"], ["y"])], [_vi("x", elem, [1, 8])], [_vi("y", elem, None)])
    s, _ = _check(m, {"x": x}, monkeypatch, op, ort_too=False)  # the edge values: no warning, the kernel's bits
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    y = np.abs(np.random.default_rng(5).standard_normal((1, 8))).astype(dtype) + 0.5
    _check(m, {"x": y}, monkeypatch, op)


def test_direct_calls_take_the_kernel_for_another_rank():
    """A loop body's value may change rank between iterations (shape inference tells one rank): the direct
    calls that depend on the rank hand such an input to the kernel."""
    from ortlite.kernels.math import argmax
    from ortlite.kernels.reduce import _reduce

    x3 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    m = _model([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], [_vi("x", F32, [3, 4])],
               [_vi("y", F32, None)], opset=13)
    fn = _session(m)._plan.steps[0].fn
    assert type(fn) is Direct
    np.testing.assert_array_equal(fn(x3), _reduce(np, "ReduceSum", x3, None, 0, 0))
    m = _model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1], keepdims=0)], [_vi("x", F32, [3, 4])],
               [_vi("y", F32, None)], opset=13)
    fn = _session(m)._plan.steps[0].fn
    np.testing.assert_array_equal(fn(x3), _reduce(np, "ReduceMean", x3, [-1], 0, 0))
    m = _model([helper.make_node("ArgMax", ["x"], ["y"], axis=-2)], [_vi("x", F32, [3, 4])],
               [_vi("y", TensorProto.INT64, None)])
    fn = _session(m)._plan.steps[0].fn
    assert type(fn) is Direct
    np.testing.assert_array_equal(fn(x3), argmax(np, x3, axis=-2))
    m = _model([helper.make_node("MatMul", ["x", "B"], ["y"])], [_vi("x", F32, [1, 4])], [_vi("y", F32, None)],
               [_init("B", np.ones((4, 5), np.float32))])
    fn = _session(m)._plan.steps[0].fn
    assert type(fn) is Direct
    np.testing.assert_array_equal(fn(x3, None), x3 @ np.ones((4, 5), np.float32))


@pytest.mark.parametrize("shapes, axis", [([(1, 1, 64), (1, 1, 64)], 0), ([(2, 3), (2, 5), (2, 1)], -1),
                                          ([(0, 3), (2, 3)], 0)])
def test_direct_concat(shapes, axis, monkeypatch):
    rng = np.random.default_rng(6)
    names = [f"x{i}" for i in range(len(shapes))]
    m = _model([helper.make_node("Concat", names, ["y"], axis=axis)],
               [_vi(n, F32, list(sh)) for n, sh in zip(names, shapes)], [_vi("y", F32, None)])
    feeds = {n: rng.standard_normal(sh).astype(np.float32) for n, sh in zip(names, shapes)}
    feeds["x0"].reshape(-1)[:1] = np.nan
    _check(m, feeds, monkeypatch, "Concat")


def test_direct_concat_bad_shapes_raise_the_kernel_error():
    m = _model([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
               [_vi("a", F32, [None, None]), _vi("b", F32, [None, None])], [_vi("y", F32, None)])
    s = _session(m)
    assert type(s._plan.steps[0].fn) is Direct
    with pytest.raises(Exception, match="differ outside axis 0"):
        s.run(None, {"a": np.ones((1, 2), np.float32), "b": np.ones((1, 3), np.float32)})
    m = _model([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
               [_vi("a", F32, None), _vi("b", F32, None)], [_vi("y", F32, None)])
    with pytest.raises(Exception, match="rank differs"):
        _session(m).run(None, {"a": np.ones((1, 2), np.float32), "b": np.ones(3, np.float32)})


class _Ctx:
    """The part of a kernel context the Squeeze/Unsqueeze specializers read."""
    xp = np

    def __init__(self, rank, axes=None):
        self._rank, self._axes = rank, axes

    def input_rank(self, i):
        return self._rank

    def const(self, i):
        return None if self._axes is None else np.array(self._axes, np.int64)


@pytest.mark.parametrize("axes", [[-1], [0], [1, -1]])
def test_squeeze_unsqueeze_direct_follow_the_run_time_rank(axes):
    """A value whose rank at run time is not shape inference's: the axes are read against the real rank
    (as the kernel does), never against the inferred one (a silent wrong answer)."""
    from ortlite.kernels import _direct

    x = np.zeros((1, 1, 2, 1, 1), np.float32)  # rank 5 where the binding was made for rank 4
    for fn, args in ((_direct.squeeze(_Ctx(4, axes)).fn, (x, None)), (_direct.squeeze_v1(_Ctx(4), axes=axes).fn, (x,))):
        want = np.squeeze(x, tuple(a % 5 for a in axes))
        assert fn(*args).shape == want.shape
    for fn, args in ((_direct.unsqueeze(_Ctx(4, axes)).fn, (x, None)), (_direct.unsqueeze_v1(_Ctx(4), axes=axes).fn, (x,))):
        assert fn(*args).shape == np.expand_dims(x, tuple(axes)).shape
