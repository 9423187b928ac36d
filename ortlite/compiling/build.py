"""Compiling the groups of a placement, and fusing each into one node.

For each group a compiling provider claimed: a ``GroupSpec`` (the group as a standalone ONNX
model with its weights), then an engine from the engine cache or the provider's compiler, then
a runner. A group that cannot be specified or compiled is reported with a
``ProviderFallbackWarning`` naming the group and the reason, its nodes are excluded from that
provider and placement runs again (the next providers take them). When every group has an
engine, each group's nodes are replaced in the graph by one fused node: onnxruntime's
``com.microsoft`` ``EPContext`` op, whose kernel is the runner, so a saved optimized model
holds EP-context nodes (``ortlite.compiling.epcontext``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from ortlite.compiling.cache import EngineCache, cache_key
from ortlite.compiling.groups import is_epcontext
from ortlite.compiling.spec import GroupSpec, TensorSpec
from ortlite.errors import ProviderFallbackWarning

log = logging.getLogger("ortlite")


@dataclass
class EngineBuild:
    """One compiled group of a session (``InferenceSession.engine_builds``)."""

    group: str
    provider: str
    nodes: int
    seconds: float  # building or loading the engine
    cache: str  # 'hit', 'miss' (built and stored), 'rebuilt' (a bad entry replaced), 'off', 'epcontext'
    path: str | None = None  # the cache entry's blob, where there is one
    key: str = ""


@dataclass
class CompiledKernel:
    """The 'kernel' of a fused group: binding returns the provider's runner."""

    runner: object
    spec: GroupSpec
    provider: object
    key: str
    fields: dict
    engine: object = None
    entry: str | None = None  # cache blob path, when stored
    host_inputs: tuple = ()
    members: list = field(default_factory=list)  # the Placements of the group's original nodes

    @property
    def where(self):
        return f"{self.provider.name} engine for {self.spec.name}"

    def bind(self, ctx, attrs):
        return self.runner


class _Progress:
    """A one-line progress bar on a terminal for builds that report progress."""

    def __init__(self, label):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, fraction):
        if not self.tty:
            return
        pct = int(max(0.0, min(1.0, float(fraction))) * 100)
        if pct == self.last:
            return
        self.last = pct
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        sys.stderr.write(f"\rbuilding {self.label} [{bar}] {pct:3d}%")
        if pct >= 100:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self):
        if self.tty and 0 <= self.last < 100:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _tensor_spec(graph, name):
    vi = graph.info(name) if name else None
    if vi is None:
        return TensorSpec(name, None, None), None
    return TensorSpec(name, vi.dtype, None if vi.shape is None else list(vi.shape)), vi


def group_spec(graph, nodes, constants, output_names, prov, gname, digests=None):
    """The GroupSpec of ``nodes`` (in graph order), or a string saying why there is none."""
    members = {id(n) for n in nodes}
    produced = {o for n in nodes for o in n.outputs if o}
    inputs, weights, seen = [], [], set()
    for n in nodes:
        for name in list(n.inputs) + list(n.implicit_inputs):
            if not name or name in produced or name in seen:
                continue
            seen.add(name)
            c = constants.get(name)
            if c is not None and isinstance(c, np.ndarray):
                weights.append(name)
            else:
                inputs.append(name)
    read_outside = set(output_names)
    for n in graph.nodes:
        if id(n) not in members:
            read_outside.update(x for x in list(n.inputs) + list(n.implicit_inputs) if x)
    outputs = [o for n in nodes for o in n.outputs if o and o in read_outside]
    if not outputs:
        return "none of its values is read outside it"
    in_specs, out_specs, in_vis, out_vis = [], [], [], []
    for name in inputs:
        ts, vi = _tensor_spec(graph, name)
        if vi is None or vi.type_proto is None or vi.kind not in (None, "tensor"):
            return f"the type of its input '{name}' is not known (shape inference could not tell)"
        in_specs.append(ts)
        p = onnx.ValueInfoProto(name=name)
        p.type.CopyFrom(vi.type_proto)
        in_vis.append(p)
    for name in outputs:
        ts, vi = _tensor_spec(graph, name)
        out_specs.append(ts)
        p = onnx.ValueInfoProto(name=name)
        if vi is not None and vi.type_proto is not None:
            p.type.CopyFrom(vi.type_proto)
        out_vis.append(p)
    from ortlite.optimizer.export import _tensor, node_to_proto

    node_protos = [node_to_proto(n) for n in nodes]
    domains = {n.domain for n in nodes}
    opsets = [helper.make_opsetid(d, graph.opsets.get(d, 1)) for d in sorted(domains | {""})]
    if digests is not None:
        prefetch_digests([constants[w] for w in weights], digests)
    h = hashlib.sha256(b"ortlite-group-1")
    for part in node_protos + in_vis + out_vis + opsets:
        h.update(part.SerializeToString(deterministic=True))
    for w in weights:
        h.update(f"{w}|{constants[w].dtype}|{constants[w].shape}|".encode())
        h.update(digest(constants[w], digests))

    values = {w: constants[w] for w in weights}  # the plan may drop them from ``constants`` later

    def make_model():
        inits = [_tensor(w, values[w]) for w in weights]
        gp = helper.make_graph(node_protos, "ortlite_group", in_vis, out_vis, initializer=inits)
        model = helper.make_model(gp, opset_imports=opsets, producer_name="ortlite")
        try:
            model.ir_version = max(7, helper.find_min_ir_version_for(opsets, ignore_unknown=True))
        except Exception:  # noqa: BLE001
            model.ir_version = onnx.IR_VERSION
        return model

    return GroupSpec(gname, prov.name, None, in_specs, out_specs, [n.name for n in nodes],
                     [n.op_type for n in nodes], fingerprint=h.hexdigest(), make_model=make_model,
                     weight_names=weights)


