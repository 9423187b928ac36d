"""Assigning nodes to execution providers in the user's priority order.

Each provider in turn claims the nodes it can run; an earlier provider keeps
what it claimed. A node no provider claims but whose schema defines a function
body is expanded into that body and its nodes are assigned in turn. Every
refusal is kept with its reason, so the placement can be explained.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ortlite import registry
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.ir import Graph, expand_function


@dataclass
class Placement:
    node: object
    provider: object  # ExecutionProvider instance
    kernel: object  # KernelDef
    refused: list = field(default_factory=list)  # [(provider name, reason)] of earlier providers
    original: object = None  # for a copy-step view of a node: the IR node it was made from
    group: str | None = None  # the compiled group a compiling provider claimed this node in


def schema_function(node, graph: Graph):
    """The FunctionProto defining ``node``'s op at its opset, or None."""
    schema = registry.get_schema(node.op_type, node.domain, node.opset)
    if schema is None:
        return None
    try:
        if schema.has_function:
            versions = [v for v in schema.function_opset_versions if v <= node.opset]
            if versions:
                fp = schema.get_function_with_opset_version(max(versions))
                return _as_function(fp)
            return _as_function(schema.function_body)
        if schema.has_context_dependent_function:
            types = []
            for name in node.inputs:
                vi = graph.info(name) if name else None
                tp = vi.type_proto if vi is not None and vi.type_proto is not None else None
                if tp is None:
                    init = graph.initializers.get(name)
                    if init is None:
                        return None  # the body depends on input types we do not know
                    tp = onnx.helper.make_tensor_type_proto(
                        onnx.helper.np_dtype_to_tensor_dtype(init.dtype), init.shape)
                types.append(tp.SerializeToString())
            np_ = onnx.helper.make_node(node.op_type, node.inputs, node.outputs, domain=node.domain)
            np_.attribute.extend(node.attr_protos.values())
            versions = [v for v in schema.context_dependent_function_opset_versions if v <= node.opset]
            if versions:
                fp = schema.get_context_dependent_function_with_opset_version(
                    max(versions), np_.SerializeToString(), types)
            else:
                fp = schema.get_context_dependent_function(np_.SerializeToString(), types)
            return _as_function(fp)
    except Exception:  # noqa: BLE001 - no usable body: the caller reports "no kernel"
        return None
    return None


def _as_function(fp):
    if fp is None:
        return None
    if isinstance(fp, (bytes, bytearray)):
        if not fp:
            return None
        return onnx.FunctionProto.FromString(bytes(fp))
    return fp


def assign(graph: Graph, providers, fallback_disabled=False, excluded=None, memo=None) -> list:
    """Place every node of ``graph`` (not its subgraphs) on a provider; returns Placements.

    Kernel providers claim node by node; a compiling provider at position i in the priority
    list is offered the nodes no provider before it took and claims groups of them
    (``ortlite.compiling.claim``): grouped nodes get a Placement whose ``group`` names their
    group and whose kernel is filled in when the group is compiled. ``excluded`` maps id(node)
    to provider names not to offer it to (a group that failed to compile); ``memo`` (a
    ``ortlite.compiling.groups.ClaimMemo``) gives compiling providers the session's constants and keeps
    their answer for an unchanged candidate set between calls.

    A node no provider takes whose schema defines a function body is expanded into that body
    and placement starts over. With ``fallback_disabled`` (no implicit CPU provider), every
    node no provider takes is listed in one error.
    """
    excluded = excluded or {}
    while True:
        placements, leftovers, expanded = _assign_once(graph, providers, excluded, memo)
        if not expanded:
            break
    if leftovers and not fallback_disabled:
        node, refused = leftovers[0]
        raise OrtNotImplemented(_no_kernel_message(node, providers, refused))
    if leftovers:
        from ortlite.errors import Fail

        lines = "; ".join(
            f"{n.op_type} '{n.name}' ({', '.join(f'{p}: {r}' for p, r in refused) or 'no provider'})"
            for n, refused in leftovers[:30]
        )
        raise Fail(
            f"{len(leftovers)} node(s) have no kernel on the requested providers "
            f"[{', '.join(p.name for p in providers)}] and fallback to CPUExecutionProvider is disabled "
            f"(session.disable_cpu_ep_fallback=1): {lines}"
        )
    return placements


