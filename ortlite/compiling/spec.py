"""What a compiling provider is handed for one group: the group as a standalone ONNX model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TensorSpec:
    """One input or output of a group: its name in the graph, dtype and shape (ints for fixed
    dims, strings for symbolic ones, None for unknown; the shape itself None when the rank is
    unknown)."""

    name: str
    dtype: np.dtype | None
    shape: list | None


class GroupSpec:
    """A group of nodes to compile.

    ``model`` is a ModelProto holding exactly the group's nodes, its weights as initializers,
    its inputs and outputs as graph inputs/outputs (with the types known), and the parent's
    opset imports; it is built on first use (a cache hit never needs it). ``inputs`` /
    ``outputs`` list the same values in the order the runner takes and returns them.
    ``fingerprint`` is a SHA-256 over the group's content (nodes, attributes, input/output
    types, every weight's bytes); without one the serialized model is hashed.
    """

    def __init__(self, name, provider, model, inputs, outputs, node_names=(), op_types=(), fingerprint=None,
                 make_model=None, weight_names=()):
        self.name = name
        self.provider = provider
        self._model = model
        self._make_model = make_model
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.node_names = list(node_names)
        self.op_types = list(op_types)
        self.fingerprint = fingerprint
        self.weight_names = list(weight_names)  # the constants the model holds as initializers
        self._bytes = None

    @property
    def model(self):
        if self._model is None and self._make_model is not None:
            self._model = self._make_model()
            self._make_model = None
        return self._model

    @property
    def model_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = self.model.SerializeToString(deterministic=True)
        return self._bytes

    def describe(self) -> str:
        ops = sorted(set(self.op_types))
        more = f" (ops: {', '.join(ops[:12])}{', ...' if len(ops) > 12 else ''})" if ops else ""
        return f"group '{self.name}' of {len(self.node_names)} node(s){more}"

    def __repr__(self):
        return f"GroupSpec({self.name!r}, {self.provider!r}, inputs={self.inputs}, outputs={self.outputs})"
