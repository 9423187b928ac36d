"""GemmActivationFusion (ortlite/optimizer/fuse_gemm_activation.py)."""
import numpy as np
import pytest

from ortlite.optimizer.fuse_gemm_activation import GemmActivationFusion
from ortlite.partition import assign

F = np.float32


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def gemm_model(opt, act="Relu", attrs=None, gemm_out=False, dtype=F):
    rng = np.random.default_rng(6)
    inits = {"w": rng.standard_normal((5, 4)).astype(dtype), "c": rng.standard_normal(5).astype(dtype)}
    n = [opt.node("Gemm", ["x", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
         opt.node(act, ["g"], ["y"], **(attrs or {}))]
    outs = [opt.tensor("y", dtype, ["N", 5])] + ([opt.tensor("g", dtype, ["N", 5])] if gemm_out else [])
    return opt.model(n, [opt.tensor("x", dtype, ["N", 4])], outs, inits)


def feeds(opt, dtype=F):
    return {"x": opt.rng.standard_normal((3, 4)).astype(dtype)}


@pytest.mark.parametrize("act,attrs,expect", [
    ("Relu", None, {}), ("Tanh", None, {}), ("Sigmoid", None, {}), ("Softsign", None, {}), ("Softplus", None, {}),
    ("LeakyRelu", {"alpha": 0.1}, {"activation_alpha": 0.1}), ("Elu", None, {"activation_alpha": 1.0}),
    ("HardSigmoid", {"beta": 0.6}, {"activation_alpha": 0.2, "activation_beta": 0.6}),
    ("Selu", {"alpha": 1.5}, {"activation_alpha": 1.5, "activation_gamma": 1.0507010221481323}),
    ("ThresholdedRelu", {"alpha": 0.2}, {"activation_alpha": 0.2}),
])
def test_gemm_activation(opt, act, attrs, expect):
    m = gemm_model(opt, act, attrs)
    sess = opt.check(m, feeds(opt), rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"FusedGemm": 1}
    node = sess._graph.nodes[0]
    assert node.attrs["activation"] == act and node.outputs == ["y"]
    assert (node.attrs["transB"], node.attrs["alpha"], node.attrs["beta"]) == (1, 0.5, 2.0)
    for k, v in expect.items():
        assert node.attrs[k] == pytest.approx(v)


def test_idempotent(opt):
    ctx = placed(opt, gemm_model(opt))
    assert GemmActivationFusion().apply(ctx)
    assert not GemmActivationFusion().apply(ctx)


def test_left_alone(opt):
    for m, dt in ((gemm_model(opt, gemm_out=True), F), (gemm_model(opt, dtype=np.int32), np.int32),
                  (gemm_model(opt, "Abs"), F)):
        assert not GemmActivationFusion().apply(placed(opt, m))
        if dt == F:
            assert "FusedGemm" not in opt.ops(opt.check(m, feeds(opt)))


def test_disabled(opt):
    sess = opt.session(gemm_model(opt), "all", disabled=["GemmActivationFusion"])
    assert opt.ops(sess) == {"Gemm": 1, "Relu": 1}
