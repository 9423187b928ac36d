"""Focused tests for the tensor-shaping and indexing kernels (kernels/tensor.py, kernels/indexing.py).

The ONNX node suite covers the newest opset of each op on a few float inputs; these tests add
older opsets, dtype preservation (float16, bfloat16, bool, strings), views, duplicate-index
reductions and clamping corner cases, against onnxruntime on one-node models where it
implements the case, against numpy otherwise.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ortlite
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")

BF16 = np.dtype(ml_dtypes.bfloat16)


# ---------------------------------------------------------------------------
# helpers


def _model(node, feeds, opset, out_dtypes, out_ranks):
    """A one-node model; inputs typed from the feeds, outputs by dtype and rank."""
    inputs = [
        helper.make_tensor_value_info(name, onnx_elem_type(arr.dtype), list(arr.shape))
        for name, arr in feeds.items()
    ]
    outputs = [
        helper.make_tensor_value_info(name, onnx_elem_type(dt), [None] * rank)
        for name, dt, rank in zip(node.output, out_dtypes, out_ranks)
    ]
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model


def run_ort(node, feeds, opset):
    """onnxruntime's outputs (models with untyped outputs are fine for it)."""
    inputs = [
        helper.make_tensor_value_info(name, onnx_elem_type(arr.dtype), list(arr.shape))
        for name, arr in feeds.items()
    ]
    outputs = [helper.make_value_info(name, onnx.TypeProto()) for name in node.output]
    model = helper.make_model(
        helper.make_graph([node], "g", inputs, outputs), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = min(model.ir_version, 10)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_ortlite(node, feeds, opset, like):
    """ortlite's outputs; ``like`` (expected outputs) types the graph outputs."""
    model = _model(node, feeds, opset, [a.dtype for a in like], [a.ndim for a in like])
    sess = ortlite.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype == object:
            assert g.tolist() == w.tolist()
        elif w.dtype.kind in "fc" or w.dtype == BF16:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(g, w)


def check_vs_ort(node, feeds, opset):
    want = run_ort(node, feeds, opset)
    assert_same(run_ortlite(node, feeds, opset, want), want)


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def i64(*v):
    return np.array(v, dtype=np.int64)


rng = np.random.default_rng(0)
X = rng.standard_normal((3, 4, 5)).astype(np.float32)


# ---------------------------------------------------------------------------
# every schema attribute of every version is accepted by the kernel that serves it

MY_OPS = (
    "Reshape Transpose Concat Split Squeeze Unsqueeze Expand Tile Pad Shape Size ConstantOfShape "
    "Constant Range Flatten Identity EyeLike Trilu Slice Gather GatherElements GatherND Scatter "
    "ScatterElements ScatterND TensorScatter OneHot NonZero Unique Compress ReverseSequence"
).split()


def test_every_version_registered_and_attributes_accepted():
    from ortlite import registry

    registry.load_all_kernels()
    missing = []
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain != "" or schema.name not in MY_OPS:
            continue
        k = registry.lookup(schema.name, "", schema.since_version, "cpu")
        if k is None:
            missing.append(f"{schema.name}-{schema.since_version}: no kernel")
            continue
        if k.accepts is not None:
            extra = set(schema.attributes) - k.accepts
            if extra:
                missing.append(f"{schema.name}-{schema.since_version}: {sorted(extra)}")
    assert not missing, missing


# ---------------------------------------------------------------------------
# older opsets and corner cases against onnxruntime


@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [
        ([0, 1], [2, 10**9], [0, 2], [1, 2]),
        ([-1, 10], [-10**9, -10], [1, 2], [-1, -2]),  # negative steps, clamped both ways
        ([2], [0], [0], [-1]),
        ([-100], [100], [-1], [3]),
        ([5], [1], [2], [1]),  # empty
        ([3, 4], [-10**18, -(2**63)], [1, 2], [-1, -1]),  # INT_MIN style ends
    ],
)
def test_slice_clamping(starts, ends, axes, steps):
    feeds = {"x": X, "s": i64(*starts), "e": i64(*ends), "a": i64(*axes), "t": i64(*steps)}
    check_vs_ort(node("Slice", ["x", "s", "e", "a", "t"]), feeds, 13)


