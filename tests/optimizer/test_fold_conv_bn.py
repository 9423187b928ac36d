"""ConvBNFusion and MatmulBNFusion (ortlite/optimizer/fold_conv_bn.py)."""
import numpy as np
import pytest
from onnx import numpy_helper

from ortlite.optimizer.fold_conv_bn import ConvBNFusion, MatmulBNFusion

F = np.float32


def _bn_params(rng, m, dtype=F):
    return {
        "scale": rng.uniform(0.5, 1.5, m).astype(dtype),
        "bias": rng.standard_normal(m).astype(dtype),
        "mean": rng.standard_normal(m).astype(dtype),
        "var": rng.uniform(0.5, 2.0, m).astype(dtype),
    }


def _conv_bn(opt, bias=True, opset=17, bn_attrs=None, bn_outputs=("y",), extra_out=False, dtype=F, fed_w=False):
    rng = np.random.default_rng(1)
    inits = {"W": rng.standard_normal((4, 3, 3, 3)).astype(dtype)}
    if bias:
        inits["B"] = rng.standard_normal(4).astype(dtype)
    inits.update(_bn_params(rng, 4, dtype))
    conv_in = ["x", "W"] + (["B"] if bias else [])
    nodes = [
        opt.node("Conv", conv_in, ["z"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        opt.node("BatchNormalization", ["z", "scale", "bias", "mean", "var"], list(bn_outputs),
                 **(bn_attrs or {"epsilon": 1e-3})),
    ]
    outputs = [opt.tensor("y", dtype, [1, 4, 5, 5])] + ([opt.tensor("z", dtype, [1, 4, 5, 5])] if extra_out else [])
    inputs = [opt.tensor("x", dtype, [1, 3, 5, 5])] + ([opt.tensor("W", dtype, [4, 3, 3, 3])] if fed_w else [])
    return opt.model(nodes, inputs, outputs, inits, opset=opset)


def _x(dtype=F):
    return np.random.default_rng(2).standard_normal((1, 3, 5, 5)).astype(dtype)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("opset", [9, 15])
def test_conv_bn_folded(opt, bias, opset):
    m = _conv_bn(opt, bias=bias, opset=opset)
    ctx, first, second = opt.run_pass(ConvBNFusion, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Conv": 1}
    conv = ctx.graph.nodes[0]
    assert conv.outputs == ["y"] and len(conv.inputs) == 3
    assert conv.attrs["kernel_shape"] == [3, 3]
    sess = opt.check(m, {"x": _x()}, rtol=1e-5, atol=1e-5, level="basic")
    assert opt.ops(sess) == {"Conv": 1}
    assert opt.ops(opt.session(m, "basic", disabled=["ConvBNFusion"]))["BatchNormalization"] == 1


def test_conv_bn_float64(opt):
    m = _conv_bn(opt, dtype=np.float64)
    # (onnxruntime has no double Conv)
    sess = opt.check(m, {"x": _x(np.float64)}, rtol=1e-12, atol=1e-12, onnxruntime=False)
    assert opt.ops(sess) == {"Conv": 1}


def test_folded_weights_do_not_alter_shared_ones(opt):
    # two Convs share W; only one is followed by a BN: the other keeps the original W
    rng = np.random.default_rng(3)
    inits = {"W": rng.standard_normal((4, 3, 1, 1)).astype(F)}
    inits.update(_bn_params(rng, 4))
    nodes = [
        opt.node("Conv", ["x", "W"], ["z1"]),
        opt.node("BatchNormalization", ["z1", "scale", "bias", "mean", "var"], ["y1"]),
        opt.node("Conv", ["x", "W"], ["y2"], pads=[1, 1, 1, 1]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, [1, 3, 2, 2])],
                  [opt.tensor("y1", F, [1, 4, 2, 2]), opt.tensor("y2", F, [1, 4, 4, 4])], inits)
    sess = opt.check(m, {"x": _x()[:, :, :2, :2].copy()}, rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"Conv": 2}


@pytest.mark.parametrize("case", ["training", "conv_out_is_output", "stats_used", "opset9_stats", "fed_weight"])
def test_preconditions(opt, case):
    kw = {
        "training": {"bn_attrs": {"training_mode": 1}, "bn_outputs": ("y",)},
        "conv_out_is_output": {"extra_out": True},
        "stats_used": {"bn_outputs": ("y", "rm", "rv")},
        "opset9_stats": {"opset": 9, "bn_outputs": ("y", "rm", "rv", "sm", "sv")},
        "fed_weight": {"fed_w": True},
    }[case]
    m = _conv_bn(opt, **kw)
    if case == "stats_used":  # make the running mean a graph output
        m.graph.output.append(opt.tensor("rm", F, [4]))
    ctx, first, _ = opt.run_pass(ConvBNFusion, m)
    assert not first
    assert opt.ops(ctx.graph)["BatchNormalization"] == 1
    if case in ("conv_out_is_output", "fed_weight"):
        opt.check(m, {"x": _x()}, rtol=1e-5, atol=1e-5)


def test_unused_stats_outputs_opset15(opt):
    # training_mode 0 with declared but unread statistics outputs: still folded
    m = _conv_bn(opt, opset=15, bn_outputs=("y", "rm", "rv"))
    ctx, first, _ = opt.run_pass(ConvBNFusion, m)
    assert first and opt.ops(ctx.graph) == {"Conv": 1}


def test_matmul_bn(opt):
    rng = np.random.default_rng(4)
    inits = {"W": rng.standard_normal((6, 4)).astype(F)}
    inits.update(_bn_params(rng, 4))
    nodes = [
        opt.node("MatMul", ["x", "W"], ["z"]),
        opt.node("BatchNormalization", ["z", "scale", "bias", "mean", "var"], ["y"]),
    ]
    m = opt.model(nodes, [opt.tensor("x", F, ["B", 6])], [opt.tensor("y", F, ["B", 4])], inits)
    ctx, first, second = opt.run_pass(MatmulBNFusion, m)
    assert first and not second
    assert opt.ops(ctx.graph) == {"Gemm": 1}
    x = rng.standard_normal((5, 6)).astype(F)
    sess = opt.check(m, {"x": x}, rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"Gemm": 1}
    # a 3-D input: BN's channel axis is not MatMul's N axis: kept
    m3 = opt.model(nodes, [opt.tensor("x", F, ["B", 4, 6])], [opt.tensor("y", F, None)], inits)
    ctx, first, _ = opt.run_pass(MatmulBNFusion, m3)
    assert not first


def test_weights_unchanged_in_model(opt):
    m = _conv_bn(opt)
    w_before = numpy_helper.to_array(m.graph.initializer[0]).copy()
    opt.session(m, "basic")
    np.testing.assert_array_equal(numpy_helper.to_array(m.graph.initializer[0]), w_before)
