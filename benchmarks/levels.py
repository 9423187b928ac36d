"""Latency at each graph optimization level, against onnxruntime at ORT_ENABLE_ALL.

    python benchmarks/levels.py [--models bert_base,resnet50] [--iterations 20] [--threads 0]

For each model: ortlite at ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED and
ORT_ENABLE_ALL, and onnxruntime at ORT_ENABLE_ALL, in one process, runs alternating,
medians reported with node counts after optimization and the ratio to onnxruntime.
Writes benchmarks/results/levels.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import warnings

import numpy as np

import ortlite
from ortlite import zoo
from ortlite.bench import _Runner, alternate, machine_line, onnxruntime_runner

LEVELS = [
    ("ORT_DISABLE_ALL", ortlite.GraphOptimizationLevel.ORT_DISABLE_ALL),
    ("ORT_ENABLE_BASIC", ortlite.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    ("ORT_ENABLE_EXTENDED", ortlite.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    ("ORT_ENABLE_ALL", ortlite.GraphOptimizationLevel.ORT_ENABLE_ALL),
]

MODELS = {
    "bert_base": lambda: zoo.bert_base(batch=1, seq=128),
    "resnet50": lambda: zoo.resnet50(batch=1),
}


def bench_model(name, iterations, warmup, threads):
    import onnxruntime

    model = MODELS[name]()
    data = model.SerializeToString()
    feeds = zoo.example_inputs(model)
    ortlite.registry.load_all_kernels()
    runners, nodes = [], {}
    for label, level in LEVELS:
        so = ortlite.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = threads
        r = _Runner(f"ortlite {label}", lambda so=so: ortlite.InferenceSession(data, so), feeds)
        nodes[r.result.label] = len(r.sess._graph.nodes)
        runners.append(r)
    ref = onnxruntime_runner(data, feeds, threads, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
                             f"onnxruntime {onnxruntime.__version__} ORT_ENABLE_ALL")
    runners.append(ref)
    alternate(runners, iterations, warmup)
    base = ref.result.pct(50)
    rows = []
    for r in runners:
        out_err = max(float(np.max(np.abs(a - b))) for a, b in zip(r.out, ref.out))
        rows.append((r.result.label, nodes.get(r.result.label, "-"), r.result.create_ms, r.result.pct(50),
                     r.result.pct(50) / base, out_err))
    return len(model.graph.node), rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="bert_base,resnet50")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "levels.md"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    lines = [
        "# Latency by graph optimization level",
        "",
        f"Command: `python benchmarks/levels.py --models {args.models} --iterations {args.iterations} "
        f"--threads {args.threads}`  ",
        f"Date: {datetime.date.today()}  ",
        f"Machine: {machine_line()}  ",
        "onnxruntime runs with session.intra_op.allow_spinning=0; runs alternate between sessions; medians.",
        "",
    ]
    for name in args.models.split(","):
        n_nodes, rows = bench_model(name, args.iterations, args.warmup, args.threads)
        lines += [f"## {name} ({n_nodes} nodes in the model)", "",
                  "| session | nodes after optimization | create ms | p50 ms | ratio vs onnxruntime ALL | max abs diff vs onnxruntime |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, nodes, create, p50, ratio, err in rows:
            lines.append(f"| {label} | {nodes} | {create:.0f} | {p50:.2f} | {ratio:.2f} | {err:.1e} |")
        lines.append("")
        print("\n".join(lines[-len(rows) - 4:]), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
