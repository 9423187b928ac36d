"""TransposeReshapeCastElimination (ortlite/optimizer/eliminate_transpose_reshape_cast.py)."""
import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper

from ortlite.optimizer.eliminate_transpose_reshape_cast import TransposeReshapeCastElimination as TRC
from ortlite.optimizer.eliminate_transpose_reshape_cast import exact_cast

F = np.float32
X = np.arange(24, dtype=F).reshape(2, 3, 4) / 7 - 1


def _chain(opt, first, second, x_dtype=F, y_dtype=F, y_shape=None, inits=None, x_shape=(2, 3, 4)):
    nodes = [opt.node("Relu", ["x"], ["r"]), first, second, opt.node("Neg", ["o"], ["y"])]
    return opt.model(nodes, [opt.tensor("x", x_dtype, list(x_shape))], [opt.tensor("y", y_dtype, y_shape)], inits or {})


def test_transposes_composed(opt):
    m = _chain(opt, opt.node("Transpose", ["r"], ["t"], perm=[1, 2, 0]),
               opt.node("Transpose", ["t"], ["o"], perm=[0, 2, 1]))
    ctx, first, second = opt.run_pass(TRC, m)
    assert first and not second
    t = [n for n in ctx.graph.nodes if n.op_type == "Transpose"]
    assert len(t) == 1 and t[0].inputs == ["r"] and t[0].attrs["perm"] == [1, 0, 2]
    assert t[0].attr_protos["perm"].ints == [1, 0, 2]
    sess = opt.check(m, {"x": X}, rtol=0, atol=0)
    assert opt.ops(sess)["Transpose"] == 1
    assert opt.ops(opt.session(m, disabled=["TransposeReshapeCastElimination"]))["Transpose"] == 2


def test_transposes_cancel(opt):
    # perm absent = reversed axes; reversed twice is the identity
    m = _chain(opt, opt.node("Transpose", ["r"], ["t"]), opt.node("Transpose", ["t"], ["o"]))
    ctx, first, second = opt.run_pass(TRC, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Relu": 1, "Neg": 1}
    assert opt.ops(opt.check(m, {"x": X}, rtol=0, atol=0)) == {"Relu": 1, "Neg": 1}


def test_identity_transpose_and_shared_first(opt):
    nodes = [
        opt.node("Transpose", ["x"], ["i"], perm=[0, 1, 2]),
        opt.node("Transpose", ["i"], ["t"], perm=[2, 0, 1]),
        opt.node("Transpose", ["t"], ["t2"], perm=[1, 2, 0]),  # cancels t
        opt.node("Neg", ["t"], ["y2"]),  # t has another reader: it stays
        opt.node("Add", ["t2", "x"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3, 4])], [opt.tensor("y", F, None), opt.tensor("y2", F, None)])
    ctx, first, second = opt.run_pass(TRC, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Transpose": 1, "Neg": 1, "Add": 1}
    opt.check(m, {"x": X}, rtol=0, atol=0)


def test_transpose_graph_output(opt):
    # the second Transpose produces the output; the pair cancels: Relu produces y itself
    nodes = [opt.node("Relu", ["x"], ["r"]), opt.node("Transpose", ["r"], ["t"], perm=[1, 0, 2]),
             opt.node("Transpose", ["t"], ["y"], perm=[1, 0, 2])]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3, 4])], [opt.tensor("y", F, [2, 3, 4])])
    assert opt.ops(opt.check(m, {"x": X})) == {"Relu": 1}


def test_transpose_unknown_rank_kept(opt):
    nodes = [opt.node("Transpose", ["x"], ["t"]), opt.node("Transpose", ["t"], ["y"], perm=[0, 2, 1])]
    m = opt.model(nodes, [opt.tensor("x", F, None)], [opt.tensor("y", F, None)])
    ctx, first, _ = opt.run_pass(TRC, m)
    assert not first


def test_reshapes(opt):
    inits = {"s1": np.array([6, -1], np.int64), "s2": np.array([4, -1, 3], np.int64)}
    m = _chain(opt, opt.node("Reshape", ["r", "s1"], ["t"]), opt.node("Reshape", ["t", "s2"], ["o"]), inits=inits)
    ctx, first, second = opt.run_pass(TRC, m)
    assert first and not second
    rs = [n for n in ctx.graph.nodes if n.op_type == "Reshape"]
    assert len(rs) == 1 and rs[0].inputs == ["r", "s2"]
    assert opt.ops(opt.check(m, {"x": X}, rtol=0, atol=0))["Reshape"] == 1


def test_reshape_zero_kept(opt):
    # a 0 in the second shape copies the intermediate's dim (6), not x's (2)
    inits = {"s1": np.array([6, 4], np.int64), "s2": np.array([0, 2, 2], np.int64)}
    m = _chain(opt, opt.node("Reshape", ["r", "s1"], ["t"]), opt.node("Reshape", ["t", "s2"], ["o"]), inits=inits)
    ctx, first, _ = opt.run_pass(TRC, m)
    assert not first
    opt.check(m, {"x": X}, rtol=0, atol=0)


def test_reshape_fed_shape_kept(opt):
    nodes = [opt.node("Reshape", ["x", "s1"], ["t"]), opt.node("Reshape", ["t", "s2"], ["y"])]
    m = opt.model(nodes, [opt.tensor("x", F, [2, 3, 4]), opt.tensor("s2", np.int64, [2])], [opt.tensor("y", F, None)],
                  {"s1": np.array([6, 4], np.int64)})
    ctx, first, _ = opt.run_pass(TRC, m)
    assert not first


