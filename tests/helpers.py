"""Helpers shared by test modules (import as `from helpers import make_model`)."""
import numpy as np
from onnx import helper


def make_model(nodes, inputs, outputs, initializers=(), opset=17, ir_version=8, functions=(), extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    m.ir_version = ir_version
    return m


def mlp_reference(x, W, b):
    return np.maximum(x @ W + b, 0)
