"""The Ray Serve deployment: one ortlite session per replica, created in the replica (sessions do not pickle),
warmed up before it takes traffic, health-checked with a small run, requests batched along the model's
batch dimension with ``@serve.batch``, HTTP in the Open Inference Protocol through a FastAPI ingress."""
import asyncio
import collections
import concurrent.futures
import logging
import os
import threading

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from ortlite.errors import InvalidArgument
from ortlite.serve import gpu_providers, protocol
from ortlite.serve.protocol import HEADER, ProtocolError, error_body

log = logging.getLogger("ortlite.serve")

app = FastAPI(title="ortlite", docs_url=None, redoc_url=None, openapi_url=None)


def _json(obj, status=200):
    import json

    return Response(json.dumps(obj).encode(), status_code=status, media_type="application/json")


def _error(message, status):
    return Response(error_body(message), status_code=status, media_type="application/json")


@app.exception_handler(StarletteHTTPException)
async def _http_error(request, exc):  # 404 / 405 as {"error": ...} like every other error
    return _error(exc.detail, exc.status_code)


@app.exception_handler(Exception)
async def _internal_error(request, exc):
    return _error(f"{type(exc).__name__}: {exc}", 500)


def _np_dtype(type_string):
    if type_string == "tensor(string)":
        return np.dtype(object)
    return protocol.DATATYPES.get(protocol.datatype_of_onnx(type_string), np.dtype(np.float32))


def _zeros(args, shapes=None):
    """Zero feeds for the model's inputs: symbolic dims -> 1 (or the sizes in ``shapes``)."""
    feeds = {}
    for a in args:
        shape = (shapes or {}).get(a.name) or [d if isinstance(d, int) and d >= 0 else 1 for d in (a.shape or [])]
        dt = _np_dtype(a.type)
        feeds[a.name] = np.full(shape, "", dtype=object) if dt == object else np.zeros(shape, dtype=dt)
    return feeds


def _rows(feeds):
    for v in feeds.values():
        return int(v.shape[0]) if isinstance(v, np.ndarray) and v.ndim else 1
    return 0


def _shapes(feeds):
    return {k: [int(d) for d in np.shape(v)] for k, v in feeds.items()}


def _replica_id():
    try:
        ctx = serve.get_replica_context()
        rid = ctx.replica_id
        return getattr(rid, "unique_id", None) or str(rid)
    except Exception:  # noqa: BLE001
        return str(os.getpid())


def _gpu_total_bytes():
    try:
        import cupy

        return int(cupy.cuda.runtime.memGetInfo()[1])
    except Exception:  # noqa: BLE001 - no CuPy / no device: the provider reports that itself
        return None


