"""The node suite on the CUDA provider over the strict CuPy stand-in, as a report.

    python tests/cuda_provider/strict_report.py [-k SUBSTR ...] [--record] [--update-xfail] [--out FILE]

Default: each case runs with refused uses raising (as the pytest module does); prints the share of
CPU-passing cases that pass, and the failures grouped by the site that refused them.
``--record``: refused uses are recorded and the run goes on with numpy, so every problem of every
case is listed, plus what a GPU run would pay for (syncs, host->device copies, cuBLAS calls: what
keeps a plan out of a CUDA graph), by site. ``--update-xfail`` rewrites
tests/conformance/expected_failures_cuda.txt from the failures (each with its error as the reason).
Needs CuPy importable (the test extra installs it; no GPU is used).
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]

from conformance import node_suite as ns  # noqa: E402
from cuda_provider import strict_cupy as sc  # noqa: E402
from cuda_provider.strict_backend import StrictCUDAExecutionProvider  # noqa: E402

XFAIL_CUDA = os.path.join(os.path.dirname(ns.XFAIL_FILE), "expected_failures_cuda.txt")
PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _reason(msg: str) -> str:
    """The refusal (or the error) of a failure, without node names: one line."""
    msg = " ".join(msg.split()).split("; inputs: ")[0]
    m = re.search(r"\[strict cupy\] ([A-Z_]+ at \S+)[^:]*: (.*)", msg)
    if m:
        return f"{m.group(1)}: {m.group(2)}"[:200]
    return re.sub(r"node '[^']*'", "node", msg)[:200]


CAPTURE_TABLE = os.path.join(os.path.dirname(TESTS), "providers", "_cuda_capture.py")
# what keeps a kernel out of a CUDA graph, by the category the stand-in records
_CAPTURE_REASONS = {
    "BLAS": "calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290)",
    "LINALG": "calls cuSOLVER / cuBLAS, which CuPy refuses during stream capture",
    "CURAND": "calls cuRAND, which CuPy refuses during stream capture",
    "SYNC": "waits for the device mid-kernel (a value read on the host or a data-dependent shape)",
    "H2D": "copies host data to the device on every run (a capture would replay a freed host buffer)",
}


def capture_table(events) -> dict:
    """{(domain, op): reason} for the ops whose kernels recorded an uncapturable use in a kernel."""
    found = collections.defaultdict(dict)
    for (cat, site, op, _det), _n in events.items():
        if cat in _CAPTURE_REASONS and not op.startswith("("):
            domain, _, op_type = op.rpartition(":")
            found[(domain, op_type)].setdefault(cat, site.split(":")[0])
    return {key: "; ".join(f"{_CAPTURE_REASONS[c]} ({found[key][c]})" for c in sorted(found[key]))
            for key in sorted(found)}


def write_capture_table(table, path=CAPTURE_TABLE):
    with open(path, "w", encoding="utf-8") as f:
        f.write('"""CUDA kernels that cannot run inside a CUDA graph capture, and why. Generated: do not edit.\n\n'
                "Written by `python tests/cuda_provider/strict_report.py --capture-table` from what the strict\n"
                "CuPy stand-in recorded while the ONNX node suite ran on the CUDA provider (cuBLAS / cuSOLVER /\n"
                "cuRAND calls, host syncs, host->device copies inside a kernel);\n"
                "tests/cuda_provider/test_strict_node_suite.py checks that it matches a fresh run.\n"
                '"""\n\nUNCAPTURABLE = {\n')
        for (domain, op), reason in table.items():
            f.write(f"    ({domain!r}, {op!r}): {reason!r},\n")
        f.write("}\n")


def zoo_models():
    """{name: model builder}: the zoo's model families, small, run at the default optimization level
    (so the com.microsoft fused ops the node suite lacks run too)."""
    from ortlite import zoo

    return {
        "demo": lambda: zoo.demo(),
        "resnet50_64px": lambda: zoo.resnet50(batch=1, size=64),
        "mobilenet_v2_64px": lambda: zoo.mobilenet_v2(batch=1, size=64),
        "bert_tiny": lambda: zoo.bert_tiny(batch=1, seq=16),
        "gpt2_2_layers": lambda: zoo.gpt2(batch=1, seq=16, layers=2),
        "yolo_style_64px": lambda: zoo.yolo_style(batch=1, size=64),
        "lstm_text": lambda: zoo.lstm_text(batch=1, seq=8),
        "gru_text": lambda: zoo.lstm_text(batch=1, seq=8, cell="GRU"),
    }