def test_slice_v1_attributes_and_view():
    n = node("Slice", ["x"], starts=[1, -3], ends=[1000, -1], axes=[0, 2])
    check_vs_ort(n, {"x": X}, 1)


@pytest.mark.parametrize(
    "opset,attrs,extra",
    [
        (2, dict(pads=[0, 1, 2, 1, 0, 0], value=1.5), {}),
        (2, dict(pads=[0, 1, 2, 1, 0, 0], mode="edge"), {}),
        (2, dict(pads=[1, 2, 0, 0, 0, 3], mode="reflect"), {}),
        (11, dict(mode="constant"), {"pads": i64(1, 0, -1, 0, 2, -2), "cv": np.array(7, np.float32)}),
        (11, dict(mode="reflect"), {"pads": i64(0, 3, 2, 0, 1, 4)}),
        (19, dict(mode="wrap"), {"pads": i64(0, 6, 2, 0, 1, 9)}),
        (18, dict(mode="edge"), {"pads": i64(2, 0, 3, 1), "cv": np.array(0, np.float32), "axes": i64(-1, 0)}),
    ],
)
def test_pad_versions(opset, attrs, extra):
    inputs = ["x"] + (["pads"] if "pads" in extra else [])
    if "cv" in extra or "axes" in extra:
        inputs.append("cv" if "cv" in extra else "")
    if "axes" in extra:
        inputs.append("axes")
    feeds = {"x": X, **extra}
    check_vs_ort(node("Pad", inputs, **attrs), feeds, opset)


def test_pad_v1_paddings_pairs():
    # opset 1 lists (begin, end) per axis; onnxruntime dropped opset 1 Pad, so compare with numpy
    n = node("Pad", ["x"], paddings=[0, 1, 2, 0, 1, 1], value=-1.0)
    want = np.pad(X, [(0, 1), (2, 0), (1, 1)], constant_values=-1.0)
    assert_same(run_ortlite(n, {"x": X}, 1, [want]), [want])


@pytest.mark.parametrize(
    "opset,attrs,split,nout",
    [
        (2, dict(axis=1, split=[1, 3]), None, 2),
        (2, dict(axis=2), None, 5),
        (13, dict(axis=-1), i64(2, 0, 3), 3),
        (18, dict(axis=2, num_outputs=3), None, 3),  # uneven: 2, 2, 1
        (18, dict(axis=1, num_outputs=3), None, 3),  # 4 -> 2, 2, 0 (an empty tail, as onnxruntime)
        (18, dict(axis=0), i64(3, 0), 2),
    ],
)
def test_split_versions(opset, attrs, split, nout):
    outs = [f"y{i}" for i in range(nout)]
    feeds = {"x": X}
    inputs = ["x"]
    if split is not None:
        feeds["split"] = split
        inputs.append("split")
    check_vs_ort(node("Split", inputs, outs, **attrs), feeds, opset)


def test_squeeze_unsqueeze_versions():
    x = rng.standard_normal((1, 3, 1, 2)).astype(np.float32)
    check_vs_ort(node("Squeeze", ["x"], axes=[0, -2]), {"x": x}, 11)
    check_vs_ort(node("Squeeze", ["x"]), {"x": x}, 1)
    check_vs_ort(node("Squeeze", ["x", "a"]), {"x": x, "a": i64(2)}, 13)
    check_vs_ort(node("Unsqueeze", ["x"], axes=[0, -1]), {"x": x}, 11)
    check_vs_ort(node("Unsqueeze", ["x", "a"]), {"x": x, "a": i64(5, 1, -7)}, 13)


def test_reshape_tile_expand_flatten_shape():
    check_vs_ort(node("Reshape", ["x", "s"]), {"x": X, "s": i64(0, -1, 1)}, 5)
    check_vs_ort(node("Reshape", ["x", "s"], allowzero=1), {"x": X, "s": i64(60, 1)}, 14)
    check_vs_ort(node("Tile", ["x", "r"]), {"x": X, "r": i64(2, 1, 3)}, 6)
    check_vs_ort(node("Expand", ["x", "s"]), {"x": X[:, :1], "s": i64(2, 1, 1, 5)}, 13)
    check_vs_ort(node("Flatten", ["x"], axis=-2), {"x": X}, 13)
    check_vs_ort(node("Flatten", ["x"], axis=0), {"x": X}, 9)
    check_vs_ort(node("Shape", ["x"], start=-2, end=10), {"x": X}, 15)
    check_vs_ort(node("Size", ["x"]), {"x": X}, 13)
    check_vs_ort(node("Transpose", ["x"]), {"x": X}, 13)
    check_vs_ort(node("Concat", ["x", "x2"], axis=-2), {"x": X, "x2": X[:, :2]}, 13)


