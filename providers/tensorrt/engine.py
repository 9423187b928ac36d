"""Building TensorRT engines from a group's ONNX model, and running them on the CUDA stream.

Version differences are decided by feature, never by number (notes §1.13): STRONGLY_TYPED is set where
it exists unless 10.x fp16 needs weak typing and ``BuilderFlag.FP16``; on a TensorRT without that flag
(11.x) fp16 means converting the group to float16 first (float32 kept at its inputs and outputs). TensorRT
reports failure by return value with the reason only in its logger, so every call is checked and the
logger's last errors become the exception text.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time

from ortlite.providers.base import CompileError

log = logging.getLogger("ortlite")


def make_logger(trt):
    """A trt.ILogger that keeps the last messages (errors are the only explanation TensorRT gives) and
    forwards them to the ``ortlite`` logger."""
    sev = trt.ILogger.Severity if hasattr(trt.ILogger, "Severity") else trt.Logger

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lock = threading.Lock()
            self.messages = []
            self.verbose = False

        def log(self, severity, msg):
            with self.lock:
                self.messages.append((severity, str(msg)))
                del self.messages[:-200]
            if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                log.warning("TensorRT: %s", msg)
            elif severity == sev.WARNING or self.verbose:
                log.info("TensorRT: %s", msg)

        def errors(self, since=0):
            with self.lock:
                got = [m for s, m in self.messages[since:] if s in (sev.INTERNAL_ERROR, sev.ERROR)]
            return "; ".join(got[-4:]) or "TensorRT logged no error"

        def mark(self):
            with self.lock:
                return len(self.messages)

    return _Logger()


def _flag(enum, name):
    return getattr(enum, name, None)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def make_progress_monitor(trt, label, progress, cancel):
    """An IProgressMonitor: phases logged, the top phase's fraction to ``progress``, cancelled when
    ``cancel`` (an Event) is set."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps = {}
            self.top = None

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = max(1, int(num_steps))
            if parent_phase is None and self.top is None:
                self.top = phase_name
            (log.info if parent_phase is None else log.debug)("TensorRT build %s: %s (%d steps)", label, phase_name,
                                                              num_steps)

        def step_complete(self, phase_name, step):
            if phase_name == self.top and progress is not None:
                progress((int(step) + 1) / self.steps.get(phase_name, 1))
            return not cancel.is_set()

        def phase_finish(self, phase_name):
            (log.info if phase_name == self.top else log.debug)("TensorRT build %s: %s done", label, phase_name)

    return _Monitor()


