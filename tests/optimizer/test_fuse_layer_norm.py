"""LayerNormFusion / SimplifiedLayerNormFusion (ortlite/optimizer/fuse_layer_norm.py)."""
import numpy as np
import pytest
from onnx import numpy_helper

from ortlite.optimizer.fuse_layer_norm import LayerNormFusion, SimplifiedLayerNormFusion
from ortlite.partition import assign

F = np.float32
H = 16


def placed(opt, m):
    ctx = opt.context(m, level=99)
    providers = opt.session(m, "disable")._providers
    assign(ctx.graph, providers)
    ctx.providers = providers
    return ctx


def _reduce(opt, opset, x, y, axes):
    if opset >= 18:
        return [opt.node("Constant", [], [y + "_axes"], value=numpy_helper.from_array(np.array(axes, np.int64))),
                opt.node("ReduceMean", [x, y + "_axes"], [y], keepdims=1)]
    return [opt.node("ReduceMean", [x], [y], axes=axes, keepdims=1)]


def ln_model(opt, opset=17, square="pow", two_subs=False, beta=True, gamma=True, axes=(-1,), extra_output=None):
    rng = np.random.default_rng(1)
    inits = {"two": np.array(2.0, F), "eps": np.array(1e-5, F), "g": rng.standard_normal(H).astype(F),
             "b": rng.standard_normal(H).astype(F)}
    n = _reduce(opt, opset, "x", "m", list(axes))
    n.append(opt.node("Sub", ["x", "m"], ["d"]))
    n.append(opt.node("Sub", ["x", "m"], ["d2"]) if two_subs else None)
    n = [v for v in n if v is not None]
    n.append(opt.node("Pow", ["d", "two"], ["sq"]) if square == "pow" else opt.node("Mul", ["d", "d"], ["sq"]))
    n += _reduce(opt, opset, "sq", "var", list(axes))
    n += [opt.node("Add", ["var", "eps"], ["ve"]), opt.node("Sqrt", ["ve"], ["sd"]),
          opt.node("Div", ["d2" if two_subs else "d", "sd"], ["nrm"])]
    out = "nrm"
    if gamma:
        n.append(opt.node("Mul", ["nrm", "g"], ["sc"]))
        out = "sc"
    if beta:
        n.append(opt.node("Add", ["b", out], ["y"]))
    else:
        n.append(opt.node("Identity", [out], ["y"]))
    outs = [opt.tensor("y", F, [2, 3, H])] + ([opt.tensor(extra_output, F, None)] if extra_output else [])
    return opt.model(n, [opt.tensor("x", F, [2, 3, H])], outs, inits, opset=opset)


def feeds(opt):
    return {"x": (opt.rng.standard_normal((2, 3, H)) * 3 + 1).astype(F)}


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("square", ["pow", "mul"])
def test_layer_norm_fused(opt, opset, square):
    m = ln_model(opt, opset, square)
    sess = opt.check(m, feeds(opt), rtol=1e-4, atol=1e-5)
    assert opt.ops(sess) == {"LayerNormalization": 1}
    ln = sess._graph.nodes[0]
    assert ln.outputs == ["y"] and ln.attrs["epsilon"] == pytest.approx(1e-5)


@pytest.mark.parametrize("kw", [dict(two_subs=True), dict(beta=False), dict(gamma=False), dict(axes=(2,))])
def test_layer_norm_variants(opt, kw):
    sess = opt.check(ln_model(opt, **kw), feeds(opt), rtol=1e-4, atol=1e-5)
    assert opt.ops(sess)["LayerNormalization"] == 1
    assert "ReduceMean" not in opt.ops(sess)


def test_layer_norm_idempotent(opt):
    ctx = placed(opt, ln_model(opt))
    assert LayerNormFusion().apply(ctx)
    assert not LayerNormFusion().apply(ctx)


@pytest.mark.parametrize("kw", [dict(axes=(1,)), dict(axes=(1, 2)), dict(extra_output="d")])
def test_layer_norm_left_alone(opt, kw):
    m = ln_model(opt, **kw)
    assert not LayerNormFusion().apply(placed(opt, m))
    sess = opt.check(m, feeds(opt), rtol=1e-4, atol=1e-5)
    assert "LayerNormalization" not in opt.ops(sess)


def test_layer_norm_disabled(opt):
    sess = opt.session(ln_model(opt), "all", disabled=["LayerNormFusion", "SimplifiedLayerNormFusion"])
    assert opt.ops(sess)["ReduceMean"] == 2


def rms_model(opt, form="div"):
    inits = {"two": np.array(2.0, F), "eps": np.array(1e-6, F),
             "g": np.random.default_rng(2).standard_normal(H).astype(F)}
    n = [opt.node("Pow", ["x", "two"], ["sq"]), opt.node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
         opt.node("Add", ["ms", "eps"], ["ve"]), opt.node("Sqrt", ["ve"], ["sd"])]
    if form == "div":
        n.append(opt.node("Div", ["x", "sd"], ["nrm"]))
    else:
        n += [opt.node("Reciprocal", ["sd"], ["r"]), opt.node("Mul", ["x", "r"], ["nrm"])]
    n.append(opt.node("Mul", ["g", "nrm"], ["y"]))
    return opt.model(n, [opt.tensor("x", F, [2, 3, H])], [opt.tensor("y", F, [2, 3, H])], inits)


@pytest.mark.parametrize("form", ["div", "reciprocal"])
def test_rms_norm_fused(opt, form):
    m = rms_model(opt, form)
    sess = opt.check(m, feeds(opt), rtol=1e-4, atol=1e-5)
    assert opt.ops(sess) == {"SimplifiedLayerNormalization": 1}
    ctx = placed(opt, m)
    assert SimplifiedLayerNormFusion().apply(ctx) and not SimplifiedLayerNormFusion().apply(ctx)
    assert "Pow" in opt.ops(opt.session(m, "all", disabled=["SimplifiedLayerNormFusion"]))
