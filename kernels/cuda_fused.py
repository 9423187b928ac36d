"""CUDA-only kernels (CuPy): fused elementwise code where the shared array-module kernels make
one pass per numpy-style step, and convolutions through nvidia-cudnn-frontend.

* the GELU family (ONNX Gelu, com.microsoft Gelu / BiasGelu / FastGelu) and QuickGelu as one
  ``cupy.ElementwiseKernel`` each, computing in float32 (float64 for float64 inputs) so float16
  tensors lose nothing in the middle;
* ``bias_act``: the conv / gemm epilogue act(y + bias (+ z)) in one kernel (activation codes of
  kernels._jit);
* ``CudnnConv``: 2-D convolution (+ bias) as a cuDNN graph, built once per shape / dtype and
  cached; unavailable (None) without the ``cudnn`` module or libcudnn, and the conv kernel then
  runs im2col + cuBLAS.

Any failure to compile or run the fused code (an old CuPy, a driver without NVRTC) is logged
once and the shared kernel runs instead: these are speed-ups, never the only path.
"""
from __future__ import annotations

import logging
import math
import threading

import numpy as np

from ortlite.registry import kernel

from . import _jit
from . import contrib_transformer as _ct
from . import elementwise as _ew

log = logging.getLogger("ortlite")
MS = "com.microsoft"
CUDA = ("cuda",)

_kernels = {}
_broken = set()


def _elementwise(cp, name, params, out, body):
    key = (name, params, out)
    k = _kernels.get(key)
    if k is None:
        k = _kernels[key] = cp.ElementwiseKernel(params, out, body, f"ortlite_{name}")
    return k


def _try(name, fused, fallback):
    """fused() unless it failed before; a first failure is logged and the fallback runs."""
    if name not in _broken:
        try:
            return fused()
        except Exception as e:  # noqa: BLE001 - NVRTC / driver / CuPy version: shared path instead
            _broken.add(name)
            log.warning("ortlite: fused CUDA kernel %s unavailable (%s: %s); using the shared kernel",
                        name, type(e).__name__, e)
    return fallback()


def _acc(dtype):
    return "double" if np.dtype(dtype) == np.float64 else "float"


# GELU bodies on the float value v (the input, bias already added)
_ERF = "0.5 * v * (1 + erf(v * {c}))".format(c=repr(1 / math.sqrt(2)))
_TANH = "0.5 * v * (1 + tanh({k} * (v + 0.044715 * v * v * v)))".format(k=repr(math.sqrt(2 / math.pi)))


def _gelu(cp, x, bias, body):
    a = _acc(x.dtype)
    y = cp.empty_like(x)
    if bias is None:
        k = _elementwise(cp, f"gelu_{a}_{len(body)}", "T x", "T y", f"{a} v = ({a})x; y = (T)({body});")
        return k(x, y)
    bb = cp.broadcast_to(bias.astype(x.dtype, copy=False), x.shape)
    k = _elementwise(cp, f"bgelu_{a}_{len(body)}", "T x, T b", "T y", f"{a} v = ({a})x + ({a})b; y = (T)({body});")
    return k(x, bb, y)


@kernel("Gelu", since=20, families=CUDA)
def gelu(xp, X, *, approximate="none"):
    if X.dtype.kind != "f":
        return _ew.gelu(xp, X, approximate=approximate)
    body = _TANH if approximate == "tanh" else _ERF
    return _try("Gelu", lambda: _gelu(xp, X, None, body), lambda: _ew.gelu(xp, X, approximate=approximate))


@kernel("Gelu", since=1, domain=MS, families=CUDA)
def ms_gelu(xp, X):
    return _try("Gelu", lambda: _gelu(xp, X, None, _ERF), lambda: _ew.gelu(xp, X))


@kernel("BiasGelu", since=1, domain=MS, families=CUDA)
def bias_gelu(xp, A, B):
    return _try("BiasGelu", lambda: _gelu(xp, A, B, _ERF), lambda: _ct.bias_gelu(xp, A, B))