def test_gather_family():
    idx = np.array([[0, -1], [2, -3]], dtype=np.int64)
    check_vs_ort(node("Gather", ["x", "i"], axis=1), {"x": X, "i": idx}, 13)
    check_vs_ort(node("Gather", ["x", "i"], axis=-1), {"x": X, "i": np.array(-2, np.int32)}, 13)
    gi = rng.integers(-3, 3, size=(2, 4, 5))
    check_vs_ort(node("GatherElements", ["x", "i"], axis=0), {"x": X, "i": gi}, 13)
    # indices smaller than data on the other axes
    gi = rng.integers(-5, 5, size=(2, 3, 5)).astype(np.int32)
    check_vs_ort(node("GatherElements", ["x", "i"], axis=2), {"x": X, "i": gi}, 13)
    nd = np.array([[[1, -2], [0, 4]], [[2, 0], [-1, -1]], [[0, 0], [1, 1]]], dtype=np.int64)
    check_vs_ort(node("GatherND", ["x", "i"], batch_dims=1), {"x": X, "i": nd}, 13)
    check_vs_ort(node("GatherND", ["x", "i"]), {"x": X, "i": nd[..., :1].reshape(3, 2, 1)}, 11)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_duplicates(reduction):
    data = rng.standard_normal((4, 5)).astype(np.float32)
    idx = np.array([[0, 1, 1, 3, -1], [0, 1, 2, 3, 0]], dtype=np.int64)
    if reduction == "none":
        idx = np.array([[0, 1, 2, 3, -1], [1, 2, 3, 0, 2]], dtype=np.int64)
    upd = rng.standard_normal((2, 5)).astype(np.float32)
    feeds = {"x": data, "i": idx, "u": upd}
    data0 = data.copy()
    check_vs_ort(node("ScatterElements", ["x", "i", "u"], axis=0, reduction=reduction), feeds, 18)
    check_vs_ort(node("ScatterElements", ["x", "i", "u"], axis=1, reduction=reduction), feeds, 18)
    np.testing.assert_array_equal(data, data0)  # inputs untouched


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_duplicates(reduction):
    data = rng.standard_normal((4, 3, 2)).astype(np.float32)
    idx = np.array([[[0, 1], [3, 2]], [[-4, 1], [1, 0]]], dtype=np.int64)
    if reduction == "none":
        idx = np.array([[[0, 1], [3, 2]], [[2, 1], [1, 0]]], dtype=np.int64)
    upd = rng.standard_normal((2, 2, 2)).astype(np.float32)
    check_vs_ort(node("ScatterND", ["x", "i", "u"], reduction=reduction), {"x": data, "i": idx, "u": upd}, 18)


def test_scatter_deprecated_and_v11():
    data = np.zeros((3, 3), np.float32)
    idx = np.array([[1, 0, 2], [0, 2, 1]], dtype=np.int64)
    upd = np.arange(6, dtype=np.float32).reshape(2, 3)
    check_vs_ort(node("Scatter", ["x", "i", "u"], axis=0), {"x": data, "i": idx, "u": upd}, 9)
    check_vs_ort(node("ScatterElements", ["x", "i", "u"], axis=1), {"x": data, "i": idx, "u": upd}, 11)


@pytest.mark.parametrize("opset", [9, 11])
def test_one_hot_versions(opset):
    ind = np.array([[0, -1, 4], [2, 7, -3]], dtype=np.float32)
    for axis in (-1, 0, 1):
        feeds = {"i": ind, "d": np.array([5.0], np.float32), "v": np.array([-2, 5], dtype=np.float32)}
        check_vs_ort(node("OneHot", ["i", "d", "v"], axis=axis), feeds, opset)
        feeds = {"i": ind.astype(np.int64), "d": np.array(5, np.int64), "v": np.array([-2, 5], dtype=np.int64)}
        check_vs_ort(node("OneHot", ["i", "d", "v"], axis=axis), feeds, opset)


