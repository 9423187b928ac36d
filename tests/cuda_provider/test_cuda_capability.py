"""The CUDA provider's capability check refuses dtypes CuPy cannot hold (string, float8, int4, ...)
so those nodes stay on the CPU with the reason in get_placement(); and the scatter reductions
written with only what CuPy has (its ufunc.at subset) give numpy's ufunc.at results."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite
from ortlite import registry
from ortlite.kernels import indexing
from ortlite.providers import _cuda_dtypes

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _model(nodes, inputs, outputs, inits=(), opset=21):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m.SerializeToString()


def _reasons(sess, name):
    return "; ".join(r for _, r in sess.get_placement().node(name).refused)


def _float8_roundtrip():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["f8"], name="to_f8", to=TensorProto.FLOAT8E4M3FN),
             helper.make_node("Cast", ["f8"], ["back"], name="from_f8", to=TensorProto.FLOAT),
             helper.make_node("Neg", ["back"], ["y"], name="neg")]
    return _model(nodes, [x], [y])


def test_cast_to_float8_stays_on_cpu_with_the_reason(fake_cuda):
    s = ortlite.InferenceSession(_float8_roundtrip(), providers=[CUDA, CPU])
    by_node = {n.name: n.provider for n in s.get_placement().nodes}
    assert by_node == {"relu": CUDA, "to_f8": CPU, "from_f8": CPU, "neg": CUDA}
    assert "CuPy has no float8_e4m3fn dtype" in _reasons(s, "to_f8")
    assert "CuPy has no float8_e4m3fn dtype" in _reasons(s, "from_f8")  # its input is float8
    x = np.array([[-1.0, 0.3, 2.5], [7.0, -0.1, 100.0]], np.float32)
    ref = ortlite.InferenceSession(_float8_roundtrip(), providers=[CPU]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], ref)
    assert "float8_e4m3fn" in s.get_placement().summary() or s.get_placement().fallbacks()


def test_cast_to_string_stays_on_cpu(fake_cuda):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [3])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["y"], name="to_str", to=TensorProto.STRING)]
    s = ortlite.InferenceSession(_model(nodes, [x], [y]), providers=[CUDA, CPU])
    assert s.get_placement().node("relu").provider == CUDA
    assert s.get_placement().node("to_str").provider == CPU
    assert "CuPy has no string dtype" in _reasons(s, "to_str")
    out = s.run(None, {"x": np.array([-1.0, 0.5, 2.0], np.float32)})[0]
    assert list(out) == ["0", "0.5", "2"]  # onnxruntime's shortest round-trip spelling


def test_string_input_is_never_copied_to_the_device(fake_cuda):
    x = helper.make_tensor_value_info("x", TensorProto.STRING, [2])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [2])
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="ident")]
    s = ortlite.InferenceSession(_model(nodes, [x], [y]), providers=[CUDA, CPU])
    assert s.get_placement().node("ident").provider == CPU
    assert "CuPy has no string dtype" in _reasons(s, "ident")
    assert list(s.run(None, {"x": np.array(["a", "bc"], dtype=object)})[0]) == ["a", "bc"]


def _int4_quant(with_zero_point=True):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "scale")]
    if with_zero_point:
        inits.append(helper.make_tensor("zp", TensorProto.INT4, [], [1]))
        q = helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="quant")
        dq = helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dequant")
    else:
        q = helper.make_node("QuantizeLinear", ["x", "scale"], ["q"], name="quant", output_dtype=TensorProto.INT4)
        dq = helper.make_node("DequantizeLinear", ["q", "scale"], ["y"], name="dequant")
    return _model([q, dq], [x], [y], inits)


@pytest.mark.parametrize("with_zero_point", [True, False])
def test_int4_quantize_stays_on_cpu(fake_cuda, with_zero_point):
    s = ortlite.InferenceSession(_int4_quant(with_zero_point), providers=[CUDA, CPU])
    for name in ("quant", "dequant"):
        assert s.get_placement().node(name).provider == CPU
        assert "CuPy has no int4 dtype" in _reasons(s, name)
    x = np.array([-3.0, -0.4, 0.6, 9.0], np.float32)
    ref = ortlite.InferenceSession(_int4_quant(with_zero_point), providers=[CPU]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], ref)


def test_bfloat16_and_plain_dtypes_stay_on_cuda(fake_cuda):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    nodes = [helper.make_node("Cast", ["x"], ["b"], name="to_bf16", to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["b"], ["i"], name="to_i8", to=TensorProto.INT8),
             helper.make_node("Cast", ["i"], ["y"], name="to_f", to=TensorProto.FLOAT)]
    s = ortlite.InferenceSession(_model(nodes, [x], [y]), providers=[CUDA, CPU])
    assert {n.provider for n in s.get_placement().nodes} == {CUDA}


def test_capability_without_the_graph_reads_dtype_attributes(fake_cuda):
    """Called outside the partitioner (no value types), dtype attributes still refuse."""
    from ortlite.ir import Node

    prov = fake_cuda()
    f8 = Node("Cast", "", "c", ["x"], ["y"], attrs={"to": TensorProto.FLOAT8E5M2}, opset=21)
    claim = prov.get_capability(f8, registry.lookup)
    assert not claim.taken and "CuPy has no float8_e5m2 dtype" in claim.reason
    value = numpy_helper.to_array(helper.make_tensor("v", TensorProto.UINT4, [1], [3]))
    cos = Node("ConstantOfShape", "", "k", ["s"], ["y"], attrs={"value": value}, opset=21)
    claim = prov.get_capability(cos, registry.lookup)
    assert not claim.taken and "CuPy has no uint4 dtype" in claim.reason
    ok = Node("Cast", "", "c2", ["x"], ["y"], attrs={"to": TensorProto.FLOAT16}, opset=21)
    assert prov.get_capability(ok, registry.lookup).taken


def test_dtype_table_matches_cupy():
    """The fixed table is what CuPy 14's get_typename accepts (checked where CuPy imports)."""
    from ortlite import types as ot

    _scalar = pytest.importorskip("cupy._core._scalar")
    for et in ot._TYPE_NAMES:
        try:
            dt = ot.np_dtype(et)
        except TypeError:
            continue
        try:
            _scalar.get_typename(dt)
            cupy_ok = True
        except Exception:  # noqa: BLE001
            cupy_ok = False
        assert (et in _cuda_dtypes.CUPY_ELEM_TYPES) == cupy_ok, ot.type_name(et)


