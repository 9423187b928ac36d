"""The ONNX backend node suite, run through ortlite.

The cases come from the installed onnx package's own test-case generators
(``onnx.backend.test.case.node.collect_testcases``); the wheel ships no data,
so they are generated once and cached outside the repository (in
``$ORTLITE_CACHE_DIR`` or ``~/.cache/ortlite``).

Command line (for working on kernels)::

    python tests/conformance/node_suite.py -k test_conv -k test_gemm   # run matching cases
    python tests/conformance/node_suite.py --summary                    # counts only
    python tests/conformance/node_suite.py --update-xfail               # rewrite the data file

Expected failures live in ``expected_failures.txt`` beside this file, one
``name: reason`` per line; the pytest module fails when any other case fails.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import warnings

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
XFAIL_FILE = os.path.join(HERE, "expected_failures.txt")


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


def load_xfail() -> dict:
    out = {}
    if os.path.exists(XFAIL_FILE):
        with open(XFAIL_FILE, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, _, reason = line.partition(":")
                out[name.strip()] = reason.strip()
    return out


def run_case(case, providers=("CPUExecutionProvider",)):
    """Run one case; raises AssertionError (mismatch) or the runtime's error."""
    import ortlite

    name, model_bytes, data_sets, rtol, atol = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ortlite.InferenceSession(model_bytes, providers=list(providers))
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


def classify(case):
    try:
        run_case(case)
        return "pass", ""
    except AssertionError as e:
        return "mismatch", " ".join(str(e).split())[:300]
    except Exception as e:  # noqa: BLE001
        return "error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[], help="substring of case names (repeatable)")
    ap.add_argument("--summary", action="store_true", help="print counts only")
    ap.add_argument("--failures", action="store_true", help="print failing cases only")
    ap.add_argument("--update-xfail", action="store_true",
                    help="rewrite expected_failures.txt: drop passing cases, add new failures (reason from the error)")
    args = ap.parse_args(argv)
    cases = load_cases()
    if args.k:
        cases = [c for c in cases if any(k in c[0] for k in args.k)]
    xfail = load_xfail()
    t0 = time.perf_counter()
    results = {}
    for c in cases:
        results[c[0]] = classify(c)
        status, msg = results[c[0]]
        if not args.summary and not (args.failures and status == "pass"):
            print(f"{status:8s} {c[0]}  {msg}")
    n_pass = sum(1 for s, _ in results.values() if s == "pass")
    print(f"\n{n_pass}/{len(results)} passed ({100.0 * n_pass / max(len(results), 1):.1f}%) "
          f"in {time.perf_counter() - t0:.1f}s")
    unexpected = [n for n, (s, _) in results.items() if s != "pass" and n not in xfail]
    newly = [n for n, (s, _) in results.items() if s == "pass" and n in xfail]
    if unexpected:
        print(f"{len(unexpected)} failing case(s) not in expected_failures.txt")
    if newly:
        print(f"{len(newly)} case(s) listed as expected failures now pass")
    if args.update_xfail:
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
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    sys.exit(main())
