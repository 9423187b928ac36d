"""Soak benchmark (not a test): resident memory over many runs and many session create/drop cycles,
ortlite and onnxruntime side by side in one process.

    python benchmarks/soak.py                     # 10,000 runs, 200 cycles per runtime and model
    python benchmarks/soak.py --runs 2000 --cycles 50

The models are tests/reliability/mutator.py's seed models (a CNN, a transformer block, a
Loop/If model, a tree ensemble + ZipMap). RSS is read from /proc/self/status (VmRSS) after a
warm-up, then at ten checkpoints; "growth" is the last checkpoint minus the first, so a flat
line (a few MiB of allocator noise) is the expected result. Writes benchmarks/results/soak.md.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from mutator import SEEDS  # noqa: E402


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _session(mod, model):
    if mod.__name__ == "onnxruntime":
        so = mod.SessionOptions()
        so.log_severity_level = 3
        return mod.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return mod.InferenceSession(model, providers=["CPUExecutionProvider"])


def soak_runs(mod, model, feeds, runs):
    sess = _session(mod, model)
    for _ in range(max(1, runs // 20)):  # warm-up: pools and caches settle first
        sess.run(None, feeds)
    gc.collect()
    marks = [rss_mib()]
    step = max(1, runs // 10)
    t0 = time.perf_counter()
    for i in range(1, runs + 1):
        sess.run(None, feeds)
        if i % step == 0:
            marks.append(rss_mib())
    return marks, time.perf_counter() - t0


def soak_cycles(mod, model, feeds, cycles):
    for _ in range(max(1, cycles // 20)):
        _session(mod, model).run(None, feeds)
    gc.collect()
    marks = [rss_mib()]
    step = max(1, cycles // 10)
    t0 = time.perf_counter()
    for i in range(1, cycles + 1):
        sess = _session(mod, model)
        sess.run(None, feeds)
        del sess
        if i % step == 0:
            gc.collect()
            marks.append(rss_mib())
    return marks, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.md"))
    args = ap.parse_args()

    import onnxruntime

    import ortlite

    rows = []
    for name, build in SEEDS.items():
        model, feeds = build()
        data = model.SerializeToString()
        for mod in (ortlite, onnxruntime):
            for what, fn, n in (("runs", soak_runs, args.runs), ("create/drop", soak_cycles, args.cycles)):
                marks, secs = fn(mod, data, feeds, n)
                rows.append((name, mod.__name__, what, n, marks, secs))
                print(f"{name:13s} {mod.__name__:12s} {what:11s} x{n}: RSS {marks[0]:.1f} -> {marks[-1]:.1f} MiB "
                      f"(growth {marks[-1] - marks[0]:+.1f}, peak {max(marks):.1f}) in {secs:.1f} s", flush=True)

    cmd = "python benchmarks/soak.py" + ("" if (args.runs, args.cycles) == (10_000, 200)
                                         else f" --runs {args.runs} --cycles {args.cycles}")
    lines = ["# Soak: resident memory over runs and session create/drop cycles", "",
             f"Command: `{cmd}` (ortlite {ortlite.__version__}, onnxruntime {onnxruntime.__version__}, "
             "one process, CPU provider).", "",
             "RSS (VmRSS) after a warm-up, then at ten checkpoints; growth = last - first.", "",
             "| model | runtime | loop | count | RSS start (MiB) | RSS end (MiB) | growth (MiB) | peak (MiB) | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, rt, what, n, marks, secs in rows:
        lines.append(f"| {name} | {rt} | {what} | {n} | {marks[0]:.1f} | {marks[-1]:.1f} | "
                     f"{marks[-1] - marks[0]:+.1f} | {max(marks):.1f} | {secs:.1f} |")
    lines += ["", "Checkpoints (MiB):", ""]
    for name, rt, what, n, marks, _ in rows:
        lines.append(f"- {name} / {rt} / {what}: " + ", ".join(f"{m:.1f}" for m in marks))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
