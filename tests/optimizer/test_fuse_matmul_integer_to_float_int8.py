"""MatMulIntegerToFloatFusion (ortlite/optimizer/fuse_matmul_integer_to_float.py): the fused node is
bit-identical to the unfused MatMulInteger -> Cast -> Mul chain, and both equal exact int64 math."""
import numpy as np
import pytest

from ortlite.optimizer.fuse_matmul_integer_to_float import MatMulIntegerToFloatFusion

F = np.float32
NAME = MatMulIntegerToFloatFusion.name


def dq_model(opt, k=64, n=16, b_scale_shape=(), b_zp_shape=(), cast_to=1, int_out=False, extreme=False):
    """quantize_dynamic's pattern: DynamicQuantizeLinear(x) -> MatMulInteger(q, Bq) -> Cast ->
    Mul(., Mul(x_scale, b_scale))."""
    rng = np.random.default_rng(3)
    bq = (np.full((k, n), -128, np.int8) if extreme else rng.integers(-128, 128, (k, n), dtype=np.int8))
    inits = {"bq": bq,
             "bs": (rng.random(b_scale_shape) * 0.01 + 0.001).astype(F),
             "bz": (np.zeros(b_zp_shape, np.int8) if extreme else rng.integers(-3, 4, b_zp_shape, dtype=np.int8))}
    nodes = [opt.node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
             opt.node("MatMulInteger", ["q", "bq", "z", "bz"], ["acc"]),
             opt.node("Cast", ["acc"], ["accf"], to=cast_to),
             opt.node("Mul", ["s", "bs"], ["sp"])]
    if cast_to != 1:  # a double product needs a double scale (a type-valid model, as onnxruntime demands)
        nodes.append(opt.node("Cast", ["sp"], ["spc"], to=cast_to))
    nodes.append(opt.node("Mul", ["accf", "sp" if cast_to == 1 else "spc"], ["y"]))
    out_t = F if cast_to == 1 else np.float64
    outs = [opt.tensor("y", out_t, ["M", n])] + ([opt.tensor("acc", np.int32, ["M", n])] if int_out else [])
    return opt.model(nodes, [opt.tensor("x", F, ["M", k])], outs, inits), inits


def feeds(k, m=5, seed=0, extreme=False):
    if extreme:  # every value quantizes to 0 with zero point 255: |A - zp| = 255 everywhere
        return {"x": np.full((m, k), -3.0, F)}
    return {"x": np.random.default_rng(seed).standard_normal((m, k)).astype(F)}


def exact(inits, x):
    """float32(exact int64 sums) * float32(x_scale * b_scale), as the unfused nodes define it."""
    from tests.exact_int import dynamic_quantize_linear, matmul_integer
    q, s, z = dynamic_quantize_linear(x)
    acc = matmul_integer(q, inits["bq"], z, inits["bz"])
    return acc.astype(F) * (np.float32(s) * inits["bs"])


@pytest.mark.parametrize("k,n,bs,bz", [(64, 16, (), ()), (256, 8, (8,), (8,)), (1024, 4, (1,), ())])
def test_fused_bit_exact(opt, k, n, bs, bz):
    m, inits = dq_model(opt, k, n, bs, bz)
    f = feeds(k)
    fused = opt.session(m)
    counts = opt.ops(fused)
    assert counts["MatMulIntegerToFloat"] == 1 and counts["MatMulInteger"] == 0 and counts["Cast"] == 0
    y = fused.run(None, f)[0]
    y_ref = opt.session(m, disabled=[NAME]).run(None, f)[0]
    assert y.dtype == y_ref.dtype == F
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(y, exact(inits, f["x"]))


def test_fused_rounds_large_sums_as_cast(opt):
    # |sums| = 4096 * 255 * 128 > 2**24: the Cast to float32 rounds; the fused kernel rounds the same way
    m, inits = dq_model(opt, k=4096, n=3, extreme=True)
    f = feeds(4096, m=2, extreme=True)
    y = opt.session(m).run(None, f)[0]
    np.testing.assert_array_equal(y, opt.session(m, disabled=[NAME]).run(None, f)[0])
    np.testing.assert_array_equal(y, exact(inits, f["x"]))


@pytest.mark.parametrize("kw", [dict(cast_to=11), dict(int_out=True), dict(b_scale_shape=(1, 16))])
def test_not_fused(opt, kw):
    m, _ = dq_model(opt, **kw)
    counts = opt.ops(opt.session(m))
    assert counts["MatMulIntegerToFloat"] == 0 and counts["MatMulInteger"] == 1


def test_pass_idempotent(opt):
    from ortlite.partition import assign

    m, _ = dq_model(opt)
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    assert MatMulIntegerToFloatFusion().apply(ctx) is True
    assert MatMulIntegerToFloatFusion().apply(ctx) is False
