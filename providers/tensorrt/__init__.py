"""TensorrtExecutionProvider: groups of ONNX nodes built into TensorRT engines, run on the CUDA stream.

A compiling provider (``ortlite.providers.base.CompilingProvider``): its ONNX parser's support query decides
the groups (``claim.py``), each group is built into an engine (``engine.py``: strongly typed where TensorRT
has it, workspace, optimization level, timing cache, profiles, progress monitor), engines are cached by the
core's content-hashed engine cache when ``trt_engine_cache_enable`` is set, and run with
``execute_async_v3`` on the CUDA provider's stream over CuPy buffers. Options are onnxruntime's
(``options.py``). Device memory, the stream and copies come from a CUDA provider on the same device (the
session's own when it has one, so both order their work on one stream).

Only run against the stand-in of tests/trt so far: no machine with TensorRT has run this code yet.
"""
from __future__ import annotations

import logging
import threading

from ortlite.hints import install_hint
from ortlite.providers.base import CompileError, CompilingProvider
from ortlite.providers.tensorrt.options import parse_options

log = logging.getLogger("ortlite")

__all__ = ["TensorrtExecutionProvider"]


def _import_trt():
    import tensorrt

    return tensorrt


class TrtEngine:
    """A built engine (``plan``) or one waiting for its first shapes (``plan`` None, dynamic inputs and no
    explicit profiles); ``profiles`` are what it was built for."""

    def __init__(self, plan, profiles, lazy=False):
        self.plan = plan
        self.profiles = profiles
        self.lazy = lazy
        self.lock = threading.Lock()
        self.cuda_engine = None
        self.generation = 0  # bumped at every rebuild: contexts of older generations are dropped


