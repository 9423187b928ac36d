"""What an optimizer pass works with: the graph, its constants, and small editing helpers."""
from __future__ import annotations

import itertools

import numpy as np
import onnx

from ortlite import registry
from ortlite.ir import Node


class PassContext:
    """One graph being optimized.

    Attributes:
        graph: the IR graph (``graph.nodes`` in topological order).
        constants: name -> numpy array for initializers and folded values; passes may add
            (new weights) and drop entries.
        fed: names whose values come from outside at run time (graph inputs, outer scope,
            overridable initializers): never folded, never renamed.
        outputs: the graph's output names: a pass must keep producing every one of them.
        level: the session's GraphOptimizationLevel as an int.
        providers: the session's providers in priority order (extended passes check that the
            provider of the nodes they fuse has a kernel for the fused op).
    """

    def __init__(self, graph, constants, fed, outputs, level=99, providers=()):
        self._ids = itertools.count()  # per graph, so a model gets the same names in every session
        self._taken = None
        self.graph = graph
        self.constants = constants
        self.fed = set(fed)
        self.outputs = list(outputs)
        self.level = level
        self.providers = list(providers)

    # ---- queries ------------------------------------------------------------------
    def consumers(self) -> dict:
        """value name -> list of nodes reading it (subgraph reads through implicit inputs count)."""
        return self.graph.consumers()

    def producers(self) -> dict:
        return self.graph.producers()

    def const(self, name):
        """The constant value of ``name``, or None (fed values are never constant)."""
        if not name or name in self.fed:
            return None
        return self.constants.get(name)

    def is_output(self, name) -> bool:
        return name in self.outputs

    def opset(self, domain="") -> int:
        return self.graph.opsets.get(domain, 1)

    def has_kernel(self, op_type, domain, provider_name, opset=None) -> bool:
        """Whether provider ``provider_name`` has a kernel for the op (for fusions after partitioning)."""
        fam = None
        for p in self.providers:
            if p.name == provider_name:
                fam = p.family
        if fam is None:
            return False
        return registry.lookup(op_type, domain, opset or self.opset(domain) or 1, fam) is not None

    # ---- edits ----------------------------------------------------------------------
    def new_name(self, base: str) -> str:
        """A name no value of this graph (or the graphs around it) has. Deterministic for a given
        model: the engine cache keys compiled groups by content, names included."""
        if self._taken is None:
            taken = set(self.constants)
            g = self.graph
            while g is not None:
                taken.update(g.initializers)
                taken.update(v.name for v in g.inputs)
                for n in g.nodes:
                    taken.update(n.outputs)
                    taken.update(n.inputs)
                g = getattr(g, "parent", None)
            self._taken = taken
        while True:
            name = f"{base}__ortlite{next(self._ids)}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def add_constant(self, base: str, value) -> str:
        name = self.new_name(base)
        self.constants[name] = np.asarray(value)
        return name

    def make_node(self, op_type, inputs, outputs, domain="", name=None, provider=None, **attrs) -> Node:
        """A new IR node (attributes kept as protos too, so the graph can be saved)."""
        if domain and domain not in self.graph.opsets:
            self.graph.opsets[domain] = 1
        protos = {k: onnx.helper.make_attribute(k, v) for k, v in attrs.items() if v is not None}
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = Node(op_type, domain, name or self.new_name(op_type), list(inputs), list(outputs), attrs,
                    self.graph.opsets.get(domain, 1), attr_protos=protos)
        node.provider = provider
        return node

    def replace(self, old_nodes, new_nodes):
        """Put ``new_nodes`` where the first of ``old_nodes`` was, and drop ``old_nodes``."""
        old_ids = {id(n) for n in old_nodes}
        out, placed = [], False
        for n in self.graph.nodes:
            if id(n) in old_ids:
                if not placed:
                    out.extend(new_nodes)
                    placed = True
                continue
            out.append(n)
        if not placed:
            out.extend(new_nodes)
        self.graph.nodes = out
        self.graph.toposort()

    def remove(self, nodes):
        self.replace(nodes, [])

    def rename_uses(self, old: str, new: str):
        """Make every reader of ``old`` read ``new`` (not graph outputs: callers keep those)."""
        for n in self.graph.nodes:
            if old in n.inputs:
                n.inputs = [new if i == old else i for i in n.inputs]
            if old in n.implicit_inputs:
                _rename_in_subgraphs(n, old, new)
                n.implicit_inputs = [new if i == old else i for i in n.implicit_inputs]


def _rename_in_subgraphs(node, old, new):
    for g in node.subgraphs.values():
        local = set(g.initializers) | {v.name for v in g.inputs} | {o for n in g.nodes for o in n.outputs}
        if old in local:
            continue
        for n in g.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
            if old in n.implicit_inputs:
                _rename_in_subgraphs(n, old, new)
                n.implicit_inputs = [new if i == old else i for i in n.implicit_inputs]
        for v in g.outputs:
            if v.name == old:
                v.name = new
