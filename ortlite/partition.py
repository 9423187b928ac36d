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


def assign(graph: Graph, providers) -> list:
    """Place every node of ``graph`` (not its subgraphs) on a provider; returns Placements."""
    placements = []
    i = 0
    while i < len(graph.nodes):
        node = graph.nodes[i]
        refused = []
        chosen = None
        for prov in providers:
            claim = prov.get_capability(node, registry.lookup)
            if claim.taken:
                chosen = (prov, claim.kernel)
                break
            refused.append((prov.name, claim.reason))
        if chosen is None:
            fp = schema_function(node, graph)
            if fp is not None and fp.node:
                expand_function(graph, node, fp)
                continue  # place the body's nodes, starting at the same index
            raise OrtNotImplemented(_no_kernel_message(node, providers, refused))
        node.provider = chosen[0].name
        placements.append(Placement(node, chosen[0], chosen[1], refused))
        i += 1
    return placements


def _no_kernel_message(node, providers, refused):
    domain = node.domain or "ai.onnx"
    names = ", ".join(p.name for p in providers)
    known = registry.describe(node.op_type, node.domain)
    schema = registry.get_schema(node.op_type, node.domain, node.opset)
    what = "" if schema is not None or node.domain not in ("",) else " (not an ONNX op at this opset)"
    return (
        f"Could not find an implementation for {node.op_type}({node.opset}) node with name "
        f"'{node.name}': no kernel for op {node.op_type}{what}, domain '{domain}', opset {node.opset} "
        f"on [{names}]; registered: {known}"
    )
