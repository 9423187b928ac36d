"""ortlite's ``ShapeChain``: shape math evaluated once per input-shape signature.

Transformer exports carry hundreds of Shape/Gather/Unsqueeze/Concat/Slice nodes whose values depend only on
the shapes of some tensors (fuse_shape_chains.py groups them). This kernel runs such a group's nodes (bound
once, CPU kernels) and keeps the results per signature: the shapes of the tensors whose shape the group
reads, plus the values of any small shape-valued inputs. A run with shapes seen before returns copies of
the stored values without executing a node. The cache is bounded (oldest signatures dropped first).
"""
from __future__ import annotations

import threading

import numpy as np

from ortlite.registry import kernel

MAX_SIGNATURES = 64


class ChainProgram:
    """The chain's nodes bound to CPU kernels: steps of (callable, input names, output names)."""

    def __init__(self, nodes, steps, shape_inputs, value_inputs, outputs, constants):
        self.nodes = nodes  # the original IR nodes (written back when the model is saved)
        self.steps = steps
        self.shape_inputs = shape_inputs  # names whose shapes only are read
        self.value_inputs = value_inputs  # names whose (small) values are read
        self.outputs = outputs
        self.constants = constants

    def evaluate(self, values: dict):
        env = dict(self.constants)
        env.update(values)
        for fn, ins, outs in self.steps:
            r = fn(*[env.get(n) if n else None for n in ins])
            if type(r) is not tuple:
                r = (r,)
            for n, v in zip(outs, r):
                if n:
                    env[n] = v
        return tuple(env[n] for n in self.outputs)


@kernel("ShapeChain", since=1, domain="ortlite", families="cpu")
class ShapeChain:
    def __init__(self, ctx, program=None):
        self.program = program
        self.n_shape = len(program.shape_inputs)
        self.cache = {}
        self.lock = threading.Lock()

    def __call__(self, *inputs):
        n = self.n_shape
        try:
            key = tuple([x.shape for x in inputs[:n]])
        except AttributeError:  # a Python scalar or list
            key = tuple([np.shape(x) for x in inputs[:n]])
        if len(inputs) > n:
            key += tuple((v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else repr(v)
                         for v in inputs[n:])
        got = self.cache.get(key)
        if got is None:
            p = self.program
            got = p.evaluate(dict(zip(p.shape_inputs + p.value_inputs, inputs)))
            with self.lock:
                if len(self.cache) >= MAX_SIGNATURES:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[key] = got
        # copies: a reader must never see (or change) the stored values
        if len(got) == 1:
            v = got[0]
            return v.copy() if type(v) is np.ndarray else v
        return tuple([v.copy() if type(v) is np.ndarray else v for v in got])
