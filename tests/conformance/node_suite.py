"""The ONNX backend node suite, run through ortlite.

The cases come from the installed onnx package's own test-case generators
(``onnx.backend.test.case.node.collect_testcases``); the wheel ships no data,
so they are generated once and cached outside the repository (in
``$ORTLITE_CACHE_DIR`` or ``~/.cache/ortlite``).

Command line (for working on kernels)::

    python tests/conformance/node_suite.py -k test_conv -k test_gemm   # run matching cases
    python tests/conformance/node_suite.py --summary                    # counts only
    python tests/conformance/node_suite.py --update-xfail               # rewrite the data file
    python tests/conformance/node_suite.py --summary --json cpu.json    # results as JSON
    python tests/conformance/node_suite.py --summary --jobs 8           # spawned worker processes
    python tests/conformance/node_suite.py --provider CUDAExecutionProvider --compare-with cpu.json --summary

Expected failures live in ``expected_failures.txt`` beside this file, one
``name: reason`` per line; the pytest module fails when any other case fails.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import sys
import time
import warnings
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
XFAIL_FILE = os.path.join(HERE, "expected_failures.txt")

# The providers run_case uses when none are passed; set_provider() changes them.
PROVIDERS = ("CPUExecutionProvider",)


def set_provider(name: str | None) -> tuple:
    """Run cases on ``name`` with the CPU provider as fallback (None: CPU only)."""
    global PROVIDERS
    if not name or name == "CPUExecutionProvider":
        PROVIDERS = ("CPUExecutionProvider",)
    else:
        PROVIDERS = (name, "CPUExecutionProvider")
    return PROVIDERS


def cache_path() -> str:
    root = os.environ.get("ORTLITE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ortlite")
    return os.path.join(root, f"node-suite-onnx-{onnx.__version__}.pkl")


def load_cases():
    """[(name, model_bytes, data_sets, rtol, atol)] for every node-suite case."""
    path = cache_path()
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # noqa: BLE001 - a stale or partial cache: regenerate
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        tcs = collect_testcases(None)
    cases = []
    for t in tcs:
        if t.model is None:
            continue
        sets = [(list(map(_norm, ins)), list(map(_norm, outs))) for ins, outs in t.data_sets]
        cases.append((t.name, t.model.SerializeToString(), sets, t.rtol, t.atol))
    cases.sort(key=lambda c: c[0])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(cases, f)
    os.replace(tmp, path)
    return cases


def _norm(v):
    if isinstance(v, onnx.TensorProto):
        return onnx.numpy_helper.to_array(v)
    return v


def load_xfail(path: str = XFAIL_FILE) -> dict:
    """{case name: reason} from an expected-failures file (``name: reason`` lines)."""
    out = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, _, reason = line.partition(":")
                out[name.strip()] = reason.strip()
    return out


def run_case(case, providers=None):
    """Run one case; raises AssertionError (mismatch) or the runtime's error.

    ``providers`` defaults to the module's PROVIDERS. Returns the session's nodes per provider.
    """
    import ortlite

    name, model_bytes, data_sets, rtol, atol = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ortlite.InferenceSession(model_bytes, providers=list(providers or PROVIDERS))
    model = onnx.ModelProto.FromString(model_bytes)
    inits = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in inits]
    out_names = [o.name for o in model.graph.output]
    for inputs, expected in data_sets:
        feeds = dict(zip(in_names, inputs))
        got = sess.run(out_names, feeds)
        assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
        for oname, g, e in zip(out_names, got, expected):
            assert_similar(g, e, rtol, atol, oname)
    return sess.get_placement().counts()


def one_per_op(cases):
    """The first case of each (domain, op) the cases' models run, expanded function bodies apart."""
    seen, out = set(), []
    for c in cases:
        if c[0].endswith("_expanded"):
            continue
        ops = {(n.domain, n.op_type) for n in onnx.ModelProto.FromString(c[1]).graph.node}
        if ops - seen:
            seen |= ops
            out.append(c)
    return out


def assert_similar(got, exp, rtol, atol, where):
    if isinstance(exp, list):
        assert isinstance(got, list), f"{where}: expected a sequence, got {type(got).__name__}"
        assert len(got) == len(exp), f"{where}: sequence of {len(got)}, expected {len(exp)}"
        for k, (g, e) in enumerate(zip(got, exp)):
            assert_similar(g, e, rtol, atol, f"{where}[{k}]")
        return
    if exp is None:
        assert got is None, f"{where}: expected an empty optional, got {type(got).__name__}"
        return
    if isinstance(exp, dict):
        assert got == exp, f"{where}: map differs"
        return
    exp = np.asarray(exp)
    assert isinstance(got, np.ndarray), f"{where}: expected an ndarray, got {type(got).__name__}"
    assert got.dtype == exp.dtype, f"{where}: dtype {got.dtype}, expected {exp.dtype}"
    assert got.shape == exp.shape, f"{where}: shape {got.shape}, expected {exp.shape}"
    if exp.dtype == object or exp.dtype.kind in "biuUS":
        np.testing.assert_array_equal(got, exp, err_msg=where)
        return
    if exp.dtype.kind not in "fc":  # ml_dtypes types: compare as float32
        got, exp = got.astype(np.float32), exp.astype(np.float32)
    np.testing.assert_allclose(got, exp, rtol=rtol, atol=atol, err_msg=where, equal_nan=True)