# ---- scatter reductions without the ufunc.at CuPy lacks ---------------------------------------

_CUPY_AT = {"add": {"int32", "int64", "float16", "float32", "float64", "uint32", "uint64"},
            "maximum": {"int32", "int64", "float32", "float64", "uint32", "uint64"},
            "minimum": {"int32", "int64", "float32", "float64", "uint32", "uint64"}}


class _AtProxy:
    def __init__(self, name):
        self._f = getattr(np, name)
        self._name = name

    def __call__(self, *a, **k):
        return self._f(*a, **k)

    def at(self, a, idx, b=None):
        if self._name not in _CUPY_AT:
            raise NotImplementedError(f"CuPy has no {self._name}.at")
        if a.dtype.name not in _CUPY_AT[self._name]:
            raise TypeError(f"CuPy's {self._name}.at refuses {a.dtype}")
        return self._f.at(a, idx, b)


class _CupyLikeNumpy:
    """numpy with CuPy's ufunc.at limits (and not ``np`` itself, so kernels take the xp path)."""

    def __getattr__(self, name):
        f = getattr(np, name)
        return _AtProxy(name) if isinstance(f, np.ufunc) else f


XP = _CupyLikeNumpy()
DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "int64", "uint32", "uint64",
          "float16", "float32", "float64"]


def _values(rng, dt, shape):
    if dt == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dt).kind in "iu":
        info = np.iinfo(dt)
        lo, hi = max(info.min, -100), min(info.max, 100)
        return rng.integers(lo, hi + 1, size=shape).astype(dt)
    return (rng.standard_normal(shape) * 3).astype(dt)


