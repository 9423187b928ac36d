"""Graph validity checks done once at session creation, as onnxruntime's graph resolve does them.

* ``order_nodes``: nodes out of topological order are sorted (onnxruntime sorts them, the onnx checker
  refuses them); a node input that is no graph input, initializer, earlier node output or outer-scope
  name, and a cycle, are ``InvalidGraph`` errors naming the node.
* ``check_types``: after shape inference, each node's input and output types against its schema's type
  constraints, one type per type variable, and declared types (graph outputs, value_info) against the
  type the node computes. Ops onnx has no schema for (custom or com.microsoft domains) are skipped.
"""
from __future__ import annotations

import functools
import re

import onnx

from ortlite import types as ot
from ortlite.errors import InvalidGraph
from ortlite.ir import stable_order


def _node_label(n, k) -> str:
    return f"node '{n.name or f'#{k}'}' ({n.op_type})"


def _subgraphs(n):
    for a in n.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def order_nodes(gp, label: str, outer=frozenset()) -> set:
    """Sort ``gp``'s nodes (and its subgraphs') topologically in place; return the outer names it reads.

    Kahn's algorithm taking the ready node that came first, so a sorted graph keeps its order and the
    proto is only rewritten when the order changes. ``outer`` holds the names enclosing graphs define.
    """
    nodes = gp.node
    local = {v.name for v in gp.input} | {t.name for t in gp.initializer}
    local.update(sp.values.name for sp in gp.sparse_initializer)
    producer = {}
    for k, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer.setdefault(o, k)
    visible = None
    free = set()
    deps = []
    for k, n in enumerate(nodes):
        reads = list(n.input)
        for sg in _subgraphs(n):
            if visible is None:
                visible = frozenset(outer | local | producer.keys())
            reads.extend(order_nodes(sg, label, visible))
        mine = set()
        for name in reads:
            if not name or name in local:
                continue
            p = producer.get(name)
            if p is not None:
                if p == k:
                    raise InvalidGraph(f"{label}: invalid ONNX graph: graph '{gp.name}': {_node_label(n, k)} reads its own "
                                       f"output '{name}' (the graph is not acyclic)")
                mine.add(p)
            elif name in outer:
                free.add(name)
            else:
                raise InvalidGraph(
                    f"{label}: invalid ONNX graph: graph '{gp.name}': {_node_label(n, k)} reads input '{name}', which is not "
                    "a graph input, initializer, or output of another node"
                    + (" or an outer-scope value" if outer else "")
                    + "; add it as a graph input or initializer, or fix the node's input name")
        deps.append(mine)
    for v in gp.output:
        if v.name not in local and v.name not in producer:
            if v.name in outer:
                free.add(v.name)
            else:
                raise InvalidGraph(f"{label}: invalid ONNX graph: graph '{gp.name}': graph output '{v.name}' is produced by "
                                   "no node and is no graph input or initializer")
    if any(p > k for k, d in enumerate(deps) for p in d):
        _reorder(gp, deps, label)
    return free


def _reorder(gp, deps, label):
    nodes = list(gp.node)
    order, stuck = stable_order(deps)
    if stuck is not None:
        raise InvalidGraph(f"{label}: invalid ONNX graph: graph '{gp.name}': the graph is not acyclic: a cycle runs through "
                           f"{_node_label(nodes[stuck], stuck)}")
    sorted_nodes = [nodes[k] for k in order]
    del gp.node[:]
    gp.node.extend(sorted_nodes)


# ---- types ------------------------------------------------------------------------------------------
_TENSOR = re.compile(r"(?<![a-z_])tensor\(([a-z0-9]+)\)")


@functools.lru_cache(maxsize=None)
def _norm(s: str) -> str:
    """A type string in one spelling: no spaces, tensor(x) as x (schemas write map values either way)."""
    return _TENSOR.sub(r"\1", s.replace(" ", ""))


