"""Focused tests for kernels/math.py, reduce.py, loss.py and attention.py.

The node suite covers each op's newest opset on small float32 inputs; these add
constant (pre-packed) weights, N-d broadcasting, float16, integer dtypes, old
opsets, tie ordering and empty reductions, against onnxruntime on one-node
models (numpy where onnxruntime does not implement the case).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import exact_int
import ortlite
from exact_int import require_exact_onnxruntime
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(0)


def _model(node, feeds, inits, opset, out_types):
    inputs = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape)) for n, a in feeds.items()]
    if out_types is None:
        outputs = [helper.make_value_info(n, onnx.TypeProto()) for n in node.output if n]
    else:
        outputs = [
            helper.make_tensor_value_info(n, onnx_elem_type(t.dtype), [None] * t.ndim)
            for n, t in zip([o for o in node.output if o], out_types)
        ]
    initializer = [numpy_helper.from_array(a, n) for n, a in (inits or {}).items()]
    graph = helper.make_graph([node], "g", inputs, outputs, initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model.SerializeToString()


def run_ortlite(node, feeds, opset, inits=None, like=None):
    sess = ortlite.InferenceSession(_model(node, feeds, inits, opset, like), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(node, feeds, opset, inits=None, rtol=1e-5, atol=1e-6):
    """ortlite matches onnxruntime: same dtypes, shapes and values."""
    sess = ort.InferenceSession(_model(node, feeds, inits, opset, None), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    got = run_ortlite(node, feeds, opset, inits, want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol)
    return got


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- MatMul / Gemm


@pytest.mark.parametrize(
    "sa,sb",
    [((2, 3, 4, 5), (5, 6)), ((5,), (2, 5, 3)), ((2, 1, 4, 5), (3, 5, 6)), ((4, 5), (5,)), ((5,), (5,))],
)
def test_matmul_broadcast(sa, sb):
    node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    check(node, {"A": f32(*sa), "B": f32(*sb)}, 13, rtol=1e-5, atol=1e-5)


def test_matmul_const_weight_float16_and_int():
    node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    a, b = f32(3, 7, 16).astype(np.float16), f32(16, 8).astype(np.float16)
    check(node, {"A": a}, 13, inits={"B": b}, rtol=2e-3, atol=2e-3)
    ai = RNG.integers(-50, 50, (2, 3, 4)).astype(np.int32)
    bi = RNG.integers(-50, 50, (4, 5)).astype(np.int32)
    check(node, {"A": ai, "B": bi}, 13)


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("const", [False, True])
def test_gemm(trans_a, trans_b, const):
    node = helper.make_node("Gemm", ["A", "B", "C"], ["Y"], alpha=0.5, beta=2.0, transA=trans_a, transB=trans_b)
    a = f32(6, 4) if trans_a else f32(4, 6)
    b = f32(5, 6) if trans_b else f32(6, 5)
    c = f32(5)
    if const:
        check(node, {"A": a}, 13, inits={"B": b, "C": c})
    else:
        check(node, {"A": a, "B": b, "C": c}, 13)


def test_gemm_old_opset_broadcast_and_no_c():
    node = helper.make_node("Gemm", ["A", "B", "C"], ["Y"], broadcast=1, transB=1, beta=0.5)
    feeds = {"A": f32(3, 4), "B": f32(2, 4), "C": f32(1, 2)}  # onnxruntime has no Gemm-6 kernel
    (y,) = run_ortlite(node, feeds, 6, like=[feeds["A"]])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, feeds["A"] @ feeds["B"].T + 0.5 * feeds["C"], rtol=1e-5, atol=1e-6)
    node = helper.make_node("Gemm", ["A", "B"], ["Y"], alpha=3.0)
    check(node, {"A": f32(3, 4).astype(np.float16)}, 13, inits={"B": f32(4, 2).astype(np.float16)}, rtol=2e-3, atol=2e-3)


def test_gemm_does_not_modify_inputs():
    node = helper.make_node("Gemm", ["A", "B", "C"], ["Y"])
    feeds = {"A": f32(3, 4), "B": f32(4, 2), "C": f32(3, 2)}
    before = {k: v.copy() for k, v in feeds.items()}
    run_ortlite(node, feeds, 13, like=[np.zeros((1, 1), np.float32)])
    run_ortlite(node, feeds, 13, like=[np.zeros((1, 1), np.float32)])
    for k in feeds:
        np.testing.assert_array_equal(feeds[k], before[k])


@pytest.mark.parametrize("oracle", ["exact", "onnxruntime"])
@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)])
def test_matmul_integer_zero_points(a_dtype, b_dtype, oracle):
    node = helper.make_node("MatMulInteger", ["A", "B", "az", "bz"], ["Y"])
    ai, bi = np.iinfo(a_dtype), np.iinfo(b_dtype)
    # large operands (where a u8*s8 pair overflows int16) and small ones
    a = np.concatenate([RNG.integers(ai.max - 55, ai.max + 1, (2, 2, 64)),
                        RNG.integers(ai.min, ai.max + 1, (2, 2, 64))], axis=1).astype(a_dtype)
    b = RNG.integers(bi.min, bi.max + 1, (64, 3)).astype(b_dtype)
    az = np.array(12, a_dtype)
    bz = np.array([1, 3, 5], b_dtype)  # per column
    if oracle == "onnxruntime":
        require_exact_onnxruntime("MatMulInteger", a_dtype, b_dtype)
        check(node, {"A": a, "az": az}, 10, inits={"B": b, "bz": bz})
        return
    like = [np.zeros((1, 1), np.int32)]
    (y,) = run_ortlite(node, {"A": a, "az": az}, 10, inits={"B": b, "bz": bz}, like=like)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, exact_int.matmul_integer(a, b, az, bz))
    # per-row zero point of A (onnxruntime wants a scalar there), B as an input
    a2, az2 = a[0], np.arange(4, dtype=a_dtype)
    (y,) = run_ortlite(node, {"A": a2, "B": b, "az": az2, "bz": bz}, 10, like=like)
    np.testing.assert_array_equal(y, exact_int.matmul_integer(a2, b, az2, bz))


def test_einsum_forms():
    for eq, shapes in [
        ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
        ("...ij,jk", [(2, 3, 4), (4, 5)]),
        ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
        ("ii", [(4, 4)]),
        ("ab,bc", [(3, 4), (4, 2)]),
        ("i,j,k->ijk", [(2,), (3,), (4,)]),
    ]:
        node = helper.make_node("Einsum", [f"x{i}" for i in range(len(shapes))], ["Y"], equation=eq)
        check(node, {f"x{i}": f32(*s) for i, s in enumerate(shapes)}, 12, rtol=1e-5, atol=1e-5)
    # spaces are allowed by the spec (onnxruntime rejects them)
    node = helper.make_node("Einsum", ["a", "b"], ["Y"], equation="... i j , ...jk -> ... ik")
    a, b = f32(2, 3, 4), f32(2, 4, 5)
    (y,) = run_ortlite(node, {"a": a, "b": b}, 12, like=[a])
    np.testing.assert_allclose(y, a @ b, rtol=1e-5, atol=1e-5)
    # upper-case labels, implicit output (sorted: upper case first)
    node = helper.make_node("Einsum", ["a", "b"], ["Y"], equation="Ab,bC")
    a, b = f32(3, 4), f32(4, 2)
    (y,) = run_ortlite(node, {"a": a, "b": b}, 12, like=[a])
    np.testing.assert_allclose(y, np.einsum("ab,bc->ac", a, b), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- softmax, topk, arg, cum


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,axis", [(11, 1), (11, -2), (13, 1), (13, 0)])
def test_softmax_family_versions(op, opset, axis):
    node = helper.make_node(op, ["X"], ["Y"], axis=axis)
    x = f32(2, 3, 4)
    x[0, 0, :2] = 5.0  # Hardmax ties: the first index wins
    check(node, {"X": x}, opset)


def test_softmax_float16():
    node = helper.make_node("Softmax", ["X"], ["Y"])
    check(node, {"X": f32(3, 50).astype(np.float16)}, 13, rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_ties_smaller_index_first(largest):
    node = helper.make_node("TopK", ["X", "K"], ["V", "I"], axis=1, largest=largest)
    x = np.array([[1, 3, 3, 2, 3, 1], [5, 5, 5, 5, 5, 5]], dtype=np.int32)
    check(node, {"X": x}, 11, inits={"K": np.array([4], np.int64)})
    xf = RNG.integers(0, 4, (3, 20, 2)).astype(np.float32)
    check(node, {"X": xf}, 11, inits={"K": np.array([7], np.int64)})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_select_last_index(op, last):
    node = helper.make_node(op, ["X"], ["Y"], axis=1, keepdims=0, select_last_index=last)
    x = RNG.integers(0, 3, (3, 6, 2)).astype(np.float32)
    check(node, {"X": x}, 13)


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_int(exclusive, reverse):
    node = helper.make_node("CumSum", ["X", "axis"], ["Y"], exclusive=exclusive, reverse=reverse)
    x = RNG.integers(-5, 5, (3, 4)).astype(np.int32)
    check(node, {"X": x}, 14, inits={"axis": np.array(-1, np.int64)})


# --------------------------------------------------------------------------- reductions

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
              "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"]


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_axes_input_and_attribute(op):
    x = np.abs(f32(2, 3, 4)) + 0.5
    node = helper.make_node(op, ["X", "axes"], ["Y"], keepdims=0)
    check(node, {"X": x}, 18, inits={"axes": np.array([0, -1], np.int64)}, rtol=1e-5)
    node = helper.make_node(op, ["X"], ["Y"], axes=[1], keepdims=1)
    check(node, {"X": x}, 13 if op != "ReduceSum" else 11, rtol=1e-5)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
def test_reduce_int32_keeps_dtype(op):
    x = RNG.integers(-3, 4, (3, 4, 2)).astype(np.int32)
    node = helper.make_node(op, ["X"], ["Y"], keepdims=0)  # no axes: all axes, rank-0 result
    check(node, {"X": x}, 18)


def test_reduce_float16_and_noop():
    node = helper.make_node("ReduceMean", ["X", "axes"], ["Y"])
    check(node, {"X": f32(4, 300).astype(np.float16)}, 18, inits={"axes": np.array([1], np.int64)}, rtol=2e-3, atol=1e-3)
    node = helper.make_node("ReduceSum", ["X", "axes"], ["Y"], noop_with_empty_axes=1)
    check(node, {"X": f32(2, 3)}, 13, inits={"axes": np.array([], np.int64)})


def test_reduce_empty_set_identities():
    x = np.zeros((2, 0, 3), np.float32)
    xi = np.zeros((2, 0, 3), np.int32)
    want = {"ReduceSum": 0, "ReduceProd": 1, "ReduceMax": -np.inf, "ReduceMin": np.inf,
            "ReduceLogSumExp": -np.inf, "ReduceL2": 0}
    for op, v in want.items():
        node = helper.make_node(op, ["X", "axes"], ["Y"], keepdims=0)
        (y,) = run_ortlite(node, {"X": x, "axes": np.array([1], np.int64)}, 18, like=[np.zeros((2, 3), np.float32)])
        assert y.shape == (2, 3) and y.dtype == np.float32
        np.testing.assert_array_equal(y, np.full((2, 3), v, np.float32))
    node = helper.make_node("ReduceMax", ["X", "axes"], ["Y"], keepdims=1)
    (y,) = run_ortlite(node, {"X": xi, "axes": np.array([1], np.int64)}, 18, like=[xi])
    assert y.dtype == np.int32 and y.shape == (2, 1, 3) and (y == np.iinfo(np.int32).min).all()


def test_reduce_log_sum_exp_neg_inf():
    x = np.array([[-np.inf, -np.inf], [1.0, -np.inf], [1000.0, 1000.0]], np.float32)
    node = helper.make_node("ReduceLogSumExp", ["X"], ["Y"], axes=[1], keepdims=0)
    (y,) = run_ortlite(node, {"X": x}, 13, like=[x[:, 0]])
    np.testing.assert_allclose(y, [-np.inf, 1.0, 1000.0 + np.log(2.0)], rtol=1e-6)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy(reduction, weighted):
    node = helper.make_node(
        "SoftmaxCrossEntropyLoss", ["S", "L", "W"] if weighted else ["S", "L"], ["loss", "logp"],
        reduction=reduction, ignore_index=1,
    )
    feeds = {"S": f32(3, 5, 2), "L": np.array([[0, 1], [4, 1], [2, 3]], np.int64)}
    if weighted:
        feeds["W"] = np.abs(f32(5))
    check(node, feeds, 13)


def test_nll_loss_float16():
    node = helper.make_node("NegativeLogLikelihoodLoss", ["X", "T"], ["Y"], reduction="mean")
    check(node, {"X": f32(4, 3).astype(np.float16), "T": np.array([0, 2, 1, 2], np.int64)}, 13, rtol=2e-3, atol=1e-3)


# --------------------------------------------------------------------------- attention family


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_3d_gqa_past(causal):
    node = helper.make_node(
        "Attention", ["Q", "K", "V", "", "pk", "pv"], ["Y", "present_key", "present_value"],
        q_num_heads=4, kv_num_heads=2, is_causal=causal,
    )
    feeds = {"Q": f32(2, 3, 32), "K": f32(2, 3, 16), "V": f32(2, 3, 16), "pk": f32(2, 2, 5, 8), "pv": f32(2, 2, 5, 8)}
    check(node, feeds, 23, rtol=1e-4, atol=1e-5)


def test_attention_4d_bool_mask_softcap_qk_output():
    node = helper.make_node("Attention", ["Q", "K", "V", "M"], ["Y", "", "", "QK"], softcap=2.0,
                            qk_matmul_output_mode=2, scale=0.3)
    mask = RNG.random((1, 1, 4, 6)) > 0.3
    mask[..., 0] = True
    feeds = {"Q": f32(2, 3, 4, 8), "K": f32(2, 3, 6, 8), "V": f32(2, 3, 6, 8), "M": mask}
    (y, qk) = run_ortlite(node, feeds, 23, like=[feeds["Q"], feeds["Q"]])
    s = np.einsum("bhqd,bhkd->bhqk", feeds["Q"], feeds["K"]) * 0.3
    s = 2.0 * np.tanh(s / 2.0) + np.where(mask, 0, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(qk, s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, p @ feeds["V"], rtol=1e-5, atol=1e-5)


def test_rotary_and_rms_norm():
    node = helper.make_node("RotaryEmbedding", ["X", "cos", "sin", "pos"], ["Y"], num_heads=2, interleaved=1)
    pos = np.array([[0, 1, 2], [3, 4, 5]], np.int64)
    ang = RNG.random((8, 4)).astype(np.float32)
    check(node, {"X": f32(2, 3, 16), "pos": pos}, 23, inits={"cos": np.cos(ang), "sin": np.sin(ang)})
    node = helper.make_node("RMSNormalization", ["X", "S"], ["Y"], axis=-1, epsilon=1e-5)
    check(node, {"X": f32(2, 5, 16)}, 23, inits={"S": f32(16)}, rtol=1e-5)