@kernel("FastGelu", since=1, domain=MS, families=CUDA)
def fast_gelu(xp, X, bias=None):
    return _try("FastGelu", lambda: _gelu(xp, X, bias, _TANH), lambda: _ct.fast_gelu(xp, X, bias))


@kernel("QuickGelu", since=1, domain=MS, families=CUDA)
def quick_gelu(xp, X, *, alpha=1.702):
    def fused():
        a = _acc(X.dtype)
        k = _elementwise(xp, f"quick_gelu_{a}", "T x, float alpha", "T y",
                         f"{a} v = ({a})x; y = (T)(v / (1 + exp(-({a})alpha * v)));")
        return k(X, np.float32(alpha), xp.empty_like(X))

    return _try("QuickGelu", fused, lambda: _ct.quick_gelu(xp, X, alpha=alpha))


_ACT_BODY = {
    _jit.ACT_NONE: "",
    _jit.ACT_RELU: "v = v > 0 ? v : 0;",
    _jit.ACT_CLIP: "v = v < p0 ? p0 : (v > p1 ? p1 : v);",
    _jit.ACT_LEAKY: "v = v >= 0 ? v : v * p0;",
    _jit.ACT_HARDSIGMOID: "v = v * p0 + p1; v = v < 0 ? 0 : (v > 1 ? 1 : v);",
}


def bias_act(cp, y, bias, z, act):
    """In place on the (N, M, P) array y: act(y + bias[m] (+ z)) in one kernel. False when the
    activation has no fused form (the caller runs its own epilogue)."""
    code = _jit.act_code(act)
    if code is None or "bias_act" in _broken:
        return False
    n, m = y.shape[:2]
    y3 = y.reshape(n, m, -1)
    a = _acc(y.dtype)
    b = cp.zeros((m, 1), y.dtype) if bias is None else bias.reshape(m, 1).astype(y.dtype, copy=False)
    zz = "" if z is None else f" v += ({a})z;"
    params = "T b, float p0, float p1" + ("" if z is None else ", T z")
    body = f"{a} v = ({a})y + ({a})b;{zz} {_ACT_BODY[code[0]]} y = (T)v;"
    try:
        k = _elementwise(cp, f"bias_act_{a}_{code[0]}_{z is None}", params, "T y", body)
        args = [cp.broadcast_to(b.reshape(1, m, 1), y3.shape), np.float32(code[1]), np.float32(code[2])]
        if z is not None:
            args.append(z.reshape(y3.shape))
        k(*args, y3)
        return True
    except Exception as e:  # noqa: BLE001
        _broken.add("bias_act")
        log.warning("ortlite: fused CUDA epilogue unavailable (%s: %s); using separate passes", type(e).__name__, e)
        return False


