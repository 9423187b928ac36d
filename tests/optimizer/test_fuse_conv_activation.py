"""ConvActivationFusion (ortlite/optimizer/fuse_conv_activation.py)."""
import numpy as np
import pytest

from ortlite.optimizer.fuse_conv_activation import ConvActivationFusion
from ortlite.partition import assign

F = np.float32


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def conv_model(opt, act="Relu", attrs=None, opset=17, z_shape=None, conv_out=False, clip_max_input=False, bias=True):
    rng = np.random.default_rng(5)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(F) * 0.3, "cb": rng.standard_normal(4).astype(F),
             "lo": np.array(-0.5, F), "hi": np.array(0.7, F)}
    n = [opt.node("Conv", ["x", "w"] + (["cb"] if bias else []), ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    ins = [opt.tensor("x", F, ["N", 3, 6, 6])]
    src = "c"
    if z_shape is not None:
        ins.append(opt.tensor("z", F, z_shape))
        n.append(opt.node("Add", ["c", "z"], ["s"]))
        src = "s"
    if act == "Clip" and opset >= 11:
        n.append(opt.node("Clip", [src, "lo", "hi_in" if clip_max_input else "hi"], ["y"]))
        if clip_max_input:
            ins.append(opt.tensor("hi_in", F, []))
    else:
        n.append(opt.node(act, [src], ["y"], **(attrs or {})))
    outs = [opt.tensor("y", F, ["N", 4, 6, 6])] + ([opt.tensor("c", F, None)] if conv_out else [])
    return opt.model(n, ins, outs, inits, opset=opset)


def feeds(opt, m):
    f = {"x": opt.rng.standard_normal((2, 3, 6, 6)).astype(F)}
    for v in m.graph.input:
        if v.name == "z":
            f["z"] = opt.rng.standard_normal([d.dim_value or 2 for d in v.type.tensor_type.shape.dim]).astype(F)
        if v.name == "hi_in":
            f["hi_in"] = np.array(0.3, F)
    return f


@pytest.mark.parametrize("act,attrs,params", [
    ("Relu", None, None), ("Sigmoid", None, None), ("Tanh", None, None),
    ("LeakyRelu", {"alpha": 0.2}, [0.2]), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [0.3, 0.4]),
    ("Clip", None, [-0.5, 0.7]),
])
def test_conv_activation(opt, act, attrs, params):
    m = conv_model(opt, act, attrs)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"FusedConv": 1}
    node = sess._graph.nodes[0]
    assert node.attrs["activation"] == act and node.outputs == ["y"]
    assert node.attrs.get("activation_params") == (pytest.approx(params) if params else None)
    assert node.attrs["pads"] == [1, 1, 1, 1]


def test_clip_attributes_before_opset_11(opt):
    m = conv_model(opt, "Clip", {"min": 0.0, "max": 6.0}, opset=10)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    assert sess._graph.nodes[0].attrs["activation_params"] == [0.0, 6.0]


@pytest.mark.parametrize("bias", [True, False])
def test_conv_add_relu(opt, bias):
    m = conv_model(opt, "Relu", z_shape=["N", 4, 6, 6], bias=bias)
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    assert opt.ops(sess) == {"FusedConv": 1}
    node = sess._graph.nodes[0]
    assert node.inputs == ["x", "w", "cb" if bias else "", "z"]


def test_idempotent(opt):
    ctx = placed(opt, conv_model(opt, "Relu"))
    assert ConvActivationFusion().apply(ctx)
    assert not ConvActivationFusion().apply(ctx)


@pytest.mark.parametrize("kw", [
    dict(conv_out=True),                          # the Conv output is a graph output
    dict(act="Clip", clip_max_input=True),        # a bound known only at run time
    dict(act="Elu"),                              # FusedConv has no Elu
    dict(z_shape=[1, 4, 1, 1]),                   # Z would broadcast
])
def test_left_alone(opt, kw):
    m = conv_model(opt, **kw)
    assert not ConvActivationFusion().apply(placed(opt, m))
    sess = opt.check(m, feeds(opt, m), rtol=1e-5, atol=1e-5)
    assert "FusedConv" not in opt.ops(sess)


def test_disabled(opt):
    sess = opt.session(conv_model(opt), "all", disabled=["ConvActivationFusion"])
    assert opt.ops(sess) == {"Conv": 1, "Relu": 1}
