"""GPU benchmark: ortlite's CUDA provider against PyTorch eager (fp32) and the CPU runtimes.

    python benchmarks/gpu.py                                  # ResNet-50 and BERT-base, batch 1 and 32
    python benchmarks/gpu.py --models bert_base --batches 1 --runs 50
    python benchmarks/gpu.py --quick --batches 1 --runs 2 --out-dir /tmp/gpu   # no GPU: the CPU parts only

Per model (ortlite.zoo.resnet50, ortlite.zoo.bert_base at seq 128) and batch:

- ortlite CUDA with IOBinding: inputs bound on the device once, outputs bound to 'cuda', so a run
  makes no host<->device copy; the session's copy count of every timed run is recorded;
- ortlite CUDA with plain ``run`` (numpy in, numpy out);
- PyTorch eager fp32 on the same GPU: modules written here that mirror the zoo graphs (BatchNorm
  folded into the convolutions as in the exported ResNet, eager attention and erf GELU in BERT),
  loaded with the zoo model's (random) weights; no_grad, cudnn.benchmark on;
- TF32 alike on both sides: off by default (ortlite use_tf32=0, torch allow_tf32 False, agreement
  at 1e-3); ``--tf32 1`` turns it on for both (onnxruntime's default) and checks at 1e-2;
- ortlite CPU and onnxruntime's CPUExecutionProvider (fewer runs; batch 32 skipped with --quick).

Each line: warm-up runs, then timed runs; median and p90 in ms, items/s from the median. Device
work is synchronized before the clock stops. Correctness at batch 1: ortlite CUDA outputs
against ortlite CPU outputs (max abs diff; pass at 1e-3, or 1e-2 with --tf32 1), and the torch
modules against ortlite CPU (checks that they mirror the graphs).

Writes ``<out-dir>/gpu-<card>.md`` (default out-dir benchmarks/results) and, with --json, the
numbers as JSON. Without CUDA, CuPy or torch the parts that need them are skipped and the file
says which and why.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter

import numpy as np

from ortlite.bench import _binder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
RTOL = ATOL = 1e-3  # full float32 on both sides (--tf32 0, the default)
TF32_RTOL = TF32_ATOL = 1e-2  # --tf32 1: TF32 GEMMs round operands to 10 mantissa bits (BERT-base ~4e-3 off)
TF32 = [False]  # --tf32: ortlite's use_tf32 and torch's allow_tf32, set alike
MODELS = ("resnet50", "bert_base")


class Stopped(BaseException):
    """SIGTERM (e.g. from `timeout`): stop measuring, write what was measured."""


def _on_sigterm(signum, frame):
    raise Stopped()


# ---------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------
def _run_cmd(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def probe_env() -> dict:
    """Versions and devices; every probe guarded (missing pieces become None plus a reason)."""
    env = {"python": sys.version.split()[0], "numpy": np.__version__}
    import onnx

    import ortlite
    from ortlite.providers import availability

    env["onnx"], env["ortlite"] = onnx.__version__, ortlite.__version__
    try:
        from ortlite.bench import machine_line

        env["machine"] = machine_line()
    except Exception as e:  # noqa: BLE001
        env["machine"] = f"unknown ({e})"
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        env["onnxruntime"] = None
    smi = _run_cmd(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    env["nvidia_smi"] = smi.splitlines()[0] if smi else None
    env["cupy"] = env["cuda_runtime"] = env["cuda_driver"] = env["cupy_device"] = None
    try:
        import cupy

        env["cupy"] = cupy.__version__
        rt = cupy.cuda.runtime
        env["cuda_runtime"] = _cuda_version(rt.runtimeGetVersion())
        env["cuda_driver"] = _cuda_version(rt.driverGetVersion())
        if rt.getDeviceCount() > 0:
            name = rt.getDeviceProperties(0)["name"]
            env["cupy_device"] = name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:  # noqa: BLE001 - no CuPy, or no driver/device
        env["cupy_error"] = f"{type(e).__name__}: {e}"
    try:
        import cudnn  # nvidia-cudnn-frontend

        env["cudnn_frontend"] = getattr(cudnn, "__version__", "?")
        try:
            env["cudnn_backend"] = str(cudnn.backend_version())
        except Exception:  # noqa: BLE001
            pass
    except Exception:  # noqa: BLE001
        env["cudnn_frontend"] = None
    env["torch"] = env["torch_cuda"] = env["torch_device"] = None
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["torch_device"] = torch.cuda.get_device_name(0)
            env["torch_cudnn"] = torch.backends.cudnn.version()
        else:
            env["torch_error"] = "torch.cuda.is_available() is False"
    except Exception as e:  # noqa: BLE001
        env["torch_error"] = f"{type(e).__name__}: {e}"
    ok, why = availability(CUDA)
    env["ortlite_cuda"] = ok
    env["ortlite_cuda_reason"] = why
    ok, why = availability("TensorrtExecutionProvider")
    env["ortlite_tensorrt"] = ok
    env["ortlite_tensorrt_reason"] = why
    env["card"] = env["torch_device"] or env["cupy_device"] or (env["nvidia_smi"].split(",")[0] if env["nvidia_smi"] else None)
    return env


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def card_slug(card: str | None) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'; no card -> 'no-gpu'."""
    if not card:
        return "no-gpu"
    s = re.sub(r"[^a-z0-9._-]+", "-", card.strip().lower().replace(" ", "-"))
    return s.strip("-") or "no-gpu"


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------
def time_runs(fn, runs, warmup, sync=None, after=None):
    """Warm up, then time ``runs`` calls of fn (sync() before the clock starts and before it stops).

    Returns (stats, [after() per timed run]).
    """
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times, extra = [], []
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
        if after:
            extra.append(after())
    return stats_ms(times), extra