def _assign_once(graph, providers, excluded, memo):
    """One placement pass; returns (placements, leftovers, whether a node was expanded)."""
    nodes = list(graph.nodes)
    # 1. kernel providers, node by node: the first that takes each node, and every answer before it
    answers = {}  # id(node) -> [(provider index, Claim)] up to and including the taker
    first = {}  # id(node) -> index of the first kernel provider taking it
    for node in nodes:
        got = []
        for k, prov in enumerate(providers):
            if getattr(prov, "compiles", False):
                continue
            claim = prov.get_capability(node, registry.lookup, graph)
            got.append((k, claim))
            if claim.taken:
                first[id(node)] = k
                break
        answers[id(node)] = got
    # 2. compiling providers, in priority order, on the nodes no provider before them took
    owner = {}  # id(node) -> (provider index, group name)
    refusals = {}  # id(node) -> [(provider index, reason)] from compiling providers
    for k, prov in enumerate(providers):
        if not getattr(prov, "compiles", False):
            continue
        cands = [n for n in nodes if id(n) not in owner and first.get(id(n), len(providers)) > k
                 and prov.name not in excluded.get(id(n), ())]
        for n in nodes:
            if prov.name in excluded.get(id(n), ()) and id(n) not in owner:
                refusals.setdefault(id(n), []).append((k, excluded[id(n)][prov.name]))
        if not cands:
            continue
        from ortlite.compiling.groups import claim

        groups, refused = claim(prov, graph, cands, memo)
        for gname, members in groups:
            for n in members:
                owner[id(n)] = (k, gname)
        for n in cands:
            if id(n) in refused:
                refusals.setdefault(id(n), []).append((k, refused[id(n)]))
    # 3. placements in graph order; refusals from every provider ahead of the chosen one
    placements, leftovers = [], []
    expanded = False
    for node in nodes:
        if id(node) in owner:
            k, gname = owner[id(node)]
        else:
            k = first.get(id(node))
            gname = None
        limit = len(providers) if k is None else k
        said = [(j, c.reason) for j, c in answers[id(node)] if j < limit and not c.taken]
        said += [(j, r) for j, r in refusals.get(id(node), ()) if j < limit]
        refused = [(providers[j].name, r) for j, r in sorted(said, key=lambda t: t[0])]
        if k is None:
            fp = schema_function(node, graph)
            if fp is not None and fp.node:
                expand_function(graph, node, fp)
                expanded = True  # the body's nodes are placed on the next pass
                continue
            leftovers.append((node, refused))
            continue
        prov = providers[k]
        node.provider = prov.name
        if gname is not None:
            placements.append(Placement(node, prov, None, refused, group=gname))
        else:
            kernel = next(c.kernel for j, c in answers[id(node)] if j == k)
            placements.append(Placement(node, prov, kernel, refused))
    return placements, leftovers, expanded


def _no_kernel_message(node, providers, refused):
    domain = node.domain or "ai.onnx"
    if (node.domain, node.op_type) == ("com.microsoft", "EPContext"):
        return (f"EPContext node '{node.name}' holds an engine compiled by "
                f"'{node.attrs.get('source', '') or '?'}', which is not among this session's available providers "
                f"[{', '.join(p.name for p in providers)}]; add that provider or load the original model")
    names = ", ".join(p.name for p in providers)
    known = registry.describe(node.op_type, node.domain)
    schema = registry.get_schema(node.op_type, node.domain, node.opset)
    what = "" if schema is not None or node.domain not in ("",) else " (not an ONNX op at this opset)"
    return (
        f"Could not find an implementation for {node.op_type}({node.opset}) node with name "
        f"'{node.name}': no kernel for op {node.op_type}{what}, domain '{domain}', opset {node.opset} "
        f"on [{names}]; registered: {known}"
    )


# Ops that read only their input's shape: running them on the host needs no copy of a device input.
METADATA_ONLY_OPS = {("", "Shape"), ("", "Size")}

HOST_REASON = "kept on the host: it computes values that host-only inputs (shapes, axes) read"


def host_inputs(placement) -> tuple:
    return placement.kernel.host_inputs if placement.kernel is not None else ()


def prefer_host_for_shape_math(placements, providers) -> int:
    """Move small shape computations off a device when all they feed is host-only inputs.

    A device node is moved to the CPU provider when every reader of its outputs reads them
    through a host-only input or by host nodes that themselves only feed such inputs, and its
    own inputs are constants,
    host values, or only their shape is read (Shape/Size). Then the run never copies a shape
    from the device to the host (a hidden sync). Returns the number of nodes moved.
    """
    cpu = next((p for p in providers if p.device_type == "cpu"), None)
    if cpu is None:
        return 0
    producer = {o: p for p in placements for o in p.node.outputs if o}
    readers: dict[str, list] = {}
    for p in placements:
        for k, name in enumerate(list(p.node.inputs) + list(p.node.implicit_inputs)):
            if name:
                readers.setdefault(name, []).append((p, k))
    # 1. nodes whose every output is read through host-only inputs, directly or through such nodes
    host_math = set()
    changed = True
    while changed:
        changed = False
        for p in reversed(placements):
            outs = [o for o in p.node.outputs if o]
            if id(p.node) in host_math or not outs or not all(readers.get(o) for o in outs):
                continue
            if all(id(r.node) in host_math or k in host_inputs(r) for o in outs for r, k in readers[o]):
                host_math.add(id(p.node))
                changed = True
    # 2. those on a device move to the CPU when what they read is on the host (constants, feeds,
    #    CPU nodes, nodes moved before them) or only their shape is read: a Shape -> Gather ->
    #    Unsqueeze chain feeding a Slice moves whole, so no shape is copied back mid-run
    moved_ids = set()
    for p in placements:
        if p.provider.device_type == "cpu" or id(p.node) not in host_math or p.group is not None:
            continue
        meta = (p.node.domain, p.node.op_type) in METADATA_ONLY_OPS
        if not meta and not all(not name or name not in producer or producer[name].provider.device_type == "cpu"
                                for name in p.node.inputs):
            continue
        kdef = registry.lookup(p.node.op_type, p.node.domain, p.node.opset, cpu.family)
        if kdef is None:
            continue
        p.refused.append((p.provider.name, HOST_REASON))
        p.provider, p.kernel = cpu, kdef
        p.node.provider = cpu.name
        moved_ids.add(id(p.node))
    return len(moved_ids)