def _type_str(tp):
    """onnxruntime's type string of a TypeProto, or None where the type is not (fully) known."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return _tensor_str(tp.tensor_type.elem_type)
    if kind is None:
        return None
    if kind == "sparse_tensor_type" and getattr(tp, kind).elem_type == 0:
        return None
    if kind == "sequence_type" and not tp.sequence_type.HasField("elem_type"):
        return None
    if kind == "optional_type" and not tp.optional_type.HasField("elem_type"):
        return None
    if kind == "sequence_type" and _type_str(tp.sequence_type.elem_type) is None:
        return None
    if kind == "optional_type" and _type_str(tp.optional_type.elem_type) is None:
        return None
    try:
        s = ot.type_proto_string(tp)
    except (TypeError, KeyError, ValueError):
        return None
    return None if "unknown" in s else s


@functools.lru_cache(maxsize=None)
def _tensor_str(elem_type):
    return ot.tensor_type_string(elem_type) if elem_type and ot.type_name(elem_type)[:7] != "unknown" else None


@functools.lru_cache(maxsize=None)
def _spec(op_type, domain, version):
    """(formal inputs, formal outputs, {type variable: allowed normalized strings}, {type variable: the
    allowed types as the schema writes them}) or None (no schema).

    A formal is (type string, variadic, homogeneous)."""
    try:
        s = onnx.defs.get_schema(op_type, version, domain)
    except onnx.defs.SchemaError:
        return None
    V = onnx.defs.OpSchema.FormalParameterOption.Variadic
    constraints = {c.type_param_str: frozenset(_norm(t) for t in c.allowed_type_strs) for c in s.type_constraints}
    shown = {c.type_param_str: ", ".join(c.allowed_type_strs) for c in s.type_constraints}

    def formals(ps):
        return tuple((p.type_str, p.option == V, p.is_homogeneous) for p in ps)

    return formals(s.inputs), formals(s.outputs), constraints, shown


def _formal(formals, i):
    if i < len(formals):
        return formals[i]
    if formals and formals[-1][1]:
        return formals[-1]
    return None


def check_types(gp, opsets: dict, label: str, outer_types=None, declared=None) -> None:
    """Check every node of ``gp`` (a shape-inferred graph) and its subgraphs against the op schemas.

    ``declared`` names the values whose types the model states (graph outputs, value_info before
    inference) so a disagreement is reported as the declaration being wrong.
    """
    types = dict(outer_types or {})
    for t in gp.initializer:
        s = _tensor_str(t.data_type)
        if s is not None:
            types[t.name] = s
    # a graph input or initializer has its own type: onnxruntime reads no other declaration of the name
    # (a value_info entry, or a graph output named as it, which passes the value through)
    own = {v.name for v in gp.input} | {t.name for t in gp.initializer}
    for vi in list(gp.input) + [v for v in list(gp.value_info) + list(gp.output) if v.name not in own]:
        s = _type_str(vi.type)
        if s is not None:
            types[vi.name] = s
    declared = declared or set()
    outputs = {v.name for v in gp.output}
    for k, n in enumerate(gp.node):
        domain = "" if n.domain == "ai.onnx" else n.domain
        version = opsets.get(domain)
        spec = _spec(n.op_type, domain, version) if version is not None else None
        if spec is not None:
            _check_node(n, k, spec, types, declared | outputs, label, gp.name)
        for sg in _subgraphs(n):
            check_types(sg, opsets, label, types)


def _check_node(n, k, spec, types, declared, label, graph_name):
    fin, fout, constraints, shown = spec
    bound = {}  # type variable -> (type string, value name, 'input'/'output')
    for role, names, formals in (("input", n.input, fin), ("output", n.output, fout)):
        for i, name in enumerate(names):
            if not name:
                continue
            actual = types.get(name)
            f = _formal(formals, i)
            if actual is None or f is None:
                continue
            tv, _variadic, homogeneous = f
            allowed = constraints.get(tv)
            na = _norm(actual)
            if allowed is None:  # a literal type such as tensor(int64)
                allowed = frozenset([_norm(tv)])
            if na not in allowed:
                if role == "output" and name in declared:
                    computes = bound[tv][0] if tv in bound else f"one of {shown.get(tv, tv)}"
                    raise InvalidGraph(
                        f"{label}: invalid ONNX graph: graph '{graph_name}': '{name}' is declared {actual} but "
                        f"{_node_label(n, k)} computes {computes} there; fix the declared type")
                raise InvalidGraph(
                    f"{label}: invalid ONNX graph: graph '{graph_name}': type '{actual}' of {role} '{name}' of "
                    f"{_node_label(n, k)} is invalid: {n.op_type} expects {shown.get(tv, tv)} "
                    f"(type parameter {tv})")
            if tv not in constraints or not homogeneous and _variadic:
                continue
            prev = bound.get(tv)
            if prev is None:
                bound[tv] = (actual, name, role)
            elif _norm(prev[0]) != na:
                if role == "output" and name in declared:
                    raise InvalidGraph(
                        f"{label}: invalid ONNX graph: graph '{graph_name}': '{name}' is declared {actual} but "
                        f"{_node_label(n, k)} computes {prev[0]} there (type parameter {tv} is bound to "
                        f"{prev[0]} by {prev[2]} '{prev[1]}'); fix the declared type")
                raise InvalidGraph(
                    f"{label}: invalid ONNX graph: graph '{graph_name}': type parameter {tv} of {_node_label(n, k)} is bound "
                    f"to different types: {prev[0]} ({prev[2]} '{prev[1]}') and {actual} ({role} '{name}')")