def stats_ms(times) -> dict:
    a = np.asarray(times, dtype=np.float64) * 1e3
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "min_ms": float(a.min()),
            "runs": int(a.size)}


def with_throughput(st: dict, batch: int) -> dict:
    st["items_per_s"] = batch / (st["median_ms"] / 1e3) if st["median_ms"] > 0 else None
    return st


def _err(e) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"


def max_abs_diff(got, ref) -> float:
    return max((float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(r, np.float64)))) if np.size(r) else 0.0)
               for g, r in zip(got, ref))


def tolerances() -> tuple:
    """(rtol, atol) of the agreement check: looser when both sides run their GEMMs in TF32."""
    return (TF32_RTOL, TF32_ATOL) if TF32[0] else (RTOL, ATOL)


def all_close(got, ref) -> bool:
    rtol, atol = tolerances()
    return all(np.shape(g) == np.shape(r) and np.allclose(g, r, rtol=rtol, atol=atol) for g, r in zip(got, ref))


# ---------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------
def build_model(name, seq):
    from ortlite import zoo

    if name == "resnet50":
        return zoo.resnet50(batch=1)
    if name == "bert_base":
        return zoo.bert_base(batch=1, seq=seq)
    raise ValueError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")


def feeds_for(model, batch, seq):
    from ortlite import zoo

    return zoo.example_inputs(model, dims={"batch_size": batch, "sequence_length": seq})


def placement_summary(sess, provider) -> dict:
    rep = sess.get_placement()
    counts = rep.counts()
    off = [n for n in rep if n.provider != provider]
    reasons = {}
    for n in off:
        if n.op_type not in reasons:
            reasons[n.op_type] = "; ".join(f"{p}: {r}" for p, r in n.refused) or "moved to the host (shape math)"
    return {"nodes": len(rep), "by_provider": counts, "on_provider": counts.get(provider, 0),
            "off_provider_op_types": dict(Counter(n.op_type for n in off).most_common()),
            "off_provider_reasons": reasons, "copy_steps": len(rep.copies)}


