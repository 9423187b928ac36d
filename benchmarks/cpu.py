"""CPU benchmark suite: ortlite against onnxruntime on models shaped like real exports.

    python benchmarks/cpu.py                       # every model, 2 threads, writes benchmarks/results/cpu.md
    python benchmarks/cpu.py --models bert_b1_s128,resnet50_b1 --runs 10
    python benchmarks/cpu.py --list
    python benchmarks/cpu.py --providers cpu,openvino --out benchmarks/results/openvino.md

``--providers`` names the ortlite configurations to run beside onnxruntime: ``cpu`` (the numpy
CPU provider) and ``openvino`` (``["OpenVINOExecutionProvider", "CPUExecutionProvider"]``, with
an engine cache in a temporary directory). With ``openvino`` two more things are measured:
OpenVINO's own runtime on the whole model (compile_model + an infer request, nothing of ortlite),
so the ortlite overhead around the engine shows, and session creation with a warm engine cache
(a second session over the same cache) against onnxruntime's session creation.

For each model both runtimes run in this process with the same intra-op thread count,
alternating (A B A B ...), and the medians and their ratio are reported. onnxruntime runs
with session.intra_op.allow_spinning=0, so its idle threads do not steal the cores from
ortlite's runs. Session creation is timed in this process too; peak memory (RSS) is measured
in a fresh subprocess per runtime and model (load, warm up, run), so the two do not mix.
A separate row reports the executor's per-node overhead on a chain of 1,000 tiny nodes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings

# OpenBLAS's idle workers spin for about 2^28 cycles after each call (its default THREAD_TIMEOUT), which
# takes the cores from whichever runtime runs next (measured: onnxruntime and OpenVINO 20-90% slower right
# after an ortlite CPU run, and the spin outlasts many millisecond runs). So runtimes alternate in blocks of
# BLOCK runs with SETTLE seconds between turns (ortlite.bench.alternate): each keeps its threads warm within
# its turn and starts it on quiet cores; the first run of a turn (threads waking) is discounted by the
# medians. (OPENBLAS_THREAD_TIMEOUT=4 instead would make ortlite's threads sleep between its own calls.)
# A turn lasts at least TURN_S: a model that runs in microseconds gets as many runs per turn as that takes
# (up to MAX_BLOCK), so the pause before a turn (idle cores clock down, caches go cold) touches its first
# runs only and the median is a warm run, as in a service.
BLOCK = 5
SETTLE = 0.15
TURN_S = 0.03
MAX_BLOCK = 400

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _zoo(name, **kw):
    def make():
        from ortlite import zoo

        return getattr(zoo, name)(**kw), kw

    return make


def _light(name):
    def make():
        import onnx

        path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{name}.onnx")
        return onnx.load(path), {}

    return make


def _gbm():
    sys.path.insert(0, HERE)
    from gbm import build_model

    import onnx

    data, X, _ = build_model(500, 4, 20, 4000, 0)
    return onnx.ModelProto.FromString(data), {"rows": 1000, "X": X[:1000]}


def _tiny_chain(n=1000):
    from onnx import TensorProto, helper

    nodes, prev = [], "x"
    for i in range(n):
        nodes.append(helper.make_node("Relu" if i % 2 else "Neg", [prev], [f"v{i}"]))
        prev = f"v{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), {}


MODELS = {
    "resnet50_b1": _zoo("resnet50", batch=1),
    "resnet50_b8": _zoo("resnet50", batch=8),
    "mobilenet_v2_b1": _zoo("mobilenet_v2", batch=1),
    "mobilenet_v2_b8": _zoo("mobilenet_v2", batch=8),
    "bert_b1_s16": _zoo("bert_base", batch=1, seq=16),
    "bert_b1_s128": _zoo("bert_base", batch=1, seq=128),
    "gpt2_s64": _zoo("gpt2", batch=1, seq=64),
    "yolo_320": _zoo("yolo_style", batch=1, size=320),
    "lstm_text": _zoo("lstm_text", batch=1, seq=32),
    "gbm_500_trees": _gbm,
    "light_resnet50": _light("resnet50"),
    "light_densenet121": _light("densenet121"),
    "light_inception_v1": _light("inception_v1"),
    "light_inception_v2": _light("inception_v2"),
    "light_shufflenet": _light("shufflenet"),
    "light_squeezenet": _light("squeezenet"),
    "light_vgg19": _light("vgg19"),
    "light_bvlc_alexnet": _light("bvlc_alexnet"),
    "light_zfnet512": _light("zfnet512"),
    # benchmarks/cpu_models.py (the script's folder is on sys.path when run as a script)
    "vad_lstm_if": lambda: __import__("cpu_models").vad_lstm_if(),
    "gru_greedy_loop": lambda: __import__("cpu_models").gru_greedy_loop(),
    "gru_seq2seq": lambda: __import__("cpu_models").gru_seq2seq(),
    "lstm_tagger_int8": lambda: __import__("cpu_models").lstm_tagger_int8(),
    "bert_small_int8": lambda: __import__("cpu_models").bert_small_int8(),
    "cnn_int8": lambda: __import__("cpu_models").cnn_int8(),
    "if_mlp_tiny": lambda: __import__("cpu_models").if_mlp_tiny(),
}


def feeds_for(model, kw):
    from ortlite import zoo

    if "X" in kw:
        return {model.graph.input[0].name: kw["X"]}
    inits = {t.name for t in model.graph.initializer}
    dims = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param:
                if "batch" in d.dim_param:
                    dims[d.dim_param] = kw.get("batch", 1)
                elif "seq" in d.dim_param:
                    dims[d.dim_param] = kw.get("seq", 1)
    return zoo.example_inputs(model, dims=dims)


_RSS_SCRIPT = r"""
import json, resource, sys, warnings, numpy as np
warnings.simplefilter("ignore")
path, runtime, threads, runs, feeds_path = sys.argv[1:6]
feeds = dict(np.load(feeds_path, allow_pickle=False))
if runtime == "ortlite":
    import ortlite as rt
    so = rt.SessionOptions()
