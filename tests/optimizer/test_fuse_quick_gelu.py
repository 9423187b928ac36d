"""QuickGeluFusion (ortlite/optimizer/fuse_quick_gelu.py) and the QuickGelu kernel's numpy fast path."""
import numpy as np
import pytest

F = np.float32


def silu_model(opt, shape=(2, 3, 8), alpha=None, swap=False, sig_out=False):
    """x * Sigmoid(x) (alpha None) or x * Sigmoid(x * alpha), operands in either order."""
    n, inits = [], {}
    inner = "x"
    if alpha is not None:
        inits["alpha"] = np.array(alpha, F)
        n.append(opt.node("Mul", ["alpha", "x"] if swap else ["x", "alpha"], ["ax"]))
        inner = "ax"
    n.append(opt.node("Sigmoid", [inner], ["s"]))
    n.append(opt.node("Mul", ["s", "x"] if swap else ["x", "s"], ["y"]))
    outs = [opt.tensor("y", F, list(shape))] + ([opt.tensor("s", F, list(shape))] if sig_out else [])
    return opt.model(n, [opt.tensor("x", F, list(shape))], outs, inits)


@pytest.mark.parametrize("alpha,swap", [(None, False), (None, True), (1.702, False), (1.702, True)])
def test_quick_gelu_fused(opt, alpha, swap):
    m = silu_model(opt, alpha=alpha, swap=swap)
    x = {"x": (opt.rng.standard_normal((2, 3, 8)) * 4).astype(F)}
    sess = opt.check(m, x, rtol=1e-5, atol=1e-6)
    assert opt.ops(sess) == {"QuickGelu": 1}
    node = sess._graph.nodes[0]
    assert node.inputs == ["x"] and node.domain == "com.microsoft"
    assert node.attrs["alpha"] == pytest.approx(1.0 if alpha is None else alpha)
    assert opt.ops(opt.session(m, "all", disabled=["QuickGeluFusion"]))["Sigmoid"] == 1


def test_quick_gelu_left_alone_when_sigmoid_is_read_elsewhere(opt):
    m = silu_model(opt, sig_out=True)
    sess = opt.check(m, {"x": opt.rng.standard_normal((2, 3, 8)).astype(F)})
    assert opt.ops(sess) == {"Sigmoid": 1, "Mul": 1}


def test_quick_gelu_not_on_a_different_operand(opt):
    n = [opt.node("Sigmoid", ["x"], ["s"]), opt.node("Mul", ["z", "s"], ["y"])]
    m = opt.model(n, [opt.tensor("x", F, [4]), opt.tensor("z", F, [4])], [opt.tensor("y", F, [4])])
    sess = opt.check(m, {"x": np.arange(4, dtype=F), "z": np.ones(4, F)})
    assert opt.ops(sess) == {"Sigmoid": 1, "Mul": 1}


def test_quick_gelu_large_blocks_and_limits(opt):
    """Big enough for several blocks over both threads; extremes give x (x >> 0) and 0 (x << 0)."""
    shape = (3, 40, 97, 101)  # not a multiple of the block size
    m = silu_model(opt, shape=shape)
    x = (opt.rng.standard_normal(shape) * 5).astype(F)
    x.reshape(-1)[:4] = [-1e4, -100.0, 100.0, 1e4]
    # onnxruntime's logistic is an approximation: about 1e-6 absolute off for x around -12
    sess = opt.check(m, {"x": x}, rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"QuickGelu": 1}
    y = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(y.reshape(-1)[:4], np.array([0.0, 0.0, 100.0, 1e4], F))
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        want = x64 / (1 + np.exp(-x64))
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-30)  # full relative precision
    m64 = opt.model([opt.node("Sigmoid", ["x"], ["s"]), opt.node("Mul", ["x", "s"], ["y"])],
                    [opt.tensor("x", np.float64, list(shape))], [opt.tensor("y", np.float64, list(shape))])
    y64 = opt.session(m64, "all").run(None, {"x": x64})[0]
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, want, rtol=1e-12, atol=1e-300)