def bench_ortlite_device(model_bytes, feeds_by_batch, provider, device, runs, warmup, log):
    """ortlite on a device provider: IOBinding (device in, device out) and plain run, per batch.

    Returns ({batch: {...}}, placement, {batch: (iobinding outputs, run outputs) as numpy}).
    """
    import ortlite

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        opts = {"use_tf32": str(int(TF32[0]))} if provider == CUDA else {}
        sess = ortlite.InferenceSession(model_bytes, providers=[(provider, opts), CPU])
        create_s = time.perf_counter() - t0
    if provider not in sess.get_providers():
        raise RuntimeError(f"the session dropped {provider}: {sess.get_providers()}")
    placement = placement_summary(sess, provider)
    placement["create_s"] = round(create_s, 2)
    report = sess.get_placement()
    res, outs = {}, {}
    for batch, feeds in feeds_by_batch.items():
        r = res[batch] = {}
        io_out = run_out = None
        try:  # each batch and mode on its own: one failing (out of memory, a kernel error) keeps the others
            # inputs bound on the device once, outputs on the device; each run ends synchronized
            run_io, outputs = _binder(device, ortlite.OrtValue)(sess, feeds)
            st, copies = time_runs(run_io, runs, warmup,
                                   after=lambda: (report.last_run_copies, report.last_run_copy_bytes))
            io_out = outputs()
            r.update(iobinding=with_throughput(st, batch), iobinding_copies=sorted({c for c, _ in copies}),
                     iobinding_copy_bytes=sorted({n for _, n in copies}))
            log(f"  ortlite {provider} b{batch} iobinding: {st['median_ms']:.2f} ms, copies/run {r['iobinding_copies']}")
        except Exception as e:  # noqa: BLE001
            r["iobinding_error"] = _err(e)
            log(f"  ERROR ortlite {provider} b{batch} iobinding: {r['iobinding_error']}")
        finally:
            run_io = outputs = None
        try:
            sync = getattr(sess, "_providers", [None])[0]
            sync = sync.synchronize if sync is not None and hasattr(sync, "synchronize") else None
            st, run_copies = time_runs(lambda: sess.run(None, feeds), runs, warmup, sync=sync,
                                       after=lambda: report.last_run_copies)
            run_out = sess.run(None, feeds)
            r.update(run=with_throughput(st, batch), run_copies=sorted(set(run_copies)))
            log(f"  ortlite {provider} b{batch} run: {st['median_ms']:.2f} ms, copies/run {r['run_copies']}")
        except Exception as e:  # noqa: BLE001
            r["run_error"] = _err(e)
            log(f"  ERROR ortlite {provider} b{batch} run: {r['run_error']}")
        outs[batch] = (io_out, run_out)
    sess = report = None  # frees the session (and its device memory) before the next part
    return res, placement, outs


def bench_cpu(model_bytes, feeds, runtime, runs, warmup, threads):
    """ortlite or onnxruntime on the CPU: (stats, outputs)."""
    if runtime == "ortlite":
        import ortlite as rt

        so = rt.SessionOptions()
    else:
        import onnxruntime as rt

        so = rt.SessionOptions()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = rt.InferenceSession(model_bytes, so, providers=[CPU])
    st, _ = time_runs(lambda: sess.run(None, feeds), runs, warmup)
    return st, sess.run(None, feeds)


def free_device_memory():
    gc.collect()
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# ---------------------------------------------------------------------------------------
# PyTorch mirrors of the zoo models
# ---------------------------------------------------------------------------------------
def torch_module(name, seq):
    import torch
    import torch.nn.functional as F
    from torch import nn

    def box(**mods):  # a plain container, so parameter names follow torchvision / HF
        m = nn.Module()
        for k, v in mods.items():
            setattr(m, k, v)
        return m

    class Bottleneck(nn.Module):  # ResNet v1.5: stride on the 3x3; BN folded into conv biases
        def __init__(self, cin, width, stride, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, width, 1, bias=True)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=True)
            self.conv3 = nn.Conv2d(width, width * 4, 1, bias=True)
            self.downsample = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=True)) if downsample else None

        def forward(self, x):
            y = F.relu(self.conv1(x))
            y = F.relu(self.conv2(y))
            y = self.conv3(y)
            return F.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet50(nn.Module):
        def __init__(self, layers=(3, 4, 6, 3), num_classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=True)
            cin = 64
            for li, (n, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
                blocks = []
                for bi in range(n):
                    blocks.append(Bottleneck(cin, width, 2 if (bi == 0 and li > 1) else 1, bi == 0))
                    cin = width * 4
                setattr(self, f"layer{li}", nn.Sequential(*blocks))
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2, 1)
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class Bert(nn.Module):  # HF BertModel, eager attention, erf GELU, LayerNorm eps 1e-12
        def __init__(self, layers=12, hidden=768, heads=12, inter=3072, vocab=30522, max_pos=512, types=2):
            super().__init__()
            self.heads, self.dh = heads, hidden // heads
            ln = lambda: nn.LayerNorm(hidden, eps=1e-12)  # noqa: E731
            self.embeddings = box(word_embeddings=nn.Embedding(vocab, hidden),
                                  position_embeddings=nn.Embedding(max_pos, hidden),
                                  token_type_embeddings=nn.Embedding(types, hidden), LayerNorm=ln())
            self.embeddings.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0))
            self.encoder = box(layer=nn.ModuleList([
                box(attention=box(self=box(query=nn.Linear(hidden, hidden), key=nn.Linear(hidden, hidden),
                                           value=nn.Linear(hidden, hidden)),
                                  output=box(dense=nn.Linear(hidden, hidden), LayerNorm=ln())),
                    intermediate=box(dense=nn.Linear(hidden, inter)),
                    output=box(dense=nn.Linear(inter, hidden), LayerNorm=ln()))
                for _ in range(layers)]))
            self.pooler = box(dense=nn.Linear(hidden, hidden))

        def forward(self, input_ids, attention_mask, token_type_ids):
            B, S = input_ids.shape
            e = self.embeddings
            x = e.word_embeddings(input_ids) + e.token_type_embeddings(token_type_ids)
            x = e.LayerNorm(x + e.position_embeddings(e.position_ids[:, :S]))
            m = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            h, dh = self.heads, self.dh
            for lay in self.encoder.layer:
                a = lay.attention.self
                q = a.query(x).view(B, S, h, dh).transpose(1, 2)
                k = a.key(x).view(B, S, h, dh).permute(0, 2, 3, 1)
                v = a.value(x).view(B, S, h, dh).transpose(1, 2)
                p = torch.softmax(torch.matmul(q, k) / math.sqrt(dh) + m, dim=-1)
                ctx = torch.matmul(p, v).transpose(1, 2).reshape(B, S, h * dh)
                o = lay.attention.output
                x = o.LayerNorm(o.dense(ctx) + x)
                y = lay.output.dense(F.gelu(lay.intermediate.dense(x)))
                x = lay.output.LayerNorm(y + x)
            return x, torch.tanh(self.pooler.dense(x[:, 0]))

    if name == "resnet50":
        return ResNet50()
    if name == "bert_base":
        return Bert()
    raise ValueError(name)