class CudnnConv:
    """2-D convolution (group 1, symmetric pads) + bias through a cached cuDNN graph.

    ``run`` returns the output, or None when cuDNN cannot take this case (the caller runs
    im2col + cuBLAS). Failing to load cuDNN (not installed, no libcudnn) is logged once and holds
    for the process; a configuration cuDNN fails on falls back alone (logged once per node).
    cuDNN handles are per device and per thread: set_stream on a shared handle would race."""

    _state = {"failed": None}
    _handles = threading.local()
    _heur = {"HEURISTIC": ("A",), "DEFAULT": ("FALLBACK",), "EXHAUSTIVE": ("A", "B", "FALLBACK")}

    def __init__(self, algo_search="EXHAUSTIVE"):
        self.algo_search = algo_search
        self.graphs = {}  # configuration -> built graph, or None where cuDNN failed on it

    @classmethod
    def _module(cls):
        if cls._state["failed"]:
            return None
        try:
            import cudnn

            return cudnn
        except Exception as e:  # noqa: BLE001 - not installed, or no libcudnn: im2col + cuBLAS
            cls._state["failed"] = f"{type(e).__name__}: {e}"
            log.info("ortlite: convolutions on CUDA use im2col + cuBLAS (cuDNN frontend unavailable: %s)",
                     cls._state["failed"])
            return None

    @classmethod
    def _handle(cls, cudnn, cp):
        """This thread's cuDNN handle for the current device."""
        by_device = getattr(cls._handles, "by_device", None)
        if by_device is None:
            by_device = cls._handles.by_device = {}
        dev = cp.cuda.Device().id
        if dev not in by_device:
            by_device[dev] = cudnn.create_handle()
        return by_device[dev]

    def run(self, cp, x, w, b, begins, ends, strides, dilations, group):
        if (group != 1 or x.ndim != 4 or list(begins) != list(ends) or x.dtype not in (np.float32, np.float16)
                or w.dtype != x.dtype):
            return None
        key = (x.shape, w.shape, b is not None, x.dtype.str, tuple(begins), tuple(strides), tuple(dilations))
        if key in self.graphs and self.graphs[key] is None:
            return None
        cudnn = self._module()
        if cudnn is None:
            return None
        try:
            return self._run(cudnn, cp, key, x, w, b, begins, strides, dilations)
        except Exception as e:  # noqa: BLE001 - this configuration only
            self.graphs[key] = None
            log.warning("ortlite: cuDNN convolution failed for x %s, w %s (%s: %s); this configuration uses "
                        "im2col + cuBLAS", list(x.shape), list(w.shape), type(e).__name__, e)
            return None

    def _run(self, cudnn, cp, key, x, w, b, pads, strides, dilations):
        x = cp.ascontiguousarray(x)
        w = cp.ascontiguousarray(w)
        n, c, h, wd = x.shape
        m, _, kh, kw = w.shape
        ho = (h + 2 * pads[0] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
        wo = (wd + 2 * pads[1] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
        entry = self.graphs.get(key)
        handle = self._handle(cudnn, cp)
        stream = cp.cuda.get_current_stream()
        cudnn.set_stream(handle=handle, stream=stream.ptr)
        if entry is None:
            dt = cudnn.data_type.HALF if x.dtype == np.float16 else cudnn.data_type.FLOAT
            g = cudnn.pygraph(io_data_type=dt, intermediate_data_type=cudnn.data_type.FLOAT,
                              compute_data_type=cudnn.data_type.FLOAT, handle=handle)
            tx = g.tensor(name="X", dim=list(x.shape), stride=[c * h * wd, h * wd, wd, 1], data_type=dt)
            tw = g.tensor(name="W", dim=list(w.shape), stride=[c * kh * kw, kh * kw, kw, 1], data_type=dt)
            ty = g.conv_fprop(image=tx, weight=tw, padding=list(pads), stride=list(strides),
                              dilation=list(dilations))
            tb = None
            if b is not None:
                tb = g.tensor(name="B", dim=[1, m, 1, 1], stride=[m, 1, 1, 1], data_type=dt)
                ty = g.bias(input=ty, bias=tb)
            ty.set_output(True).set_data_type(dt)
            g.validate()
            g.build_operation_graph()
            g.create_execution_plans([getattr(cudnn.heur_mode, h_) for h_ in self._heur[self.algo_search]])
            g.check_support()
            g.build_plans()
            ws = cp.empty(max(1, g.get_workspace_size()), dtype=cp.uint8)
            entry = self.graphs[key] = (g, tx, tw, tb, ty, ws)
        g, tx, tw, tb, ty, ws = entry
        y = cp.empty((n, m, ho, wo), dtype=x.dtype)
        pack = {tx: x, tw: w, ty: y}
        if tb is not None:
            pack[tb] = cp.ascontiguousarray(b.astype(x.dtype, copy=False).reshape(1, m, 1, 1))
        g.execute(pack, ws, handle=handle)
        return y