@pytest.mark.parametrize("sorted_", [0, 1])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_unique_outputs(sorted_, axis):
    x = rng.integers(0, 3, size=(6, 4, 2)).astype(np.float32)
    x[3] = x[1]
    x[:, 2] = x[:, 0]
    attrs = {"sorted": sorted_}
    if axis is not None:
        attrs["axis"] = axis
    check_vs_ort(node("Unique", ["x"], ["y", "idx", "inv", "cnt"], **attrs), {"x": x}, 11)


def test_unique_strings_and_bf16():
    x = np.array(["b", "a", "c", "a", "b", "b"], dtype=object)
    check_vs_ort(node("Unique", ["x"], ["y", "idx", "inv", "cnt"], sorted=0), {"x": x}, 11)
    check_vs_ort(node("Unique", ["x"], ["y", "idx", "inv", "cnt"], sorted=1), {"x": x}, 11)
    xb = np.array([[2, 1], [1, 1], [2, 1]], dtype=BF16)
    got = run_ortlite(node("Unique", ["x"], ["y", "idx", "inv", "cnt"], axis=0), {"x": xb}, 28,
                      [xb[:2], i64(0, 0), i64(0, 0, 0), i64(0, 0)])
    want = [np.array([[1, 1], [2, 1]], dtype=BF16), i64(1, 0), i64(1, 0, 1), i64(1, 2)]
    assert_same(got, want)


def test_misc_vs_ort():
    check_vs_ort(node("NonZero", ["x"]), {"x": (X > 0.5)}, 13)
    check_vs_ort(node("NonZero", ["x"]), {"x": np.array(3, np.int32)}, 13)
    cond = np.array([True, False, True], dtype=bool)
    check_vs_ort(node("Compress", ["x", "c"], axis=-1), {"x": X, "c": cond}, 11)
    check_vs_ort(node("Compress", ["x", "c"]), {"x": X, "c": cond}, 11)
    seq = rng.standard_normal((5, 3, 2)).astype(np.float32)
    check_vs_ort(node("ReverseSequence", ["x", "l"], batch_axis=1, time_axis=0), {"x": seq, "l": i64(5, 1, 3)}, 10)
    check_vs_ort(node("ReverseSequence", ["x", "l"], batch_axis=0, time_axis=1), {"x": seq, "l": i64(2, 3, 1, 0, 3)}, 10)
    for k in (-5, -1, 0, 2, 9):
        check_vs_ort(node("Trilu", ["x", "k"], upper=0), {"x": X, "k": i64(k)}, 14)
        check_vs_ort(node("Trilu", ["x", "k"], upper=1), {"x": X, "k": i64(k)}, 14)
        check_vs_ort(node("EyeLike", ["x"], k=k, dtype=TensorProto.INT32), {"x": X[0]}, 9)
    check_vs_ort(node("EyeLike", ["x"]), {"x": X[0].T.copy()}, 9)


@pytest.mark.parametrize(
    "start,limit,delta,dtype",
    [(0, 10, 3, np.int32), (10, -3, -4, np.int64), (1.5, 7.3, 0.7, np.float32), (5, 5, 1, np.int16),
     (-1.0, 2.0, 0.1, np.float64), (3, 1, 1, np.float32)],
)
def test_range(start, limit, delta, dtype):
    feeds = {"a": np.array(start, dtype), "b": np.array(limit, dtype), "c": np.array(delta, dtype)}
    check_vs_ort(node("Range", ["a", "b", "c"]), feeds, 11)


def test_constant_forms():
    n = node("Constant", [], value_floats=[1.5, 2.0])
    check_vs_ort(n, {}, 13)
    check_vs_ort(node("Constant", [], value_ints=[1, -2]), {}, 13)
    check_vs_ort(node("Constant", [], value_int=7), {}, 13)
    check_vs_ort(node("Constant", [], value_string="hi"), {}, 13)
    check_vs_ort(node("Constant", [], value_strings=["a", "bc"]), {}, 13)
    t = helper.make_tensor("t", TensorProto.FLOAT16, [2], np.array([1, 2], np.float16).view(np.uint16), raw=False)
    check_vs_ort(node("Constant", [], value=t), {}, 13)
    check_vs_ort(node("ConstantOfShape", ["s"], value=helper.make_tensor("v", TensorProto.INT8, [1], [3])),
                 {"s": i64(2, 0, 3)}, 9)
    check_vs_ort(node("ConstantOfShape", ["s"]), {"s": i64(2, 3)}, 9)


