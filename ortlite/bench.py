"""Benchmark a model on ortlite's providers, side by side with onnxruntime (``ortlite bench``).

Each provider gets its own session; runs alternate between the sessions (A B A B ...) so
drift on a shared machine hits every runtime alike. Per runtime the report holds session
creation time (and the engine build time of compiling providers that expose it), the first
run, latency min / mean / p50 / p90 / p99 / max, throughput (batch-aware), the increase of
peak host memory over session creation + first run (and device memory where there is a
device), the placement (nodes per provider, copies per run) and whether every output agrees
with ortlite's CPU provider: every element within ``atol`` or ``rtol * max|reference|``
(``ortlite.compare.tensor_diff``'s elemwise check, as ``ortlite compare``'s default).

``_Runner``, ``alternate`` and ``onnxruntime_runner`` are the building blocks the scripts
in ``benchmarks/`` use too.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ortlite.hints import install_hint

SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "ov": "OpenVINOExecutionProvider",
}

LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3

# onnxruntime's providers a benchmark can use, and the device their values live on.
_ORT_DEVICE = {"TensorrtExecutionProvider": "cuda", "CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}
_ORT_CHAIN = {
    "TensorrtExecutionProvider": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "CUDAExecutionProvider": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "CPUExecutionProvider": ["CPUExecutionProvider"],
}


def provider_name(s: str) -> str:
    """onnxruntime's spelling for a short or full provider name ('cuda', 'trt', 'CPUExecutionProvider',
    'pretenddevice'...); ValueError listing the valid names otherwise."""
    from ortlite.providers import all_provider_names, canonical_name

    s = s.strip()
    if s.lower() in SHORT_NAMES:
        return SHORT_NAMES[s.lower()]
    for n in all_provider_names():
        if s.lower() in (n.lower(), n.lower().removesuffix("executionprovider")):
            return n
    try:
        return canonical_name(s)
    except ValueError as e:
        raise ValueError(f"{e} (short names: {', '.join(SHORT_NAMES)})") from None


def short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider") or provider


# ---------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------
def _proc_status_kb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class HostMemoryProbe:
    """The increase of peak RSS over a span of code, in this process.

    On Linux VmHWM is reset (``/proc/self/clear_refs``) at the start and the peak is read
    at the end; elsewhere the increase of ``ru_maxrss`` is used, which is 0 when the span
    stays below an earlier peak.
    """

    def __init__(self):
        self.use_hwm = _reset_hwm() and _proc_status_kb("VmHWM") is not None
        self.method = (
            "peak RSS: increase of VmHWM over VmRSS across each runtime's session creation + first run, "
            "measured in this process (VmHWM reset through /proc/self/clear_refs)"
            if self.use_hwm else
            "peak RSS: increase of ru_maxrss across each runtime's session creation + first run, in this "
            "process (0 when it stays below an earlier peak)"
        )
        self._start = 0

    def start(self):
        if self.use_hwm:
            _reset_hwm()
            self._start = _proc_status_kb("VmRSS")
        else:
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stop_mb(self) -> float:
        if self.use_hwm:
            return max(0, _proc_status_kb("VmHWM") - self._start) / 1024
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._start) * scale / 2**20


def _device_used_bytes(device_type):
    """Used memory of device 0 of ``device_type`` (whole device, all processes), or None."""
    if device_type != "cuda":
        return None
    try:
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        return total - free
    except Exception:  # noqa: BLE001 - no CuPy, no device
        return None


DEVICE_MEMORY_METHOD = (
    "device memory: what the provider reports (peak_device_memory_bytes()) where it does, else the increase "
    "of used device memory (cudaMemGetInfo through CuPy) across session creation + first run"
)


# ---------------------------------------------------------------------------------------
# runners
# ---------------------------------------------------------------------------------------
@dataclass
class Result:
    """One runtime + provider: every figure the benchmark reports."""

    label: str
    create_ms: float
    first_ms: float
    latencies_ms: list = field(default_factory=list)
    max_abs_err: float | None = None
    runtime: str = "ortlite"
    provider: str = ""
    session_providers: list = field(default_factory=list)
    device: str = "cpu"
    engine_build_ms: float | None = None
    engine_cache: str | None = None  # 'miss' (built), 'hit', 'rebuilt', 'off', 'epcontext'
    peak_rss_mb: float | None = None
    device_memory_mb: float | None = None
    placement: dict | None = None
    copies_per_run: int | None = None
    copy_bytes_per_run: int | None = None
    agreement: dict | None = None
    batch: int = 1
    note: str = ""

    def pct(self, q):
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def stats(self) -> dict:
        lat = np.asarray(self.latencies_ms, np.float64)
        if not lat.size:
            return {k: None for k in ("min", "mean", "p50", "p90", "p99", "max", "std")}
        return {"min": float(lat.min()), "mean": float(lat.mean()), "p50": self.pct(50), "p90": self.pct(90),
                "p99": self.pct(99), "max": float(lat.max()), "std": float(lat.std())}

    @property
    def throughput(self) -> float | None:
        """Inferences per second: batch / mean latency."""
        if not self.latencies_ms:
            return None
        return self.batch * 1e3 / float(np.mean(self.latencies_ms))

    def to_dict(self) -> dict:
        return {
            "label": self.label, "runtime": self.runtime, "provider": self.provider,
            "session_providers": list(self.session_providers), "device": self.device,
            "create_ms": self.create_ms, "engine_build_ms": self.engine_build_ms,
            "engine_cache": self.engine_cache, "first_run_ms": self.first_ms,
            "iterations": len(self.latencies_ms), "latency_ms": self.stats(), "throughput_per_s": self.throughput,
            "batch": self.batch, "peak_rss_mb": self.peak_rss_mb, "device_memory_mb": self.device_memory_mb,
            "placement": self.placement, "copies_per_run": self.copies_per_run,
            "copy_bytes_per_run": self.copy_bytes_per_run, "agreement": self.agreement,
            "latencies_ms": list(self.latencies_ms), **({"note": self.note} if self.note else {}),
        }


def _wait_compiled_loops():
    """Wait for compiled loops still loading in the background (kernels._jit compiles them off the first
    runs' path): the timed runs then measure the steady state, not the numpy fallback."""
    import sys

    jit = sys.modules.get("ortlite.kernels._jit")
    if jit is not None:
        jit.wait_background()


class _Runner:
    """A session, created (timed) and run once (timed); ``once()`` adds a timed run.

    ``make`` builds the session. ``bind`` (optional) turns it into (run, outputs) callables
    for IOBinding runs; ``memory`` (a HostMemoryProbe) measures creation + first run.
    """

    def __init__(self, label, make, feeds, bind=None, memory=None, device="cpu"):
        self.feeds = feeds
        dev0 = _device_used_bytes(device)
        if memory is not None:
            memory.start()
        t0 = time.perf_counter()
        self.sess = make()
        create = (time.perf_counter() - t0) * 1e3
        if bind is not None:
            self._run, self._outputs = bind(self.sess, feeds)
        else:
            self._run = lambda: self.sess.run(None, feeds)
            self._outputs = None
        t0 = time.perf_counter()
        out = self._run()
        first = (time.perf_counter() - t0) * 1e3
        self.out = self._outputs() if self._outputs is not None else out
        _wait_compiled_loops()
        self.result = Result(label, create, first, device=device)
        if memory is not None:
            self.result.peak_rss_mb = memory.stop_mb()
        dev1 = _device_used_bytes(device)
        if dev0 is not None and dev1 is not None:
            self.result.device_memory_mb = max(0, dev1 - dev0) / 2**20

    def call(self):
        self._run()

    def once(self):
        t0 = time.perf_counter()
        self._run()
        self.result.latencies_ms.append((time.perf_counter() - t0) * 1e3)


def _bar(total, desc, enabled, unit="round"):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def _creating(progress, label):
    """On a terminal, a line as each session is created (engine builds can take minutes)."""
    if progress:
        print(f"creating session: {label} ...", file=sys.stderr, flush=True)


def alternate(runners, iterations, warmup, duration=None, progress=False, block=1, settle=0.0):
    """Warm up, then time ``runners`` in turn (A B A B ...): ``iterations`` rounds, or rounds
    until ``duration`` seconds have passed (at least one). A tqdm bar when ``progress``.

    ``block`` > 1 runs each runner that many times per turn (AAA BBB ...): a runtime keeps its own
    thread pools warm within its turn, and what one leaves spinning (OpenBLAS workers spin ~0.1 s
    after a call) lands on the first run of the next turn only, which medians discount. ``settle``
    seconds of sleep between turns (untimed) let such spinning end before the next runtime starts."""
    bar = _bar(warmup, "warm-up", progress and warmup > 0)
    for _ in range(warmup):
        for r in runners:
            r.call()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if duration is None:
        bar = _bar(iterations, "timed runs", progress)
        for _ in range(iterations):
            for r in runners:
                for _ in range(block):
                    r.once()
                if settle:
                    time.sleep(settle)
            if bar is not None:
                bar.update(1)
    else:
        bar = _bar(round(duration, 1), "timed runs", progress, unit="s")
        t0 = last = time.perf_counter()
        while True:
            for r in runners:
                r.once()
            now = time.perf_counter()
            if bar is not None:
                bar.update(round(min(now, t0 + duration) - last, 3))
            last = now
            if now - t0 >= duration:
                break
    if bar is not None:
        bar.close()


def _ort_level(level):
    import onnxruntime as ort

    if level is None or isinstance(level, ort.GraphOptimizationLevel):
        return level
    return {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]


def onnxruntime_runner(model_bytes, feeds, threads=0, level=None, label=None, provider="CPUExecutionProvider",
                       iobinding=False, memory=None, profile=None):
    """An onnxruntime session set up for fair side-by-side timing (no idle spinning); ``profile``
    ({input: (min, opt, max)}) goes to its TensorRT provider as trt_profile_min/opt/max_shapes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # ORT's idle worker threads spin by default and would steal cores from ortlite's runs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = _ort_level(level)
    label = label or f"onnxruntime {ort.__version__} {short(provider)}"
    device = _ORT_DEVICE[provider]
    bind = _binder(device, ort.OrtValue) if iobinding else None
    chain = [_with_options(p, profile) for p in _ORT_CHAIN[provider]]
    r = _Runner(label, lambda: ort.InferenceSession(model_bytes, so, providers=chain), feeds,
                bind=bind, memory=memory, device=device)
    r.result.runtime = "onnxruntime"
    r.result.provider = provider
    r.result.session_providers = r.sess.get_providers()
    return r


def profile_options(profile) -> dict:
    """{input: (min, opt, max)} as TensorRT's provider options (onnxruntime's names and format)."""
    return {f"trt_profile_{k}_shapes": ",".join(f"{name}:{'x'.join(str(d) for d in shapes[i])}"
                                                for name, shapes in profile.items())
            for i, k in enumerate(("min", "opt", "max"))}


def _with_options(provider, profile):
    """``provider``, or (provider, options) where a shape profile applies to it (TensorRT only: OpenVINO
    compiles for the shapes it runs, and ortlite's OpenVINO provider ignores onnxruntime's reshape_input)."""
    if profile and provider == "TensorrtExecutionProvider":
        return provider, profile_options(profile)
    return provider


def _binder(device, ortvalue_cls):
    """IOBinding set-up for a timed runner; the API is the same in onnxruntime and ortlite,
    so only the OrtValue class differs. Device-resident inputs are made once, outside the runs."""
    def bind(sess, feeds):
        io = sess.io_binding()
        for name, x in feeds.items():
            if device == "cpu":
                io.bind_cpu_input(name, x)
            else:
                io.bind_ortvalue_input(name, ortvalue_cls.ortvalue_from_numpy(x, device, 0))
        for o in sess.get_outputs():
            io.bind_output(o.name, device, 0)

        def run():
            sess.run_with_iobinding(io)
            io.synchronize_outputs()

        return run, io.copy_outputs_to_cpu

    return bind


def _ortlite_chain(provider):
    """The session's provider list for benchmarking ``provider``: it, then the available providers
    after it on the same device (TensorRT -> CUDA, as with onnxruntime); CPU is the implicit fallback."""
    from ortlite.providers import all_provider_names, availability, provider_class

    names = all_provider_names()
    dev = provider_class(provider).device_type
    chain = [provider]
    if dev != "cpu" and provider in names:
        for n in names[names.index(provider) + 1:]:
            if n != "CPUExecutionProvider" and provider_class(n).device_type == dev and availability(n)[0]:
                chain.append(n)
    return chain


def ortlite_runner(model_src, feeds, provider, threads=0, level="all", iobinding=False, memory=None, profile=None):
    import ortlite
    from ortlite.providers import provider_class

    so = ortlite.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = _LEVEL_VALUES[level]
    device = provider_class(provider).device_type
    chain = [_with_options(p, profile) for p in _ortlite_chain(provider)]

    def make():
        from ortlite.compare import quiet_placement_log

        with warnings.catch_warnings(), quiet_placement_log():
            warnings.simplefilter("ignore")
            return ortlite.InferenceSession(model_src, so, providers=chain)

    r = _Runner(f"ortlite {short(provider)}", make, feeds, bind=_binder(device, ortlite.OrtValue) if iobinding else None,
                memory=memory, device=device)
    res = r.result
    res.runtime = "ortlite"
    res.provider = provider
    res.session_providers = r.sess.get_providers()
    builds = r.sess.engine_builds  # compiling providers' groups: built, or loaded from the engine cache
    if builds:
        res.engine_build_ms = 1e3 * float(sum(b.seconds for b in builds))
        res.engine_cache = ",".join(sorted({b.cache for b in builds}))
        labels = [p.precision_label for p in r.sess._providers if hasattr(p, "precision_label")]
        if labels:
            res.engine_cache += f"; {labels[0]}"
    peaks = [p.peak_device_memory_bytes() for p in r.sess._providers if hasattr(p, "peak_device_memory_bytes")]
    peaks = [b for b in peaks if b is not None]
    if peaks:
        res.device_memory_mb = sum(peaks) / 2**20
    return r


_LEVEL_VALUES = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


# ---------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------
@dataclass
class BenchReport:
    model: str
    nodes: int
    inputs: list  # [{name, shape, dtype}]
    batch: int
    settings: dict
    machine: dict
    memory_method: str
    results: list  # Result
    unavailable: list  # [{runtime, provider, reason}]
    notes: list

    def to_dict(self) -> dict:
        return {
            "model": {"label": self.model, "nodes": self.nodes, "inputs": self.inputs, "batch": self.batch},
            "settings": self.settings, "machine": self.machine,
            "memory_method": {"host": self.memory_method, "device": DEVICE_MEMORY_METHOD},
            "results": [r.to_dict() for r in self.results],
            "unavailable": list(self.unavailable), "notes": list(self.notes),
        }

    def to_json(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_json_safe(self.to_dict()), f, indent=1)

    def header(self) -> str:
        s = self.settings
        runs = (f"{s['iterations']} timed runs each" if s.get("duration_s") is None
                else f"timed runs for {s['duration_s']:g} s ({min((len(r.latencies_ms) for r in self.results), default=0)} each)")
        m = self.machine
        return "\n".join([
            f"model: {self.model}; {self.nodes} nodes",
            "inputs: " + ", ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in self.inputs)
            + f"; batch {self.batch}",
            f"{runs} after {s['warmup']} warm-up runs, alternating (A B A B ...); threads={s['threads'] or 'default'}; "
            f"level={s['level']}; iobinding={'on' if s['iobinding'] else 'off'}; agreement: atol={s['atol']:g} "
            f"rtol={s['rtol']:g} (x max|ref|) against ortlite CPU",
            f"machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
            f"onnxruntime {m['onnxruntime'] or '-'}, ortlite {m['ortlite']}; {m['date']}",
            self.memory_method,
        ])

    def markdown_tables(self) -> str:
        ref = next((r for r in self.results if r.runtime == "onnxruntime" and r.provider == "CPUExecutionProvider"),
                   None)
        base = ref.pct(50) if ref is not None else None
        lines = [
            "| runtime / provider | create ms | engine build ms | first run ms | min ms | mean ms | p50 ms | p90 ms "
            "| p99 ms | max ms | inferences/s | p50 vs onnxruntime CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            st = r.stats()
            ratio = f"{r.pct(50) / base:.2f}" if base else "-"
            lines.append(
                f"| {r.label} | {r.create_ms:.1f} | {_build_cell(r)} | {r.first_ms:.2f} | "
                f"{_f(st['min'])} | {_f(st['mean'])} | {_f(st['p50'])} | {_f(st['p90'])} | {_f(st['p99'])} | "
                f"{_f(st['max'])} | {_f(r.throughput, '.1f')} | {ratio} |")
        lines += [
            "",
            "| runtime / provider | peak RSS MB | device MB | nodes per provider | copies / run | max abs err "
            "| max rel err | agrees with ortlite CPU |",
            "|---|---:|---:|---|---:|---:|---:|---|",
        ]
        for r in self.results:
            nodes = ", ".join(f"{short(p)}: {n}" for p, n in r.placement.items()) if r.placement else "-"
            copies = "-" if r.copies_per_run is None else str(r.copies_per_run)
            ag = r.agreement
            if ag is None:
                err = ("-", "-", "-")
            elif ag.get("reference"):
                err = ("-", "-", "(reference)")
            else:
                err = (_e(ag["max_abs_err"]), _e(ag["max_rel_err"]), "pass" if ag["pass"] else "**FAIL**")
            lines.append(f"| {r.label} | {_f(r.peak_rss_mb, '.1f')} | {_f(r.device_memory_mb, '.1f')} | {nodes} | "
                         f"{copies} | {err[0]} | {err[1]} | {err[2]} |")
        return "\n".join(lines)

    def footer(self) -> str:
        lines = []
        for u in self.unavailable:
            lines.append(f"not run: {u['runtime']} {u['provider']}: {u['reason']}")
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)

    def text(self) -> str:
        parts = [self.header(), "", self.markdown_tables()]
        if self.footer():
            parts += ["", self.footer()]
        return "\n".join(parts)

    def to_markdown(self) -> str:
        lines = [f"# ortlite bench: {self.model}", ""]
        lines += [f"- {h}" for h in self.header().splitlines()]
        lines += ["", self.markdown_tables(), ""]
        lines += [f"- {f}" for f in self.footer().splitlines()]
        return "\n".join(lines).rstrip() + "\n"

    def plot(self, path):
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        rs = [r for r in self.results if r.latencies_ms]
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rs) + 2), 4.5))
        data = [r.latencies_ms for r in rs]
        ax.boxplot(data, showfliers=True, whis=(1, 99))
        ax.set_xticks(range(1, len(rs) + 1))
        ax.set_xticklabels([r.label.replace(" ", "\n", 1) for r in rs], fontsize=8)
        lo = min((min(d) for d in data), default=1.0)
        hi = max((max(d) for d in data), default=1.0)
        if lo > 0 and hi / lo > 10:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel("latency per run, ms" + (" (log scale)" if ax.get_yscale() == "log" else ""))
        n = min((len(d) for d in data), default=0)
        ax.set_title(f"{self.model}\nlatency per run, batch {self.batch}, {n} runs each (box: p25-p75, whiskers: p1-p99)",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _build_cell(r):
    """Engine build (or cache load) milliseconds, with the cache outcome: '812.0 (miss)'."""
    if r.engine_build_ms is None:
        return "-"
    return f"{r.engine_build_ms:.1f}" + (f" ({r.engine_cache})" if r.engine_cache else "")


def _f(x, fmt=".3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _e(x):
    if isinstance(x, str):
        return x
    return "-" if x is None else f"{x:.2e}"


def _json_safe(o):
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (np.floating, float)):
        o = float(o)
        return o if math.isfinite(o) else str(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def machine_line() -> str:
    """One line for results files: CPU model, cores, numpy and its BLAS (threadpoolctl), Python."""
    m = machine_info()
    blas = "unknown (threadpoolctl not installed)"
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
                         for i in threadpool_info() if i.get("user_api") == "blas") or "none found"
    except ImportError:
        pass
    return f"{m['cpu']}; {m['cores']} cores; numpy {m['numpy']} BLAS: {blas}; Python {m['python']}"


def machine_info() -> dict:
    import numpy

    import ortlite

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import onnx

    return {
        "cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(), "usable_cores": usable,
        "platform": platform.platform(), "python": platform.python_version(), "numpy": numpy.__version__,
        "onnx": onnx.__version__, "onnxruntime": ort_version, "ortlite": ortlite.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _agreement(outs, ref, names, atol, rtol):
    from ortlite.compare import tensor_diff

    per = []
    for name, a, b in zip(names, outs, ref):
        d = tensor_diff(a, b, atol, rtol)
        per.append({"name": name, **d.to_dict()})
    finite = lambda key: max((p[key] for p in per if not isinstance(p[key], str)), default=0.0)  # noqa: E731
    worst_abs = "inf" if any(isinstance(p["max_abs_err"], str) for p in per) else finite("max_abs_err")
    worst_rel = "inf" if any(isinstance(p["max_rel_err"], str) for p in per) else finite("max_rel_err")
    return {"pass": all(p["pass"] for p in per), "max_abs_err": worst_abs, "max_rel_err": worst_rel,
            "atol": atol, "rtol": rtol, "outputs": per}


def benchmark(model, feeds, *, providers=None, onnxruntime=True, warmup=5, iterations=50, duration=None, threads=0,
              iobinding=False, level="all", atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, progress=None, label=None,
              batch=None, profile=None) -> BenchReport:
    """Benchmark ``model`` (a path, bytes or ModelProto) on ``providers`` (ortlite's names; None:
    every provider ortlite knows, the unavailable ones reported with their reason) and, with
    ``onnxruntime``, on onnxruntime's CPU provider and its CUDA/TensorRT providers when it has them.

    ``profile``: {input: (min, opt, max)} shapes; ``feeds`` should be at opt. The TensorRT providers
    (ortlite's and onnxruntime's) get them as trt_profile_min/opt/max_shapes; OpenVINO gets none (it
    compiles for the shapes it runs); other providers have no use for them. ``progress`` (default: on a
    terminal) prints a line as each session is created and shows progress bars for the runs.
    """
    import ortlite
    import ortlite.registry
    from ortlite.loader import load_model
    from ortlite.providers import all_provider_names, availability

    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    proto, _, where = load_model(model)
    label = label or where
    # A file goes to both runtimes by path (external data stays where it is); else bytes.
    src = os.fspath(model) if isinstance(model, (str, os.PathLike)) else (
        bytes(model) if isinstance(model, (bytes, bytearray)) else proto.SerializeToString())
    if progress is None:
        progress = sys.stdout.isatty()
    ortlite.registry.load_all_kernels()  # as importing onnxruntime loads its kernels: not session time
    explicit = providers is not None
    asked = list(dict.fromkeys(providers if explicit else all_provider_names()))
    first = next(iter(feeds.values()), None)
    if batch is None:
        batch = int(np.shape(first)[0]) if first is not None and np.ndim(first) >= 1 else 1
    notes, unavailable, runners = [], [], []
    memory = HostMemoryProbe()

    names = [o.name for o in proto.graph.output]
    to_run = []
    for p in asked:
        ok, why = availability(p)
        if ok:
            to_run.append(p)
        else:
            unavailable.append({"runtime": "ortlite", "provider": p, "reason": why})
    for p in to_run:
        _creating(progress, f"ortlite {short(p)}")
        runners.append(ortlite_runner(src, feeds, p, threads, level, iobinding, memory, profile))
    if onnxruntime:
        try:
            import onnxruntime as ort
        except ImportError:
            unavailable.append({"runtime": "onnxruntime", "provider": "-",
                                "reason": f"onnxruntime is not installed ({install_hint('bench')})"})
            ort = None
        if ort is not None:
            ort_have = ort.get_available_providers()
            ort_asked = [p for p in asked if p in _ORT_CHAIN]
            for p in ort_asked:
                if p not in ort_have:
                    unavailable.append({"runtime": f"onnxruntime {ort.__version__}", "provider": p,
                                        "reason": f"not in onnxruntime.get_available_providers() {ort_have}"
                                        + (" (install onnxruntime-gpu)" if p != "CPUExecutionProvider" else "")})
                    continue
                _creating(progress, f"onnxruntime {short(p)}")
                r = onnxruntime_runner(src, feeds, threads, level, provider=p, iobinding=iobinding, memory=memory,
                                       profile=profile)
                if r.result.session_providers[:1] != [p]:
                    r.result.note = f"onnxruntime fell back to {r.result.session_providers}"
                    notes.append(f"{r.result.label}: {r.result.note}")
                runners.append(r)
            if ort_asked:
                notes.append("onnxruntime runs with session.intra_op.allow_spinning=0 (its idle threads do not "
                             "steal cores from the alternating runs)")
    if profile and any(p in ("OpenVINOExecutionProvider", "TensorrtExecutionProvider") for p in asked):
        notes.append("shape profile " + "; ".join(f"{k}: min {lo} opt {mid} max {hi}" for k, (lo, mid, hi)
                                                  in profile.items())
                     + ": runs at opt; TensorRT gets it as trt_profile_min/opt/max_shapes; OpenVINO compiles for "
                       "the shapes it runs")
    if not runners:
        raise ValueError("nothing to benchmark: "
                         + "; ".join(f"{u['runtime']} {u['provider']}: {u['reason']}" for u in unavailable))
    # The reference outputs: ortlite's CPU provider (an untimed session when it is not benchmarked).
    ref_out = next((r.out for r in runners if r.result.runtime == "ortlite"
                    and r.result.provider == "CPUExecutionProvider"), None)
    if ref_out is None:
        from ortlite.compare import quiet_placement_log

        so = ortlite.SessionOptions()
        so.graph_optimization_level = _LEVEL_VALUES[level]
        with warnings.catch_warnings(), quiet_placement_log():
            warnings.simplefilter("ignore")
            ref_out = ortlite.InferenceSession(src, so, providers=["CPUExecutionProvider"]).run(None, feeds)
        notes.append("agreement is against an untimed ortlite CPU session (CPU not benchmarked)")
    for r in runners:
        res = r.result
        res.batch = batch
        if res.runtime == "ortlite" and res.provider == "CPUExecutionProvider" and r.out is ref_out:
            res.agreement = {"reference": True, "pass": True, "max_abs_err": 0.0, "max_rel_err": 0.0,
                             "atol": atol, "rtol": rtol, "outputs": []}
        else:
            res.agreement = _agreement(r.out, ref_out, names, atol, rtol)
        res.max_abs_err = res.agreement["max_abs_err"]
    alternate(runners, iterations, warmup, duration, progress)
    for r in runners:  # placement and the copies of the last (steady-state) run
        res = r.result
        if res.runtime == "ortlite":
            rep = r.sess.get_placement()
            res.placement = rep.counts()
            res.copies_per_run = rep.last_run_copies
            res.copy_bytes_per_run = rep.last_run_copy_bytes
    inputs = [{"name": k, "shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in feeds.items()]
    settings = {
        "providers": asked, "providers_explicit": explicit, "onnxruntime": bool(onnxruntime), "warmup": warmup,
        "iterations": None if duration is not None else iterations, "duration_s": duration, "threads": threads,
        "iobinding": bool(iobinding), "level": level, "atol": atol, "rtol": rtol,
        "profile": {k: {"min": list(lo), "opt": list(mid), "max": list(hi)} for k, (lo, mid, hi) in profile.items()}
        if profile else None,
    }
    return BenchReport(label, len(proto.graph.node), inputs, batch, settings, machine_info(), memory.method,
                       [r.result for r in runners], unavailable, notes)


def run_benchmark(model, feeds, providers=None, iterations=50, warmup=5, threads=0, onnxruntime=True):
    """The older entry point: (results, onnxruntime CPU result or None, notes)."""
    rep = benchmark(model, feeds, providers=providers, iterations=iterations, warmup=warmup, threads=threads,
                    onnxruntime=onnxruntime, progress=False)
    ref = next((r for r in rep.results if r.runtime == "onnxruntime" and r.provider == "CPUExecutionProvider"), None)
    notes = [f"{u['runtime']} {u['provider']}: skipped ({u['reason']})" for u in rep.unavailable] + rep.notes
    return rep.results, ref, notes