def record_node_suite(cases=None):
    """Run the node suite and the zoo models on the stand-in with refused uses recorded, not raised:
    sc.EVENTS."""
    import ortlite.providers as providers

    sc.reset()
    raise_before, sc.RAISE[0] = sc.RAISE[0], False
    providers.register_provider(StrictCUDAExecutionProvider, priority=0)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # cases run on after refused uses
            warnings.simplefilter("ignore")
            _record_runs(cases)
    finally:
        providers.unregister_provider(StrictCUDAExecutionProvider.name)
        sc.RAISE[0] = raise_before
    return sc.EVENTS


def _record_runs(cases):
    import ortlite
    from ortlite import zoo

    for case in cases if cases is not None else ns.load_cases():
        sc.CURRENT_CASE[0] = case[0]
        try:
            ns.run_case(case, PROVIDERS)
        except Exception:  # noqa: BLE001 - only the recorded events matter here
            pass
    for name, make in zoo_models().items():
        sc.CURRENT_CASE[0] = name
        model = make()
        ortlite.InferenceSession(model.SerializeToString(), providers=list(PROVIDERS)).run(
            None, zoo.example_inputs(model))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[], help="run the cases whose name holds this")
    ap.add_argument("--record", action="store_true", help="record refused uses and go on (list every problem)")
    ap.add_argument("--update-xfail", action="store_true", help="rewrite expected_failures_cuda.txt")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--capture-table", action="store_true", help=f"rewrite {os.path.relpath(CAPTURE_TABLE)}")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("ortlite").setLevel(logging.ERROR)  # placement summaries
    if a.capture_table:
        table = capture_table(record_node_suite())
        write_capture_table(table)
        print(f"wrote {len(table)} ops to {CAPTURE_TABLE}")
        return
    import ortlite.providers as providers

    cases = ns.load_cases()
    if a.k:
        cases = [c for c in cases if any(k in c[0] for k in a.k)]
    cpu_xfail = ns.load_xfail()
    sc.RAISE[0] = not a.record
    providers.register_provider(StrictCUDAExecutionProvider, priority=0)
    failures, events_by_case = {}, collections.defaultdict(set)
    for case in cases:
        sc.CURRENT_CASE[0] = case[0]
        try:
            ns.run_case(case, PROVIDERS)
        except Exception as e:  # noqa: BLE001 - each failure is reported
            failures[case[0]] = _reason(f"{type(e).__name__}: {e}")
    for (cat, site), names in sc.CASES.items():
        for n in names:
            events_by_case[n].add((cat, site))
    cpu_pass = [c[0] for c in cases if c[0] not in cpu_xfail]
    bad = [n for n in cpu_pass if n in failures or (a.record and any(c in sc.FAILS for c, _ in events_by_case[n]))]
    lines = [f"{len(cpu_pass) - len(bad)} of {len(cpu_pass)} CPU-passing cases pass on the strict CUDA stand-in "
             f"({100 * (1 - len(bad) / max(1, len(cpu_pass))):.1f}%)" + (" (recording: refused uses counted)" if a.record else "")]
    by_site = collections.Counter()
    for n in bad:
        sites = {s for c, s in events_by_case[n] if c in sc.FAILS} or {re.sub(r"\d+", "N", failures.get(n, "?"))[:90]}
        for s in sites:
            by_site[s] += 1
    lines.append("\nfailing cases by site:")
    lines += [f"{v:6d}  {k}" for k, v in by_site.most_common()]
    if a.record:
        lines.append("\nrecorded uses (legal on a GPU; they cost time or keep a plan out of a CUDA graph), by category:")
        cats = collections.Counter()
        for (cat, site, op, det), cnt in sc.EVENTS.items():
            if cat not in sc.FAILS:
                cats[(cat, site)] += cnt
        lines += [f"{v:8d}  {c:8s} {s}" for (c, s), v in cats.most_common(40)]
    report = "\n".join(lines)
    print(report)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(report + "\n")
    if a.update_xfail and not a.record:
        keep = {}
        if a.k:  # a partial run keeps the entries of the cases it did not run
            ran = {c[0] for c in cases}
            keep = {n: r for n, r in ns.load_xfail(XFAIL_CUDA).items() if n not in ran}
        keep.update({n: failures[n] for n in bad})
        with open(XFAIL_CUDA, "w", encoding="utf-8") as f:
            f.write("# Node-suite cases that fail on the CUDA provider over the strict CuPy stand-in, with the\n"
                    "# refusal; written by tests/cuda_provider/strict_report.py --update-xfail.\n")
            for n in sorted(keep):
                f.write(f"{n}: {keep[n]}\n")
        print(f"wrote {len(keep)} entries to {XFAIL_CUDA}")


if __name__ == "__main__":
    main()
