"""Shared helpers for the optimizer-pass tests, as the ``opt`` fixture."""
from __future__ import annotations

import collections
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import ortlite
from ortlite.ir import Graph
from ortlite.optimizer import PassContext
from ortlite.optimizer.constant_folding import lower_constants

LEVELS = {
    "disable": ortlite.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ortlite.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ortlite.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ortlite.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def model(nodes, inputs, outputs, inits=(), opset=17, ir_version=None):
    """A model from onnx.helper pieces; ``inits`` is a dict name -> array or a list of TensorProtos."""
    if isinstance(inits, dict):
        inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version or (8 if opset >= 13 else 7)
    return m


def tensor(name, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def context(m, level=1):
    """A PassContext on the IR of model ``m`` (shapes inferred, Constant nodes lowered)."""
    inferred = onnx.shape_inference.infer_shapes(m)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in m.opset_import}
    g = Graph.from_proto(inferred.graph, opsets)
    fed = [v.name for v in g.inputs]  # initializers listed as inputs are overridable: fed
    constants = {k: v for k, v in g.initializers.items() if k not in fed}
    lower_constants(g, constants, set(fed))
    return PassContext(g, constants, fed, [v.name for v in g.outputs], level)


def session(m, level="all", disabled=()):
    so = ortlite.SessionOptions()
    so.graph_optimization_level = LEVELS[level]
    return ortlite.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(disabled))


def ops(sess_or_graph):
    """Op counts; the nodes inside a ShapeChain (fuse_shape_chains) are counted as themselves."""
    g = getattr(sess_or_graph, "_graph", sess_or_graph)
    nodes = []
    for n in g.nodes:
        nodes.extend(n.attrs["program"].nodes if (n.domain, n.op_type) == ("ortlite", "ShapeChain") else [n])
    return collections.Counter(n.op_type for n in nodes)


def run_pass(cls, m, level=1):
    """Apply pass ``cls`` twice on model ``m``'s IR: (ctx, first result, second result)."""
    ctx = context(m, level)
    first = cls().apply(ctx)
    second = cls().apply(ctx)
    return ctx, first, second


def check(m, feeds, rtol=1e-5, atol=1e-6, onnxruntime=True, level="all", disabled=()):
    """Outputs at ``level`` equal those at ORT_DISABLE_ALL (and onnxruntime's); returns the session."""
    opt = session(m, level, disabled)
    ref = session(m, "disable")
    got, want = opt.run(None, feeds), ref.run(None, feeds)
    for g_, w in zip(got, want):
        assert np.asarray(g_).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(np.asarray(g_, dtype=np.float64), np.asarray(w, dtype=np.float64),
                                   rtol=rtol, atol=atol)
    if onnxruntime:
        ort = pytest.importorskip("onnxruntime")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        o = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        for g_, w in zip(got, o.run(None, feeds)):
            np.testing.assert_allclose(np.asarray(g_, dtype=np.float64), np.asarray(w, dtype=np.float64),
                                       rtol=rtol, atol=atol)
    return opt


@pytest.fixture
def opt():
    return SimpleNamespace(model=model, tensor=tensor, context=context, session=session, ops=ops,
                           run_pass=run_pass, check=check, node=helper.make_node,
                           rng=np.random.default_rng(0))