_CHUNK = 8 << 20


def _array_bytes(arr):
    if arr.dtype == object:
        from ortlite.optimizer.export import _tensor

        return _tensor("w", arr).SerializeToString()
    a = np.ascontiguousarray(arr)
    return memoryview(a.reshape(-1).view(np.uint8)) if a.size else b""


def digest(arr, memo=None) -> bytes:
    """SHA-256 of an array's bytes (a SHA-256 over the SHA-256s of its 8 MiB chunks, so big
    weights hash on every core: hashlib releases the GIL), remembered in ``memo`` by identity for
    the session (the array is kept alive there). ``prefetch_digests`` fills ``memo`` in parallel."""
    if memo is not None and id(arr) in memo:
        return memo[id(arr)][1]
    data = _array_bytes(arr)
    d = _combine([hashlib.sha256(data[k:k + _CHUNK]).digest() for k in range(0, max(len(data), 1), _CHUNK)])
    if memo is not None:
        memo[id(arr)] = (arr, d)
    return d


def _combine(parts):
    return hashlib.sha256(b"".join(parts)).digest()


def prefetch_digests(arrays, memo):
    """Digest every array of ``arrays`` not in ``memo`` yet, chunks spread over the cores."""
    todo = [a for a in {id(a): a for a in arrays}.values() if id(a) not in memo]
    total = sum(a.nbytes for a in todo if a.dtype != object)
    if total < (32 << 20) or (os.cpu_count() or 1) < 2:
        for a in todo:
            digest(a, memo)
        return
    import concurrent.futures

    jobs = []
    for a in todo:
        data = _array_bytes(a)
        jobs.append((a, [data[k:k + _CHUNK] for k in range(0, max(len(data), 1), _CHUNK)]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futs = [(a, [pool.submit(lambda c: hashlib.sha256(c).digest(), c) for c in chunks]) for a, chunks in jobs]
        for a, fs in futs:
            memo[id(a)] = (a, _combine([f.result() for f in fs]))


class Builder:
    """Builds (or loads) engines for one session; remembers what it built by cache key so a
    placement pass run again after a fallback compiles nothing twice."""

    def __init__(self, model_dir=None):
        self.model_dir = model_dir
        self.builds: list[EngineBuild] = []
        self._made: dict[str, CompiledKernel] = {}
        self.digests: dict = {}  # id(weight array) -> (array, SHA-256), shared with the claim cache

    def build(self, prov, spec) -> CompiledKernel:
        key, fields = cache_key(prov, spec)
        if key in self._made:
            return self._made[key]
        cache_dir = prov.engine_cache_dir
        cache = EngineCache(cache_dir) if cache_dir else None
        prefix = prov.name.replace("ExecutionProvider", "").lower()
        engine, status, entry = None, "off", None
        t0 = time.perf_counter()
        if cache is not None:
            entry = cache.paths(prefix, key)[0]
            existed = os.path.exists(entry)
            got = cache.load(prefix, key, fields)
            if got is not None:
                try:
                    engine = prov.deserialize(got.blob, spec)
                    status = "hit"
                except Exception as e:  # noqa: BLE001 - a stale or foreign blob: rebuild it
                    log.warning("engine cache entry %s could not be loaded by %s (%s: %s): deleted, rebuilding",
                                entry, prov.name, type(e).__name__, e)
                    engine = None
                problem = got.verify()
                if problem is not None and engine is not None:
                    log.warning("engine cache entry %s: %s; deleted, rebuilding", entry, problem)
                    engine = None
                if engine is None:
                    cache.delete(prefix, key)
            status = status if engine is not None else ("rebuilt" if existed else "miss")
        if engine is None:
            where = f"engine cache {cache.directory}" if cache is not None else "no engine cache"
            log.info("%s: building %s (%s)", prov.name, spec.describe(), where)
            progress = _Progress(spec.name)
            t_build = time.perf_counter()
            try:
                engine = prov.compile(spec, progress)
            finally:
                progress.close()
            build_s = time.perf_counter() - t_build
            log.info("%s: built %s in %.2f s", prov.name, spec.name, build_s)
            if cache is not None:
                try:
                    blob = prov.serialize(engine)
                    if blob is not None:
                        entry = cache.store(prefix, key, fields, blob, build_s,
                                            {"group": spec.name, "nodes": len(spec.node_names),
                                             "inputs": _io_json(spec.inputs), "outputs": _io_json(spec.outputs)})
                    else:
                        entry = None
                except Exception as e:  # noqa: BLE001 - the engine works; only caching failed
                    log.warning("%s: could not store the engine of %s in %s: %s", prov.name, spec.name,
                                cache.directory, e)
                    entry = None
        else:
            log.info("%s: %s loaded from the engine cache (%s)", prov.name, spec.name, entry)
        runner = prov.make_runner(engine, spec)
        ck = CompiledKernel(runner, spec, prov, key, fields, engine, entry if status != "off" else None)
        self.builds.append(EngineBuild(spec.name, prov.name, len(spec.node_names),
                                       time.perf_counter() - t0, status, ck.entry, key))
        self._made[key] = ck
        return ck


def _io_json(ts):
    return [{"name": t.name, "dtype": None if t.dtype is None else str(t.dtype),
             "shape": None if t.shape is None else [d if isinstance(d, int) else (str(d) if d else None)
                                                    for d in t.shape]} for t in ts]


def compile_groups(graph, placements, constants, output_names, builder, reassign):
    """Compile every group in ``placements``; fall back on failures (placing again through
    ``reassign(excluded)``); then fuse each group into one EPContext node. Returns the final
    placements, in graph order."""
    from ortlite.compiling.epcontext import load_epcontext

    excluded = {}
    while True:
        groups = {}
        for p in placements:
            if p.group is not None:
                groups.setdefault(p.group, []).append(p)
        if not groups:
            return placements
        kernels, failed = {}, False
        for gname, members in groups.items():
            prov = members[0].provider
            nodes = [m.node for m in members]
            if len(nodes) == 1 and is_epcontext(nodes[0]):
                kernels[gname] = load_epcontext(nodes[0], prov, builder)  # raises: nothing to fall back to
                continue
            spec = group_spec(graph, nodes, constants, output_names, prov, gname, builder.digests)
            if isinstance(spec, str):
                reason = spec
            else:
                try:
                    kernels[gname] = builder.build(prov, spec)
                    continue
                except Exception as e:  # noqa: BLE001 - any compiler error falls back, never crashes
                    reason = f"{type(e).__name__}: {_first_lines(str(e))}"
            ops = sorted({n.op_type for n in nodes})
            msg = (f"{prov.name} could not compile group '{gname}' of {len(nodes)} node(s) "
                   f"(ops: {', '.join(ops[:10])}{', ...' if len(ops) > 10 else ''}): {reason}; "
                   "its nodes run on the next providers")
            warnings.warn(msg, ProviderFallbackWarning, stacklevel=4)
            log.warning(msg)
            for n in nodes:
                excluded.setdefault(id(n), {})[prov.name] = f"compiling its group failed: {reason}"
            failed = True
        if failed:
            placements = reassign(excluded)
            continue
        return _fuse(graph, placements, groups, kernels)


def _first_lines(text, n=6):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    out = " | ".join(lines[:n])
    return out if len(lines) <= n else out + " | ..."


def _fuse(graph, placements, groups, kernels):
    from ortlite.ir import Node
    from ortlite.partition import Placement

    fused_of = {}
    for gname, members in groups.items():
        ck = kernels[gname]
        ck.members = members
        first = members[0]
        if len(members) == 1 and is_epcontext(first.node):
            node = first.node
        else:
            node = Node("EPContext", "com.microsoft", gname, [t.name for t in ck.spec.inputs],
                        [t.name for t in ck.spec.outputs], attrs={}, opset=1)
            node.attrs = {"main_context": 1, "embed_mode": 0, "source": first.provider.name,
                          "partition_name": gname}
            node.attr_protos = {k: helper.make_attribute(k, v) for k, v in node.attrs.items()}
            node.provider = first.provider.name
        fused_of[gname] = Placement(node, first.provider, ck, first.refused, group=gname)
    member_ids = {id(m.node): m.group for ms in groups.values() for m in ms}
    new_nodes, done = [], set()
    for n in graph.nodes:
        g = member_ids.get(id(n))
        if g is None:
            new_nodes.append(n)
        elif g not in done:
            done.add(g)
            new_nodes.append(fused_of[g].node)
    graph.nodes[:] = new_nodes
    if "com.microsoft" not in graph.opsets:
        graph.opsets["com.microsoft"] = 1
    graph.toposort()
    by_node = {id(p.node): p for p in placements if p.group is None}
    by_node.update({id(p.node): p for p in fused_of.values()})
    return [by_node[id(n)] for n in graph.nodes]


def engine_inputs_outputs(meta):
    """TensorSpecs from a cache sidecar's 'inputs' / 'outputs' lists."""
    def ts(d):
        return TensorSpec(d["name"], None if d.get("dtype") is None else np.dtype(d["dtype"]), d.get("shape"))
    return [ts(d) for d in meta.get("inputs", [])], [ts(d) for d in meta.get("outputs", [])]


__all__ = ["Builder", "CompiledKernel", "EngineBuild", "compile_groups", "group_spec"]
