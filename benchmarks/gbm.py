"""Gradient-boosting benchmark: a 500-tree scikit-learn GradientBoostingClassifier through
skl2onnx (one TreeEnsembleClassifier node), a 1,000-row batch in ortlite and onnxruntime.

Runs alternate (A B A B ...) so machine drift hits both alike; onnxruntime runs with
``session.intra_op.allow_spinning=0`` and the same intra_op_num_threads as ortlite.
Prints a Markdown table and writes it, with the command, date and machine, to
benchmarks/results/gbm.md.

    python benchmarks/gbm.py                    # 500 trees, depth 4, 1 thread, 30 runs each
    python benchmarks/gbm.py --threads 2 --runs 50 --depth 3
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def build_model(trees, depth, features, samples, seed):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier
    from skl2onnx import to_onnx

    X, y = make_classification(n_samples=samples, n_features=features, n_informative=features // 2,
                               random_state=seed)
    X = X.astype(np.float32)
    t0 = time.perf_counter()
    clf = GradientBoostingClassifier(n_estimators=trees, max_depth=depth, random_state=seed).fit(X, y)
    train_s = time.perf_counter() - t0
    onx = to_onnx(clf, X[:1], options={"zipmap": False})
    return onx.SerializeToString(), X, train_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--rows", type=int, default=1000, help="batch size of one run")
    ap.add_argument("--runs", type=int, default=30, help="timed runs of each runtime (alternating)")
    ap.add_argument("--threads", type=int, default=1, help="intra_op_num_threads for both runtimes")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gbm.md"))
    args = ap.parse_args(argv)

    import onnxruntime as ort

    import ortlite
    import ortlite.registry
    from ortlite.bench import machine_line

    model, X, train_s = build_model(args.trees, args.depth, args.features, max(4000, args.rows), 0)
    rng = np.random.default_rng(1)
    batch = X[rng.choice(len(X), args.rows, replace=args.rows > len(X))]
    feeds = {"X": batch}

    ortlite.registry.load_all_kernels()  # importing onnxruntime loads its kernels too: not session time
    so = ortlite.SessionOptions()
    so.intra_op_num_threads = args.threads
    t0 = time.perf_counter()
    a = ortlite.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    create_a = (time.perf_counter() - t0) * 1e3

    oso = ort.SessionOptions()
    oso.intra_op_num_threads = args.threads
    oso.add_session_config_entry("session.intra_op.allow_spinning", "0")
    t0 = time.perf_counter()
    b = ort.InferenceSession(model, oso, providers=["CPUExecutionProvider"])
    create_b = (time.perf_counter() - t0) * 1e3

    out_a, out_b = a.run(None, feeds), b.run(None, feeds)
    labels_equal = bool((out_a[0] == out_b[0]).all())
    max_err = float(np.abs(out_a[1].astype(np.float64) - out_b[1]).max())
    for _ in range(3):  # warm-up
        a.run(None, feeds)
        b.run(None, feeds)
    ta, tb = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        a.run(None, feeds)
        ta.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        b.run(None, feeds)
        tb.append((time.perf_counter() - t0) * 1e3)
    ma, mb = float(np.median(ta)), float(np.median(tb))

    table = "\n".join([
        "| runtime | session creation ms | median run ms | ratio ortlite / onnxruntime |",
        "|---|---:|---:|---:|",
        f"| ortlite {ortlite.__version__} | {create_a:.1f} | {ma:.2f} | {ma / mb:.2f} |",
        f"| onnxruntime {ort.__version__} | {create_b:.1f} | {mb:.2f} | 1.00 |",
    ])
    cmd = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(__file__, ROOT)] + sys.argv[1:])
    report = "\n".join([
        "# GradientBoostingClassifier benchmark (TreeEnsembleClassifier)",
        "",
        f"- command: `{cmd}`",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {machine_line()}; load average at the end {os.getloadavg()[0]:.2f} (a shared machine "
        "slows both runtimes alike; compare the ratio)",
        f"- model: scikit-learn GradientBoostingClassifier, {args.trees} trees, max_depth {args.depth}, "
        f"{args.features} features, binary (trained in {train_s:.1f} s), converted with skl2onnx",
        f"- batch: {args.rows} rows float32; {args.runs} timed runs each, alternating; "
        f"intra_op_num_threads={args.threads}; onnxruntime with session.intra_op.allow_spinning=0",
        f"- outputs: labels equal: {labels_equal}; max |probability difference|: {max_err:.2e}",
        "",
        table,
        "",
    ])
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