# ---------------------------------------------------------------------------
# dtype preservation: an op on a dtype equals the op on int64 cast to that dtype


def _as(values, dtype):
    if dtype == object:
        out = np.empty(values.shape, dtype=object)
        out[...] = np.vectorize(lambda v: f"s{v}", otypes=[object])(values) if values.size else out
        return out
    if dtype == np.bool_:
        return (values % 2).astype(np.bool_)
    return values.astype(dtype)


DATA = np.arange(24, dtype=np.int64).reshape(2, 3, 4) % 7
CASES = [
    (node("Reshape", ["x", "s"]), {"s": i64(4, -1)}),
    (node("Transpose", ["x"], perm=[2, 0, 1]), {}),
    (node("Concat", ["x", "x"], axis=1), {}),
    (node("Split", ["x"], ["y", "z"], axis=2, num_outputs=2), {}),
    (node("Squeeze", ["x2", "a"]), {"a": i64(0)}),
    (node("Unsqueeze", ["x", "a"]), {"a": i64(1)}),
    (node("Expand", ["x2", "s"]), {"s": i64(3, 1, 1, 1)}),
    (node("Tile", ["x", "r"]), {"r": i64(1, 2, 2)}),
    (node("Pad", ["x", "p"], mode="constant"), {"p": i64(0, 1, 0, 1, 0, 2)}),
    (node("Pad", ["x", "p"], mode="edge"), {"p": i64(0, 1, 0, 1, 0, 2)}),
    (node("Pad", ["x", "p"], mode="reflect"), {"p": i64(0, 1, 2, 1, 0, 2)}),
    (node("Pad", ["x", "p"], mode="wrap"), {"p": i64(0, 1, 5, 1, 0, 2)}),
    (node("Flatten", ["x"], axis=2), {}),
    (node("Identity", ["x"]), {}),
    (node("Slice", ["x", "s", "e", "a", "t"]), {"s": i64(-1), "e": i64(-100), "a": i64(2), "t": i64(-2)}),
    (node("Gather", ["x", "i"], axis=2), {"i": i64(3, 0, -1)}),
    (node("GatherElements", ["x", "i"], axis=1), {"i": np.zeros((2, 2, 4), np.int64)}),
    (node("GatherND", ["x", "i"]), {"i": i64(1, 2).reshape(1, 2)}),
    (node("ScatterElements", ["x", "i", "u"], axis=2), {"i": np.zeros((2, 3, 1), np.int64), "u": "x[..., 1:2]"}),
    (node("ScatterND", ["x", "i", "u"]), {"i": i64(1, 0).reshape(1, 2), "u": "x[0, :1]"}),
    (node("Compress", ["x", "c"], axis=1), {"c": np.array([True, False, True])}),
    (node("ReverseSequence", ["x", "l"], batch_axis=0, time_axis=1), {"l": i64(3, 2)}),
    (node("Unique", ["x"], ["y", "i1", "i2", "i3"], sorted=0), {}),
    (node("Unique", ["x"], ["y", "i1", "i2", "i3"], axis=2), {}),
    (node("Trilu", ["x"], upper=0), {}),
    (node("TensorScatter", ["x", "u", "w"], axis=1, mode="circular"), {"u": "x[:, :2]", "w": i64(2, 0)}),
]