@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
@pytest.mark.parametrize("dt", DTYPES)
def test_scatter_reduce_generic_matches_ufunc_at(dt, reduction):
    rng = np.random.default_rng(7)
    data = _values(rng, dt, (5, 4))
    # duplicates (4 updates to [2, 3]) and negative indices (ufunc.at reads them from the end)
    rows = np.array([0, 2, 2, -1, 0, 4, 2, -3], np.int64)
    cols = np.array([1, 3, 3, 0, 1, 2, -1, 3], np.int64)
    upd = _values(rng, dt, rows.shape)
    ref = indexing._scatter_into(np, data.copy(), (rows, cols), upd, reduction)
    got = indexing._scatter_reduce_generic(XP, data.copy(), (rows, cols), upd, reduction)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    got = indexing._scatter_reduce_generic(XP, data.copy(), (rows, cols), upd, reduction, max_dup=4)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("reduction", ["add", "mul"])
def test_small_int_sums_and_products_wrap_as_numpy(reduction):
    data = np.array([120, -128, 5], np.int8)
    idx = (np.array([0, 0, 0, 1, 1, 2], np.int64),)
    upd = np.array([100, 100, 7, -1, -127, 3], np.int8)
    ref = indexing._scatter_into(np, data.copy(), idx, upd, reduction)
    np.testing.assert_array_equal(indexing._scatter_reduce_generic(XP, data.copy(), idx, upd, reduction), ref)


@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
@pytest.mark.parametrize("dt", ["bool", "int8", "uint16", "float16", "float32", "int64"])
def test_scatter_kernels_on_a_cupy_like_module(dt, reduction):
    rng = np.random.default_rng(3)
    data = _values(rng, dt, (4, 3))
    idx = np.array([[0, -1, 2], [2, 0, 0], [0, 1, -3]], np.int64)
    upd = _values(rng, dt, (3, 3))
    for axis in (0, 1):
        ref = indexing.scatter_elements(np, data, idx, upd, axis=axis, reduction=reduction)
        got = indexing.scatter_elements(XP, data, idx, upd, axis=axis, reduction=reduction)
        np.testing.assert_array_equal(got, ref)
    nd_idx = np.array([[1], [-1], [1], [0], [1]], np.int64)
    nd_upd = _values(rng, dt, (5, 3))
    ref = indexing.scatter_nd(np, data, nd_idx, nd_upd, reduction=reduction)
    np.testing.assert_array_equal(indexing.scatter_nd(XP, data, nd_idx, nd_upd, reduction=reduction), ref)


def test_cast_to_string_refuses_device_arrays():
    from ortlite.kernels import cast

    with pytest.raises(TypeError, match="host only"):
        cast._cast(XP, np.ones(2, np.float32), np.dtype(object))


def test_types_not_inferred_are_derived_along_the_graph():
    """Values without value_info (function bodies, fused intermediates) take their types from the
    schema's type parameters and from dtype attributes, so the float8 flow stays refused."""
    from ortlite.ir import Graph, Node, ValueInfo

    g = Graph()
    g.value_info["x"] = ValueInfo("x", TensorProto.FLOAT)
    cast = Node("Cast", "", "c", ["x"], ["f8"], attrs={"to": TensorProto.FLOAT8E4M3FN}, opset=21)
    ident = Node("Identity", "", "i", ["f8"], ["y"], opset=21)
    back = Node("Cast", "", "b", ["y"], ["z"], attrs={"to": TensorProto.FLOAT}, opset=21)
    relu = Node("Relu", "", "r", ["z"], ["w"], opset=21)
    assert "attribute to" in _cuda_dtypes.cupy_dtype_refusal(cast, g)
    assert "CuPy has no float8_e4m3fn dtype: input 'f8'" == _cuda_dtypes.cupy_dtype_refusal(ident, g)
    assert "input 'y'" in _cuda_dtypes.cupy_dtype_refusal(back, g)
    assert _cuda_dtypes.cupy_dtype_refusal(relu, g) == ""
