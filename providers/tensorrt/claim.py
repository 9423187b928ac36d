"""What TensorRT claims: its ONNX parser's support query, recursed as onnxruntime does.

The candidate nodes become one ONNX model (weights included, values made outside as inputs). A fresh
builder / network / parser answers ``supports_model_v2`` (``supports_model`` only on a TensorRT with
nothing else): subgraphs in topological order, each marked supported only when the whole model parsed,
so every part marked unknown is queried again on its own. A part that makes no progress is split at the
node the parser names in its errors; that node is refused with the parser's text. The number of
queries is bounded by ``trt_max_partition_iterations``; past it nothing is claimed (as onnxruntime).
"""
from __future__ import annotations

import logging

import numpy as np

from ortlite import types as ot
from ortlite.compiling.groups import connected_groups

log = logging.getLogger("ortlite")

# element types TensorRT tensors can have (DataType: FLOAT, HALF, BF16, INT8, INT32, INT64, BOOL, UINT8, ...)
_TRT_DTYPES = {np.dtype(t) for t in ("float32", "float16", "int8", "int32", "int64", "bool", "uint8")}


def _dtype_refusal(node, graph):
    for name in list(node.inputs) + list(node.outputs):
        if not name:
            continue
        w = graph.initializers.get(name)
        if isinstance(w, np.ndarray):
            dt = w.dtype
        else:
            vi = graph.info(name)
            if vi is None:
                continue
            if vi.kind not in (None, "tensor"):
                return f"'{name}' is a {vi.kind}: TensorRT runs tensors only"
            dt = vi.dtype
        if dt is not None and dt not in _TRT_DTYPES and str(dt) != "bfloat16":
            return f"'{name}' is {ot.dtype_type_string(dt) if dt != object else 'tensor(string)'}, a type TensorRT has not"
    return ""


def static_refusal(node, graph, exclude) -> str:
    if node.op_type in exclude:
        return f"{node.op_type} is in trt_op_types_to_exclude"
    if node.subgraphs:
        return f"{node.op_type} holds subgraphs: control flow runs on the host in ortlite"
    return _dtype_refusal(node, graph)


class Query:
    """Support queries on candidate sets; ``refused`` collects {id(node): reason}."""

    def __init__(self, prov, graph, limit):
        self.prov = prov
        self.graph = graph
        self.limit = limit
        self.calls = 0
        self.refused = {}
        self.exhausted = False
        self.digests = {}  # weight hashes, computed once for all the queries

    def _model(self, nodes):
        from ortlite.compiling.build import group_spec

        outs = [v.name for v in self.graph.outputs]
        spec = group_spec(self.graph, nodes, self.graph.initializers, outs, self.prov, "query", self.digests)
        return spec

    def ask(self, nodes):
        """The supported subsets of ``nodes`` (a list of node lists), refusing the rest."""
        if not nodes:
            return []
        if self.calls >= self.limit:
            self.exhausted = True
            return []
        self.calls += 1
        spec = self._model(nodes)
        if isinstance(spec, str):  # e.g. an input of unknown type: split the first node off and go on
            self.refused[id(nodes[0])] = f"TensorRT's parser needs typed inputs: {spec}"
            return self.ask(nodes[1:])
        parts, errors = self.prov.support_query(spec.model_bytes)
        if parts is None:  # the parser could not even load the model
            for n in nodes:
                self.refused[id(n)] = f"TensorRT's ONNX parser refused the group: {errors}"
            return []
        out = []
        covered = {i for idx, _ in parts for i in idx}
        for i, n in enumerate(nodes):  # nodes the parser cut out of every part: refused with its words
            if i not in covered:
                self.refused[id(n)] = f"TensorRT's ONNX parser: {errors.get(i) or 'left out of every part it returned'}"
        for idx, ok in parts:
            sub = [nodes[i] for i in idx if 0 <= i < len(nodes)]
            if not sub:
                continue
            if ok:
                out.append(sub)
            elif len(sub) < len(nodes):
                out.extend(self.ask(sub))
            else:  # no progress: split at the node the parser names, refuse it with its words
                bad = _named_node(errors, sub)
                reason = errors.get(bad, "") or "; ".join(errors.values()) or "the parser gave no reason"
                self.refused[id(sub[bad])] = f"TensorRT's ONNX parser: {reason}"
                out.extend(self.ask(sub[:bad] + sub[bad + 1:]) if bad < len(sub) else [])
        return out


def _named_node(errors, sub):
    """Index (in ``sub``) of the node the parser's errors name; the first one otherwise."""
    for k in errors:
        if isinstance(k, int) and 0 <= k < len(sub):
            return k
    return 0


def claim(prov, graph, nodes):
    exclude = prov.trt_options.op_types_to_exclude
    cands, refused = [], {}
    for n in nodes:
        why = static_refusal(n, graph, exclude)
        if why:
            refused[id(n)] = why
        else:
            cands.append(n)
    q = Query(prov, graph, prov.trt_options.max_partition_iterations)
    supported = q.ask(cands)
    refused.update(q.refused)
    if q.exhausted:
        why = (f"partitioning took more than trt_max_partition_iterations={q.limit} parser queries; "
               "nothing runs on TensorRT (raise the option)")
        log.warning("TensorrtExecutionProvider: %s", why)
        return [], {id(n): why for n in nodes}
    claimed_ids = {id(n) for part in supported for n in part}
    claimed = [n for n in cands if id(n) in claimed_ids]
    for n in cands:
        if id(n) not in claimed_ids and id(n) not in refused:
            refused[id(n)] = "TensorRT's parser left it out of every supported part"
    return connected_groups(claimed), refused