else:
    import onnxruntime as rt
    so = rt.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
so.intra_op_num_threads = int(threads)
s = rt.InferenceSession(path, so, providers=["CPUExecutionProvider"])
for _ in range(int(runs)):
    s.run(None, feeds)
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would start at the parent's size.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
kb = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_mb": kb / 1024}))
"""


def peak_rss(path, runtime, threads, feeds, tmp):
    fp = os.path.join(tmp, "feeds.npz")
    np.savez(fp, **feeds)
    r = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, path, runtime, str(threads), "3", fp],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return float("nan")
    return json.loads(r.stdout.strip().splitlines()[-1])["rss_mb"]


CONFIGS = {
    "cpu": lambda cache, threads: ["CPUExecutionProvider"],
    "openvino": lambda cache, threads: [("OpenVINOExecutionProvider", {"cache_dir": cache, "num_of_threads": str(threads)}),
                                        "CPUExecutionProvider"],
}


class _OpenVINORaw:
    """OpenVINO's own runtime on the whole model: the floor ortlite's OpenVINO provider sits on."""

    def __init__(self, path, feeds, threads):
        import openvino as ov

        core = ov.Core()
        cfg = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        t0 = time.perf_counter()
        cm = core.compile_model(core.read_model(path), "CPU", cfg)
        self.create_ms = (time.perf_counter() - t0) * 1e3
        self.req = cm.create_infer_request()
        ports = {p.get_any_name(): p for p in cm.inputs}
        for name, v in feeds.items():
            self.req.set_tensor(ports[name], ov.Tensor(np.ascontiguousarray(v), shared_memory=True))
        self.latencies_ms = []

    def call(self):
        self.req.infer()

    def once(self):
        t0 = time.perf_counter()
        self.req.infer()
        self.latencies_ms.append((time.perf_counter() - t0) * 1e3)


def turn_block(runners, warmup):
    """Warm every runner up, then the runs per turn: BLOCK, or as many as fill TURN_S for the slowest
    runner (at most MAX_BLOCK)."""
    for _ in range(max(1, warmup)):
        for r in runners:
            r.call()
    slowest = 0.0
    for r in runners:
        t0 = time.perf_counter()
        r.call()
        slowest = max(slowest, time.perf_counter() - t0)
    return int(min(MAX_BLOCK, max(BLOCK, TURN_S / max(slowest, 1e-7))))


def bench_one(name, threads, runs, warmup, rss, tmp, configs=("cpu",)):
    import onnxruntime as ort

    import ortlite
    from ortlite.bench import _Runner, alternate, onnxruntime_runner

    model, kw = MODELS[name]()
    feeds = feeds_for(model, kw)
    path = os.path.join(tmp, f"{name}.onnx")
    import onnx

    onnx.save(model, path)
    so = ortlite.SessionOptions()
    so.intra_op_num_threads = threads
    cache = os.path.join(tmp, f"engines-{name}")
    runners = {}
    for c in configs:
        provs = CONFIGS[c](cache, threads)
        runners[c] = _Runner(f"ortlite {c}", lambda provs=provs: ortlite.InferenceSession(path, so, providers=provs),
                             feeds)
    b = onnxruntime_runner(path, feeds, threads)
    raw = raw_error = None
    if "openvino" in configs:
        try:
            raw = _OpenVINORaw(path, feeds, threads)
        except Exception as e:  # noqa: BLE001 - OpenVINO alone cannot run it (ai.onnx.ml...): ortlite falls back
            raw_error = str(e).strip().splitlines()[-1][:120]
    everyone = list(runners.values()) + [b] + ([raw] if raw else [])
    block = turn_block(everyone, warmup)
    alternate(everyone, max(1, -(-runs // BLOCK)), 0, block=block, settle=SETTLE)
    row = {"model": name, "nodes": len(model.graph.node), "ort_ms": b.result.pct(50),
           "ort_create_ms": b.result.create_ms}
    for c, a in runners.items():
        err = 0.0
        for x, y in zip(a.out, b.out):
            if isinstance(x, np.ndarray) and x.dtype.kind in "fc" and x.size:
                err = max(err, float(np.max(np.abs(x.astype(np.float64) - y))))
        key = "ortlite" if c == "cpu" else c
        row[f"{key}_ms"] = a.result.pct(50)
        row[f"{key}_create_ms"] = a.result.create_ms
        row[f"{key}_max_abs_diff"] = err
        row[f"{key}_ratio"] = a.result.pct(50) / b.result.pct(50)
        if c == "openvino":
            rep = a.sess.get_placement()
            row["openvino_nodes"] = rep.counts().get("OpenVINOExecutionProvider", 0)
            row["openvino_groups"] = len(a.sess.engine_builds)
            row["openvino_build_ms"] = 1e3 * sum(x.seconds for x in a.sess.engine_builds)
            warm = []
            for _ in range(3):
                t0 = time.perf_counter()
                s2 = ortlite.InferenceSession(path, so, providers=CONFIGS[c](cache, threads))
                warm.append((time.perf_counter() - t0) * 1e3)
                assert all(x.cache == "hit" for x in s2.engine_builds), [x.cache for x in s2.engine_builds]
            row["openvino_warm_create_ms"] = min(warm)
            # the saved EP-context model (onnxruntime's format): engines load, the weights are not parsed
            so_ctx = ortlite.SessionOptions()
            so_ctx.intra_op_num_threads = threads
            so_ctx.optimized_model_filepath = os.path.join(tmp, f"{name}_ctx.onnx")
            ortlite.InferenceSession(path, so_ctx, providers=CONFIGS[c](cache, threads))
            ctx = []
            for _ in range(3):
                t0 = time.perf_counter()
                s3 = ortlite.InferenceSession(so_ctx.optimized_model_filepath, so, providers=CONFIGS[c](cache, threads))
                ctx.append((time.perf_counter() - t0) * 1e3)
                assert all(x.cache == "epcontext" for x in s3.engine_builds), [x.cache for x in s3.engine_builds]
            row["openvino_epcontext_create_ms"] = min(ctx)
            if raw is not None:
                row["openvino_raw_ms"] = float(np.median(raw.latencies_ms))
                row["openvino_raw_create_ms"] = raw.create_ms
                row["openvino_overhead_us"] = (row["openvino_ms"] - row["openvino_raw_ms"]) * 1e3
            else:
                row["openvino_raw_error"] = raw_error
    if "ortlite_ms" in row:
        row["ratio"] = row["ortlite_ratio"]
        row["max_abs_diff"] = row["ortlite_max_abs_diff"]
    if name == "tiny_chain" and "ortlite_ms" in row:
        n = len(model.graph.node)
        row["ortlite_us_per_node"] = row["ortlite_ms"] * 1e3 / n
        row["ort_us_per_node"] = row["ort_ms"] * 1e3 / n
    if rss and "ortlite_ms" in row:
        row["ortlite_rss_mb"] = peak_rss(path, "ortlite", threads, feeds, tmp)
        row["ort_rss_mb"] = peak_rss(path, "onnxruntime", threads, feeds, tmp)
    del ort
    return row


def engine_overhead_us(threads, runs=3000):
    """ortlite's cost around an OpenVINO engine, where noise cannot hide it: a 1-node model (Relu on
    16 floats) run through an ortlite session and through OpenVINO's own infer request, alternating
    in blocks of 100; medians of the per-run times in µs."""
    import onnx
    from onnx import TensorProto, helper

    import ortlite

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tiny.onnx")
        onnx.save(model, path)
        sess = ortlite.InferenceSession(path, providers=CONFIGS["openvino"](os.path.join(tmp, "c"), threads))
        raw = _OpenVINORaw(path, feeds, threads)
        ort_sess = None
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            ort_sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        except ImportError:
            pass
        t = {"ortlite": [], "raw": [], "ort": []}
        for _ in range(runs // 100):
            for key, fn in (("ortlite", lambda: sess.run(None, feeds)), ("raw", raw.req.infer),
                            ("ort", (lambda: ort_sess.run(None, feeds)) if ort_sess else None)):
                if fn is None:
                    continue
                for _ in range(100):
                    t0 = time.perf_counter()
                    fn()
                    t[key].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) * 1e6 for k, v in t.items() if v}
    return med


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def openvino_report(rows, args, cmd):
    from ortlite.bench import machine_line
    import openvino

    models = [r for r in rows if r["model"] != "tiny_chain"]
    over = engine_overhead_us(args.threads)
    over["runs"] = 3000
    rows.append({"model": "engine_overhead_1node", **over})
    geo = math.exp(sum(math.log(r["openvino_ratio"]) for r in models) / len(models))
    worst = max(models, key=lambda r: r["openvino_ratio"])
    create = [r["openvino_warm_create_ms"] / r["ort_create_ms"] for r in models]
    ctx = [r["openvino_epcontext_create_ms"] / r["ort_create_ms"] for r in models]
    lines = [
        "# OpenVINO provider: ortlite + OpenVINO vs onnxruntime CPU",
        "",
        f"- command: `{cmd}`",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {machine_line()}; openvino {openvino.__version__}",
        f"- method: one process, intra_op_num_threads / num_of_threads={args.threads}, {args.runs} runs each after "
        f"{args.warmup} warm-up runs, alternating between ortlite's configurations, onnxruntime CPU "
        "(session.intra_op.allow_spinning=0) and OpenVINO's own runtime on the whole model (`raw`: compile_model, "
        "one infer request, PERFORMANCE_HINT LATENCY); medians. `ortlite openvino` = providers "
        "[OpenVINOExecutionProvider, CPUExecutionProvider] with an engine cache; warm create = a second "
        "session on the same cache (best of 3). "
        f"Runtimes alternate in turns of {BLOCK} runs (more for short models: a turn lasts at least {TURN_S * 1e3:.0f} ms, "
        f"at most {MAX_BLOCK} runs), {SETTLE} s apart (OpenBLAS's spinning workers do not reach the next runtime's "
        "turn; the medians are warm runs).",
        f"- **ortlite openvino / onnxruntime CPU, geometric mean: {geo:.2f}**; worst {worst['model']} "
        f"({worst['openvino_ratio']:.2f}); models above 1.3x: "
        f"{', '.join(r['model'] for r in models if r['openvino_ratio'] > 1.3) or 'none'}",
        "- ortlite openvino - raw on the suite's models (difference of medians, a noise measure here: from "
        f"{min(r['openvino_overhead_us'] for r in models if 'openvino_overhead_us' in r):.0f} to "
        f"{max(r['openvino_overhead_us'] for r in models if 'openvino_overhead_us' in r):.0f} µs; the 1-node row below "
        "is the overhead; OpenVINO alone cannot load: "
        f"{', '.join(r['model'] + ' (' + r['openvino_raw_error'] + ')' for r in models if 'openvino_raw_error' in r) or 'none'})",
        f"- per-run cost on a 1-node model (Relu on 16 floats), medians of {over['runs']} runs: ortlite + OpenVINO "
        f"{over['ortlite']:.1f} µs, OpenVINO's own infer request {over['raw']:.1f} µs, so **ortlite adds "
        f"{over['ortlite'] - over['raw']:.1f} µs per run** around the engine (feed checks, the plan, the runner's "
        f"copies); onnxruntime CPU {over.get('ort', float('nan')):.1f} µs",
        f"- warm-cache session creation / onnxruntime session creation: geometric mean "
        f"{math.exp(sum(math.log(c) for c in create) / len(create)):.2f}, worst {max(create):.2f}; from the saved "
        f"EP-context model (optimized_model_filepath): geometric mean {math.exp(sum(math.log(c) for c in ctx) / len(ctx)):.2f}, "
        f"worst {max(ctx):.2f}",
        "",
        "| model | nodes | OV nodes / groups | onnxruntime ms | ortlite openvino ms | ratio | OV raw ms | overhead µs "
        "| ortlite cpu ms (ratio) | create ms: ort / OV cold / OV warm / EP context | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in models:
        cpu = f"{r['ortlite_ms']:.2f} ({r['ortlite_ratio']:.2f})" if "ortlite_ms" in r else "-"
        lines.append(
            f"| {r['model']} | {r['nodes']} | {r['openvino_nodes']} / {r['openvino_groups']} | {r['ort_ms']:.2f} | "
            f"{r['openvino_ms']:.2f} | {r['openvino_ratio']:.2f} | {_f(r.get('openvino_raw_ms'), '.2f')} | "
            f"{_f(r.get('openvino_overhead_us'), '.0f')} | {cpu} | {r['ort_create_ms']:.0f} / {r['openvino_create_ms']:.0f} / "
            f"{r['openvino_warm_create_ms']:.0f} / {r['openvino_epcontext_create_ms']:.0f} | "
            f"{r['openvino_max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=None,
                    help="the Markdown report (default: benchmarks/results/cpu.md or openvino.md for the whole suite; "
                         "a subset of --models prints its table only)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    ap.add_argument("--providers", default="cpu",
                    help=f"ortlite configurations to run beside onnxruntime, comma-separated: {', '.join(CONFIGS)}")
    args = ap.parse_args(argv)
    configs = [c for c in args.providers.split(",") if c]
    if args.out is None and args.models == ",".join(MODELS):
        args.out = os.path.join(HERE, "results", "openvino.md" if "openvino" in configs else "cpu.md")
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        ap.error(f"unknown --providers {bad}; valid: {', '.join(CONFIGS)}")
    if args.list:
        print("\n".join(MODELS))
        return 0
    from ortlite.bench import machine_line
    warnings.simplefilter("ignore")
    MODELS["tiny_chain"] = _tiny_chain
    names = [n for n in args.models.split(",") if n] + (["tiny_chain"] if "cpu" in configs else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            row = bench_one(name, args.threads, args.runs, args.warmup, not args.no_rss and name != "tiny_chain", tmp,
                            configs)
            rows.append(row)
            parts = [f"{c} {row[('ortlite' if c == 'cpu' else c) + '_ms']:9.2f} ms "
                     f"(x{row[('ortlite' if c == 'cpu' else c) + '_ratio']:.2f})" for c in configs]
            print(f"{name:22s} onnxruntime {row['ort_ms']:9.2f} ms  " + "  ".join(parts) +
                  (f"  OV raw {row['openvino_raw_ms']:.2f} ms" if "openvino_raw_ms" in row else "") +
                  (f"  OV alone cannot run it: {row['openvino_raw_error']}" if "openvino_raw_error" in row else "") +
                  f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    cmd = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(__file__, ROOT)] + (argv or sys.argv[1:]))
    if "openvino" in configs:
        _write(openvino_report(rows, args, cmd), rows, args)
        return 0
    models = [r for r in rows if r["model"] != "tiny_chain"]
    if not models:  # --models "": only the per-node overhead row
        chain = next(r for r in rows if r["model"] == "tiny_chain")
        print(f"per-node overhead: ortlite {chain['ortlite_us_per_node']:.2f} µs/node, onnxruntime "
              f"{chain['ort_us_per_node']:.2f} µs/node")
        return 0
    geo = math.exp(sum(math.log(r["ratio"]) for r in models) / len(models))
    worst = max(models, key=lambda r: r["ratio"])
    lines = [
        "# CPU benchmark: ortlite vs onnxruntime",
        "",
        f"- command: `{cmd}`",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {machine_line()}",
        f"- method: same process, intra_op_num_threads={args.threads} for both, {args.runs} runs each after "
        f"{args.warmup} warm-up runs, alternating; medians. onnxruntime: session.intra_op.allow_spinning=0. "
        "Peak RSS from a separate process per runtime and model. "
        f"Runtimes alternate in turns of {BLOCK} runs (more for short models: a turn lasts at least {TURN_S * 1e3:.0f} ms, "
        f"at most {MAX_BLOCK} runs), {SETTLE} s apart (OpenBLAS's spinning workers do not reach the next runtime's "
        "turn; the medians are warm runs).",
        f"- **geometric mean of the ratio ortlite / onnxruntime: {geo:.2f}**; worst: {worst['model']} "
        f"({worst['ratio']:.2f})",
        "",
        "| model | nodes | ortlite ms | onnxruntime ms | ratio | create ms (ortlite / ort) | peak RSS MB (ortlite / ort) | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in models:
        rss = (f"{r['ortlite_rss_mb']:.0f} / {r['ort_rss_mb']:.0f}" if "ortlite_rss_mb" in r else "-")
        lines.append(f"| {r['model']} | {r['nodes']} | {r['ortlite_ms']:.2f} | {r['ort_ms']:.2f} | {r['ratio']:.2f} | "
                     f"{r['ortlite_create_ms']:.0f} / {r['ort_create_ms']:.0f} | {rss} | {r['max_abs_diff']:.1e} |")
    chain = next(r for r in rows if r["model"] == "tiny_chain")
    lines += [
        "",
        f"Per-node executor overhead (a chain of 1,000 Relu/Neg nodes on 4 floats): ortlite "
        f"{chain['ortlite_us_per_node']:.2f} µs/node, onnxruntime {chain['ort_us_per_node']:.2f} µs/node.",
        "",
    ]
    _write("\n".join(lines), rows, args)
    return 0


def _write(text, rows, args):
    """The report printed and written to --out (the rows to --json too)."""
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
