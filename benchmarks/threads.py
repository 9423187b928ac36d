"""Concurrent runs on one session: throughput as threads are added, and latency under 16 clients.

Issue 17's in-process targets, side by side with onnxruntime in the same run:
- intra_op_num_threads=1: 2 threads give >= 1.6x one thread's runs/s, 16 threads never fewer than 1;
- default options: p99 within 2x of p50 with 16 concurrent clients.

    python benchmarks/threads.py                       # CNN and transformer, 1/2/4/16 threads
    python benchmarks/threads.py --runs 400 --md benchmarks/results/threads.md

Each cell is one shared session per runtime; T threads split ``--runs`` runs between them after a
warm-up (every thread runs once first); runtimes alternate per cell, and a cell is the best of
``--repeat`` tries (the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import numpy as np

import ortlite
from ortlite import zoo


def _models():
    return {
        "cnn": lambda: zoo.mobilenet_v2(size=128),
        "transformer": lambda: zoo.bert_base(1, 64, layers=2, hidden=256, heads=4, vocab=5000),
    }


def _session(runtime, model_bytes, intra):
    if runtime == "ortlite":
        so = ortlite.SessionOptions()
        if intra is not None:
            so.intra_op_num_threads = intra
        return ortlite.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    import onnxruntime as ort

    so = ort.SessionOptions()
    if intra is not None:
        so.intra_op_num_threads = intra
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _drive(sess, feeds, threads, runs):
    """(wall seconds, per-run latencies) of ``runs`` runs split over ``threads`` threads."""
    per = [runs // threads + (1 if k < runs % threads else 0) for k in range(threads)]
    lat = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    errors = []

    def work(k):
        feed = feeds[k % len(feeds)]
        sess.run(None, feed)  # warm: this thread's first run
        start.wait()
        out = lat[k]
        try:
            for _ in range(per[k]):
                t0 = time.perf_counter()
                sess.run(None, feed)
                out.append(time.perf_counter() - t0)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, [x for xs in lat for x in xs]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn,transformer")
    ap.add_argument("--threads", default="1,2,4,16")
    ap.add_argument("--runs", type=int, default=200, help="runs per cell, split over the threads")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--md", help="write a markdown report here")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    lines = [f"Command: `python benchmarks/threads.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"Machine: {os.cpu_count()} cores; ortlite {ortlite.__version__}; "
             f"onnxruntime {__import__('onnxruntime').__version__}", ""]
    for name in args.models.split(","):
        model = _models()[name]()
        data = model.SerializeToString()
        feeds = [zoo.example_inputs(model, seed=s) for s in range(4)]
        lines += [f"## {name}", "", "### intra_op_num_threads=1: runs/s (x one thread's)", "",
                  "| threads | ortlite | onnxruntime | ortlite/onnxruntime |", "|---|---|---|---|"]
        base = {}
        sess = {rt: _session(rt, data, 1) for rt in ("ortlite", "onnxruntime")}
        _wait_jit()
        for t in threads:
            best = {}
            for _ in range(args.repeat):
                for rt in ("ortlite", "onnxruntime"):
                    wall, _lat = _drive(sess[rt], feeds, t, args.runs)
                    best[rt] = max(best.get(rt, 0.0), args.runs / wall)
            for rt in best:
                base.setdefault(rt, best[rt])
            row = (f"| {t} | {best['ortlite']:.0f} ({best['ortlite'] / base['ortlite']:.2f}x) | "
                   f"{best['onnxruntime']:.0f} ({best['onnxruntime'] / base['onnxruntime']:.2f}x) | "
                   f"{base['onnxruntime'] and best['onnxruntime'] / best['ortlite']:.2f} |")
            lines.append(row)
            print(name, row, flush=True)
        sess = {rt: _session(rt, data, None) for rt in ("ortlite", "onnxruntime")}
        _wait_jit()
        lines += ["", "### default options, 16 concurrent clients: latency (ms)", "",
                  "| runtime | runs/s | p50 | p99 | p99/p50 |", "|---|---|---|---|---|"]
        for rt in ("ortlite", "onnxruntime"):
            wall, lat = _drive(sess[rt], feeds, 16, max(args.runs, 160))
            q = statistics.quantiles(lat, n=100)
            p50, p99 = statistics.median(lat) * 1e3, q[98] * 1e3
            row = f"| {rt} | {len(lat) / wall:.0f} | {p50:.1f} | {p99:.1f} | {p99 / p50:.2f} |"
            lines.append(row)
            print(name, row, flush=True)
        lines.append("")
    text = "\n".join(lines) + "\n"
    if args.md:
        with open(args.md, "w") as f:
            f.write("# Concurrent runs on one session (issue 17)\n\n" + text)
    print(text)


def _wait_jit():
    try:
        from ortlite.kernels import _jit

        _jit.wait_background()
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    main()
