"""Running a TensorRT engine on the CUDA provider's stream.

One execution context per concurrent caller (a pool, as onnxruntime keeps one per stream); input shapes
and tensor addresses are set only when they change; outputs are CuPy arrays sized from the context (an
output allocator where TensorRT only knows the size after running, data-dependent shapes); addresses
are 256-byte aligned (TensorRT's rule: unaligned views are copied). An engine waiting for shapes (dynamic
inputs, no explicit profiles) is built at the first call, and rebuilt - logged with the shape that caused
it - when a later call falls outside its profile, whose dynamic dims reach the next power of two.
"""
from __future__ import annotations

import logging
import threading
import weakref

import numpy as np

log = logging.getLogger("ortlite")

_ALIGN = 256


def _ref(x):
    """A weak reference to a buffer where it takes one (a strong one otherwise: the context holds it
    until the next run replaces it)."""
    try:
        return weakref.ref(x)
    except TypeError:
        return lambda: x


class _Ctx:
    __slots__ = ("ctx", "shapes", "addrs", "generation", "keep", "allocators")

    def __init__(self, ctx, generation):
        self.ctx = ctx
        self.shapes = {}
        self.addrs = {}
        self.generation = generation
        self.keep = []
        self.allocators = {}


def _make_allocator(trt, cp):
    """An IOutputAllocator for a data-dependent output: a fresh CuPy buffer per run (the array handed to
    the caller is never reused), shaped by ``notify_shape``."""

    class _Allocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buf = None
            self.shape = None

        def reallocate_output(self, tensor_name, memory, size, alignment):
            if self.buf is None or self.buf.nbytes < max(1, int(size)):
                self.buf = cp.empty(max(1, int(size)), dtype=np.uint8)
            return self.buf.data.ptr

        def notify_shape(self, tensor_name, shape):
            self.shape = tuple(int(d) for d in shape)

        def take(self, dtype):
            buf, shape, self.buf = self.buf, self.shape, None
            n = int(np.prod(shape, dtype=np.int64))
            if buf is None or n == 0:
                return cp.empty(shape, dtype=dtype)
            return buf[: n * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    return _Allocator()


class Runner:
    def __init__(self, prov, engine, spec):
        self.prov = prov
        self.engine = engine
        self.spec = spec
        self.trt = prov.trt
        self.pool = []
        self.lock = threading.Lock()
        self.in_names = [t.name for t in spec.inputs]
        self.out_names = [t.name for t in spec.outputs]
        self.out_dtypes = [t.dtype for t in spec.outputs]
        self._io = None
        if engine.cuda_engine is not None:
            self._describe()

    def _describe(self):
        e = self.engine.cuda_engine
        trt = self.trt
        io = {}
        for i in range(e.num_io_tensors):
            name = e.get_tensor_name(i)
            host = bool(getattr(e, "is_shape_inference_io", lambda n: False)(name))
            io[name] = (np.dtype(trt.nptype(e.get_tensor_dtype(name))), host)
        self._io = io

    # ---- engines built from shapes ----------------------------------------------------------------
    def _ensure_engine(self, shapes):
        from ortlite.providers.tensorrt.engine import Builder, covers, shapes_profile

        eng = self.engine
        if not eng.lazy:
            return
        if eng.cuda_engine is not None and covers(eng.profiles[0], self.spec.inputs, shapes):
            return
        with eng.lock:
            if eng.cuda_engine is not None and covers(eng.profiles[0], self.spec.inputs, shapes):
                return
            old = eng.profiles[0] if eng.profiles else None
            prof = shapes_profile(self.spec.inputs, shapes, old)
            what = "building" if old is None else "rebuilding"
            log.info("TensorrtExecutionProvider: %s %s for input shapes %s (profile %s)", what, self.spec.name,
                     dict(zip(self.in_names, [tuple(s) for s in shapes])),
                     {k: f"{lo}..{hi}" for k, (lo, _, hi) in prof.items()})
            plan = self._cached_plan(prof) or Builder(self.prov).build(self.spec, [prof])
            self._store_plan(prof, plan)
            eng.plan, eng.profiles = plan, [prof]
            self.prov._load(eng, self.spec)
            eng.generation += 1
            self._describe()

    def _cache_key(self, prof):
        import hashlib
        import json

        from ortlite.compiling.cache import key_fields

        fields = key_fields(self.prov, self.spec)
        fields["profile"] = {k: [list(x) for x in v] for k, v in sorted(prof.items())}
        h = hashlib.sha256((self.spec.fingerprint or "").encode() + json.dumps(fields, sort_keys=True).encode())
        return h.hexdigest(), json.loads(json.dumps(fields))

    def _cached_plan(self, prof):
        d = self.prov.engine_cache_dir
        if not d:
            return None
        from ortlite.compiling.cache import EngineCache

        key, fields = self._cache_key(prof)
        got = EngineCache(d).load("tensorrt", key, fields)
        if got is None:
            return None
        blob = bytes(got.blob)
        if got.verify() is not None:
            return None
        log.info("TensorrtExecutionProvider: %s for this profile loaded from the engine cache", self.spec.name)
        return blob

    def _store_plan(self, prof, plan):
        d = self.prov.engine_cache_dir
        if not d:
            return
        from ortlite.compiling.cache import EngineCache

        key, fields = self._cache_key(prof)
        try:
            EngineCache(d).store("tensorrt", key, fields, plan, 0.0, {"group": self.spec.name})
        except OSError as e:
            log.warning("TensorrtExecutionProvider: could not store the engine of %s: %s", self.spec.name, e)

    # ---- running --------------------------------------------------------------------------------------
    def _context(self):
        gen = self.engine.generation
        while True:
            try:
                c = self.pool.pop()
            except IndexError:
                ctx = self.engine.cuda_engine.create_execution_context()
                if ctx is None:
                    raise RuntimeError(f"TensorRT could not create an execution context for {self.spec.name}: "
                                       f"{self.prov.logger.errors()}")
                return _Ctx(ctx, gen)
            if c.generation == gen:
                return c

    def __call__(self, *inputs):
        cuda = self.prov.cuda
        backend = cuda.backend
        cp = backend.cp
        shapes = [tuple(int(d) for d in np.shape(x)) for x in inputs]
        self._ensure_engine(shapes)
        c = self._context()
        try:
            return self._run(c, inputs, shapes, cuda, backend, cp)
        finally:
            c.keep = []
            self.pool.append(c)

    def _run(self, c, inputs, shapes, cuda, backend, cp):
        ctx = c.ctx
        io = self._io
        keep = c.keep
        with cuda.active():
            for name, x, shape in zip(self.in_names, inputs, shapes):
                if name not in io:  # TensorRT dropped an input nothing reads
                    continue
                dtype, host = io[name]
                if host:  # shape tensors live in host memory
                    x = np.ascontiguousarray(cuda.to_host(x) if cuda.is_on_device(x) else x, dtype=dtype)
                    ptr = x.ctypes.data
                else:
                    if not cuda.is_on_device(x):
                        x = cuda.to_device(np.asarray(x))
                    if x.dtype != dtype:
                        x = x.astype(dtype)
                    if not x.flags.c_contiguous or x.data.ptr % _ALIGN or x.size == 0:
                        y = cp.empty(max(1, x.size), dtype=dtype)
                        if x.size:
                            y[...] = x.reshape(-1)
                        x = y[: x.size].reshape(shape) if x.size else x
                        ptr = y.data.ptr
                        keep.append(y)
                    else:
                        ptr = x.data.ptr
                keep.append(x)
                if c.shapes.get(name) != shape:
                    if not ctx.set_input_shape(name, shape):
                        prof = self.engine.profiles[0] if self.engine.profiles else {}
                        raise RuntimeError(
                            f"TensorRT engine {self.spec.name}: input '{name}' shape {shape} is outside its optimization "
                            f"profile {prof.get(name)} (trt_profile_min/opt/max_shapes): {self.prov.logger.errors()}")
                    c.shapes[name] = shape
                last = c.addrs.get(name)
                if last is None or last[0] != ptr or last[1]() is not x:  # a new buffer, even at an old address
                    if not ctx.set_tensor_address(name, ptr):
                        raise RuntimeError(f"TensorRT refused the address of input '{name}': {self.prov.logger.errors()}")
                    c.addrs[name] = (ptr, _ref(x))
            outs = []
            allocs = {}
            for name in self.out_names:
                dtype, _ = io[name]
                shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):  # data-dependent (NonZero...): TensorRT asks for memory when it knows
                    alloc = c.allocators.get(name)
                    if alloc is None:
                        alloc = c.allocators[name] = _make_allocator(self.trt, cp)
                        if not ctx.set_output_allocator(name, alloc):
                            raise RuntimeError(f"TensorRT refused an output allocator for '{name}': "
                                               f"{self.prov.logger.errors()}")
                    allocs[len(outs)] = (alloc, dtype)
                    outs.append(None)
                    c.addrs[name] = None
                    continue
                size = int(np.prod(shape, dtype=np.int64))
                buf = cp.empty(max(1, size), dtype=dtype)
                y = buf[:size].reshape(shape)
                keep.append(buf)
                if not ctx.set_tensor_address(name, buf.data.ptr):
                    raise RuntimeError(f"TensorRT refused the address of output '{name}': {self.prov.logger.errors()}")
                c.addrs[name] = None
                outs.append(y)
            mark = self.prov.logger.mark()
            if not ctx.execute_async_v3(backend.stream.ptr):
                raise RuntimeError(f"TensorRT could not run {self.spec.name}: {self.prov.logger.errors(mark)}")
            for k, (alloc, dtype) in allocs.items():
                outs[k] = alloc.take(dtype)
        res = []
        for y, want in zip(outs, self.out_dtypes):
            res.append(y if want is None or y.dtype == want else y.astype(want))
        return tuple(res)
