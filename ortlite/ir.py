"""A thin, mutable graph IR built once from the ONNX proto.

Passes edit this IR (never protos); the planner freezes it into an execution
plan. Model-local functions are inlined when the graph is built; ops without a
kernel whose schema defines a function body are expanded by the partitioner
(``expand_function``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from ortlite import types as ot


@dataclass
class ValueInfo:
    """What is known about a value: its kind, element type and shape (None where unknown)."""

    name: str
    elem_type: int | None = None
    shape: list | None = None
    kind: str | None = None  # 'tensor', 'sequence', 'map', 'optional', 'sparse_tensor'
    type_proto: object = None

    @property
    def dtype(self):
        if self.elem_type is None:
            return None
        try:
            return ot.np_dtype(self.elem_type)
        except TypeError:
            return None

    @property
    def type_string(self) -> str:
        if self.type_proto is not None:
            return ot.type_proto_string(self.type_proto)
        if self.elem_type is not None:
            return ot.tensor_type_string(self.elem_type)
        return "unknown"

    @classmethod
    def from_proto(cls, vi) -> "ValueInfo":
        tp = vi.type
        kind = tp.WhichOneof("value")
        kind = {"tensor_type": "tensor", "sequence_type": "sequence", "map_type": "map",
                "optional_type": "optional", "sparse_tensor_type": "sparse_tensor"}.get(kind)
        return cls(vi.name, ot.type_proto_elem(tp), ot.type_proto_shape(tp), kind, tp)


@dataclass
class Node:
    op_type: str
    domain: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    opset: int = 0  # version of the node's domain in force for this node
    subgraphs: dict = field(default_factory=dict)  # attribute name -> Graph
    implicit_inputs: list = field(default_factory=list)  # outer-scope names the subgraphs read
    provider: str | None = None  # filled by the partitioner
    attr_protos: dict = field(default_factory=dict)  # the original AttributeProtos, by name

    def __repr__(self):
        return f"Node({self.op_type} '{self.name}': {self.inputs} -> {self.outputs})"


def attribute_value(attr: AttributeProto, model_dir=None):
    """A Python value for an attribute; GRAPH attributes are returned as GraphProto (built later)."""
    t = attr.type
    A = AttributeProto
    if t == A.FLOAT:
        return float(attr.f)
    if t == A.INT:
        return int(attr.i)
    if t == A.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if t == A.TENSOR:
        return tensor_to_array(attr.t, model_dir)
    if t == A.GRAPH:
        return attr.g
    if t == A.SPARSE_TENSOR:
        return sparse_to_dense(attr.sparse_tensor, model_dir)
    if t == A.TYPE_PROTO:
        return attr.tp
    if t == A.FLOATS:
        return list(attr.floats)  # protobuf hands out Python floats / ints already
    if t == A.INTS:
        return list(attr.ints)
    if t == A.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if t == A.TENSORS:
        return [tensor_to_array(v, model_dir) for v in attr.tensors]
    if t == A.GRAPHS:
        return list(attr.graphs)
    if t == A.SPARSE_TENSORS:
        return [sparse_to_dense(v, model_dir) for v in attr.sparse_tensors]
    if t == A.TYPE_PROTOS:
        return list(attr.type_protos)
    raise ValueError(f"attribute '{attr.name}' has unsupported type {t}")


def tensor_to_array(t, model_dir=None) -> np.ndarray:
    """A TensorProto as a numpy array.

    External data must have been read in by the loader (which checks where it comes from); a tensor
    still pointing at a file is refused rather than read from the working directory.
    """
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise ValueError(f"tensor '{t.name}' has external data the loader did not read in")
    if t.data_type == onnx.TensorProto.STRING:
        arr = np.array([s.decode("utf-8", errors="replace") for s in t.string_data], dtype=object)
        return arr.reshape(tuple(t.dims))
    return numpy_helper.to_array(t, model_dir or "")


def sparse_to_dense(sp, model_dir=None) -> np.ndarray:
    values = tensor_to_array(sp.values, model_dir)
    indices = tensor_to_array(sp.indices, model_dir).astype(np.int64)
    dims = tuple(sp.dims)
    dense = np.zeros(dims, dtype=values.dtype)
    if indices.ndim == 1:  # linearized indices
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


class Graph:
    """Nodes in topological order, graph inputs/outputs, initializers as arrays.

    ``outer_scope`` lists names a subgraph may read from its enclosing graphs.
    """

    def __init__(self, name="graph"):
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: list[ValueInfo] = []
        self.outputs: list[ValueInfo] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.value_info: dict[str, ValueInfo] = {}
        self.opsets: dict[str, int] = {}
        self.parent: Graph | None = None

    # ---- building -------------------------------------------------------
    @classmethod
    def from_proto(cls, gp, opsets, functions=None, model_dir=None, parent=None, namer=None,
                   init_source=None, drop_inputs=()) -> "Graph":
        """Build from GraphProto ``gp``; initializers come from ``init_source`` when given (the
        original graph, when ``gp`` is a shape-inferred copy without weight data, whose graph
        inputs ``drop_inputs`` stood in for weights)."""
        g = cls(gp.name or "graph")
        g.parent = parent
        g.opsets = dict(opsets)
        namer = namer or _Namer()
        functions = functions or {}
        for init in (init_source if init_source is not None else gp).initializer:
            g.initializers[init.name] = tensor_to_array(init, model_dir)
        for sp in gp.sparse_initializer:
            g.initializers[sp.values.name] = sparse_to_dense(sp, model_dir)
        for vi in gp.input:
            if vi.name not in drop_inputs:
                g.inputs.append(ValueInfo.from_proto(vi))
        for vi in gp.output:
            g.outputs.append(ValueInfo.from_proto(vi))
        for vi in gp.value_info:
            g.value_info[vi.name] = ValueInfo.from_proto(vi)
        for vi in itertools.chain(gp.input, gp.output):
            g.value_info.setdefault(vi.name, ValueInfo.from_proto(vi))  # weights' types included
        for i, np_ in enumerate(gp.node):
            g._add_proto_node(np_, functions, model_dir, namer, i)
        g.compute_implicit_inputs()
        return g

    def _add_proto_node(self, np_, functions, model_dir, namer, index, opsets=None, attr_binding=None, rename=None):
        opsets = opsets or self.opsets
        rename = rename or {}
        domain = "" if np_.domain in ("", "ai.onnx") else np_.domain
        attrs = {}
        subgraphs = {}
        protos = {}
        for a in np_.attribute:
            if a.ref_attr_name:
                if attr_binding is None or a.ref_attr_name not in attr_binding:
                    continue  # unbound reference: the attribute takes its default
                src = attr_binding[a.ref_attr_name]
                a2 = AttributeProto()
                a2.CopyFrom(src)
                a2.name = a.name
                a = a2
            protos[a.name] = a
            if a.type == AttributeProto.GRAPH:
                subgraphs[a.name] = _rename_free(a.g, rename) if rename else a.g
            else:
                attrs[a.name] = attribute_value(a, model_dir)
        inputs = [rename.get(n, n) if n else "" for n in np_.input]
        outputs = [rename.get(n, n) if n else "" for n in np_.output]
        name = np_.name or namer.node_name(np_.op_type, index)
        key = (np_.domain, np_.op_type)
        if key in functions and not _has_schema(np_.op_type, domain, opsets.get(domain, 1)):
            self._inline_function(functions[key], np_, inputs, outputs, attrs, subgraphs, functions, model_dir, namer, name)
            return
        node = Node(np_.op_type, domain, name, inputs, outputs, attrs, opsets.get(domain, opsets.get("", 1)),
                    attr_protos=protos)
        for an, gproto in subgraphs.items():
            node.subgraphs[an] = Graph.from_proto(gproto, self.opsets, functions, model_dir, parent=self, namer=namer)
        self.nodes.append(node)

    def _inline_function(self, fp, np_, inputs, outputs, attrs, subgraphs, functions, model_dir, namer, name):
        """Replace a call of model-local function ``fp`` by its body, values renamed apart."""
        binding = {}
        for a in np_.attribute:
            binding[a.name] = a
        for a in fp.attribute_proto:  # defaults declared by the function
            binding.setdefault(a.name, a)
        rename = {}
        for formal, actual in zip(fp.input, inputs):
            rename[formal] = actual
        for formal in list(fp.input)[len(inputs):]:
            rename[formal] = ""
        prefix = namer.prefix(name)
        for bn in fp.node:
            for o in bn.output:
                if o and o not in rename:
                    rename[o] = prefix + o
        for formal, actual in zip(fp.output, outputs):
            rename[formal] = actual  # outputs keep the caller's names
        fopsets = dict(self.opsets)
        for op in fp.opset_import:
            fopsets["" if op.domain == "ai.onnx" else op.domain] = op.version
        for j, bn in enumerate(fp.node):
            sub = onnx.NodeProto()
            sub.CopyFrom(bn)
            if not sub.name:
                sub.name = f"{name}/{bn.op_type}_{j}"
            else:
                sub.name = f"{name}/{sub.name}"
            self._add_proto_node(sub, functions, model_dir, namer, j, fopsets, binding, rename)

    def compute_implicit_inputs(self):
        """For nodes with subgraphs: the outer-scope names those subgraphs read."""
        for node in self.nodes:
            if not node.subgraphs:
                continue
            needed = []
            for sg in node.subgraphs.values():
                for n in sg.free_names():
                    if n not in needed:
                        needed.append(n)
            node.implicit_inputs = needed

    def free_names(self) -> list:
        """Names this graph reads that it does not define (its outer-scope reads)."""
        defined = set(self.initializers) | {v.name for v in self.inputs}
        free = []
        for node in self.nodes:
            for n in itertools.chain(node.inputs, node.implicit_inputs):
                if n and n not in defined and n not in free:
                    free.append(n)
            defined.update(o for o in node.outputs if o)
        for v in self.outputs:
            if v.name not in defined and v.name not in free:
                free.append(v.name)
        return free

    # ---- queries ----------------------------------------------------------
    def info(self, name) -> ValueInfo | None:
        return self.value_info.get(name)

    def consumers(self) -> dict:
        out: dict[str, list] = {}
        for n in self.nodes:
            for i in itertools.chain(n.inputs, n.implicit_inputs):
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def producers(self) -> dict:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def toposort(self):
        """Order nodes so each comes after the producers of its inputs (``stable_order``: an already
        sorted graph keeps its order)."""
        nodes = self.nodes
        produced_by = {}
        for k, n in enumerate(nodes):
            for o in n.outputs:
                if o:
                    produced_by[o] = k
        deps = [{produced_by[i] for i in itertools.chain(n.inputs, n.implicit_inputs)
                 if i and i in produced_by and produced_by[i] != k} for k, n in enumerate(nodes)]
        order, stuck = stable_order(deps)
        if stuck is not None:
            raise ValueError(f"graph '{self.name}' has a cycle through node '{nodes[stuck].name}'")
        self.nodes = [nodes[k] for k in order]


def stable_order(deps):
    """A topological order of nodes 0..n-1 given ``deps[k]`` (the indices node k must follow): Kahn's
    algorithm always taking the ready node that came first, so a sorted list keeps its order. Returns
    (order, None), or (partial order, index of a node on a cycle)."""
    import heapq

    waiting = [len(d) for d in deps]
    readers: list[list[int]] = [[] for _ in deps]
    for k, d in enumerate(deps):
        for p in d:
            readers[p].append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for r in readers[k]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(deps):
        return order, next(k for k, w in enumerate(waiting) if w > 0)
    return order, None


def _rename_free(gp, rename):
    """A copy of subgraph ``gp`` whose reads of outer-scope names follow ``rename``.

    Names the subgraph defines itself (inputs, initializers, node outputs) shadow outer
    ones and are left alone, at every nesting depth.
    """
    local = {v.name for v in gp.input} | {t.name for t in gp.initializer} | {o for n in gp.node for o in n.output}
    live = {k: v for k, v in rename.items() if k not in local}
    if not live:
        return gp
    g = onnx.GraphProto()
    g.CopyFrom(gp)
    for n in g.node:
        for k, name in enumerate(n.input):
            if name in live:
                n.input[k] = live[name]
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                a.g.CopyFrom(_rename_free(a.g, live))
            elif a.type == AttributeProto.GRAPHS:
                for k, sub in enumerate(a.graphs):
                    a.graphs[k].CopyFrom(_rename_free(sub, live))
    for o in g.output:
        if o.name in live:
            o.name = live[o.name]
    return g


def _has_schema(op_type, domain, version) -> bool:
    try:
        onnx.defs.get_schema(op_type, version, domain)
        return True
    except Exception:  # noqa: BLE001
        return False


class _Namer:
    def __init__(self):
        self._n = itertools.count()

    def node_name(self, op_type, index):
        return f"{op_type}_{next(self._n)}"

    def prefix(self, name):
        return f"{name}::{next(self._n)}/"


def expand_function(graph: Graph, node: Node, fp, namer=None) -> list:
    """Replace ``node`` in ``graph`` by the body of FunctionProto ``fp``; return the new nodes."""
    namer = namer or _Namer()
    np_ = onnx.helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name, domain=node.domain)
    np_.attribute.extend(node.attr_protos.values())
    tmp = Graph(graph.name)
    tmp.opsets = dict(graph.opsets)
    tmp.parent = graph
    tmp._inline_function(fp, np_, node.inputs, node.outputs, node.attrs, node.subgraphs, {}, None, namer, node.name)
    tmp.compute_implicit_inputs()
    i = graph.nodes.index(node)
    graph.nodes[i:i + 1] = tmp.nodes
    return tmp.nodes
