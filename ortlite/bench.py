"""Latency benchmark of a model on ortlite's providers, side by side with onnxruntime.

Runs alternate between the sessions (A B A B ...) so drift on a shared
machine hits both alike; medians and the ratio to onnxruntime are reported.
This is the simple version behind ``ortlite bench``; it takes every provider
ortlite has, so new providers show up without change.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def provider_name(s: str) -> str:
    from ortlite.providers import canonical_name

    return canonical_name(SHORT_NAMES.get(s.lower(), s))


@dataclass
class Result:
    label: str
    create_ms: float
    first_ms: float
    latencies_ms: list = field(default_factory=list)
    max_abs_err: float | None = None

    def pct(self, q):
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


class _Runner:
    def __init__(self, label, make, feeds):
        t0 = time.perf_counter()
        self.sess = make()
        create = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        self.out = self.sess.run(None, feeds)
        first = (time.perf_counter() - t0) * 1e3
        self.result = Result(label, create, first)
        self.feeds = feeds

    def once(self):
        t0 = time.perf_counter()
        self.sess.run(None, self.feeds)
        self.result.latencies_ms.append((time.perf_counter() - t0) * 1e3)


def alternate(runners, iterations, warmup):
    """Warm up, then time ``runners`` in turn (A B A B ...), ``iterations`` rounds."""
    for _ in range(warmup):
        for r in runners:
            r.sess.run(None, r.feeds)
    for _ in range(iterations):
        for r in runners:
            r.once()


def onnxruntime_runner(model_bytes, feeds, threads=0, level=None, label=None):
    """An onnxruntime CPU session set up for fair side-by-side timing (no idle spinning)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # ORT's idle worker threads spin by default and would steal cores from ortlite's runs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if level is not None:
        so.graph_optimization_level = level
    label = label or f"onnxruntime {ort.__version__} CPUExecutionProvider"
    return _Runner(label, lambda: ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"]), feeds)


def run_benchmark(model, feeds, providers=None, iterations=50, warmup=5, threads=0, onnxruntime=True):
    """Benchmark ``model`` (ModelProto or bytes); returns (results, notes)."""
    import ortlite
    import ortlite.registry

    model_bytes = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
    ortlite.registry.load_all_kernels()  # as importing onnxruntime loads its kernels: not session time
    if providers is None:
        providers = ortlite.get_available_providers()
    notes = []
    runners = []
    for p in providers:
        ok, why = _availability(p)
        if not ok:
            notes.append(f"{p}: skipped ({why})")
            continue
        so = ortlite.SessionOptions()
        so.intra_op_num_threads = threads
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runners.append(_Runner(f"ortlite {p}", lambda p=p, so=so: ortlite.InferenceSession(
                model_bytes, so, providers=[p]), feeds))
    ort_runner = None
    if onnxruntime:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            notes.append("onnxruntime: not installed, no reference (pip install 'ortlite[bench]')")
        else:
            ort_runner = onnxruntime_runner(model_bytes, feeds, threads)
            notes.append("onnxruntime runs with session.intra_op.allow_spinning=0")
            runners.append(ort_runner)
    alternate(runners, iterations, warmup)
    if ort_runner is not None:
        for r in runners:
            if r is not ort_runner:
                r.result.max_abs_err = max(
                    float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                    if np.asarray(a).size else 0.0
                    for a, b in zip(r.out, ort_runner.out)
                    if np.asarray(a).dtype.kind in "fiub"
                )
    return [r.result for r in runners], (ort_runner.result if ort_runner else None), notes


def _availability(p):
    from ortlite.providers import availability

    return availability(p)


def format_table(results, reference):
    ref = reference.pct(50) if reference else None
    lines = [
        "| runtime / provider | create ms | first run ms | p50 ms | p90 ms | ratio p50 vs onnxruntime | max abs err vs onnxruntime |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.pct(50) / ref:.2f}" if ref else "-"
        err = "-" if r.max_abs_err is None else f"{r.max_abs_err:.2e}"
        lines.append(f"| {r.label} | {r.create_ms:.1f} | {r.first_ms:.2f} | {r.pct(50):.3f} | "
                     f"{r.pct(90):.3f} | {ratio} | {err} |")
    return "\n".join(lines)
