"""Profiling in onnxruntime's format: a Chrome-trace JSON array of complete ("X") events.

Session events (``model_loading_uri``, ``session_initialization``, ``model_run``) and one
``Node`` event per executed node (``<node>_kernel_time``) with the op, provider and input /
output types and shapes in ``args``, as onnxruntime writes them, so the same tools read both
(Perfetto, chrome://tracing, ``ortlite profile``).
"""
from __future__ import annotations

import datetime
import json
import os
import threading
import time

import numpy as np

from ortlite import types as ot


def _meta(v):
    """(dtype, shape, nbytes) of a tensor, ('sequence', len, 0) of a list, () otherwise."""
    if hasattr(v, "dtype") and hasattr(v, "shape"):
        return (v.dtype, v.shape, getattr(v, "nbytes", 0))
    if isinstance(v, list):
        return ("sequence", len(v), 0)
    return ()


def _type_shape(metas):
    out = []
    for m in metas:
        if not m:
            out.append({})
        elif m[0] == "sequence":
            out.append({"sequence": m[1]})
        else:
            try:
                name = ot.type_name(ot.onnx_elem_type(m[0]))
            except TypeError:
                name = str(m[0])
            out.append({name: [int(d) for d in m[1]]})
    return out


class Profiler:
    """Collects events while enabled; ``end()`` writes them and returns the file name."""

    def __init__(self, prefix: str):
        self.prefix = prefix or "onnxruntime_profile_"
        self.start_ns = time.perf_counter_ns()
        self.wall_start = datetime.datetime.now()
        self.events: list[dict] = []
        self._raw: list[tuple] = []
        self.pid = os.getpid()
        self._lock = threading.Lock()

    def _us(self, t_ns):
        return (t_ns - self.start_ns) / 1e3

    def session_event(self, name, t0_ns, t1_ns, **args):
        self._add({"cat": "Session", "pid": self.pid, "tid": threading.get_ident(), "dur": int((t1_ns - t0_ns) / 1e3),
                   "ts": int(self._us(t0_ns)), "ph": "X", "name": name, "args": args})

    def record_node(self, step, t0_ns, t1_ns, inputs, outputs, parent=None):
        """Keep what a node event needs (cheap: the JSON is built when the profile is written).

        ``parent``: the If/Loop/Scan node whose body ran this node (None for the main graph's)."""
        meta = (tuple(_meta(v) for v in inputs), tuple(_meta(v) for v in outputs))
        with self._lock:
            self._raw.append((step, t0_ns, t1_ns, meta, threading.get_ident(), parent))

    def _node_event(self, step, t0_ns, t1_ns, meta, tid, parent=None):
        node = step.node
        inputs, outputs = meta
        out_size = int(sum(m[2] for m in outputs if m))
        ev = {
            "cat": "Node", "pid": self.pid, "tid": tid,
            "dur": int((t1_ns - t0_ns) / 1e3), "ts": int(self._us(t0_ns)), "ph": "X",
            "name": f"{node.name}_kernel_time",
            "args": {
                "op_name": node.op_type,
                "provider": step.provider,
                "node_index": str(getattr(step, "index", 0)),
                "input_type_shape": _type_shape(inputs),
                "output_type_shape": _type_shape(outputs),
                "output_size": str(out_size),
                "activation_size": str(int(sum(m[2] for m in inputs if m))),
            },
        }
        if parent is not None:
            ev["args"]["parent"] = parent
        return ev

    def _add(self, ev):
        with self._lock:
            self.events.append(ev)

    def all_events(self) -> list:
        with self._lock:
            nodes = [self._node_event(*r) for r in self._raw]
            return sorted(self.events + nodes, key=lambda e: e["ts"])

    def end(self) -> str:
        name = f"{self.prefix}_{self.wall_start.strftime('%Y-%m-%d_%H-%M-%S')}.json"
        with open(name, "w", encoding="utf-8") as f:
            json.dump(self.all_events(), f)
        return name


def summarize(path_or_events, top=15) -> str:
    """The top ops and nodes by total time in a trace (onnxruntime's or ortlite's)."""
    events = path_or_events
    where = "the events"
    if isinstance(path_or_events, (str, os.PathLike)):
        where = os.fspath(path_or_events)
        with open(path_or_events, encoding="utf-8") as f:
            try:
                events = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{where} is not a Chrome-trace JSON ({e})") from None
    if isinstance(events, dict):  # {"traceEvents": [...]} form
        events = events.get("traceEvents", [])
    if not isinstance(events, list):
        raise ValueError(f"{where} is not a Chrome-trace JSON (a list of events, or {{\"traceEvents\": [...]}})")
    events = [e for e in events if isinstance(e, dict) and isinstance(e.get("dur"), (int, float))]
    nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if not nodes and not any(e.get("cat") == "Session" for e in events):
        raise ValueError(f"{where} holds no profile events (no 'Node' or 'Session' events with a duration): "
                         "not a trace written by end_profiling()")
    by_op: dict[str, list] = {}
    by_node: dict[str, list] = {}
    inner = 0  # events of nodes inside If/Loop/Scan bodies: their time is inside their parent's too
    for e in nodes:
        args = e.get("args", {})
        op = args.get("op_name", "?")
        by_op.setdefault(op, []).append(e["dur"])
        name = e["name"][: -len("_kernel_time")]
        if args.get("parent"):
            inner += 1
            name = f"{args['parent']}/{name}"
        key = (name, op, args.get("provider", "?"))
        by_node.setdefault(key, []).append(e["dur"])
    total = sum(e["dur"] for e in nodes if not e.get("args", {}).get("parent")) or 1
    lines = [f"{len(runs)} run(s), {len(nodes)} node events, node time {total / 1e3:.2f} ms"
             + (f", run time {sum(e['dur'] for e in runs) / 1e3:.2f} ms" if runs else "")]
    if inner:
        lines.append(f"{inner} of the node events are inside If/Loop/Scan bodies (named parent/node below; "
                     "their time is also in their parent's, not added to the node time again)")
    lines.append("")
    lines.append(f"{'op':28s} {'calls':>6s} {'total ms':>10s} {'share':>7s} {'mean us':>9s}")
    for op, durs in sorted(by_op.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"{op:28s} {len(durs):6d} {sum(durs) / 1e3:10.3f} {100 * sum(durs) / total:6.1f}% "
                     f"{np.mean(durs):9.1f}")
    lines.append("")
    lines.append(f"{'node':48s} {'op':20s} {'provider':26s} {'total ms':>9s}")
    for (name, op, prov), durs in sorted(by_node.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"{name[:48]:48s} {op[:20]:20s} {prov[:26]:26s} {sum(durs) / 1e3:9.3f}")
    return "\n".join(lines)