def _bind(op, attrs=None, opset=25, inputs=("x",), outputs=("y",)):
    """The kernel callable for one node, bound as the session would (no session needed)."""
    from ortlite import registry
    from ortlite.context import KernelContext

    registry.load_all_kernels()
    k = registry.lookup(op, "", opset, "cpu")
    attrs = attrs or {}
    ir_node = type("N", (), dict(op_type=op, name="n", attrs=attrs, inputs=list(inputs),
                                 outputs=list(outputs), domain=""))()
    return k.bind(KernelContext(ir_node, opset, np, None, [], [], {}), attrs)


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.bool_, object, np.int8, np.uint64], ids=str)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_dtype_preserved(case, dtype):
    n, extra = CASES[case]
    attrs = {}
    for a in n.attribute:
        v = helper.get_attribute_value(a)
        attrs[a.name] = v.decode() if isinstance(v, bytes) else v
    fn = _bind(n.op_type, attrs, 28, n.input, n.output)

    def run(x):
        feeds = []
        for name in n.input:
            if name == "x":
                feeds.append(x)
            elif name == "x2":
                feeds.append(x[:1])
            elif isinstance(extra.get(name), str):
                feeds.append(eval(extra[name], {"x": x}))  # noqa: S307 - test-local expression
            else:
                feeds.append(extra[name])
        out = fn(*feeds)
        return out if isinstance(out, tuple) else (out,)

    base = run(DATA)
    got = run(_as(DATA, dtype))
    for b, g in zip(base, got):
        assert isinstance(g, np.ndarray)
        if b.dtype == np.int64 and g.dtype == np.int64 and not (n.op_type == "Unique" and b is base[0]):
            continue  # index outputs of Unique
        if dtype == np.bool_ and n.op_type in ("Unique", "ScatterElements", "ScatterND", "TensorScatter", "Trilu"):
            assert g.dtype == np.bool_  # values of bool differ from the int run by construction
            continue
        assert g.dtype == np.dtype(dtype), (n.op_type, g.dtype)
        if n.op_type == "Unique" and dtype == object:
            continue  # string order differs from numeric order ('s10' < 's2')
        if n.op_type == "Pad" and dtype == object and "constant" in str(n.attribute):
            continue  # pads with '' (test_pad_strings_and_bool_fill), not with 's0'

        want = _as(b, dtype)
        if n.op_type == "Trilu" and dtype == object:
            want = np.where(np.tril(np.ones(b.shape[-2:], bool)), want, "")
        assert g.tolist() == want.tolist() if dtype == object else np.array_equal(
            g.astype(np.float64) if dtype == BF16 else g, want.astype(np.float64) if dtype == BF16 else want
        ), n.op_type


# ---------------------------------------------------------------------------
# views and no in-place writes


def test_shape_ops_return_views():
    x = np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4)
    views = [
        _bind("Reshape")(x, i64(6, -1)),
        _bind("Transpose", {"perm": [3, 2, 1, 0]})(x),
        _bind("Squeeze")(x, i64(1)),
        _bind("Unsqueeze")(x, i64(0)),
        _bind("Flatten", {"axis": 2})(x),
        _bind("Slice")(x, i64(3), i64(0), i64(-1), i64(-1)),
        _bind("Identity")(x),
        *_bind("Split", {"axis": 3, "num_outputs": 2}, outputs=("a", "b"))(x),
    ]
    for v in views:
        assert np.shares_memory(v, x)


def test_identity_passes_sequences_and_optionals():
    seq = [np.ones(2, np.float32), np.zeros(3, np.float32)]
    assert _bind("Identity")(seq) is seq
    assert _bind("Identity")(None) is None


def test_pad_strings_and_bool_fill():
    s = np.array([["a", "b"], ["c", "d"]], dtype=object)
    out = _bind("Pad", {"mode": "constant"})(s, i64(0, 1, 0, 0))
    assert out.dtype == object and out.tolist() == [["", "a", "b"], ["", "c", "d"]]
    b = np.array([True, True])
    out = _bind("Pad")(b, i64(1, 1))
    assert out.dtype == np.bool_ and out.tolist() == [False, True, True, False]
    out = _bind("Pad")(s, i64(1, 0, 0, 0), np.array("z", dtype=object))
    assert out.tolist() == [["z", "z"], ["a", "b"], ["c", "d"]]


def test_range_float16_stash():
    f = _bind("Range", opset=27)
    out = f(np.float16(2048), np.float16(2060), np.float16(1))
    assert out.dtype == np.float16 and out.shape == (12,)
    np.testing.assert_array_equal(out, (2048 + np.arange(12, dtype=np.float32)).astype(np.float16))
    out = f(np.array(0.5, BF16), np.array(2.5, BF16), np.array(0.5, BF16))
    assert out.dtype == BF16 and out.astype(np.float32).tolist() == [0.5, 1.0, 1.5, 2.0]
