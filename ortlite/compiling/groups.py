"""Claims of compiling providers, made safe by the core.

A compiling provider proposes groups of nodes; before any group is compiled the core

* keeps EP-context nodes (a saved engine) for the provider that made them;
* on a device provider, drops from a group the nodes whose outputs only feed host-only inputs
  outside it (shape math stays on the host: no shape is read back from the device);
* splits a group that would form a cycle with the nodes outside it (a path leaving the group
  and coming back) into pieces that do not;
* drops groups smaller than the provider's minimum size;

and names every node it does not group with the reason (the provider's, or the core's).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from ortlite import registry

log = logging.getLogger("ortlite")

EPCONTEXT = ("com.microsoft", "EPContext")


def is_epcontext(node) -> bool:
    return (node.domain, node.op_type) == EPCONTEXT


def epcontext_source(node) -> str:
    return str(node.attrs.get("source", "") or "")


@dataclass
class ClaimMemo:
    """What claims need from the session besides the graph: every constant (folded ones included), the
    weight digests computed so far, and the answers given per unchanged candidate set (a placement run
    again after the extended fusions or a compile fallback asks no compiler twice)."""

    constants: dict
    digests: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)


def claim(prov, graph, cands, memo=None):
    """([(group name, [nodes])], {id(node): reason}) for ``prov`` over candidate nodes ``cands``."""
    key = (prov.name, tuple(id(n) for n in cands))
    if memo is not None and key in memo.answers:
        return memo.answers[key][1]
    refused = {}
    saved = [n for n in cands if is_epcontext(n)]
    offer = [n for n in cands if not is_epcontext(n)]
    groups = []
    for n in saved:
        if epcontext_source(n) == prov.name:
            groups.append([n])
        else:
            refused[id(n)] = f"EPContext node made by '{epcontext_source(n) or '?'}', not by {prov.name}"
    if offer:
        proposed, why = _claim_cached(prov, graph, offer, memo)
        refused.update(why)
        offered = {id(n) for n in offer}
        seen = set()
        for g in proposed:
            g = [n for n in g if id(n) in offered and id(n) not in seen]
            seen.update(id(n) for n in g)
            if g:
                groups.append(g)
        for n in offer:
            if id(n) not in seen and id(n) not in refused:
                refused[id(n)] = f"{prov.name} did not claim it"
    groups = make_safe(prov, graph, groups, refused)
    base = _ident(f"{prov.name.replace('ExecutionProvider', '')}_{graph.name or 'graph'}")
    named = [(f"{base}_{k}", g) for k, g in enumerate(groups)]
    result = (named, refused)
    if memo is not None:
        memo.answers[key] = (list(cands), result)  # the nodes stay alive so their ids stay unique
    return result


class GraphView:
    """The graph as a compiling provider sees it: ``initializers`` holds every constant the
    session knows (initializers and values the optimizer folded), not the values fed at run time."""

    def __init__(self, graph, constants):
        self._graph = graph
        self.initializers = constants

    def __getattr__(self, name):
        return getattr(self._graph, name)


def _ask(prov, graph, offer, constants=None):
    try:
        view = graph if constants is None else GraphView(graph, constants)
        return prov.claim_groups(view, offer)
    except Exception as e:  # noqa: BLE001 - a provider's query failing refuses its candidates
        return [], {id(n): f"its capability query failed: {type(e).__name__}: {e}" for n in offer}


def _claim_cached(prov, graph, offer, memo):
    """The provider's claim over ``offer``; with an engine cache directory, its answer is kept
    there (keyed by a SHA-256 over the candidates' nodes, input types and weights, and the
    provider's key fields), so a session over a warm cache does not query the compiler again."""
    cache_dir = prov.engine_cache_dir
    constants = memo.constants if memo is not None else None
    if not cache_dir:
        return _ask(prov, graph, offer, constants)
    import json
    import os

    from ortlite._version import __version__
    from ortlite.compiling.cache import _atomic_write, _jsonable

    key = _candidates_key(prov, graph, offer, memo.digests if memo is not None else None,
                          constants if constants is not None else graph.initializers)
    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)),
                        f"{prov.name.replace('ExecutionProvider', '').lower()}_claims_{key[:40]}.json")
    fields = _jsonable({"ortlite": __version__, "candidates": len(offer), **prov.cache_key_fields()})
    try:
        with open(path, "rb") as f:
            saved = json.loads(f.read().decode())
        if saved.get("key") == key and saved.get("fields") == fields:
            idx = [int(i) for g in saved["groups"] for i in g] + [int(i) for i in saved["refused"]]
            if len(set(idx)) != len(idx) or not all(0 <= i < len(offer) for i in idx):
                raise ValueError("its node indices do not fit the candidates")
            groups = [[offer[int(i)] for i in g] for g in saved["groups"]]
            why = {id(offer[int(i)]): str(r) for i, r in saved["refused"].items()}
            return groups, why
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        log.warning("claim cache entry %s is unusable (%s): the provider is asked again", path, e)
    groups, why = _ask(prov, graph, offer, constants)
    index = {id(n): i for i, n in enumerate(offer)}
    record = {"key": key, "fields": fields,
              "groups": [[index[id(n)] for n in g if id(n) in index] for g in groups],
              "refused": {str(index[k]): r for k, r in why.items() if k in index}}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _atomic_write(path, json.dumps(record).encode())
    except OSError as e:
        log.warning("could not write the claim cache entry %s: %s", path, e)
    return groups, why