def zoo_state_dict(model) -> dict:
    """torch parameter name -> array from the zoo model's initializers (MatMul weights transposed back)."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    sd = {k: v for k, v in inits.items() if not k.startswith("onnx::")}
    for node in model.graph.node:  # '/encoder/layer.0/attention/self/query/MatMul' -> 'encoder.layer.0....query'
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
            scope = node.name.rsplit("/", 1)[0].strip("/").replace("/", ".")
            sd[f"{scope}.weight"] = np.ascontiguousarray(inits[node.input[1]].T)
    return sd


def bench_torch(name, model, feeds_by_batch, seq, runs, warmup, log):
    """PyTorch eager fp32 on cuda:0: ({batch: stats}, {batch: outputs as numpy}, weights note)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = TF32[0]  # as ortlite's use_tf32 in this run
    torch.backends.cudnn.allow_tf32 = TF32[0]
    dev = torch.device("cuda", 0)
    mod = torch_module(name, seq)
    note = "zoo weights"
    try:
        mod.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in zoo_state_dict(model).items()}, strict=True)
    except Exception as e:  # noqa: BLE001 - timing still valid with torch's own random init
        note = f"torch's random init (zoo weights did not load: {' '.join(str(e).split())[:300]})"
    mod = mod.to(dev).eval()
    res, outs = {}, {}
    with torch.no_grad():
        for batch, feeds in feeds_by_batch.items():
            try:
                if name == "resnet50":
                    args = (torch.from_numpy(feeds["input"]).to(dev),)
                else:
                    args = tuple(torch.from_numpy(feeds[k]).to(dev)
                                 for k in ("input_ids", "attention_mask", "token_type_ids"))
                st, _ = time_runs(lambda: mod(*args), runs, warmup, sync=torch.cuda.synchronize)
                r = mod(*args)
                r = r if isinstance(r, tuple) else (r,)
                outs[batch] = [t.float().cpu().numpy() for t in r]
                res[batch] = with_throughput(st, batch)
                log(f"  torch eager b{batch}: {st['median_ms']:.2f} ms")
            except Exception as e:  # noqa: BLE001
                res[batch] = {"error": _err(e)}
                log(f"  ERROR torch eager b{batch}: {res[batch]['error']}")
            args = r = None
    mod = None
    return res, outs, note


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args, argv):
        self.args = args
        self.argv = argv
        self.rows: dict = {}  # (model, batch) -> row
        self.placement: dict = {}
        self.correctness: dict = {}
        self.skipped: list = []
        self.errors: list = []
        self.notes: list = []
        self.env: dict = {}
        self.started = datetime.datetime.now()
        self.t0 = time.perf_counter()
        self.stopped = None

    def log(self, msg):
        print(msg, flush=True)

    def row(self, model, batch):
        return self.rows.setdefault((model, batch), {"model": model, "batch": batch})

    def skip(self, what, why):
        line = f"{what}: {why}"
        if line not in self.skipped:
            self.skipped.append(line)
            self.log(f"skipped {line}")

    def guard(self, what, fn, *a):
        """Run one part; an error is recorded and the other parts go on."""
        try:
            return fn(*a)
        except Exception as e:  # noqa: BLE001
            msg = f"{what}: {type(e).__name__}: {' '.join(str(e).split())[:400]}"
            self.errors.append(msg)
            self.log(f"ERROR {msg}")
            traceback.print_exc()
            return None

    # -- measuring ------------------------------------------------------------------
    def run(self):
        a = self.args
        self.env = self.guard("environment probe", probe_env) or {}
        self.log("environment: " + json.dumps(self.env, default=str))
        cuda_ok = bool(self.env.get("ortlite_cuda"))
        if not cuda_ok:
            self.skip("ortlite CUDA (IOBinding and run)",
                      f"{CUDA} unavailable: {self.env.get('ortlite_cuda_reason', 'unknown')}")
        torch_ok = bool(self.env.get("torch_device"))
        if not torch_ok:
            why = "torch not installed" if not self.env.get("torch") else self.env.get("torch_error", "no CUDA device")
            self.skip("PyTorch eager", why)
        if self.env.get("onnxruntime") is None:
            self.skip("onnxruntime CPU", "onnxruntime not installed")
        # GPU lines first for every model, then the CPU lines (batch 1 before the larger batches),
        # so a run cut short by a time limit loses the least important numbers
        models, feeds, dev_outs, torch_outs, cpu_outs = {}, {}, {}, {}, {}
        for name in a.models:
            self.log(f"== {name}: build")
            t0 = time.perf_counter()
            model = self.guard(f"{name}: build", build_model, name, a.seq)
            if model is None:
                continue
            models[name] = model
            feeds[name] = {b: feeds_for(model, b, a.seq) for b in a.batches}
            for b in a.batches:
                self.row(name, b)
            dev_outs[name], torch_outs[name], cpu_outs[name] = {}, {}, {}
            self.log(f"  built in {time.perf_counter() - t0:.1f} s ({len(model.graph.node)} nodes)")
        for name, model in models.items():
            if cuda_ok:
                self.log(f"== {name}: ortlite CUDA")
                r = self.guard(f"{name}: ortlite CUDA", bench_ortlite_device, model.SerializeToString(), feeds[name],
                               CUDA, "cuda", a.runs, a.warmup, self.log)
                if r:
                    res, self.placement[name], dev_outs[name] = r
                    for b, v in res.items():
                        self.row(name, b)["ortlite_cuda"] = v
                        for mode in ("iobinding", "run"):
                            if f"{mode}_error" in v:
                                self.errors.append(f"{name} b{b}: ortlite CUDA {mode}: {v[mode + '_error']}")
                self.write()
                free_device_memory()
            if self.env.get("ortlite_tensorrt"):  # TensorRT where it imports: same lines, engines built first
                self.log(f"== {name}: ortlite TensorRT")
                r = self.guard(f"{name}: ortlite TensorRT", bench_ortlite_device, model.SerializeToString(),
                               feeds[name], "TensorrtExecutionProvider", "cuda", a.runs, a.warmup, self.log)
                if r:
                    res, self.placement[f"{name} (TensorRT)"], _ = r
                    for b, v in res.items():
                        self.row(name, b)["ortlite_tensorrt"] = v
                self.write()
                free_device_memory()
            if torch_ok and not a.no_torch:
                self.log(f"== {name}: torch eager")
                r = self.guard(f"{name}: torch eager", bench_torch, name, model, feeds[name], a.seq, a.runs, a.warmup,
                               self.log)
                if r:
                    res, torch_outs[name], note = r
                    for b, v in res.items():
                        self.row(name, b)["torch_eager"] = v
                        if "error" in v:
                            self.errors.append(f"{name} b{b}: torch eager: {v['error']}")
                    self.correctness.setdefault(name, {})["torch_weights"] = note
                self.write()
                free_device_memory()
        for b in sorted(a.batches):
            for name, model in models.items():
                if a.quick and b > 1:
                    self.skip(f"CPU runtimes at batch {b}", "--quick")
                    continue
                # the smallest batch always runs: the correctness check needs its CPU outputs
                if a.budget_s and b > min(a.batches) and time.perf_counter() - self.t0 > a.budget_s:
                    self.skip(f"{name}: CPU runtimes at batch {b}", f"past the time budget (--budget-s {a.budget_s:g})")
                    continue
                self.log(f"== {name}: CPU b{b}")
                self.cpu_lines(name, b, model.SerializeToString(), feeds[name][b], cpu_outs[name])
                if b == min(a.batches):
                    self.check(name, cpu_outs[name], dev_outs[name], torch_outs[name])
                self.write()
        for name in models:
            if name not in self.correctness or "batch" not in self.correctness[name]:
                self.check(name, cpu_outs[name], dev_outs[name], torch_outs[name])

    def cpu_lines(self, name, b, model_bytes, feeds, cpu_outs):
        a = self.args
        r = self.guard(f"{name} b{b}: ortlite CPU", bench_cpu, model_bytes, feeds, "ortlite",
                       a.cpu_runs, a.cpu_warmup, a.threads)
        if r:
            st, cpu_outs[b] = r
            self.row(name, b)["ortlite_cpu"] = with_throughput(st, b)
            self.log(f"  ortlite CPU b{b}: {st['median_ms']:.2f} ms")
        if self.env.get("onnxruntime") is not None and not a.no_onnxruntime:
            r = self.guard(f"{name} b{b}: onnxruntime CPU", bench_cpu, model_bytes, feeds, "onnxruntime",
                           a.cpu_runs, a.cpu_warmup, a.threads)
            if r:
                st, ort_out = r
                self.row(name, b)["onnxruntime_cpu"] = with_throughput(st, b)
                self.log(f"  onnxruntime CPU b{b}: {st['median_ms']:.2f} ms")
                if b in cpu_outs:
                    self.correctness.setdefault(name, {})[f"ortlite_cpu_vs_onnxruntime_b{b}"] = \
                        max_abs_diff(cpu_outs[b], ort_out)

    def check(self, name, cpu_outs, dev_outs, torch_outs):
        b = 1 if 1 in cpu_outs else (min(cpu_outs) if cpu_outs else None)
        c = self.correctness.setdefault(name, {})
        if b is None:
            if dev_outs or torch_outs:
                self.skip(f"{name}: correctness check", "no ortlite CPU outputs")
            return
        ref = cpu_outs[b]
        c["batch"] = b
        got = {k: o for k, o in zip(("iobinding", "run"), dev_outs.get(b, (None, None))) if o is not None}
        if got:
            for k, o in got.items():
                c[f"cuda_{k}_max_abs_diff"] = max_abs_diff(o, ref)
            c["cuda_pass"] = all(all_close(o, ref) for o in got.values())
            self.row(name, b)["max_abs_diff_vs_cpu"] = max(c[f"cuda_{k}_max_abs_diff"] for k in got)
            self.row(name, b)["pass"] = c["cuda_pass"]
        if b in torch_outs:
            c["torch_max_abs_diff"] = max_abs_diff(torch_outs[b], ref)
            c["torch_pass"] = all_close(torch_outs[b], ref)

    # -- writing -------------------------------------------------------------------------
    def path(self):
        return os.path.join(self.args.out_dir, f"gpu-{card_slug(self.env.get('card'))}.md")

    def write(self):
        a = self.args
        os.makedirs(a.out_dir, exist_ok=True)
        text = self.markdown()
        tmp = self.path() + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self.path())
        if a.json:
            d = os.path.dirname(os.path.abspath(a.json))
            os.makedirs(d, exist_ok=True)
            with open(a.json + ".tmp", "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=1, default=str)
            os.replace(a.json + ".tmp", a.json)

    def to_dict(self):
        return {"command": self.command(), "date": self.started.isoformat(timespec="seconds"),
                "complete": self.stopped is None, "stopped": self.stopped, "env": self.env,
                "settings": {k: v for k, v in vars(self.args).items()},
                "rows": list(self.rows.values()), "placement": self.placement, "correctness": self.correctness,
                "skipped": self.skipped, "errors": self.errors}

    def command(self):
        return "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(__file__, ROOT)] + list(self.argv))

    def markdown(self):
        e, a = self.env, self.args
        card = e.get("card") or "none found"
        lines = [
            f"# GPU benchmark: ortlite CUDA vs PyTorch eager (fp32){' - PARTIAL' if self.stopped else ''}",
            "",
            f"- command: `{self.command()}`",
            f"- date: {self.started.strftime('%Y-%m-%d %H:%M')}",
            f"- card: {card}" + (f" (nvidia-smi: {e['nvidia_smi']})" if e.get("nvidia_smi") else ""),
            f"- CUDA: driver {e.get('cuda_driver') or '-'}, runtime {e.get('cuda_runtime') or '-'} (CuPy); "
            f"torch built for CUDA {e.get('torch_cuda') or '-'}, cuDNN {e.get('torch_cudnn') or '-'}; "
            f"cudnn-frontend {e.get('cudnn_frontend') or '-'}",
            f"- versions: ortlite {e.get('ortlite')}, CuPy {e.get('cupy') or '-'}, torch {e.get('torch') or '-'}, "
            f"onnxruntime {e.get('onnxruntime') or '-'}, onnx {e.get('onnx')}, numpy {e.get('numpy')}, "
            f"Python {e.get('python')}",
            f"- host: {e.get('machine', '-')}",
            f"- ortlite CUDA provider: {'available' if e.get('ortlite_cuda') else 'unavailable: ' + str(e.get('ortlite_cuda_reason'))}",
            f"- method: GPU lines {a.warmup} warm-up + {a.runs} timed runs, CPU lines {a.cpu_warmup} + {a.cpu_runs}; "
            "median (p90) ms; device synchronized before the clock stops. IOBinding: inputs bound on the device "
            "once, outputs bound to 'cuda'. torch: eager fp32, no_grad, cudnn.benchmark, TF32 off "
            "(matmul and cuDNN). BERT-base at seq "
            f"{a.seq}. onnxruntime: CPUExecutionProvider (reference line).",
            "",
            "| model | batch | ortlite CUDA iobinding ms | ortlite CUDA run ms | torch eager ms | ratio iobinding / torch "
            "| ortlite CPU ms | onnxruntime CPU ms | copies per IOBinding run | max abs diff vs CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows.values():
            cu = r.get("ortlite_cuda") or {}
            io = cu.get("iobinding") or ({"error": 1} if "iobinding_error" in cu else None)
            rn = cu.get("run") or ({"error": 1} if "run_error" in cu else None)
            tt = r.get("torch_eager")
            ratio = f"{io['median_ms'] / tt['median_ms']:.2f}" if io and tt and "median_ms" in io and "median_ms" in tt else "-"
            copies = "/".join(str(c) for c in cu.get("iobinding_copies", [])) or "-"
            diff = "-"
            if "max_abs_diff_vs_cpu" in r:
                diff = f"{r['max_abs_diff_vs_cpu']:.1e} ({'pass' if r.get('pass') else 'FAIL'})"
            lines.append(f"| {r['model']} | {r['batch']} | {_ms(io)} | {_ms(rn)} | {_ms(tt)} | {ratio} | "
                         f"{_ms(r.get('ortlite_cpu'))} | {_ms(r.get('onnxruntime_cpu'))} | {copies} | {diff} |")
        trt_line = (f"- ortlite TensorRT provider: "
                    f"{'available' if e.get('ortlite_tensorrt') else 'unavailable: ' + str(e.get('ortlite_tensorrt_reason'))}")
        lines += ["", trt_line]
        if any(r.get("ortlite_tensorrt") for r in self.rows.values()):
            lines += ["", "| model | batch | ortlite TensorRT iobinding ms | ortlite TensorRT run ms | ortlite CUDA iobinding ms "
                      "| torch eager ms |", "|---|---:|---:|---:|---:|---:|"]
            for r in self.rows.values():
                tr = r.get("ortlite_tensorrt") or {}
                cu = r.get("ortlite_cuda") or {}
                lines.append(f"| {r['model']} | {r['batch']} | {_ms(tr.get('iobinding'))} | {_ms(tr.get('run'))} | "
                             f"{_ms(cu.get('iobinding'))} | {_ms(r.get('torch_eager'))} |")
        lines += ["", "Throughput (items/s, from the medians):", "",
                  "| model | batch | ortlite CUDA iobinding | ortlite CUDA run | torch eager | ortlite CPU | onnxruntime CPU |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows.values():
            cu = r.get("ortlite_cuda") or {}
            lines.append(f"| {r['model']} | {r['batch']} | " + " | ".join(
                _ips(x) for x in (cu.get("iobinding"), cu.get("run"), r.get("torch_eager"), r.get("ortlite_cpu"),
                                  r.get("onnxruntime_cpu"))) + " |")
        rtol, atol = tolerances()
        mode = "TF32 GEMMs on both sides" if TF32[0] else "full float32 GEMMs on both sides (no TF32)"
        lines += ["", f"## Correctness (batch 1, rtol {rtol:g} / atol {atol:g} against ortlite CPU; {mode})", ""]
        if not self.correctness:
            lines.append("- nothing compared")
        for name, c in self.correctness.items():
            parts = []
            if "cuda_pass" in c:
                diffs = ", ".join(f"{c[f'cuda_{k}_max_abs_diff']:.1e} ({k})" for k in ("iobinding", "run")
                                  if f"cuda_{k}_max_abs_diff" in c)
                parts.append(f"ortlite CUDA max abs diff {diffs}: {'pass' if c['cuda_pass'] else 'FAIL'}")
            if "torch_max_abs_diff" in c:
                parts.append(f"torch mirror max abs diff {c['torch_max_abs_diff']:.1e}: "
                             f"{'pass' if c['torch_pass'] else 'FAIL'}")
            if "torch_weights" in c:
                parts.append(f"torch weights: {c['torch_weights']}")
            for k, v in c.items():
                if k.startswith("ortlite_cpu_vs_onnxruntime"):
                    parts.append(f"ortlite CPU vs onnxruntime ({k.rsplit('_', 1)[-1]}) max abs diff {v:.1e}")
            lines.append(f"- {name}: " + ("; ".join(parts) if parts else "nothing compared"))
        lines += ["", "## Placement (ortlite CUDA session)", ""]
        if not self.placement:
            lines.append("- no CUDA session was created")
        for name, p in self.placement.items():
            by = ", ".join(f"{k}: {v}" for k, v in p["by_provider"].items())
            lines.append(f"- {name}: {p['nodes']} nodes ({by}); {p['copy_steps']} copy steps in the plan; "
                         f"session created in {p.get('create_s', '-')} s")
            if p["off_provider_op_types"]:
                ops = ", ".join(f"{op} x{n}" for op, n in p["off_provider_op_types"].items())
                lines.append(f"  - not on CUDA: {ops}")
                for op, why in p["off_provider_reasons"].items():
                    lines.append(f"    - {op}: {why[:200]}")
        lines += ["", "## Skipped", ""]
        lines += [f"- {s}" for s in self.skipped] or ["- nothing"]
        if self.errors:
            lines += ["", "## Errors", ""] + [f"- {x}" for x in self.errors]
        if self.stopped:
            lines += ["", f"Stopped early ({self.stopped}): the numbers above are what was measured by then."]
        return "\n".join(lines) + "\n"


def _ms(st):
    if not st:
        return "-"
    return f"{st['median_ms']:.2f} ({st['p90_ms']:.2f})" if "median_ms" in st else "error"


def _ips(st):
    return f"{st['items_per_s']:.1f}" if st and st.get("items_per_s") else "-"


def _int_list(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default 1,32)")
    ap.add_argument("--seq", type=int, default=128, help="BERT sequence length (default 128)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per GPU line (default 20; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up runs per GPU line (default 5; 2 with --quick)")
    ap.add_argument("--cpu-runs", type=int, default=None, help="timed runs per CPU line (default runs/4, at least 3)")
    ap.add_argument("--cpu-warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads of the CPU runtimes (0: their default)")
    ap.add_argument("--quick", action="store_true",
                    help="small runs (defaults 5 GPU / 2 CPU runs); the CPU runtimes skip batches above 1")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="skip the CPU lines of larger batches not started within this many seconds (0: no limit)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--tf32", type=int, choices=(0, 1), default=0,
                    help="1: ortlite use_tf32=1 (onnxruntime's default) and torch allow_tf32, with tolerances for "
                         "TF32; 0 (default): full float32 on both sides")
    ap.add_argument("--no-onnxruntime", action="store_true")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--json", default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    args.batches = _int_list(args.batches)
    if args.runs is None:
        args.runs = 5 if args.quick else 20
    if args.warmup is None:
        args.warmup = 2 if args.quick else 5
    if args.cpu_runs is None:
        args.cpu_runs = 2 if args.quick else max(3, args.runs // 4)
    if args.quick:
        args.cpu_warmup = min(args.cpu_warmup, 1)
    warnings.simplefilter("ignore")
    TF32[0] = bool(args.tf32)
    bench = Bench(args, argv)
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        bench.run()
    except (Stopped, KeyboardInterrupt) as e:
        bench.stopped = "SIGTERM" if isinstance(e, Stopped) else "KeyboardInterrupt"
        bench.log(f"stopped by {bench.stopped}; writing what was measured")
    finally:
        signal.signal(signal.SIGTERM, old)
    bench.write()
    print()
    print(bench.markdown())
    print(f"wrote {bench.path()}" + (f" and {args.json}" if args.json else ""))
    if bench.stopped:
        return 124
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
