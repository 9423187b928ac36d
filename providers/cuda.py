"""CUDAExecutionProvider on CuPy.

Available only where CuPy imports and sees a device (else ``availability`` says why: no CuPy, no
driver, no device) and sessions warn and fall back as onnxruntime does. Kernels are the shared
array-module kernels run with ``xp = cupy`` (plus the CUDA-only ones registered with
``families="cuda"``); shape inputs stay on the host, declared by the kernels.

Per provider instance (one per session): one CuPy memory pool honouring ``gpu_mem_limit`` and
one compute stream (the user's with ``user_compute_stream``). A run makes them current on its
thread (``active()``), so every allocation and kernel launch of the run goes to that pool and
stream. Host<->device copies are plan steps, counted per run (see ortlite/copies.py).

Everything that touches CuPy goes through a backend object (``_CupyBackend``); the tests put a
numpy stand-in in its place to check the bookkeeping on machines without a GPU.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ortlite.errors import Fail, InvalidArgument
from ortlite import providers as _providers
from ortlite.providers._cuda_capture import UNCAPTURABLE
from ortlite.providers._cuda_dtypes import cupy_dtype_refusal
from ortlite.providers.base import ExecutionProvider, option_bool

log = logging.getLogger("ortlite")

CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
ARENA_STRATEGIES = {"kNextPowerOfTwo": "kNextPowerOfTwo", "0": "kNextPowerOfTwo",
                    "kSameAsRequested": "kSameAsRequested", "1": "kSameAsRequested"}
# onnxruntime CUDA options ortlite accepts and ignores (they tune onnxruntime's own kernels).
IGNORED_ORT_OPTIONS = frozenset({
    "cudnn_conv_use_max_workspace", "cudnn_conv1d_pad_to_nc1d", "tunable_op_enable", "tunable_op_tuning_enable",
    "tunable_op_max_tuning_duration_ms", "enable_skip_layer_norm_strict_mode", "prefer_nhwc",
    "has_user_compute_stream", "gpu_external_alloc", "gpu_external_free", "gpu_external_empty_cache",
    "sdpa_kernel", "fuse_conv_bias", "use_ep_level_unified_stream", "default_memory_arena_cfg",
})
# Ops whose CuPy kernels call cuBLAS (matmul / einsum / dot): CuPy refuses cuBLAS calls while a
# stream is capturing (cupy/cupy#6290), so a plan holding one cannot become a CUDA graph. The
# generated table _cuda_capture.UNCAPTURABLE (what the strict stand-in recorded) decides first;
# this list covers the contrib ops no recorded run reaches.
CUBLAS_OPS = frozenset({
    "MatMul", "Gemm", "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "QLinearMatMul", "MatMulInteger",
    "FusedConv", "FusedGemm", "FusedMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "Attention",
    "MultiHeadAttention", "LSTM", "GRU", "RNN", "Einsum", "DeformConv", "Det", "LinearAttention",
    "GroupQueryAttention", "DynamicQuantizeLSTM", "QAttention", "DecoderMaskedMultiHeadAttention",
})
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})


@dataclass(frozen=True)
class CudaOptions:
    """The CUDA provider's options, by onnxruntime's names (defaults as onnxruntime's)."""

    device_id: int = 0
    gpu_mem_limit: int = 0  # bytes; 0: no limit (onnxruntime's default is SIZE_MAX)
    arena_extend_strategy: str = "kNextPowerOfTwo"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    do_copy_in_default_stream: bool = True
    user_compute_stream: int = 0  # a cudaStream_t as an int; 0: the provider makes its own
    enable_cuda_graph: bool = False
    use_tf32: bool = True

    def as_strings(self) -> dict:
        """The options as onnxruntime's get_provider_options() gives them (all strings)."""
        out = {}
        for k, v in self.__dict__.items():
            out[k] = str(int(v)) if isinstance(v, bool) else str(v)
        out["has_user_compute_stream"] = "1" if self.user_compute_stream else "0"
        return out


def _bool(key, value):
    return option_bool("CUDAExecutionProvider", key, value)


def _int(key, value, minimum=0):
    try:
        v = int(str(value).strip(), 0)
    except ValueError:
        raise InvalidArgument(f"CUDAExecutionProvider option {key}={value!r}: expected an integer") from None
    if v < minimum:
        raise InvalidArgument(f"CUDAExecutionProvider option {key}={value!r}: expected an integer >= {minimum}")
    return v


def parse_options(options: dict | None) -> CudaOptions:
    """CudaOptions from a provider-options dict (strings or values), with clear errors for bad
    values and unknown keys; onnxruntime options that tune its own kernels are accepted and
    ignored (with a warning)."""
    o = CudaOptions()
    for key, value in (options or {}).items():
        key = str(key)
        if key == "device_id":
            o = replace(o, device_id=_int(key, value))
        elif key == "gpu_mem_limit":
            o = replace(o, gpu_mem_limit=_int(key, value))
        elif key == "arena_extend_strategy":
            s = ARENA_STRATEGIES.get(str(value).strip())
            if s is None:
                raise InvalidArgument(f"CUDAExecutionProvider option arena_extend_strategy={value!r}: "
                                      "expected kNextPowerOfTwo (0) or kSameAsRequested (1)")
            o = replace(o, arena_extend_strategy=s)
        elif key == "cudnn_conv_algo_search":
            s = str(value).strip().upper()
            if s not in CONV_ALGO_SEARCH:
                raise InvalidArgument(f"CUDAExecutionProvider option cudnn_conv_algo_search={value!r}: "
                                      f"expected one of {', '.join(CONV_ALGO_SEARCH)}")
            o = replace(o, cudnn_conv_algo_search=s)
        elif key == "do_copy_in_default_stream":
            o = replace(o, do_copy_in_default_stream=_bool(key, value))
        elif key == "user_compute_stream":
            o = replace(o, user_compute_stream=_int(key, value))
        elif key == "enable_cuda_graph":
            o = replace(o, enable_cuda_graph=_bool(key, value))
        elif key == "use_tf32":
            o = replace(o, use_tf32=_bool(key, value))
        elif key in IGNORED_ORT_OPTIONS:
            warnings.warn(f"CUDAExecutionProvider option {key} tunes onnxruntime's own kernels; ortlite ignores it",
                          stacklevel=4)
        else:
            valid = sorted(set(CudaOptions.__dataclass_fields__) | IGNORED_ORT_OPTIONS)
            raise InvalidArgument(f"CUDAExecutionProvider: unknown provider option '{key}'; valid options: "
                                  f"{', '.join(valid)}")
    return o


# CuPy's words when there is no driver or no GPU at all: without libcuda.so the CUDA runtime reports
# cudaErrorInsufficientDriver ("CUDA driver version is insufficient"), which reads like an old driver.
_NO_DEVICE_MARKS = ("cudaErrorNoDevice", "no CUDA-capable device", "libcuda.so", "cudaErrorInsufficientDriver",
                    "driver version is insufficient", "cudaErrorNotFound")
_MISSING_LIB_MARKS = ("libnvrtc", "libcudart", "libcublas", "DynamicLibNotFoundError")


def _driver_loadable() -> bool:
    """Whether the NVIDIA driver's libcuda.so.1 loads in this process (the tests fake it)."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _device_reason(raw: str) -> str:
    """The availability reason for CuPy's device-probe error ``raw``."""
    if any(m in raw for m in _MISSING_LIB_MARKS):
        return (f"CuPy cannot load the CUDA libraries ({raw}); install CuPy with them: "
                f"{_providers.install_hint('cuda12', 'cuda13')}")
    insufficient = "cudaErrorInsufficientDriver" in raw or "driver version is insufficient" in raw
    if insufficient and _driver_loadable():
        return (f"the NVIDIA driver is older than CuPy's CUDA runtime needs (CuPy: {raw}); update the driver, "
                f"or use the extra of the CUDA major the driver supports: {_providers.install_hint('cuda12', 'cuda13')}")
    if any(m in raw for m in _NO_DEVICE_MARKS):
        return f"no NVIDIA driver/GPU found (CuPy: {raw})"
    return f"CuPy finds no usable CUDA driver or device: {raw}"


def _probe_cupy() -> tuple[bool, str]:
    try:
        import cupy
    except ImportError:
        return False, f"CuPy is not installed ({_providers.install_hint('cuda12', 'cuda13')})"
    except Exception as e:  # noqa: BLE001 - a broken CUDA install raises many things
        return False, f"CuPy failed to import: {type(e).__name__}: {e}"
    return _probe_device(cupy)


def _probe_device(cupy) -> tuple[bool, str]:
    """A device CuPy can use, with NVRTC (CuPy compiles its elementwise kernels with it), or why not."""
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        return False, _device_reason(f"{type(e).__name__}: {' '.join(str(e).split())}")
    if n == 0:
        return False, "no NVIDIA driver/GPU found (CuPy sees no CUDA device)"
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 - CuPy without NVRTC cannot compile a single kernel
        return False, _device_reason(f"NVRTC: {type(e).__name__}: {' '.join(str(e).split())}")
    return True, ""


class _CupyBackend:
    """What the provider does on CuPy: memory pool, stream, copies, pointers, DLPack, graphs."""

    def __init__(self, opts: CudaOptions, cupy=None):
        if cupy is None:  # the tests pass a strict stand-in module (tests/cuda_provider/strict_backend.py)
            import cupy

        self.cp = cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if opts.device_id >= count:
            raise InvalidArgument(f"CUDAExecutionProvider: device_id={opts.device_id} but CuPy sees {count} "
                                  f"CUDA device(s) (ids 0..{count - 1})")
        self.device_id = opts.device_id
        self.device = cupy.cuda.Device(opts.device_id)
        with self.device:
            self.pool = cupy.cuda.MemoryPool()
            if opts.gpu_mem_limit:
                self.pool.set_limit(size=opts.gpu_mem_limit)
            if opts.user_compute_stream:
                self.stream = cupy.cuda.ExternalStream(opts.user_compute_stream, opts.device_id)
            else:
                self.stream = cupy.cuda.Stream(non_blocking=True)
        self.use_tf32 = opts.use_tf32
        self.gpu_mem_limit = opts.gpu_mem_limit

    @property
    def xp(self):
        return self.cp

    @contextlib.contextmanager
    def active(self, pool=None):
        """This provider's device, memory pool and stream current on this thread."""
        cp = self.cp
        with self.device, cp.cuda.using_allocator((pool or self.pool).malloc), self.stream, self.compute_mode():
            yield

    def compute_mode(self):
        """The float32 GEMM mode of use_tf32 (a context manager)."""
        return _tf32(self.cp, self.use_tf32)

    def is_device_array(self, value) -> bool:
        """A CuPy array, or a sequence (a list) whose elements are all CuPy arrays."""
        if type(value) is list:
            return bool(value) and all(isinstance(x, self.cp.ndarray) for x in value)
        return isinstance(value, self.cp.ndarray)

    def to_device(self, host_array):
        with self.active():
            if type(host_array) is list:  # a sequence: element by element (cupy.asarray would stack it)
                return [x if x is None or isinstance(x, self.cp.ndarray) else self.cp.asarray(x)
                        for x in host_array]
            return self.cp.asarray(host_array)

    def to_host(self, value):
        with self.active():
            if type(value) is list:  # a sequence: element by element, one synchronize
                out = [self.cp.asnumpy(x, stream=self.stream) if isinstance(x, self.cp.ndarray) else x
                       for x in value]
            else:
                out = self.cp.asnumpy(value, stream=self.stream)
            self.stream.synchronize()
        return out

    def synchronize(self):
        self.stream.synchronize()

    def empty(self, shape, dtype):
        with self.active():
            return self.cp.empty(tuple(shape), dtype=dtype)

    def from_pointer(self, ptr, dtype, shape, owner=None):
        """A CuPy array over device memory the caller owns (bind_input / bind_output pointers)."""
        cp = self.cp
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if len(shape) else dtype.itemsize
        mem = cp.cuda.UnownedMemory(int(ptr), nbytes, owner, self.device_id)
        return cp.ndarray(tuple(int(d) for d in shape), dtype, cp.cuda.MemoryPointer(mem, 0))

    def from_dlpack(self, obj):
        with self.active():
            return self.cp.from_dlpack(obj)

    def memory_info(self) -> dict:
        """The session pool's figures on device_id (CuPy's pool methods read the current device's)."""
        p = self.pool
        with self.device:
            return {"used_bytes": int(p.used_bytes()), "total_bytes": int(p.total_bytes()),
                    "limit_bytes": int(p.get_limit())}

    def new_pool(self):
        """A pool for a CUDA graph's buffers, under the same gpu_mem_limit as the session's."""
        pool = self.cp.cuda.MemoryPool()
        if self.gpu_mem_limit:
            pool.set_limit(size=self.gpu_mem_limit)
        return pool

    def capture(self, fn, pool):
        """Record fn() on the stream as a CUDA graph, allocating from ``pool``: (graph, fn's result)."""
        with self.active(pool):
            self.stream.begin_capture()
            try:
                out = fn()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            graph = self.stream.end_capture()
        return graph, out

    def launch(self, graph):
        with self.active():
            graph.launch(stream=self.stream)

    def device_copy(self, value, pool=None):
        """A new device array (from ``pool``) holding ``value`` (a host or device array)."""
        with self.active(pool):
            return self.cp.array(value, copy=True)

    def copy_into(self, dst, src):
        with self.active():
            dst[...] = src if self.is_device_array(src) else self.cp.asarray(src)

    def wrap_kernel(self, fn, node, kdef):
        return fn


@contextlib.contextmanager
def _tf32(cp, on):
    """cuBLAS float32 GEMMs in TF32 (use_tf32=1, onnxruntime's default) or in full float32.

    CuPy's compute type is one process-wide setting: it is changed (and put back) only when this
    session wants the other mode, so sessions that agree never touch it; sessions with different
    use_tf32 running at the same moment in one process share whichever was set last."""
    try:
        from cupy._core import _routines_linalg as rl
    except Exception:  # noqa: BLE001 - a CuPy without the switch: leave its default
        yield
        return
    want = rl.COMPUTE_TYPE_TF32 if on else rl.COMPUTE_TYPE_DEFAULT
    old = rl.get_compute_type(np.float32)
    if old == want:
        yield
        return
    rl.set_compute_type(np.float32, want)
    try:
        yield
    finally:
        rl.set_compute_type(np.float32, old)


class CUDAExecutionProvider(ExecutionProvider):
    name = "CUDAExecutionProvider"
    family = "cuda"
    device_type = "cuda"
    backend_class = _CupyBackend  # the tests substitute a numpy stand-in

    def __init__(self, options: dict | None = None):
        self.cuda_options = parse_options(options)
        super().__init__(options)
        self.device_id = self.cuda_options.device_id
        self.backend = self.backend_class(self.cuda_options)  # arena_extend_strategy: CuPy's pool has one

    @classmethod
    def availability(cls):
        return _probe_cupy()

    def get_capability(self, node, lookup, graph=None):
        """Claim ``node`` when a CUDA kernel exists and CuPy can hold every dtype it reads and
        writes (else refused with the reason, and it runs on the host)."""
        claim = super().get_capability(node, lookup, graph)
        why = cupy_dtype_refusal(node, graph)  # also types the outputs for later nodes
        if claim.taken and why:
            claim.kernel, claim.reason = None, why
        return claim

    # ---- what it runs ------------------------------------------------------------------
    @property
    def xp(self):
        return self.backend.xp

    def wrap_kernel(self, fn, node, kdef):
        return self.backend.wrap_kernel(fn, node, kdef)

    def active(self):
        return self.backend.active()

    # ---- memory ------------------------------------------------------------------------
    def is_on_device(self, value) -> bool:
        return self.backend.is_device_array(value)

    def to_device(self, host_array):
        try:
            return self.backend.to_device(host_array)
        except Exception as e:  # noqa: BLE001 - out of memory or a limit hit: say which
            raise _memory_error(self, e, getattr(host_array, "nbytes", 0)) from e

    def to_host(self, value):
        return self.backend.to_host(value)

    def synchronize(self):
        self.backend.synchronize()

    def empty(self, shape, dtype):
        return self.backend.empty(shape, dtype)

    def from_pointer(self, ptr, dtype, shape, owner=None):
        return self.backend.from_pointer(ptr, dtype, shape, owner)

    def from_dlpack(self, obj):
        return self.backend.from_dlpack(obj)

    def memory_info(self) -> dict:
        return self.backend.memory_info()

    def get_provider_options(self) -> dict:
        return self.cuda_options.as_strings()

    # ---- CUDA graphs -------------------------------------------------------------------
    def check_graph_capture(self, placements):
        """Refuse enable_cuda_graph, naming what blocks it, when the plan cannot be captured."""
        blockers = []
        for p in placements:
            node = p.node
            what = f"{node.op_type} '{node.name}'"
            if p.provider is not self:
                blockers.append(f"{what} runs on {p.provider.name} (a capture holds CUDA work only)")
            elif node.op_type in CONTROL_FLOW_OPS:
                blockers.append(f"{what} is control flow (its branch or trip count is decided on the host)")
            elif (node.domain, node.op_type) in UNCAPTURABLE:
                blockers.append(f"{what} {UNCAPTURABLE[(node.domain, node.op_type)]}")
            elif node.op_type in CUBLAS_OPS:
                blockers.append(f"{what} calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290)")
        if blockers:
            more = f" (and {len(blockers) - 8} more)" if len(blockers) > 8 else ""
            raise Fail("CUDAExecutionProvider: enable_cuda_graph=1 cannot be honoured for this model: "
                       + "; ".join(blockers[:8]) + more
                       + ". Run without enable_cuda_graph (the plan then runs node by node).")


def _memory_error(provider, err, nbytes):
    limit = provider.cuda_options.gpu_mem_limit
    text = f"{type(err).__name__}: {err}"
    if "OutOfMemory" in type(err).__name__ or "out of memory" in str(err).lower():
        lim = f" (gpu_mem_limit={limit} bytes)" if limit else ""
        return Fail(f"CUDAExecutionProvider: device memory exhausted allocating {nbytes} bytes{lim}: {text}")
    return Fail(f"CUDAExecutionProvider: copy to the device failed: {text}")


class CudaGraphRunner:
    """enable_cuda_graph: the first run runs the plan normally (kernels warm up, shapes are
    fixed), then captures it once into a CUDA graph over static input buffers and a memory pool
    of its own; later runs copy their inputs into the static buffers (device to device when the
    inputs are already on the device) and replay the graph. As in onnxruntime, the outputs are
    the same device buffers on every replay, and the input shapes may not change."""

    def __init__(self, provider: CUDAExecutionProvider, input_names, stats):
        self.provider = provider
        self.stats = stats  # the session's CopyStats: host inputs copied in are counted
        self.input_names = list(input_names)
        self.graph = None
        self.signature = None
        self.static_in = None
        self.static_out = None
        self.pool = None

    @staticmethod
    def _signature(vals):
        return tuple((tuple(getattr(v, "shape", ())), str(getattr(v, "dtype", type(v).__name__))) for v in vals)

    def run(self, vals, run_plan):
        """run_plan(values) -> outputs; returns this run's outputs."""
        sig = self._signature(vals)
        if self.graph is None:
            out = run_plan(vals)
            self._capture(vals, run_plan)
            self.signature = sig
            return out
        if sig != self.signature:
            changed = [f"{n}: {list(a[0])} {a[1]} -> {list(b[0])} {b[1]}"
                       for n, a, b in zip(self.input_names, self.signature, sig) if a != b]
            raise InvalidArgument("enable_cuda_graph: the captured CUDA graph replays fixed input shapes and types, "
                                  f"but {'; '.join(changed)}. Create another session for other shapes.")
        b = self.provider.backend
        for dst, v in zip(self.static_in, vals):
            if dst is not v:
                if not b.is_device_array(v):
                    self.stats.add(v)
                b.copy_into(dst, v)
        b.launch(self.graph)
        return list(self.static_out)

    def _capture(self, vals, run_plan):
        b = self.provider.backend
        self.pool = b.new_pool()
        for v in vals:
            if not b.is_device_array(v):
                self.stats.add(v)
        self.static_in = [b.device_copy(v, self.pool) for v in vals]  # buffers owned by the graph
        b.synchronize()
        self.graph, out = b.capture(lambda: run_plan(self.static_in), self.pool)
        self.static_out = list(out)
