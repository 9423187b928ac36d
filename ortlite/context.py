"""What a class kernel's prepare step (its constructor) is told about its node."""
from __future__ import annotations


class KernelContext:
    """Per-node facts handed to a kernel class at session start.

    Attributes:
        node: the IR node (``op_type``, ``domain``, ``name``, ``inputs``, ``outputs``, ``attrs``).
        opset: the opset version of the node's domain.
        xp: the array module of the provider (numpy on CPU, cupy on CUDA).
        provider: the execution provider instance running the node.
        input_types / output_types: ``ortlite.ir.ValueInfo`` per input/output (dtype and
            shape from shape inference; fields are None where unknown).
        num_inputs: number of declared inputs (trailing missing ones included as '').
        num_outputs: number of declared outputs.
        implicit_inputs: names of outer-scope values that the node's subgraphs read;
            their values follow the declared inputs in the call.
    """

    __slots__ = (
        "node", "opset", "xp", "provider", "input_types", "output_types",
        "num_inputs", "num_outputs", "implicit_inputs", "_consts",
    )

    def __init__(self, node, opset, xp, provider, input_types, output_types, consts, implicit_inputs=()):
        self.node = node
        self.opset = opset
        self.xp = xp
        self.provider = provider
        self.input_types = input_types
        self.output_types = output_types
        self.num_inputs = len(node.inputs)
        self.num_outputs = len(node.outputs)
        self.implicit_inputs = tuple(implicit_inputs)
        self._consts = consts

    def const(self, i):
        """Input ``i``'s value (a numpy array) when it is an initializer or a constant, else None."""
        if i >= len(self.node.inputs) or not self.node.inputs[i]:
            return None
        return self._consts.get(self.node.inputs[i])

    def has_input(self, i) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    def has_output(self, i) -> bool:
        return i < len(self.node.outputs) and bool(self.node.outputs[i])

    def input_dtype(self, i):
        t = self.input_types[i] if i < len(self.input_types) else None
        return None if t is None else t.dtype

    def output_dtype(self, i):
        t = self.output_types[i] if i < len(self.output_types) else None
        return None if t is None else t.dtype

    def input_rank(self, i):
        """Input ``i``'s rank from shape inference, or None where unknown."""
        t = self.input_types[i] if i < len(self.input_types) else None
        return None if t is None or t.shape is None else len(t.shape)