@contextlib.contextmanager
def _ctrl_c_cancels(cancel):
    """Ctrl-C during a build sets ``cancel`` (the monitor stops the build cleanly) instead of
    interrupting TensorRT mid-call; the KeyboardInterrupt is raised once the build returned."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        cancel.set()
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class Builder:
    """Builds serialized engines for one provider (its options, logger, timing cache)."""

    def __init__(self, prov):
        self.prov = prov
        self.trt = prov.trt
        self.o = prov.trt_options
        self.logger = prov.logger

    # ---- precision ----------------------------------------------------------------------------
    def model_bytes_for(self, spec) -> tuple[bytes, bool]:
        """(ONNX bytes to parse, whether the network is strongly typed)."""
        trt = self.trt
        st = _flag(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
        has_fp16_flag = _flag(trt.BuilderFlag, "FP16") is not None
        if not self.o.fp16 and not self.o.bf16:
            return spec.model_bytes, st is not None
        if self.o.bf16 and not _flag(trt.BuilderFlag, "BF16"):
            raise CompileError("trt_bf16_enable: this TensorRT has no BF16 builder flag (TensorRT 11 takes precision "
                               "from the graph); convert the model to bfloat16 first")
        if has_fp16_flag:
            return spec.model_bytes, False  # 10.x: weak typing, BuilderFlag.FP16 below
        try:
            from onnxconverter_common import float16
        except ImportError:
            raise CompileError(
                f"trt_fp16_enable on TensorRT {trt.__version__}: TensorRT 11 has no FP16 builder flag (precision "
                "comes from the graph), so the group must be converted to float16 first, which needs "
                "onnxconverter-common (pip install onnxconverter-common); not building a float32 engine in its "
                "place") from None
        try:
            half = float16.convert_float_to_float16(spec.model, keep_io_types=True, disable_shape_infer=True)
        except Exception as e:  # noqa: BLE001
            raise CompileError(f"trt_fp16_enable: converting {spec.describe()} to float16 failed: {e}") from e
        log.info("TensorrtExecutionProvider: %s converted to float16 (float32 inputs and outputs) for TensorRT %s",
                 spec.name, trt.__version__)
        return half.SerializeToString(), True

    # ---- timing cache ---------------------------------------------------------------------------
    def timing_cache_path(self):
        if not self.o.timing_cache_enable:
            return None
        base = self.o.timing_cache_path or self.o.engine_cache_path or "."
        return os.path.join(base, f"TensorrtExecutionProvider_cache_trt{self.trt.__version__}_{self.prov.sm}.timing")

    def _load_timing_cache(self, config):
        path = self.timing_cache_path()
        if path is None:
            return None
        data = b""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            pass
        cache = config.create_timing_cache(data)
        if not config.set_timing_cache(cache, self.o.force_timing_cache):
            log.warning("TensorrtExecutionProvider: timing cache %s is for another device (%s); starting a new one",
                        path, self.logger.errors())
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, True)
        return cache

    def _save_timing_cache(self, config, cache):
        path = self.timing_cache_path()
        if path is None or cache is None:
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".lock", "a+") as lock:  # several processes may build at once: merge under a lock
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    with open(path, "rb") as f:
                        old = config.create_timing_cache(f.read())
                    cache.combine(old, self.o.force_timing_cache)
                except FileNotFoundError:
                    pass
                data = bytes(cache.serialize())
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- build ------------------------------------------------------------------------------------
    def build(self, spec, profiles, progress=None) -> bytes:
        """A serialized engine for ``spec`` with ``profiles`` ([{input: (min, opt, max)}]); CompileError
        with TensorRT's logged reason when it cannot."""
        trt = self.trt
        model, strongly_typed = self.model_bytes_for(spec)
        mark = self.logger.mark()
        builder = trt.Builder(self.logger)
        flags = 0
        st = _flag(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
        if strongly_typed and st is not None:
            flags |= 1 << int(st)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(model):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise CompileError(f"TensorRT's ONNX parser cannot parse {spec.describe()}: {errs or self.logger.errors(mark)}")
        config = builder.create_builder_config()
        if self.o.max_workspace_size:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.o.max_workspace_size)
        config.builder_optimization_level = self.o.builder_optimization_level
        if self.o.auxiliary_streams >= 0 and hasattr(config, "max_aux_streams"):
            config.max_aux_streams = self.o.auxiliary_streams
        if self.o.fp16 and not strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)
        if self.o.bf16 and not strongly_typed:
            config.set_flag(trt.BuilderFlag.BF16)
        if self.o.sparsity:
            config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
        if self.o.hw_compatible and hasattr(trt, "HardwareCompatibilityLevel"):
            config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dynamic = [t for t in inputs if any(int(d) < 0 for d in tuple(t.shape))]
        for prof in profiles:
            p = builder.create_optimization_profile()
            for t in dynamic:
                if t.name not in prof:
                    raise CompileError(f"{spec.describe()}: input '{t.name}' has dynamic dims {tuple(t.shape)} but the "
                                       "optimization profile gives no shape for it (trt_profile_*_shapes must name "
                                       "every dynamic input)")
                lo, opt, hi = prof[t.name]
                p.set_shape(t.name, tuple(lo), tuple(opt), tuple(hi))
            config.add_optimization_profile(p)
        cache = self._load_timing_cache(config)
        cancel = threading.Event()
        monitor = make_progress_monitor(trt, spec.name, progress, cancel)
        if monitor is not None:
            config.progress_monitor = monitor
        t0 = time.perf_counter()
        with _ctrl_c_cancels(cancel):
            plan = builder.build_serialized_network(network, config)
        if cancel.is_set():
            raise KeyboardInterrupt(f"TensorRT build of {spec.name} cancelled")
        if plan is None:
            raise CompileError(f"TensorRT could not build {spec.describe()}: {self.logger.errors(mark)}")
        self._save_timing_cache(config, cache)
        log.debug("TensorRT built %s in %.2f s", spec.name, time.perf_counter() - t0)
        return bytes(plan)


def shapes_profile(spec_inputs, shapes, old=None) -> dict:
    """A profile covering ``shapes`` (and ``old``): dynamic dims from 1 to the next power of two of what
    was seen, so a growing sequence length does not rebuild at every new length."""
    prof = {}
    for t, shape in zip(spec_inputs, shapes):
        if t.shape is not None and all(isinstance(d, int) and d >= 0 for d in t.shape):
            continue  # static input
        dyn = [not (isinstance(d, int) and d >= 0) for d in (t.shape or [None] * len(shape))]
        lo = tuple(1 if dy else int(s) for s, dy in zip(shape, dyn))
        hi = tuple(next_pow2(int(s)) if dy else int(s) for s, dy in zip(shape, dyn))
        if old and t.name in old:
            olo, _, ohi = old[t.name]
            lo = tuple(min(a, b) for a, b in zip(lo, olo))
            hi = tuple(max(a, b) for a, b in zip(hi, ohi))
        opt = tuple(int(s) for s in shape)
        prof[t.name] = (lo, opt, hi)
    return prof


def covers(profile, spec_inputs, shapes) -> bool:
    for t, shape in zip(spec_inputs, shapes):
        if t.name in profile:
            lo, _, hi = profile[t.name]
            if len(lo) != len(shape) or any(not (a <= s <= b) for a, s, b in zip(lo, shape, hi)):
                return False
    return True
