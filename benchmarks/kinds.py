"""In-process, interleaved, min-of-repeats ratios ortlite / onnxruntime for the slow kinds of issue 15.

    python benchmarks/kinds.py [--models a,b] [--reps 15] [--save DIR]

onnxruntime: intra_op_num_threads=1 (allow_spinning=0); ortlite: intra_op_num_threads=1 and 2.
Each repeat times a batch of runs (at least ~20 ms) of each session in turn; the minimum per-run
time over repeats is reported. Models are built once (cached as ONNX files under --save).
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.simplefilter("ignore")

KINDS = ["gru_greedy_loop", "vad_lstm_if", "if_mlp_tiny", "bert_small_int8", "cnn_int8", "lstm_tagger_int8"]


def load(name, save):
    import onnx
    import cpu
    path = os.path.join(save, name + ".onnx")
    kwp = os.path.join(save, name + ".npz")
    if not os.path.exists(path):
        m, kw = cpu.MODELS[name]()
        onnx.save(m, path)
        np.savez(kwp, **cpu.feeds_for(m, kw))
    return path, dict(np.load(kwp))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(KINDS))
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--save", default="/tmp/kinds_models")
    a = ap.parse_args()
    os.makedirs(a.save, exist_ok=True)
    import onnxruntime as ort
    import ortlite
    from ortlite.kernels import _jit
    for name in a.models.split(","):
        path, feeds = load(name, a.save)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {"ort1": ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])}
        for t in (1, 2):
            lo = ortlite.SessionOptions()
            lo.intra_op_num_threads = t
            sessions[f"lite{t}"] = ortlite.InferenceSession(path, lo, providers=["CPUExecutionProvider"])
        _jit.wait_background()
        ref = sessions["ort1"].run(None, feeds)
        for k, s in sessions.items():
            out = s.run(None, feeds)
            for r, o in zip(ref, out):
                if r.dtype.kind == "f":
                    d = float(np.max(np.abs(r - o))) if r.size else 0.0
                    assert d < 0.2, (k, d)
        # batch size: >= ~20 ms of the onnxruntime run
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 0.02:
            sessions["ort1"].run(None, feeds)
            n += 1
        n = max(3, n)
        best = {k: float("inf") for k in sessions}
        for _ in range(a.reps):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    s.run(None, feeds)
                best[k] = min(best[k], (time.perf_counter() - t0) / n)
        o = best["ort1"]
        print(f"{name:18s} ort1 {o*1e3:8.3f} ms  lite1 {best['lite1']*1e3:8.3f} ms ({best['lite1']/o:5.2f}x)"
              f"  lite2 {best['lite2']*1e3:8.3f} ms ({best['lite2']/o:5.2f}x)", flush=True)


if __name__ == "__main__":
    main()