def classify(case, placed=None):
    """("pass" | "mismatch" | "error", message); ``placed[name]`` gets the nodes per provider of a pass."""
    try:
        counts = run_case(case)
        if placed is not None:
            placed[case[0]] = counts
        return "pass", ""
    except AssertionError as e:
        return "mismatch", " ".join(str(e).split())[:300]
    except Exception as e:  # noqa: BLE001
        return "error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


# ---- parallel runs (--jobs): spawned workers, each loads the cached cases once -----------
_WORKER_CASES = None


def _worker_init(provider):
    global _WORKER_CASES
    root = os.path.dirname(os.path.dirname(HERE))
    if root not in sys.path:  # as the __main__ block does
        sys.path.insert(0, root)
    warnings.simplefilter("ignore")
    set_provider(provider)
    _WORKER_CASES = load_cases()


def _worker_chunk(indices):
    out = []
    for i in indices:
        placed = {}
        case = _WORKER_CASES[i]
        status, msg = classify(case, placed)
        out.append((case[0], status, msg, placed.get(case[0])))
    return out


def _iter_results(cases, all_cases, provider, jobs):
    """Yields (name, status, message, nodes per provider or None) in case order."""
    if jobs <= 1:
        for c in cases:
            placed = {}
            status, msg = classify(c, placed)
            yield c[0], status, msg, placed.get(c[0])
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    index = {c[0]: k for k, c in enumerate(all_cases)}
    # spawn, not fork: a parent that touched CUDA (the availability probe) cannot be forked safely.
    # ProcessPoolExecutor, not Pool: a worker killed by `timeout` breaks the pool instead of hanging it.
    ex = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(provider,))
    done = False
    try:
        idx = [index[c[0]] for c in cases]
        # submit, not map: map cancels its futures when closed, which races the broken-pool handler
        futures = [ex.submit(_worker_chunk, idx[k:k + 4]) for k in range(0, len(idx), 4)]
        for f in futures:
            yield from f.result()
        done = True
    finally:
        if not done:  # stopped early: end the workers rather than wait for their queue
            for p in list((getattr(ex, "_processes", None) or {}).values()):
                p.kill()
        ex.shutdown(wait=True)


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):  # `timeout` sends SIGTERM: stop and still write what ran
    raise _Terminated()


