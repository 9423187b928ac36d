"""Layer-wise comparison of a model on two runtimes (Polygraphy-style): ``ortlite compare``.

Every output of every node of the main graph is made a graph output (outputs without a
type are fine for ortlite and onnxruntime), the model runs on each provider at
ORT_DISABLE_ALL by default (so no optimization can fuse an intermediate away), and the
values are compared node by node in topological order against a reference run. Each tensor
is judged on an error statistic (``tensor_diff``, as Polygraphy's ``--check-error-stat``); the
first node whose outputs fail is where a broken kernel shows up; nodes after it usually fail
only because their inputs did (``origin`` says whether a failing node's inputs still agreed).

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

from ortlite.hints import install_hint
from ortlite.loader import normalize_dims

LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


# ---------------------------------------------------------------------------------------
# value comparison (shared with ortlite.bench)
# ---------------------------------------------------------------------------------------
ERROR_STATS = ("elemwise", "max", "mean", "median")
DEFAULT_ERROR_STAT = "elemwise"  # Polygraphy's default for --check-error-stat
_EPS = 2.220446049250313e-16  # added to |reference| in relative errors (Polygraphy's epsilon)


@dataclass
class Diff:
    """How one value differs from its reference: statistics of the absolute error |a - b| and of the
    relative error |a - b| / (|b| + eps) per element, ``mag`` = max abs error / max |b| (the error relative
    to the tensor's magnitude), and ``score``: the checked statistic over its tolerance (> 1 fails)."""

    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""
    mean_abs: float = 0.0
    median_abs: float = 0.0
    mean_rel: float = 0.0
    median_rel: float = 0.0
    mag: float = 0.0
    score: float = 0.0

    def to_dict(self):
        return {"max_abs_err": _num(self.max_abs), "max_rel_err": _num(self.max_rel),
                "mean_abs_err": _num(self.mean_abs), "median_abs_err": _num(self.median_abs),
                "mean_rel_err": _num(self.mean_rel), "median_rel_err": _num(self.median_rel),
                "max_abs_err_over_max_ref": _num(self.mag), "score": _num(self.score), "pass": self.ok,
                **({"note": self.note} if self.note else {})}


def _num(x):
    """JSON-safe float (inf / nan as strings)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _over(x, tol):
    """x in units of tol (inf when tol is 0 and x is not)."""
    return x / tol if tol > 0 else (math.inf if x > 0 else 0.0)


def _failed(ok=False, note=""):
    inf = math.inf
    return Diff(0.0 if ok else inf, 0.0 if ok else inf, ok, note, *(((0.0,) if ok else (inf,)) * 6))


def tensor_diff(a, b, atol: float, rtol: float, stat: str = DEFAULT_ERROR_STAT) -> Diff:
    """Compare ``a`` with the reference ``b`` on the error statistic ``stat``.

    ``elemwise``: an element fails when its error exceeds both ``atol`` and ``rtol * max|b|``: rtol is
    relative to the tensor's magnitude, not to the element (Polygraphy's elemwise), since a Conv's or
    MatMul's rounding error scales with the values summed, and elements that cancel to near zero would
    fail on ordinary float32 noise. ``max`` / ``mean`` / ``median`` (Polygraphy's): the tensor fails when
    that statistic of the absolute error exceeds ``atol`` and the same statistic of the per-element
    relative error exceeds ``rtol``. NaN equals NaN, same-signed infs are equal, NaN on one side is an
    infinite error. Sequences compare element by element; other non-tensors by equality.
    """
    if stat not in ERROR_STATS:
        raise ValueError(f"the error statistic must be one of {', '.join(ERROR_STATS)}, got {stat!r}")
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)) or len(a) != len(b):
            return _failed(note="sequence lengths differ")
        diffs = [tensor_diff(x, y, atol, rtol, stat) for x, y in zip(a, b)]
        if not diffs:
            return _failed(ok=True)
        worst = lambda key: max(getattr(d, key) for d in diffs)  # noqa: E731
        return Diff(worst("max_abs"), worst("max_rel"), all(d.ok for d in diffs), "",
                    *(worst(k) for k in ("mean_abs", "median_abs", "mean_rel", "median_rel", "mag", "score")))
    if a is None or b is None or isinstance(a, dict) or isinstance(b, dict):
        return _failed(ok=(a is None and b is None) or a == b)
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return _failed(note=f"shape {list(a.shape)} vs {list(b.shape)}")
    if a.size == 0:
        return _failed(ok=True)
    if a.dtype.kind not in "biufc" or b.dtype.kind not in "biufc":
        return _failed(ok=bool(np.array_equal(a, b)))
    x = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    y = b.astype(np.complex128 if b.dtype.kind == "c" else np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        equal = (x == y) | (np.isnan(x) & np.isnan(y))
        err = np.where(equal, 0.0, np.abs(x - y))
        err = np.where(np.isnan(err), np.inf, err)  # NaN on one side only
        ref = np.abs(y)
        rel = np.where(err == 0, 0.0, err / (np.where(np.isfinite(ref), ref, np.inf) + _EPS))
    finite = ref[np.isfinite(ref)]
    magnitude = float(finite.max()) if finite.size else 0.0
    abs_s = {"max": float(err.max()), "mean": float(err.mean()), "median": float(np.median(err))}
    rel_s = {"max": float(rel.max()), "mean": float(rel.mean()), "median": float(np.median(rel))}
    if stat == "elemwise":
        score = _over(abs_s["max"], max(atol, rtol * magnitude))
    else:
        score = min(_over(abs_s[stat], atol), _over(rel_s[stat], rtol))
    return Diff(abs_s["max"], rel_s["max"], score <= 1.0, "", abs_s["mean"], abs_s["median"], rel_s["mean"],
                rel_s["median"], _over(abs_s["max"], magnitude), score)


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
    def worst(self) -> Diff:
        """The output furthest past (or closest to) its tolerance."""
        return max((o.diff for o in self.outputs), key=lambda d: d.score)

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
                "score": _num(self.worst.score), "outputs": [o.to_dict() for o in self.outputs]}


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
    stat: str = DEFAULT_ERROR_STAT

    @property
    def ok(self):
        return all(r.ok for r in self.runs)

    @property
    def first_mismatch(self):
        for r in self.runs:
            if r.first_mismatch is not None:
                return r.first_mismatch
        return None

    def _rule(self):
        return f"{self.stat} error, atol={self.atol:g} rtol={self.rtol:g}"

    def summary(self) -> str:
        lines = []
        for r in self.runs:
            head = (f"{r.label} vs {self.reference}: {self.compared_values} values of "
                    f"{self.compared_nodes} nodes, {self._rule()}, level={self.level}: ")
            f = r.first_mismatch
            if f is None:
                worst = max(r.nodes, key=lambda n: n.worst.score, default=None)
                lines.append(head + "all match" + (f" (worst: {worst.op_type} '{worst.name}' at "
                                                   f"{worst.worst.score:.2g} of its tolerance)" if worst else ""))
            else:
                starts = sum(n.origin for n in r.mismatches)
                tensors = sum(not o.diff.ok for n in r.mismatches for o in n.outputs)
                lines.append(head + f"{len(r.mismatches)} node(s) differ ({tensors} tensor(s); {starts} node(s) "
                             f"where a difference starts, their inputs agreeing); first: {f.op_type} '{f.name}' "
                             f"on {f.provider} (max abs err {f.max_abs:.3g}, {f.worst.score:.3g}x the tolerance)")
        return "\n".join(lines)

    def verdict(self) -> str:
        """The last line: PASS or FAIL, and why."""
        if self.ok:
            return f"PASS: every compared tensor is within the tolerance ({self._rule()})"
        bad = sum(not o.diff.ok for r in self.runs for n in r.mismatches for o in n.outputs)
        f = self.first_mismatch
        return (f"FAIL: {bad} tensor(s) exceed the tolerance ({self._rule()}); first: {f.op_type} '{f.name}' "
                f"on {f.provider}")

    def format(self, top: int = 10) -> str:
        lines = [f"model: {self.model}", f"reference: {self.reference}",
                 f"check: {self._rule()} ("
                 + ("each element within atol or rtol x max|ref|" if self.stat == "elemwise" else
                    f"{self.stat} abs error within atol or {self.stat} rel error within rtol") + ")"]
        for n in self.notes:
            lines.append(f"note: {n}")
        for r in self.runs:
            lines.append("")
            worst = sorted(r.nodes, key=lambda n: -n.worst.score)[:top]
            lines.append(f"{r.label} vs {self.reference}: {len(r.mismatches)} of {len(r.nodes)} node(s) fail; "
                         f"the {len(worst)} worst (score: the checked statistic over its tolerance, > 1 fails; "
                         "rel: |a-b| / |ref| per element; /max|ref|: max abs err / max |ref|):")
            lines.append(f"  {'#':>5s}  {'node':32s} {'op':16s} {'provider':14s} {'score':>8s} {'abs max':>9s} "
                         f"{'mean':>9s} {'median':>9s} {'rel max':>9s} {'mean':>9s} {'median':>9s} "
                         f"{'/max|ref|':>9s}  result")
            for n in worst:
                d = n.worst
                verdict = "pass" if n.ok else ("FAIL" if n.origin else "FAIL (inputs differ)")
                lines.append(f"  {n.index:5d}  {n.name[:32]:32s} {n.op_type[:16]:16s} {n.provider[:14]:14s} "
                             f"{d.score:8.3g} {d.max_abs:9.3g} {d.mean_abs:9.3g} {d.median_abs:9.3g} "
                             f"{d.max_rel:9.3g} {d.mean_rel:9.3g} {d.median_rel:9.3g} {d.mag:9.3g}  {verdict}")
                for o in n.outputs:
                    if o.diff.note:
                        lines.append(f"         output {o.name} {o.shape}: {o.diff.note}")
        lines.append("")
        lines.append(self.summary())
        lines.append(self.verdict())
        return "\n".join(lines)

    def to_dict(self):
        return {"model": self.model, "reference": self.reference, "atol": self.atol, "rtol": self.rtol,
                "check_error_stat": self.stat, "level": self.level, "ok": self.ok,
                "compared_nodes": self.compared_nodes, "compared_values": self.compared_values,
                "notes": list(self.notes), "verdict": self.verdict(),
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


def compare(model, providers=None, *, onnxruntime=None, feeds=None, atol=1e-4, rtol=1e-3, level="disable",
            label=None, stat=DEFAULT_ERROR_STAT) -> CompareResult:
    """Run ``model`` with every intermediate exposed on each of ``providers`` (ortlite; default CPU) and,
    with ``onnxruntime``, on onnxruntime's CPU provider; compare each run node by node with the
    reference: onnxruntime when it runs, else the last provider listed. A single provider other than
    CPU is compared with ortlite's CPU provider; ortlite's CPU provider alone with onnxruntime
    (``onnxruntime=None``: only then, when it is installed). Each tensor is judged on the error
    statistic ``stat`` (see :func:`tensor_diff`).

    ``model``: a path, bytes or ModelProto; ``feeds``: input name -> array (random when None).
    """
    from ortlite import zoo
    from ortlite.loader import load_model
    from ortlite.providers import canonical_name

    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    if stat not in ERROR_STATS:
        raise ValueError(f"the error statistic must be one of {', '.join(ERROR_STATS)}, got {stat!r}")
    proto, _, where = load_model(model)
    label = label or where
    providers = [canonical_name(p) for p in (providers or ["CPUExecutionProvider"])]
    providers = list(dict.fromkeys(providers))
    if len(providers) == 1 and "CPUExecutionProvider" not in providers and not onnxruntime:
        providers.append("CPUExecutionProvider")
    if onnxruntime is None:
        import importlib.util

        onnxruntime = len(providers) < 2 and importlib.util.find_spec("onnxruntime") is not None
    if len(providers) + bool(onnxruntime) < 2:
        raise ValueError("compare needs two runs: ortlite's CPU provider alone is compared with onnxruntime, "
                         f"which is not installed ({install_hint('bench')}); or name two providers")
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
            raise ValueError(f"onnxruntime is not installed ({install_hint('bench')})") from e
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
                d = tensor_diff(a, b, atol, rtol, stat)
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
    return CompareResult(label, ref.label, result_runs, atol, rtol, level, n_nodes, n_values, notes, stat)
