"""GPU probes for ci/gpu_check.sh: what only a real GPU can answer, each probe guarded, one line each.

    python ci/gpu_probes.py [--quick]

1. smoke: CuPy's configuration (NVRTC and the CUDA headers found), a reduction compiled and run,
   a cuDNN handle through the cuDNN frontend (when installed);
2. race: BERT (batch 32, or 4 with --quick) with inputs and outputs bound on the device and
   disable_synchronize_execution_providers=1, then the outputs read at once through
   torch.from_dlpack, cupy.from_dlpack and copy_outputs_to_cpu: each must equal a synchronized read
   (the outputs carry the session's stream);
3. capture: enable_cuda_graph on an elementwise model (accepted: replays must equal eager runs) and
   on one model per refused family (MatMul: cuBLAS; NonZero: a sync; Shape->Range: a host copy),
   each refusal's text; then whether CuPy itself lets cuBLAS (cupy.matmul) run inside a stream
   capture on this CuPy / CUDA (cupy/cupy#6290), which decides if MatMul plans could be captured.
Exit code 1 when a probe that must pass fails (smoke, race, the accepted capture).
"""
from __future__ import annotations

import argparse
import sys
import traceback
import warnings

import numpy as np

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
FAILED = []


def probe(name, must_pass=True):
    def deco(fn):
        def run(*a):
            try:
                msg = fn(*a)
                print(f"PROBE {name:<22} OK    {msg}", flush=True)
            except Exception as e:  # noqa: BLE001 - every probe reports
                print(f"PROBE {name:<22} {'FAIL' if must_pass else 'NOTE'}  {type(e).__name__}: "
                      f"{' '.join(str(e).split())[:500]}", flush=True)
                traceback.print_exc(limit=4, file=sys.stdout)
                if must_pass:
                    FAILED.append(name)
        return run
    return deco


@probe("smoke-cupy")
def smoke_cupy():
    import cupy

    x = cupy.arange(1000, dtype=cupy.float32)
    total = float((x * 2).sum())
    assert total == 999000.0, total
    import io
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cupy.show_config()
    nvrtc = [ln.strip() for ln in buf.getvalue().splitlines() if "NVRTC" in ln or "CUDA Root" in ln]
    return f"reduction ok; {'; '.join(nvrtc)[:300]}"


@probe("smoke-cudnn", must_pass=False)
def smoke_cudnn():
    import cudnn

    handle = cudnn.create_handle()
    return f"cudnn frontend {getattr(cudnn, '__version__', '?')}, backend {cudnn.backend_version()}, handle {handle}"


@probe("smoke-ortlite")
def smoke_ortlite():
    import ortlite

    assert CUDA in ortlite.get_available_providers(), ortlite.get_unavailable_providers()
    from ortlite import zoo

    m = zoo.demo()
    f = zoo.example_inputs(m)
    got = ortlite.InferenceSession(m.SerializeToString(), providers=[CUDA, CPU]).run(None, f)[0]
    want = ortlite.InferenceSession(m.SerializeToString(), providers=[CPU]).run(None, f)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    return "demo model on CUDA matches the CPU"


@probe("race")
def race(batch):
    import cupy
    import torch

    import ortlite
    from ortlite import zoo

    m = zoo.bert_base(batch=batch, seq=128, layers=4)
    feeds = zoo.example_inputs(m)
    sess = ortlite.InferenceSession(m.SerializeToString(), providers=[CUDA, CPU])
    io = sess.io_binding()
    for k, v in feeds.items():
        io.bind_ortvalue_input(k, ortlite.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
    for o in sess.get_outputs():
        io.bind_output(o.name, "cuda")
    sess.run_with_iobinding(io)
    want = [np.array(x) for x in io.copy_outputs_to_cpu()]  # synchronized run, then read
    ro = ortlite.RunOptions()
    ro.add_run_config_entry("disable_synchronize_execution_providers", "1")
    bad = []
    for way in ("torch", "cupy", "copy_outputs_to_cpu"):
        for trial in range(3):
            sess.run_with_iobinding(io, ro)  # returns with the stream still running
            outs = io.get_outputs()
            if way == "torch":
                got = [torch.from_dlpack(v).cpu().numpy() for v in outs]
            elif way == "cupy":
                got = [cupy.asnumpy(cupy.from_dlpack(v)) for v in outs]
            else:
                got = io.copy_outputs_to_cpu()
            for g, w in zip(got, want):
                if not np.array_equal(g, w):
                    bad.append(f"{way} trial {trial}: max diff {float(np.max(np.abs(g - w)))}")
    assert not bad, bad
    return f"bert 4 layers, batch {batch}: unsynchronized reads through torch / cupy / copy_outputs_to_cpu equal the synchronized one"


def _cuda_session(model, options, fallback=True):
    """A session whose first provider must really be CUDA (no silent CPU-only run)."""
    import ortlite

    sess = ortlite.InferenceSession(model, providers=[(CUDA, options)] + ([CPU] if fallback else []))
    if CUDA not in sess.get_providers():
        raise RuntimeError(f"the session runs without CUDA: {ortlite.get_unavailable_providers().get(CUDA)}")
    return sess


def _graph_model(op_nodes, x_shape=(64, 64)):
    from onnx import TensorProto, helper

    g = helper.make_graph(op_nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@probe("capture-accepted")
def capture_accepted():
    from onnx import helper

    m = _graph_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "r"], ["s"]),
                      helper.make_node("Sigmoid", ["s"], ["y"])])
    sess = _cuda_session(m, {"enable_cuda_graph": "1"}, fallback=False)
    eager = _cuda_session(m, {}, fallback=False)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((64, 64)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], eager.run(None, {"x": x})[0], rtol=1e-6)
    return "elementwise plan captured; 4 replays equal eager runs"


@probe("capture-refusals", must_pass=False)
def capture_refusals():
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    cases = {
        "MatMul (cuBLAS)": ([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]),
        "NonZero (sync)": ([helper.make_node("NonZero", ["x"], ["n"]), helper.make_node("Cast", ["n"], ["y"], to=1)], []),
        "Shape->Range (host copy)": ([helper.make_node("Shape", ["x"], ["s"])], []),
    }
    lines = []
    for name, (nodes, inits) in cases.items():
        from onnx import TensorProto

        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)] if nodes[-1].output[0] == "y"
                              else [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.INT64, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        _cuda_session(m, {})  # CUDA is there; then the capture check
        try:
            _cuda_session(m, {"enable_cuda_graph": "1"})
            lines.append(f"{name}: ACCEPTED")
        except Exception as e:  # noqa: BLE001
            lines.append(f"{name}: refused: {' '.join(str(e).split())[60:220]}")
    return " | ".join(lines)


@probe("cublas-in-capture", must_pass=False)
def cublas_in_capture():
    import cupy

    a = cupy.ones((64, 64), cupy.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        try:
            b = a @ a
        finally:
            graph = s.end_capture()
        graph.launch(stream=s)
    s.synchronize()
    assert float(b[0, 0]) == 64.0
    return "cupy.matmul ran inside a stream capture: MatMul plans could be captured on this CuPy/CUDA"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="BERT at batch 4 in the race probe")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    smoke_cupy()
    smoke_cudnn()
    smoke_ortlite()
    race(4 if a.quick else 32)
    capture_accepted()
    capture_refusals()
    cublas_in_capture()
    print(f"probes failed: {FAILED}" if FAILED else "all required probes passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