def compare(results: dict, cpu_json: dict) -> dict:
    """Share of the cases passing in ``cpu_json`` that also pass here (over the cases run here)."""
    cpu_passed = set(cpu_json.get("passed", []))
    ran = set(results)
    base = sorted(cpu_passed & ran)
    here = {n for n, r in results.items() if r[0] == "pass"}
    regressions = [n for n in base if n not in here]
    also = len(base) - len(regressions)
    return {
        "against": cpu_json.get("provider", "?"),
        "cpu_passed": len(base),
        "cpu_passed_not_run_here": len(cpu_passed - ran),
        "also_pass": also,
        "share": also / len(base) if base else None,
        "pass_here_fail_on_cpu": sorted(here - cpu_passed),
        "regressions": {n: f"{results[n][0]}: {results[n][1]}" for n in regressions},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[], help="substring of case names (repeatable)")
    ap.add_argument("--summary", action="store_true", help="print counts only")
    ap.add_argument("--failures", action="store_true", help="print failing cases only")
    ap.add_argument("--update-xfail", action="store_true",
                    help="rewrite expected_failures.txt: drop passing cases, add new failures (reason from the error)")
    ap.add_argument("--provider", default="CPUExecutionProvider",
                    help="run every case with providers=[PROVIDER, 'CPUExecutionProvider'] (default: CPU only)")
    ap.add_argument("--json", metavar="PATH", help="write {provider, passed, failed, total, ...} as JSON")
    ap.add_argument("--compare-with", metavar="PATH",
                    help="a JSON written by a CPU run: report the share of its passing cases that pass here")
    ap.add_argument("--min-share", type=float, default=None,
                    help="with --compare-with: exit 1 when the share is below this (e.g. 0.95)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (spawned; default 1)")
    ap.add_argument("--one-per-op", action="store_true",
                    help="only the first case of each op (every kernel once: a short run on a cold kernel cache)")
    args = ap.parse_args(argv)

    import ortlite.providers as prov

    try:
        provider = prov.canonical_name(args.provider)
    except ValueError as e:
        ap.error(str(e))
    providers = list(set_provider(provider))
    out = {"provider": provider, "providers": providers, "onnx": onnx.__version__,
           "passed": [], "failed": {}, "total": 0, "complete": False}
    if provider != "CPUExecutionProvider":
        ok, why = prov.availability(provider)
        if not ok:
            # every node would fall back to the CPU: that would measure the CPU provider again
            print(f"{provider} is unavailable: {why}\nnot running the suite on it (exit code 3)")
            out.update(available=False, reason=why)
            if args.json:
                _write_json(args.json, out)
            return 3
    if args.update_xfail and provider != "CPUExecutionProvider":
        ap.error("--update-xfail describes the CPU provider; drop --provider")
    cpu_json = None
    if args.compare_with:
        with open(args.compare_with, encoding="utf-8") as f:
            cpu_json = json.load(f)

    all_cases = load_cases()
    cases = all_cases
    if args.k:
        cases = [c for c in cases if any(k in c[0] for k in args.k)]
    if args.one_per_op:
        cases = one_per_op(cases)
    xfail = load_xfail()
    t0 = time.perf_counter()
    results = {}
    placed = {}
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    interrupted = None
    it = _iter_results(cases, all_cases, provider, args.jobs)
    try:
        for name, status, msg, counts in it:
            results[name] = (status, msg)
            if counts is not None:
                placed[name] = counts
            if not args.summary and not (args.failures and status == "pass"):
                print(f"{status:8s} {name}  {msg}", flush=True)
    except (KeyboardInterrupt, _Terminated, BrokenProcessPool) as e:
        interrupted = {_Terminated: "SIGTERM", KeyboardInterrupt: "KeyboardInterrupt"}.get(type(e), "a worker died")
        print(f"\nstopped by {interrupted} after {len(results)} of {len(cases)} cases", flush=True)
    finally:
        it.close()  # ends the workers of --jobs
        signal.signal(signal.SIGTERM, old)
    seconds = time.perf_counter() - t0
    n_pass = sum(1 for s, _ in results.values() if s == "pass")
    print(f"\n{n_pass}/{len(results)} passed ({100.0 * n_pass / max(len(results), 1):.1f}%) "
          f"on {provider} in {seconds:.1f}s")
    out.update(
        passed=sorted(n for n, (s, _) in results.items() if s == "pass"),
        failed={n: f"{s}: {m}" for n, (s, m) in sorted(results.items()) if s != "pass"},
        total=len(results), selected=len(cases), seconds=round(seconds, 1),
        complete=interrupted is None,
    )
    if interrupted:
        out["interrupted"] = interrupted
    if provider != "CPUExecutionProvider":
        # a pass with no node on the provider says nothing about the provider's kernels
        cpu_only = sorted(n for n, c in placed.items() if not c.get(provider))
        out["passed_with_nodes_on_provider"] = len(placed) - len(cpu_only)
        out["passed_all_on_cpu"] = cpu_only
        print(f"{len(placed) - len(cpu_only)} of the {len(placed)} passing cases ran at least one node on "
              f"{provider}; {len(cpu_only)} ran entirely on the CPU")
    if provider == "CPUExecutionProvider":
        unexpected = [n for n, (s, _) in results.items() if s != "pass" and n not in xfail]
        newly = [n for n, (s, _) in results.items() if s == "pass" and n in xfail]
        if unexpected:
            print(f"{len(unexpected)} failing case(s) not in expected_failures.txt")
        if newly:
            print(f"{len(newly)} case(s) listed as expected failures now pass")
    rc = 0
    if cpu_json is not None:
        cmp = compare(results, cpu_json)
        out["compare"] = cmp
        if cmp["share"] is None:
            print(f"compare: no case passing in {args.compare_with} was run here")
        else:
            print(f"{cmp['also_pass']}/{cmp['cpu_passed']} = {100.0 * cmp['share']:.1f}% of the cases that pass on "
                  f"{cmp['against']} also pass on {provider}")
            if cmp["cpu_passed_not_run_here"]:
                print(f"  ({cmp['cpu_passed_not_run_here']} cases passing there were not run here)")
            if cmp["regressions"]:
                print(f"{len(cmp['regressions'])} case(s) pass on {cmp['against']} but fail on {provider}:")
                for n, why in cmp["regressions"].items():
                    print(f"  {n}  {why}")
            if args.min_share is not None and cmp["share"] < args.min_share:
                print(f"share {cmp['share']:.3f} is below --min-share {args.min_share}")
                rc = 1
    if args.json:
        _write_json(args.json, out)
        print(f"wrote {args.json}")
    if args.update_xfail and not interrupted:
        for n, (s, msg) in results.items():
            if s == "pass":
                xfail.pop(n, None)
            elif n not in xfail:
                xfail[n] = f"{s}: {msg}"
        with open(XFAIL_FILE, "w", encoding="utf-8") as f:
            f.write("# ONNX node-suite cases expected to fail on the CPU provider, one 'name: reason' per line.\n")
            f.write("# Regenerate with: python tests/conformance/node_suite.py --update-xfail\n")
            for n in sorted(xfail):
                f.write(f"{n}: {xfail[n]}\n")
        print(f"wrote {XFAIL_FILE} ({len(xfail)} entries)")
    if interrupted:
        return {"SIGTERM": 124, "KeyboardInterrupt": 130}.get(interrupted, 1)
    return rc


def _write_json(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    sys.exit(main())