class TensorrtExecutionProvider(CompilingProvider):
    name = "TensorrtExecutionProvider"
    family = "tensorrt"
    device_type = "cuda"
    min_group_size_option = "trt_min_subgraph_size"

    def __init__(self, options: dict | None = None):
        self.trt_options = parse_options(options)
        super().__init__({k: v for k, v in (options or {}).items() if k != "device_id"})
        self.device_id = self.trt_options.device_id
        self.trt = _import_trt()
        from ortlite.providers import provider_class

        cuda_opts = {"device_id": self.device_id}
        if self.trt_options.user_compute_stream:
            cuda_opts["user_compute_stream"] = self.trt_options.user_compute_stream
        self.cuda = provider_class("CUDAExecutionProvider")(cuda_opts)
        from ortlite.providers.tensorrt.engine import make_logger

        self.logger = make_logger(self.trt)
        self.logger.verbose = self.trt_options.detailed_build_log
        self.runtime = self.trt.Runtime(self.logger)
        self.sm = _compute_capability(self.cuda)

    def attach(self, providers):
        """Share the session's CUDA provider (same device): one memory pool and one stream order the
        engines' work and the CUDA kernels' work."""
        for p in providers:
            if p.name == "CUDAExecutionProvider" and getattr(p, "device_id", 0) == self.device_id:
                self.cuda = p

    @classmethod
    def availability(cls):
        try:
            trt = _import_trt()
        except ImportError:
            return False, (f"the tensorrt Python package is not installed ({install_hint('tensorrt12', 'tensorrt13')}: "
                           "the CUDA 12 or 13 build, matching the CuPy extra)")
        except Exception as e:  # noqa: BLE001 - a broken install raises many things
            return False, f"tensorrt failed to import: {type(e).__name__}: {e}"
        from ortlite.providers import availability

        ok, why = availability("CUDAExecutionProvider")
        if not ok:
            return False, f"TensorRT {getattr(trt, '__version__', '?')} is installed but CUDA is not usable: {why}"
        return True, ""

    # ---- the engine cache -------------------------------------------------------------------------
    @property
    def engine_cache_dir(self):
        o = self.trt_options
        return (o.engine_cache_path or ".") if o.engine_cache_enable else None

    def cache_key_fields(self) -> dict:
        return {"compiler": f"tensorrt {self.trt.__version__}", "device": self.sm,
                "options": self.trt_options.result_fields()}

    # ---- what it claims -----------------------------------------------------------------------------
    def claim_groups(self, graph, nodes):
        from ortlite.providers.tensorrt.claim import claim

        return claim(self, graph, list(nodes))

    def support_query(self, model_bytes):
        """([(node indices, supported)], {node index or 'model': error text}) from a fresh builder, network
        and parser; (None, text) when the parser cannot load the model at all."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 0
        st = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if st is not None:
            flags |= 1 << int(st)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if hasattr(parser, "supports_model_v2"):
            parser.supports_model_v2(model_bytes)
            parts = [(list(parser.get_subgraph_nodes(i)), bool(parser.is_subgraph_supported(i)))
                     for i in range(parser.num_subgraphs)]
        else:  # TensorRT 10.0
            _, collection = parser.supports_model(model_bytes)
            parts = [(list(idx), bool(ok)) for idx, ok in collection]
        errors = {}
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            k = e.node() if e.node() >= 0 else "model"
            errors.setdefault(k, str(e))
        if not parts and errors:
            return None, "; ".join(errors.values())
        return parts, errors

    # ---- building -----------------------------------------------------------------------------------
    def compile(self, spec, progress=None):
        from ortlite.providers.tensorrt.engine import Builder

        if self.trt_options.int8 and not any(op in ("QuantizeLinear", "DequantizeLinear") for op in spec.op_types):
            raise CompileError("trt_int8_enable without QuantizeLinear/DequantizeLinear nodes: INT8 from calibration "
                               "is out of scope; quantize the model explicitly (Q/DQ) and TensorRT builds it in int8")
        profiles = list(self.trt_options.profiles)
        dynamic = [t for t in spec.inputs if t.shape is None or not all(isinstance(d, int) and d >= 0 for d in t.shape)]
        if dynamic and not profiles:  # built at the first run, from the shapes it brings
            return TrtEngine(None, [], lazy=True)
        plan = Builder(self).build(spec, profiles, progress)
        return self._load(TrtEngine(plan, profiles), spec)

    def _load(self, engine, spec):
        mark = self.logger.mark()
        cuda_engine = self.runtime.deserialize_cuda_engine(engine.plan)
        if cuda_engine is None:
            raise CompileError(f"TensorRT could not load the engine of {spec.name}: {self.logger.errors(mark)}")
        engine.cuda_engine = cuda_engine
        return engine

    def serialize(self, engine):
        return engine.plan if engine.plan is not None and not engine.lazy else None

    def deserialize(self, blob, spec):
        engine = TrtEngine(bytes(blob), list(self.trt_options.profiles))
        try:
            return self._load(engine, spec)
        except CompileError as e:
            raise ValueError(str(e)) from None  # the core deletes the entry and rebuilds

    def make_runner(self, engine, spec):
        from ortlite.providers.tensorrt.runner import Runner

        return Runner(self, engine, spec)

    # ---- memory: the CUDA provider's ---------------------------------------------------------------
    @property
    def xp(self):
        return self.cuda.xp

    def active(self):
        return self.cuda.active()

    def is_on_device(self, value) -> bool:
        return self.cuda.is_on_device(value)

    def to_device(self, host_array):
        return self.cuda.to_device(host_array)

    def to_host(self, value):
        return self.cuda.to_host(value)

    def synchronize(self):
        self.cuda.synchronize()

    def get_provider_options(self) -> dict:
        return dict(self.trt_options.raw)

    @property
    def precision_label(self) -> str:
        """What precision its engines are built in, for reports (``ortlite bench``)."""
        o = self.trt_options
        typed = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None) is not None
        if o.fp16:
            return "fp16 (builder flag)" if getattr(self.trt.BuilderFlag, "FP16", None) is not None else "fp16 (graph converted)"
        if o.bf16:
            return "bf16"
        return "as typed in the graph (Q/DQ int8 where present)" if typed else "fp32"


def _compute_capability(cuda) -> str:
    try:
        cc = cuda.backend.cp.cuda.Device(cuda.device_id).compute_capability
        return f"sm_{cc}"
    except Exception:  # noqa: BLE001 - a stand-in or an old CuPy
        return "sm_unknown"
