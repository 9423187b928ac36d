"""What a compiling provider is handed for one group: the group as a standalone ONNX model."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx


@dataclass
class TensorSpec:
    """One input or output of a group: its name in the graph, dtype and shape (ints for fixed
    dims, strings for symbolic ones, None for unknown; the shape itself None when the rank is
    unknown)."""

    name: str
    dtype: np.dtype | None
    shape: list | None


@dataclass
class GroupSpec:
    """A group of nodes to compile.

    ``model`` is a ModelProto holding exactly the group's nodes, its weights as initializers,
    its inputs and outputs as graph inputs/outputs (with the types known), and the parent's
    opset imports. ``inputs`` / ``outputs`` list the same values in the order the runner takes
    and returns them.
    """

    name: str
    provider: str
    model: onnx.ModelProto
    inputs: list
    outputs: list
    node_names: list = field(default_factory=list)
    op_types: list = field(default_factory=list)
    _bytes: bytes | None = field(default=None, repr=False)

    @property
    def model_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = self.model.SerializeToString(deterministic=True)
        return self._bytes

    def describe(self) -> str:
        ops = sorted(set(self.op_types))
        more = f" (ops: {', '.join(ops[:12])}{', ...' if len(ops) > 12 else ''})" if ops else ""
        return f"group '{self.name}' of {len(self.node_names)} node(s){more}"