def _any_type(m):
    """Relu / Neg around the chain become Concats (defined for every type)."""
    for n in (m.graph.node[0], m.graph.node[-1]):
        n.op_type = "Concat"
        n.input.append(n.input[0])
        n.attribute.append(helper.make_attribute("axis", 0))


@pytest.mark.parametrize("t0,t1,t2", [
    (np.float32, TP.DOUBLE, TP.FLOAT),  # back to the start: removed
    (np.float16, TP.FLOAT, TP.DOUBLE),
    (np.int32, TP.INT64, TP.INT32),
    (np.uint8, TP.INT32, TP.FLOAT),
    (np.int8, TP.FLOAT16, TP.INT32),
    (np.float32, TP.DOUBLE, TP.INT32),
    (np.bool_, TP.INT64, TP.FLOAT),
])
def test_cast_chain_shortened(opt, t0, t1, t2):
    y_dtype = {TP.FLOAT: F, TP.DOUBLE: np.float64, TP.INT32: np.int32}[t2]
    m = _chain(opt, opt.node("Cast", ["r"], ["t"], to=t1), opt.node("Cast", ["t"], ["o"], to=t2), x_dtype=t0,
               y_dtype=y_dtype)
    _any_type(m)
    ctx, first, second = opt.run_pass(TRC, m)
    assert first and not second
    casts = [n for n in ctx.graph.nodes if n.op_type == "Cast"]
    assert len(casts) == (0 if np.dtype(t0) == y_dtype else 1)
    x = (np.arange(24).reshape(2, 3, 4) % 7 - (0 if t0 in (np.uint8, np.bool_) else 3)).astype(t0)
    sess = opt.check(m, {"x": x}, rtol=0, atol=0)
    assert opt.ops(sess)["Cast"] == len(casts)


@pytest.mark.parametrize("t0,t1,t2", [
    (np.float64, TP.FLOAT, TP.DOUBLE),  # rounds to float
    (np.float32, TP.FLOAT16, TP.FLOAT),
    (np.float32, TP.INT32, TP.FLOAT),  # truncates
    (np.int32, TP.INT16, TP.INT32),  # wraps
    (np.int32, TP.FLOAT, TP.INT32),  # 2**24 + 1 is not a float
    (np.int8, TP.UINT8, TP.INT32),
    (np.int32, TP.DOUBLE, TP.FLOAT16),  # exact, but int32 -> float16 directly may round twice
])
def test_cast_chain_kept(opt, t0, t1, t2):
    y_dtype = {TP.FLOAT: F, TP.DOUBLE: np.float64, TP.INT32: np.int32, TP.FLOAT16: np.float16}[t2]
    m = _chain(opt, opt.node("Cast", ["r"], ["t"], to=t1), opt.node("Cast", ["t"], ["o"], to=t2), x_dtype=t0,
               y_dtype=y_dtype)
    _any_type(m)
    ctx, first, _ = opt.run_pass(TRC, m)
    assert not first
    x = (np.arange(24).reshape(2, 3, 4) * 1.37 - 9.5)
    if np.dtype(t0).kind in "iu":
        x = np.array(x * 2e6 if t0 == np.int32 else x, dtype=np.int64).astype(t0)
    opt.check(m, {"x": x.astype(t0)}, rtol=0, atol=0, onnxruntime=False)


def test_exact_cast_table():
    assert exact_cast(TP.FLOAT, TP.DOUBLE) and not exact_cast(TP.DOUBLE, TP.FLOAT)
    assert exact_cast(TP.UINT8, TP.BFLOAT16) and not exact_cast(TP.INT16, TP.FLOAT16)
    assert exact_cast(TP.UINT32, TP.INT64) and not exact_cast(TP.INT64, TP.DOUBLE)
    assert exact_cast(TP.BOOL, TP.UINT8) and not exact_cast(TP.UINT8, TP.BOOL)
    assert not exact_cast(TP.STRING, TP.STRING) and not exact_cast(TP.FLOAT, TP.FLOAT8E4M3FN)
    assert exact_cast(TP.BFLOAT16, TP.FLOAT) and not exact_cast(TP.FLOAT16, TP.BFLOAT16)


def test_bfloat16_chain(opt):
    # bfloat16 -> float -> double -> bfloat16: back to the start, exact
    nodes = [opt.node("Cast", ["x"], ["a"], to=TP.FLOAT), opt.node("Cast", ["a"], ["b"], to=TP.DOUBLE),
             opt.node("Cast", ["b"], ["c"], to=TP.BFLOAT16), opt.node("Identity", ["c"], ["y"])]
    bf = np.dtype(ml_dtypes.bfloat16)
    m = opt.model(nodes, [opt.tensor("x", bf, [4])], [opt.tensor("y", bf, [4])])
    ctx, first, second = opt.run_pass(TRC, m)
    assert first and not second
    assert "Cast" not in opt.ops(ctx.graph)
    x = np.array([1.5, -2.25, 1e30, np.nan], bf)
    sess = opt.check(m, {"x": x}, onnxruntime=False, rtol=0, atol=0)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0].view(np.uint16), x.view(np.uint16))