def _candidates_key(prov, graph, offer, digests, constants):
    import hashlib

    import numpy as np

    from ortlite.compiling.build import digest, prefetch_digests
    from ortlite.optimizer.export import node_to_proto

    if digests is not None:
        prefetch_digests([constants[i] for n in offer for i in n.inputs
                          if i and isinstance(constants.get(i), np.ndarray)], digests)
    h = hashlib.sha256(b"ortlite-claims-1")
    h.update(prov.name.encode())
    produced = {o for n in offer for o in n.outputs if o}
    seen = set()
    for n in offer:
        h.update(node_to_proto(n).SerializeToString(deterministic=True))
        for name in list(n.inputs) + list(n.implicit_inputs):
            if not name or name in produced or name in seen:
                continue
            seen.add(name)
            w = constants.get(name)
            if isinstance(w, np.ndarray):
                h.update(f"w:{name}|{w.dtype}|{w.shape}|".encode())
                h.update(digest(w, digests))
                continue
            vi = graph.info(name)
            tp = vi.type_proto if vi is not None else None
            h.update(f"i:{name}|".encode() + (tp.SerializeToString(deterministic=True) if tp is not None else b"?"))
    return h.hexdigest()


def _ident(s):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def graph_index(graph):
    """(position of each node by id, producer of each value, [(reader, input index)] of each value),
    implicit (outer-scope) reads of subgraphs included."""
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    producer = {o: n for n in graph.nodes for o in n.outputs if o}
    readers = {}
    for n in graph.nodes:
        for k, name in enumerate(list(n.inputs) + list(n.implicit_inputs)):
            if name:
                readers.setdefault(name, []).append((n, k))
    return order, producer, readers


def make_safe(prov, graph, groups, refused) -> list:
    """The groups of ``prov`` after the core's rules; ``refused`` gains a reason per dropped node."""
    order, producer, readers = graph_index(graph)
    out = []
    for g in groups:
        if len(g) == 1 and is_epcontext(g[0]):
            out.append(g)
            continue
        if prov.device_type != "cpu":
            g = _drop_host_shape_math(g, readers, refused, prov)
        for piece in acyclic_pieces(g, producer, readers, order):
            out.append(sorted(piece, key=lambda n: order[id(n)]))
    size = prov.min_group_size
    kept = []
    for g in out:
        if len(g) < size and not (len(g) == 1 and is_epcontext(g[0])):
            for n in g:
                refused[id(n)] = (f"its group of {len(g)} node(s) is smaller than {prov.name}'s minimum "
                                  f"of {size} ({prov.min_group_size_option or 'min group size'})")
            continue
        kept.append(g)
    return kept


def _drop_host_shape_math(g, readers, refused, prov):
    """Remove (repeatedly) group nodes whose every output is read, outside the group, only
    through host-only inputs (Reshape's shape...) or by nodes removed before them: they stay on
    the host with the CPU kernels, so a Shape -> Gather -> Concat chain leaves whole."""
    members = {id(n) for n in g}
    dropped = set()  # nodes already dropped: their readers' needs are host needs too
    changed = True
    while changed:
        changed = False
        for n in g:
            if id(n) not in members:
                continue
            outs = [o for o in n.outputs if o]
            rs = [r for o in outs for r in readers.get(o, [])]
            if not rs or any(id(r) in members for r, _ in rs):
                continue
            if all(id(r) in dropped or k in _host_inputs_of(r) for r, k in rs):
                members.discard(id(n))
                dropped.add(id(n))
                refused[id(n)] = ("kept on the host: it computes values that host-only inputs (shapes, axes) "
                                  f"outside {prov.name}'s group read")
                changed = True
    return [n for n in g if id(n) in members]


def _host_inputs_of(node):
    kd = registry.lookup(node.op_type, node.domain, node.opset, "cpu")
    return kd.host_inputs if kd is not None else ()


def acyclic_pieces(g, producer, readers, order):
    """Split ``g`` so no piece has a path that leaves it and comes back (fusing such a piece
    into one node would make a cycle). The group nodes reachable from outside nodes that
    depend on the group form the 'late' part, split again; the rest is safe."""

    def readers_of(n):
        return [r for o in n.outputs if o for r, _ in readers.get(o, [])]

    pieces = []
    todo = list(g)
    while todo:
        members = {id(n) for n in todo}
        tainted = {}  # outside nodes reachable from the group
        stack = [r for n in todo for r in readers_of(n) if id(r) not in members]
        while stack:
            n = stack.pop()
            if id(n) not in tainted:
                tainted[id(n)] = n
                stack.extend(r for r in readers_of(n) if id(r) not in members)
        late = set()  # group nodes downstream of a tainted node
        stack = [r for t in tainted.values() for r in readers_of(t) if id(r) in members]
        while stack:
            n = stack.pop()
            if id(n) not in late:
                late.add(id(n))
                stack.extend(r for r in readers_of(n) if id(r) in members)
        early = [n for n in todo if id(n) not in late]
        if not early:  # impossible in a DAG; never loop
            pieces.extend([n] for n in todo)
            break
        pieces.append(early)
        todo = [n for n in todo if id(n) in late]
    return pieces


def connected_groups(claimed):
    """For compiling providers: maximal sets of ``claimed`` connected through the values they exchange, each in the given
    (topological) order, ordered by their first node."""
    parent = list(range(len(claimed)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    producer = {}
    for k, n in enumerate(claimed):
        for o in n.outputs:
            if o:
                producer[o] = k
    for k, n in enumerate(claimed):
        for i in n.inputs:
            p = producer.get(i)
            if p is not None:
                a, b = find(k), find(p)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list] = {}
    for k, n in enumerate(claimed):
        groups.setdefault(find(k), []).append(n)
    return [groups[r] for r in sorted(groups)]
