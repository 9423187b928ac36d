"""CPU benchmark suite: ortlite against onnxruntime on models shaped like real exports.

    python benchmarks/cpu.py                       # every model, 2 threads, writes benchmarks/results/cpu.md
    python benchmarks/cpu.py --models bert_b1_s128,resnet50_b1 --runs 10
    python benchmarks/cpu.py --list

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

import numpy as np

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


def bench_one(name, threads, runs, warmup, rss, tmp):
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
    a = _Runner("ortlite", lambda: ortlite.InferenceSession(path, so, providers=["CPUExecutionProvider"]), feeds)
    b = onnxruntime_runner(path, feeds, threads)
    alternate([a, b], runs, warmup)
    err = 0.0
    for x, y in zip(a.out, b.out):
        if isinstance(x, np.ndarray) and x.dtype.kind in "fc" and x.size:
            err = max(err, float(np.max(np.abs(x.astype(np.float64) - y))))
    row = {
        "model": name, "nodes": len(model.graph.node),
        "ortlite_ms": a.result.pct(50), "ort_ms": b.result.pct(50),
        "ortlite_create_ms": a.result.create_ms, "ort_create_ms": b.result.create_ms,
        "max_abs_diff": err,
    }
    if name == "tiny_chain":
        n = len(model.graph.node)
        row["ortlite_us_per_node"] = row["ortlite_ms"] * 1e3 / n
        row["ort_us_per_node"] = row["ort_ms"] * 1e3 / n
    if rss:
        row["ortlite_rss_mb"] = peak_rss(path, "ortlite", threads, feeds, tmp)
        row["ort_rss_mb"] = peak_rss(path, "onnxruntime", threads, feeds, tmp)
    row["ratio"] = row["ortlite_ms"] / row["ort_ms"]
    del ort
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cpu.md"))
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    from ortlite.bench import machine_line
    warnings.simplefilter("ignore")
    MODELS["tiny_chain"] = _tiny_chain
    names = [n for n in args.models.split(",") if n] + ["tiny_chain"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            row = bench_one(name, args.threads, args.runs, args.warmup, not args.no_rss and name != "tiny_chain", tmp)
            rows.append(row)
            print(f"{name:22s} ortlite {row['ortlite_ms']:9.2f} ms  onnxruntime {row['ort_ms']:9.2f} ms  "
                  f"ratio {row['ratio']:.2f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    models = [r for r in rows if r["model"] != "tiny_chain"]
    geo = math.exp(sum(math.log(r["ratio"]) for r in models) / len(models))
    worst = max(models, key=lambda r: r["ratio"])
    cmd = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(__file__, ROOT)] + (argv or sys.argv[1:]))
    lines = [
        "# CPU benchmark: ortlite vs onnxruntime",
        "",
        f"- command: `{cmd}`",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {machine_line()}",
        f"- method: same process, intra_op_num_threads={args.threads} for both, {args.runs} runs each after "
        f"{args.warmup} warm-up runs, alternating; medians. onnxruntime: session.intra_op.allow_spinning=0. "
        "Peak RSS from a separate process per runtime and model.",
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
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
