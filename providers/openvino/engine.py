"""OpenVINO engines: the shared Core, compiled groups, and the thread-safe runner.

An engine holds one ``openvino.CompiledModel`` (or, with ``disable_dynamic_shapes`` and a group
whose inputs have dynamic dimensions, the read model and one CompiledModel per set of input shapes
met, each compiled at its first call). The runner keeps a pool of InferRequests per compiled model:
a call takes one, copies its inputs into the request's own input tensors (kept between calls, so
OpenVINO does not re-bind memory), runs ``infer``, copies the outputs out and puts the request back.
Outputs are copies (the request reuses its buffers) with the dtypes ONNX declares.
"""
from __future__ import annotations

import io
import logging
import threading

import numpy as np

log = logging.getLogger("ortlite")

_core = None
_core_lock = threading.Lock()


def get_core():
    """The process-wide ``openvino.Core`` (made at first use: creating one costs time)."""
    global _core
    if _core is None:
        with _core_lock:
            if _core is None:
                import openvino

                _core = openvino.Core()
    return _core


def first_lines(exc, n=6, limit=1200) -> str:
    """The head of an OpenVINO error message (they run to many lines of source locations)."""
    lines = [ln.rstrip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = "\n".join(lines[:n])
    if len(text) > limit:
        text = text[:limit] + " ..."
    return text or type(exc).__name__


_BF16 = object()  # out_cast mark: bfloat16, copied bit for bit


def one_line(exc, limit=800) -> str:
    """OpenVINO's error message on one line, without its 'Exception from src/...' location lines."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith("Exception from src/")] or lines
    text = " | ".join(keep)
    return (text[:limit] + " ...") if len(text) > limit else (text or type(exc).__name__)


def _bf16():
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - bfloat16 values cannot exist without it
        return None
    return np.dtype(ml_dtypes.bfloat16)


class OVEngine:
    """A compiled group. ``compiled`` is the CompiledModel, or None when each set of input shapes
    compiles its own (``disable_dynamic_shapes`` with dynamic inputs; ``model`` is then kept)."""

    def __init__(self, device, config, compiled=None, model=None, name=""):
        self.device = device
        self.config = dict(config)
        self.compiled = compiled
        self.model = model
        self.name = name
        self.by_shapes: dict = {}  # input shapes -> _Bound (per-shape compiles)
        self.blob = None  # the imported blob, for engines from the cache
        self.lock = threading.Lock()

    def compiled_for(self, shapes, spec):
        """The CompiledModel for input shapes ``shapes`` (spec.inputs' order; per-shape engines)."""
        import openvino

        m = self.model.clone()
        names = {n for p in m.inputs for n in p.get_names()}
        m.reshape({t.name: openvino.PartialShape(list(s)) for t, s in zip(spec.inputs, shapes) if t.name in names})
        log.info("OpenVINOExecutionProvider: compiling %s for input shapes %s (disable_dynamic_shapes)",
                 self.name or "group", ", ".join(str(tuple(s)) for s in shapes))
        try:
            return get_core().compile_model(m, self.device, self.config)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"OpenVINO {self.device} cannot compile {self.name or 'the group'} for input "
                               f"shapes {[tuple(s) for s in shapes]}: {one_line(e)}") from e


class _Bound:
    """One CompiledModel with its pool of InferRequests and what the runner needs to know of its ports."""

    def __init__(self, compiled, spec):
        import openvino._pyopenvino as _ov

        self.compiled = compiled
        self._infer = _ov.InferRequest.infer  # the C++ call: no Python input dispatch, no OVDict
        self.pool: list = []
        ins = list(compiled.inputs)
        outs = list(compiled.outputs)
        bf16 = _bf16()
        # spec.inputs[k] -> compiled input index, by name (an input the model does not read has none)
        self.in_map = []
        for k, t in enumerate(spec.inputs):
            i = _port_index(ins, t.name)
            if i is not None:
                self.in_map.append((k, i))
        self.n_in = len(ins)
        self.raw_in = [False] * len(ins)  # bfloat16: copied bit for bit (OpenVINO shows bf16 as float16)
        for k, i in self.in_map:
            dt = spec.inputs[k].dtype
            self.raw_in[i] = bf16 is not None and dt is not None and np.dtype(dt) == bf16
        self.out_idx = []
        self.out_cast = []
        for k, t in enumerate(spec.outputs):
            j = _port_index(outs, t.name)
            if j is None:
                raise RuntimeError(f"OpenVINO's compiled model has no output '{t.name}'")
            self.out_idx.append(j)
            want = np.dtype(t.dtype) if t.dtype is not None else None
            try:
                have = np.dtype(outs[j].get_element_type().to_dtype())
            except Exception:  # noqa: BLE001 - dynamic element type: take what comes
                have = None
            if want is not None and bf16 is not None and want == bf16:
                self.out_cast.append(_BF16)
            elif want is not None and have != want:
                self.out_cast.append(want)
            else:
                self.out_cast.append(None)
        self.identity_outputs = self.out_idx == list(range(len(outs)))
        self.bf16 = bf16
        self.spec = spec
        self._host = None

    def _host_run(self, args):
        if self._host is None:
            self._host = _host_session(self.spec)
        feeds = {t.name: a for t, a in zip(self.spec.inputs, args)}
        res = self._host.run([t.name for t in self.spec.outputs], feeds)
        return tuple(np.asarray(r) for r in res)

    def _slot(self):
        req = self.compiled.create_infer_request()
        return req, [None] * self.n_in

    def run(self, *args):
        pool = self.pool
        try:
            slot = pool.pop()
        except IndexError:
            slot = self._slot()
        try:
            req, views = slot
            for k, i in self.in_map:
                x = args[k]
                if type(x) is not np.ndarray:
                    x = np.asarray(x)
                v = views[i]
                if v is None or v.shape != x.shape:
                    t = req.get_input_tensor(i)
                    if tuple(t.shape) != x.shape:
                        t.shape = x.shape
                    v = t.data
                    if self.raw_in[i]:
                        v = v.view(np.uint16)
                    views[i] = v
                if self.raw_in[i]:
                    x = x.view(np.uint16)
                v[...] = x
            try:
                res = self._infer(req, {}, True, False)
            except Exception as e:
                if any(np.size(a) == 0 for a in args):  # OpenVINO refuses some empty tensors (batch 0)
                    return self._host_run(args)
                raise RuntimeError(f"OpenVINO inference failed: {one_line(e)}") from e
            vals = list(res.values())
            if not self.identity_outputs:
                vals = [vals[j] for j in self.out_idx]
            out = []
            for v, c in zip(vals, self.out_cast):
                if c is None:
                    out.append(v.copy())
                elif c is _BF16:
                    out.append(v.view(np.uint16).copy().view(self.bf16))
                else:
                    out.append(v.astype(c))
            return tuple(out)
        finally:
            pool.append(slot)


def _host_session(spec):
    """An ortlite CPU session over the group's model: runs calls OpenVINO refuses (empty inputs)."""
    from ortlite import InferenceSession

    return InferenceSession(spec.model_bytes, providers=["CPUExecutionProvider"])


def _port_index(ports, name):
    """The index of the port carrying tensor name ``name`` (OpenVINO drops unused inputs: None)."""
    for i, p in enumerate(ports):
        if name in p.get_names():
            return i
    return None


def make_runner(engine: OVEngine, spec):
    """A callable(*inputs) -> tuple of outputs in spec.outputs order; safe under concurrent calls."""
    if engine.compiled is not None:
        return _Bound(engine.compiled, spec).run

    by_shapes = engine.by_shapes

    def run(*args):
        key = tuple(np.shape(a) for a in args)
        b = by_shapes.get(key)
        if b is None:
            with engine.lock:
                b = by_shapes.get(key)
                if b is None:
                    b = by_shapes[key] = _Bound(engine.compiled_for(key, spec), spec)
        return b.run(*args)

    return run


def export(engine: OVEngine):
    """The engine's blob (CompiledModel.export_model), or None for per-shape engines."""
    if engine.compiled is None:
        return None
    try:
        blob = engine.compiled.export_model()
    except Exception as e:  # noqa: BLE001 - some devices (and AUTO/MULTI) cannot export: not cacheable
        log.info("OpenVINOExecutionProvider: %s on %s cannot be exported (%s); not cached", engine.name,
                 engine.device, one_line(e, 200))
        return None
    return blob.getvalue() if hasattr(blob, "getvalue") else bytes(blob)


def import_engine(blob, device, config, name=""):
    """An engine from an exported blob: bytes, or a writable buffer (the core's copy-on-write memmap of
    a big cache entry), which OpenVINO reads in place through a shared Tensor."""
    core = get_core()
    arr = None if isinstance(blob, (bytes, bytearray, memoryview)) else np.asarray(blob)
    if arr is not None and arr.dtype == np.uint8 and arr.ndim == 1 and arr.flags.writeable:
        import openvino

        cm = core.import_model(openvino.Tensor(arr, shared_memory=True), device, config)
    else:
        cm = core.import_model(io.BytesIO(blob), device, config)
    engine = OVEngine(device, config, compiled=cm, name=name)
    engine.blob = blob  # kept while the engine lives (the plugin may read the mapped file)
    return engine
