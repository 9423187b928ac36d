"""Layer-wise comparison of a model on two runtimes (Polygraphy-style): ``ortlite compare``.

Every output of every node of the main graph is made a graph output (outputs without a
type are fine for ortlite and onnxruntime), the model runs on each provider at
ORT_DISABLE_ALL by default (so no optimization can fuse an intermediate away), and the
values are compared node by node in topological order against a reference run. The first
node whose outputs differ beyond ``atol + rtol * |reference|`` is where a broken kernel
shows up; nodes after it usually differ only because their inputs did (``origin`` says
whether a mismatching node's own inputs still agreed).

    from ortlite.compare import compare
    result = compare("model.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    print(result.format()); result.ok
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx

from ortlite.loader import normalize_dims

LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


# ---------------------------------------------------------------------------------------
# value comparison (shared with ortlite.bench)
# ---------------------------------------------------------------------------------------
@dataclass
class Diff:
    """How one value differs from its reference."""

    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""

    def to_dict(self):
        return {"max_abs_err": _num(self.max_abs), "max_rel_err": _num(self.max_rel), "pass": self.ok,
                **({"note": self.note} if self.note else {})}


def _num(x):
    """JSON-safe float (inf / nan as strings)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


def tensor_diff(a, b, atol: float, rtol: float) -> Diff:
    """Max abs and rel error of ``a`` against the reference ``b``; ok when every element has
    ``|a - b| <= atol + rtol * |b|`` (numpy's isclose; NaN equals NaN, same-signed infs are equal).

    The relative error is taken over the reference's non-zero elements (a zero reference has
    only an absolute error). Sequences compare element by element; other non-tensors by equality.
    """
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)) or len(a) != len(b):
            return Diff(math.inf, math.inf, False, "sequence lengths differ")
        diffs = [tensor_diff(x, y, atol, rtol) for x, y in zip(a, b)]
        if not diffs:
            return Diff(0.0, 0.0, True)
        return Diff(max(d.max_abs for d in diffs), max(d.max_rel for d in diffs), all(d.ok for d in diffs))
    if a is None or b is None or isinstance(a, dict) or isinstance(b, dict):
        same = (a is None and b is None) or a == b
        return Diff(0.0 if same else math.inf, 0.0 if same else math.inf, bool(same))
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return Diff(math.inf, math.inf, False, f"shape {list(a.shape)} vs {list(b.shape)}")
    if a.size == 0:
        return Diff(0.0, 0.0, True)
    if a.dtype.kind not in "biufc" or b.dtype.kind not in "biufc":
        same = bool(np.array_equal(a, b))
        return Diff(0.0 if same else math.inf, 0.0 if same else math.inf, same)
    x = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    y = b.astype(np.complex128 if b.dtype.kind == "c" else np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        equal = (x == y) | (np.isnan(x) & np.isnan(y))
        err = np.where(equal, 0.0, np.abs(x - y))
        err = np.where(np.isnan(err), np.inf, err)  # NaN on one side only
        ref = np.abs(y)
        nz = (ref > 0) & np.isfinite(ref)
        rel = float(np.max(err[nz] / ref[nz])) if nz.any() else (0.0 if not err.any() else math.inf)
        ok = bool(np.all(err <= atol + rtol * np.where(np.isfinite(ref), ref, 0.0)))
    return Diff(float(np.max(err)), rel, ok)


# ---------------------------------------------------------------------------------------
# the model with every intermediate exposed
# ---------------------------------------------------------------------------------------
def expose_intermediates(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list]:
    """A copy of ``model`` whose graph outputs include every node output of the main graph.

    Returns (model, [(node index, node) in topological order]). Outputs get the types shape
    inference finds where it finds them and none otherwise.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    order = _toposort(g)
    types = {}
    try:
        light = onnx.ModelProto()
        light.CopyFrom(m)
        for t in light.graph.initializer:  # inference needs no weight data
            t.ClearField("raw_data")
            for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                t.ClearField(f)
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
        normalize_dims(light)  # -1 dims are unknown, not sizes to compute with
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False)
        types = {vi.name: vi for vi in inferred.graph.value_info}
    except Exception:  # noqa: BLE001 - untyped outputs work too
        pass
    taken = {o.name for o in g.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
    for _, node in order:
        for o in node.output:
            if o and o not in taken:
                vi = onnx.ValueInfoProto()
                if o in types and types[o].type.WhichOneof("value"):
                    vi.CopyFrom(types[o])
                else:
                    vi.name = o
                g.output.append(vi)
                taken.add(o)
    return m, order


def _toposort(g):
    produced = {}
    for k, n in enumerate(g.node):
        for o in n.output:
            if o:
                produced[o] = k
    deps = {k: {produced[i] for i in n.input if i in produced and produced[i] != k} for k, n in enumerate(g.node)}
    done, order = set(), []
    pending = list(range(len(g.node)))
    while pending:
        rest = []
        for k in pending:
            if deps[k] <= done:
                order.append(k)
                done.add(k)
            else:
                rest.append(k)
        if len(rest) == len(pending):  # a cycle or a missing producer: keep file order
            order.extend(rest)
            break
        pending = rest
    return [(k, g.node[k]) for k in order]


def node_label(index, node):
    return node.name or f"{node.op_type}_{index}"


# ---------------------------------------------------------------------------------------
# result objects
# ---------------------------------------------------------------------------------------
@dataclass
class OutputComparison:
    name: str
    shape: list
    diff: Diff

    def to_dict(self):
        return {"name": self.name, "shape": self.shape, **self.diff.to_dict()}


@dataclass
class NodeComparison:
    """One node of the main graph, compared on one run against the reference."""

    index: int  # position in topological order
    name: str
    op_type: str
    domain: str
    provider: str  # where the compared run placed it (ortlite), or the runtime's name
    reference_provider: str
    outputs: list  # OutputComparison
    origin: bool = True  # its inputs all agreed: the mismatch starts here

    @property
    def ok(self):
        return all(o.diff.ok for o in self.outputs)

    @property
    def max_abs(self):
        return max((o.diff.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self):
        return max((o.diff.max_rel for o in self.outputs), default=0.0)

    def to_dict(self):
        return {"index": self.index, "name": self.name, "op_type": self.op_type, "domain": self.domain,
                "provider": self.provider, "reference_provider": self.reference_provider, "pass": self.ok,
                "origin": self.origin, "max_abs_err": _num(self.max_abs), "max_rel_err": _num(self.max_rel),
                "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class RunComparison:
    """One run (a provider or onnxruntime) against the reference, node by node."""

    label: str
    nodes: list  # NodeComparison, topological order

    @property
    def mismatches(self):
        return [n for n in self.nodes if not n.ok]

    @property
    def first_mismatch(self):
        m = self.mismatches
        return m[0] if m else None

    @property
    def ok(self):
        return not self.mismatches


@dataclass
class CompareResult:
    model: str
    reference: str
    runs: list  # RunComparison
    atol: float
    rtol: float
    level: str
    compared_nodes: int
    compared_values: int
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return all(r.ok for r in self.runs)

    @property
    def first_mismatch(self):
        for r in self.runs:
            if r.first_mismatch is not None:
                return r.first_mismatch
        return None

    def summary(self) -> str:
        lines = []
        for r in self.runs:
            head = (f"{r.label} vs {self.reference}: {self.compared_values} values of "
                    f"{self.compared_nodes} nodes, atol={self.atol:g} rtol={self.rtol:g}, level={self.level}: ")
            f = r.first_mismatch
            if f is None:
                lines.append(head + "all match")
            else:
                starts = sum(n.origin for n in r.mismatches)
                lines.append(head + f"{len(r.mismatches)} node(s) differ ({starts} where a difference starts, "
                             f"their inputs agreeing); first: {f.op_type} '{f.name}' on "
                             f"{f.provider} (max abs err {f.max_abs:.3g}, max rel err {f.max_rel:.3g})")
        return "\n".join(lines)

    def format(self, top: int = 10) -> str:
        lines = [f"model: {self.model}", f"reference: {self.reference}"]
        for n in self.notes:
            lines.append(f"note: {n}")
        for r in self.runs:
            lines.append("")
            lines.append(f"{r.label} vs {self.reference}:")
            bad = r.mismatches
            if not bad:
                lines.append(f"  no node output differs beyond atol={self.atol:g} rtol={self.rtol:g}")
                continue
            lines.append(f"  first {min(top, len(bad))} of {len(bad)} mismatching node(s), topological order:")
            lines.append(f"  {'#':>5s}  {'node':36s} {'op':18s} {'provider':28s} {'max abs err':>12s} "
                         f"{'max rel err':>12s}  origin")
            for n in bad[:top]:
                lines.append(f"  {n.index:5d}  {n.name[:36]:36s} {n.op_type[:18]:18s} {n.provider[:28]:28s} "
                             f"{n.max_abs:12.4g} {n.max_rel:12.4g}  {'yes' if n.origin else 'no (inputs differ)'}")
                for o in n.outputs:
                    if not o.diff.ok:
                        extra = f" ({o.diff.note})" if o.diff.note else ""
                        lines.append(f"         output {o.name} {o.shape}: abs {o.diff.max_abs:.4g}, "
                                     f"rel {o.diff.max_rel:.4g}{extra}")
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self):
        return {"model": self.model, "reference": self.reference, "atol": self.atol, "rtol": self.rtol,
                "level": self.level, "ok": self.ok, "compared_nodes": self.compared_nodes,
                "compared_values": self.compared_values, "notes": list(self.notes),
                "runs": [{"label": r.label, "ok": r.ok, "mismatches": len(r.mismatches),
                          "nodes": [n.to_dict() for n in r.nodes]} for r in self.runs]}


# ---------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------
@dataclass
class _Run:
    label: str
    values: dict  # output name -> value
    where: dict  # output name -> provider


class quiet_placement_log:
    """Hold the 'ortlite' logger's placement warnings back while sessions are made (the
    caller reports placement itself); nothing changes when INFO logging is on (-v)."""

    def __enter__(self):
        import logging

        self._log = logging.getLogger("ortlite")
        self._level = self._log.level
        if not self._log.isEnabledFor(logging.INFO):
            self._log.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self._log.setLevel(self._level)
        return False


def _short(p):
    return p[: -len("ExecutionProvider")] if p.endswith("ExecutionProvider") else p


def _ortlite_run(model_bytes, provider, feeds, level):
    import ortlite
    from ortlite.providers import availability

    ok, why = availability(provider)
    if not ok:
        raise ValueError(f"{provider} is not available here: {why}")
    so = ortlite.SessionOptions()
    so.graph_optimization_level = LEVELS[level]
    with warnings.catch_warnings(), quiet_placement_log():
        warnings.simplefilter("ignore")
        sess = ortlite.InferenceSession(model_bytes, so, providers=[provider])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, feeds)))
    where = {}
    for pl in getattr(sess, "_placements", []):
        for o in pl.node.outputs:
            where[o] = pl.provider.name
    return _Run(f"ortlite {provider}", values, where)


def _onnxruntime_run(model_bytes, feeds, level):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, feeds)))
    label = f"onnxruntime {ort.__version__} CPUExecutionProvider"
    return _Run(label, values, {n: "onnxruntime CPU" for n in names})


def compare(model, providers=None, *, onnxruntime=False, feeds=None, atol=1e-4, rtol=1e-3, level="disable",
            label=None) -> CompareResult:
    """Run ``model`` with every intermediate exposed on each of ``providers`` (ortlite) and,
    with ``onnxruntime=True``, on onnxruntime's CPU provider; compare each run node by node
    with the reference: onnxruntime when asked for, else the last provider listed. With a
    single run, ortlite's CPU provider is added as the reference.

    ``model``: a path, bytes or ModelProto; ``feeds``: input name -> array (random when None).
    """
    from ortlite import zoo
    from ortlite.loader import load_model
    from ortlite.providers import canonical_name

    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    proto, _, where = load_model(model)
    label = label or where
    providers = [canonical_name(p) for p in (providers or ["CPUExecutionProvider"])]
    providers = list(dict.fromkeys(providers))
    if len(providers) + bool(onnxruntime) < 2 and "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
    if len(providers) + bool(onnxruntime) < 2:
        raise ValueError("compare needs two runs: name two providers (e.g. cuda,cpu) or add onnxruntime")
    exposed, order = expose_intermediates(proto)
    data = exposed.SerializeToString()
    if feeds is None:
        feeds = zoo.example_inputs(proto)
    runs = [_ortlite_run(data, p, feeds, level) for p in providers]
    notes = []
    if onnxruntime:
        try:
            import onnxruntime as _  # noqa: F401
        except ImportError as e:
            raise ValueError("onnxruntime is not installed (pip install 'ortlite[bench]')") from e
        runs.append(_onnxruntime_run(data, feeds, level))
    ref = runs[-1]
    tested = runs[:-1]
    inits = {t.name for t in proto.graph.initializer}
    graph_inputs = {i.name for i in proto.graph.input}
    result_runs = []
    n_values = 0
    n_nodes = 0
    for run in tested:
        nodes = []
        bad_values = set()
        n_values = 0
        n_nodes = 0
        for pos, (k, node) in enumerate(order):
            outs = []
            for o in node.output:
                if not o or o not in run.values or o not in ref.values:
                    continue
                a, b = run.values[o], ref.values[o]
                d = tensor_diff(a, b, atol, rtol)
                outs.append(OutputComparison(o, list(np.shape(b)) if hasattr(b, "shape") else [], d))
                if not d.ok:
                    bad_values.add(o)
            if not outs:
                continue
            n_nodes += 1
            n_values += len(outs)
            inputs = [i for i in node.input if i and i not in inits and i not in graph_inputs]
            origin = not any(i in bad_values for i in inputs)
            provider = run.where.get(node.output[0], run.label)
            ref_provider = ref.where.get(node.output[0], ref.label)
            nodes.append(NodeComparison(pos, node_label(k, node), node.op_type, node.domain, _short(provider),
                                        _short(ref_provider), outs, origin))
        result_runs.append(RunComparison(run.label, nodes))
    missing = [o.name for o in exposed.graph.output if o.name not in ref.values]
    if missing:
        notes.append(f"{len(missing)} value(s) not produced by the reference run, not compared")
    return CompareResult(label, ref.label, result_runs, atol, rtol, level, n_nodes, n_values, notes)