@serve.deployment
@serve.ingress(app)
class OrtliteModel:
    """One replica: ``model`` is a path, bytes, or an ObjectRef to bytes (large models go through the object store)."""

    def __init__(self, model, name: str, providers=None, num_cpus: float = 1, num_gpus: float = 0,
                 max_batch_size: int = 8, batch_wait_ms: float = 5.0, session_options=None, runtime: str = "ortlite"):
        import ortlite

        try:
            import ray

            if isinstance(model, ray.ObjectRef):
                model = ray.get(model)
        except ImportError:  # pragma: no cover
            pass
        self.name = name
        self.threads = max(1, int(num_cpus or 1))
        if num_gpus and providers:
            providers = gpu_providers(providers, num_gpus, _gpu_total_bytes())
        self.runtime = runtime
        if runtime == "onnxruntime":  # the same server around onnxruntime's session (benchmarks/serve.py compares)
            import onnxruntime as rt

            so = rt.SessionOptions()
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        else:
            rt, so = ortlite, ortlite.SessionOptions()
        so.intra_op_num_threads = self.threads
        for k, v in (session_options or {}).items():
            setattr(so, k, v)
        if runtime == "onnxruntime" and not providers:
            providers = ["CPUExecutionProvider"]
        self.session = rt.InferenceSession(model, so, providers=providers)
        self.providers = self.session.get_providers()
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        self.input_dtypes = {a.name: _np_dtype(a.type) for a in self.inputs}
        self.string_inputs = {a.name for a in self.inputs if a.type == "tensor(string)"}
        # batch along axis 0 when it is symbolic for every input and output
        self.batchable = max_batch_size > 1 and all(
            isinstance(a.shape, list) and a.shape and not isinstance(a.shape[0], int)
            for a in (*self.inputs, *self.outputs))
        self.max_batch_size = max_batch_size
        self._batched.set_max_batch_size(max(1, max_batch_size))
        self._batched.set_batch_wait_timeout_s(max(0.0, batch_wait_ms / 1000.0))
        # one run at a time per replica: the session's intra-op threads are the replica's CPUs
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ortlite-serve")
        self._lock = threading.Lock()
        self.batches = collections.deque(maxlen=100_000)  # (requests merged, rows, shapes of the first)
        self.requests = 0
        self.replica = _replica_id()
        self.warmup = self._warm_up()
        self.ready = True
        log.info("replica %s of %s ready: providers %s, %d intra-op threads, batching %s", self.replica, name,
                 self.providers, self.threads, "on" if self.batchable else "off")

    # ------------------------------------------------------------------ running

    def _warm_up(self):
        """One run on zero inputs (symbolic dims 1; zoo's defaults if that fails) before taking traffic."""
        feeds = _zeros(self.inputs)
        try:
            self.session.run(None, feeds)
            return feeds
        except Exception as first:  # noqa: BLE001 - some models need real sizes (an image model's H x W)
            try:
                from ortlite import zoo

                model = self.session._model if hasattr(self.session, "_model") else None
                shapes = {k: list(s.shape) for k, s in zoo.input_shapes(model).items()} if model is not None else {}
                feeds = _zeros(self.inputs, shapes)
                self.session.run(None, feeds)
                return feeds
            except Exception:  # noqa: BLE001
                log.warning("warm-up run on zero inputs failed (%s); health checks only check the session", first)
                return None

    def _run_one(self, feeds):
        try:
            outs = self.session.run(None, feeds)
            with self._lock:
                self.batches.append((1, _rows(feeds), [_shapes(feeds)]))
            return True, dict(zip((o.name for o in self.outputs), outs))
        except Exception as e:  # noqa: BLE001 - reported to this request only
            return False, e

    def _key(self, feeds):
        """Requests with equal keys may be concatenated along axis 0: the same inputs, dtypes, and non-batch dims."""
        if not self.batchable or set(feeds) != set(self.input_dtypes):
            return None
        rows = set()
        for name, arr in feeds.items():
            if not isinstance(arr, np.ndarray) or arr.ndim < 1 or arr.dtype != self.input_dtypes[name]:
                return None
            rows.add(arr.shape[0])
        if len(rows) != 1:
            return None
        return tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in feeds.items()))

    def _run_batch(self, items):
        results = [None] * len(items)
        groups = collections.defaultdict(list)
        for i, feeds in enumerate(items):
            key = self._key(feeds)
            if key is None:
                results[i] = self._run_one(feeds)
            else:
                groups[key].append(i)
        for idx in groups.values():
            if len(idx) == 1:
                results[idx[0]] = self._run_one(items[idx[0]])
                continue
            rows = [_rows(items[i]) for i in idx]
            try:
                merged = {k: np.concatenate([items[i][k] for i in idx]) for k in items[idx[0]]}
                outs = self.session.run(None, merged)
                total = sum(rows)
                if any(not isinstance(o, np.ndarray) or o.ndim < 1 or o.shape[0] != total for o in outs):
                    raise ValueError("an output's first dim is not the batch")
            except Exception:  # noqa: BLE001 - one request's error must not fail the others: run them alone
                for i in idx:
                    results[i] = self._run_one(items[i])
                continue
            with self._lock:  # every merged request's shapes, as merged (the tests check none were mixed)
                self.batches.append((len(idx), sum(rows), [_shapes(items[i]) for i in idx]))
            cuts = np.cumsum(rows)[:-1]
            parts = [np.split(o, cuts) for o in outs]
            for j, i in enumerate(idx):
                results[i] = True, {o.name: p[j] for o, p in zip(self.outputs, parts)}
        return results

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batched(self, items: list):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_batch, items)

    async def run(self, feeds: dict):
        """(ok, outputs or the exception) for one request; batched when the model allows."""
        self.requests += 1
        if self.batchable:
            return await self._batched(feeds)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_one, feeds)

    async def check_health(self):
        """Ray Serve's health check: a small run (the warm-up feeds)."""
        if self.warmup is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, lambda: self.session.run(None, self.warmup))

    def get_stats(self):
        with self._lock:
            batches = list(self.batches)
        return {"replica": self.replica, "pid": os.getpid(), "model": self.name, "requests": self.requests,
                "batchable": self.batchable, "max_batch_size": self.max_batch_size, "threads": self.threads,
                "runtime": self.runtime,
                "providers": self.providers,
                "batches": [{"size": n, "rows": r, "shapes": s} for n, r, s in batches]}

    # ------------------------------------------------------------------ HTTP (Open Inference Protocol)

    def _unknown(self, model_name):
        return _error(f"Request for unknown model: '{model_name}' is not found", 404)

    @app.get("/v2/health/live")
    async def live(self):
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def server_ready(self):
        return _json({"ready": self.ready}, 200 if self.ready else 503)

    @app.get("/v2")
    async def server_metadata(self):
        from ortlite import __version__

        return _json({"name": "ortlite", "version": __version__, "extensions": ["binary_tensor_data"]})

    @app.get("/v2/models/{model_name}")
    @app.get("/v2/models/{model_name}/versions/{version}")
    async def model_metadata(self, model_name: str, version: str = "1"):
        if model_name != self.name:
            return self._unknown(model_name)
        return _json({"name": self.name, "versions": ["1"], "platform": "onnx",
                      "inputs": [protocol.tensor_metadata(a) for a in self.inputs],
                      "outputs": [protocol.tensor_metadata(a) for a in self.outputs]})

    @app.get("/v2/models/{model_name}/ready")
    @app.get("/v2/models/{model_name}/versions/{version}/ready")
    async def model_ready(self, model_name: str, version: str = "1"):
        if model_name != self.name:
            return self._unknown(model_name)
        return _json({"name": self.name, "ready": self.ready}, 200 if self.ready else 503)

    @app.get("/v2/models/{model_name}/stats")
    async def stats(self, model_name: str):
        if model_name != self.name:
            return self._unknown(model_name)
        return _json(self.get_stats())

    @app.post("/v2/models/{model_name}/infer")
    @app.post("/v2/models/{model_name}/versions/{version}/infer")
    async def infer(self, model_name: str, request: Request, version: str = "1"):
        if model_name != self.name:
            return self._unknown(model_name)
        if not self.ready:
            return _error(f"model '{self.name}' is not ready", 503)
        body = await request.body()
        try:
            req = protocol.decode_request(body, request.headers.get(HEADER), request.headers.get("content-encoding"))
            known = [o.name for o in self.outputs]
            for o in req.outputs or ():
                if o not in known:
                    raise ProtocolError(f"unexpected inference output '{o}' for model '{self.name}'; outputs: {known}")
        except ProtocolError as e:
            return _error(e, e.status)
        feeds = {k: (np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(v)
                     if k in self.string_inputs and v.dtype == object and v.size else v) for k, v in req.inputs.items()}
        ok, result = await self.run(feeds)
        if not ok:
            bad_request = isinstance(result, (InvalidArgument, ProtocolError)) or (
                type(result).__name__ == "InvalidArgument")  # onnxruntime's class for a feed it refuses
            return _error(result, 400 if bad_request else 500)
        outs = {k: result[k] for k in (req.outputs or result)}
        payload, headers = protocol.encode_response(self.name, outs, req)
        return Response(payload, media_type="application/octet-stream" if headers else "application/json",
                        headers=headers)
