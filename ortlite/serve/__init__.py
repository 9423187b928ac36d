"""``ortlite.serve``: ortlite sessions behind HTTP in the Open Inference Protocol (KServe v2 / Triton's REST API),
replicated and batched by Ray Serve. One machine runs as a local Ray cluster; many machines join with
``ray start`` and ``RAY_ADDRESS``.

    import ortlite.serve
    server = ortlite.serve.start("model.onnx", replicas=2, port=8000)
    print(server.url)          # http://127.0.0.1:8000; tritonclient.http.InferenceServerClient("127.0.0.1:8000")
    server.shutdown()

The codec (:mod:`ortlite.serve.protocol`) needs only numpy; :func:`start` needs the ``serve`` extra (Ray Serve).
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

from ortlite.hints import install_hint

# Models up to this size travel inline in the deployment's arguments; larger ones through Ray's object store.
INLINE_LIMIT = 64 << 20


def gpu_providers(providers, num_gpus: float, total_bytes):
    """``providers`` with ``gpu_mem_limit`` = num_gpus x the GPU's memory on the CUDA provider's entry, where a
    replica takes a fraction of a GPU (0 < num_gpus < 1) and the user set no limit of their own."""
    if not providers or not 0 < num_gpus < 1 or not total_bytes:
        return providers
    out = []
    for p in providers:
        name, opts = (p, {}) if isinstance(p, str) else (p[0], dict(p[1] or {}))
        if name == "CUDAExecutionProvider" and "gpu_mem_limit" not in opts:
            opts["gpu_mem_limit"] = int(total_bytes * num_gpus)
            out.append((name, opts))
        else:
            out.append(p)
    return out


def _require_ray():
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as e:
        raise ImportError(f"ortlite.serve needs Ray Serve ({e}); {install_hint('serve')}") from None


def _model_arg(model):
    """(what the replicas get, the default model name): bytes or a path; None / "default" is the demo CNN."""
    import onnx

    if model is None or (isinstance(model, str) and model == "default"):
        from ortlite import zoo

        return zoo.demo().SerializeToString(), "demo"
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString(), model.graph.name or "model"
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "model"
    path = os.path.abspath(os.fspath(model))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file: {model}")
    name = os.path.splitext(os.path.basename(path))[0] or "model"
    if os.path.getsize(path) <= INLINE_LIMIT and not _has_external_data(path):
        with open(path, "rb") as f:
            return f.read(), name  # every node of a cluster gets the model, not only those that see the path
    return path, name  # external data / large files: every node must see the path (a shared filesystem)


def _has_external_data(path):
    import onnx

    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - the replicas report a bad model with the loader's message
        return False
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


@dataclass
class Server:
    """A running deployment: ``url`` (http://host:port plus the route prefix), ``name`` (the model's name in
    /v2/models/{name}), ``shutdown()``; ``stats()`` gathers the replicas' batch records over HTTP."""

    url: str
    name: str
    app_name: str
    replicas: int
    owns_ray: bool
    owns_serve: bool
    _done: bool = field(default=False, repr=False)

    @property
    def triton_url(self) -> str:
        """The URL as tritonclient.http.InferenceServerClient takes it (no scheme)."""
        return self.url.split("://", 1)[1]

    def stats(self, attempts: int = 40, timeout: float = 20.0) -> dict:
        """{replica id: that replica's stats}, polling /v2/models/{name}/stats until every replica answered, or
        ``attempts`` requests and ``timeout`` seconds passed (Serve's router may send a burst of requests to one
        replica while its queue-length view of the others is stale: later tries are spaced out)."""
        import json
        import urllib.request

        seen, deadline = {}, time.monotonic() + timeout
        for i in itertools.count():
            with urllib.request.urlopen(f"{self.url}/v2/models/{self.name}/stats", timeout=30) as r:
                s = json.loads(r.read())
            seen[s["replica"]] = s
            if len(seen) >= self.replicas or (i + 1 >= attempts and time.monotonic() >= deadline):
                break
            if i + 1 >= attempts:
                time.sleep(0.1)
        return seen

    def shutdown(self):
        """Delete the application; stop Serve and Ray when :func:`start` started them."""
        if self._done:
            return
        self._done = True
        import ray
        from ray import serve

        if not ray.is_initialized():  # Ray is already down (its owner stopped it): nothing is left to delete
            return
        if self.owns_serve:
            serve.shutdown()
        else:
            serve.delete(self.app_name)
        if self.owns_ray:
            ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


class InsufficientResources(RuntimeError):
    """The Ray cluster has not the CPUs / GPUs the replicas ask for: :func:`start` refuses rather than wait forever."""


def build(model=None, *, name=None, replicas=1, providers=None, num_cpus=1.0, num_gpus=0.0, max_batch_size=8,
          batch_wait_ms=5.0, session_options=None, max_ongoing_requests=None, health_check_period_s=10.0,
          runtime="ortlite"):
    """The bound Ray Serve application (for ``serve.run`` / ``serve build`` yourself) and the model's name.

    ``runtime="onnxruntime"`` gives each replica an onnxruntime.InferenceSession instead of ortlite's, with the same
    HTTP, batching and health checks (for comparisons: benchmarks/serve.py)."""
    _require_ray()
    import ray

    from ortlite.serve.deployment import OrtliteModel

    if replicas < 1 or max_batch_size < 1 or batch_wait_ms < 0 or num_cpus <= 0 or num_gpus < 0:
        raise ValueError("replicas and max_batch_size must be >= 1, num_cpus > 0, num_gpus and batch_wait_ms >= 0")
    if runtime not in ("ortlite", "onnxruntime"):
        raise ValueError(f"runtime must be 'ortlite' or 'onnxruntime', not {runtime!r}")
    arg, default_name = _model_arg(model)
    if isinstance(arg, bytes) and len(arg) > INLINE_LIMIT:
        arg = ray.put(arg)  # the deployment's arguments pass through the controller; large bytes do not
    name = name or default_name
    actor = {"num_cpus": num_cpus}
    if num_gpus:
        actor["num_gpus"] = num_gpus
    dep = OrtliteModel.options(
        name=f"ortlite-{name}", num_replicas=replicas, ray_actor_options=actor,
        max_ongoing_requests=max_ongoing_requests or max(16, 2 * max_batch_size),
        health_check_period_s=health_check_period_s, health_check_timeout_s=60)
    extra = {} if runtime == "ortlite" else {"runtime": runtime}
    return dep.bind(arg, name, providers, num_cpus, num_gpus, max_batch_size, batch_wait_ms, session_options,
                    **extra), name


def _need(replicas, num_cpus, num_gpus):
    need = {"CPU": replicas * float(num_cpus)}
    if num_gpus:
        need["GPU"] = replicas * float(num_gpus)
    return need


def check_cluster_resources(replicas=1, num_cpus=1.0, num_gpus=0.0, name="model", settle_s=5.0):
    """Raise :class:`InsufficientResources` when the connected Ray cluster's available CPUs / GPUs cannot hold
    ``replicas`` x (``num_cpus``, ``num_gpus``). Resources freed a moment ago (an application just deleted) may
    take a moment to show: a shortfall the whole cluster could hold is re-read for up to ``settle_s`` seconds
    before it counts."""
    import ray

    need = _need(replicas, num_cpus, num_gpus)
    deadline = time.monotonic() + settle_s
    total = ray.cluster_resources()
    while True:
        avail = ray.available_resources()
        short = {k: v for k, v in need.items() if avail.get(k, 0.0) + 1e-9 < v}
        fits_all = all(total.get(k, 0.0) + 1e-9 >= v for k, v in need.items())
        if not short or not fits_all or time.monotonic() >= deadline:  # more than the whole cluster: no waiting
            break
        time.sleep(0.25)
    if not short:
        return
    per = ", ".join(f"{k} {v:g}" for k, v in (("CPU", num_cpus), ("GPU", num_gpus)) if v)
    missing = "; ".join(f"{k}: {v:g} needed ({replicas} x {v / replicas:g}), {avail.get(k, 0.0):g} available of "
                        f"{total.get(k, 0.0):g} in the cluster" for k, v in short.items())
    raise InsufficientResources(
        f"cannot place {replicas} replica(s) of '{name}' ({per} each): the Ray cluster lacks {missing}. Use fewer "
        f"replicas or a smaller num_cpus / num_gpus, free what other Serve applications hold, or give Ray more "
        f"(ray.init(num_cpus=N) / `ray start --num-cpus N`); start(check_resources=False) skips this check "
        f"on a cluster that autoscales")


def start(model=None, *, name=None, replicas=1, providers=None, num_cpus=1.0, num_gpus=0.0, max_batch_size=8,
          batch_wait_ms=5.0, host="127.0.0.1", port=8000, route_prefix="/", app_name=None, address=None,
          session_options=None, ray_init_kwargs=None, health_check_period_s=10.0, check_resources=True,
          start_timeout_s=300.0, runtime="ortlite") -> Server:
    """Serve ``model`` (a path, bytes, a ModelProto; None or "default": the demo CNN) over HTTP.

    Connects to the Ray cluster at ``address`` / ``RAY_ADDRESS`` or starts a local one (and stops it on
    shutdown); reuses a Ray (and Serve) the caller already started. Returns when every replica is warm.

    Never waits forever: the cluster's available CPUs / GPUs are checked against ``replicas`` x ``num_cpus`` /
    ``num_gpus`` first, and again when Serve reports a replica it could not schedule for 30 s (no single node
    fits one: :class:`InsufficientResources`; ``check_resources=False`` skips both, for a cluster that
    autoscales); a deployment not running after ``start_timeout_s`` (replicas created and warmed up) is deleted
    and raises TimeoutError with Serve's account of what it waits for."""
    _require_ray()
    import ray
    from ray import serve

    application, name = build(model, name=name, replicas=replicas, providers=providers, num_cpus=num_cpus,
                              num_gpus=num_gpus, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
                              session_options=session_options, health_check_period_s=health_check_period_s,
                              runtime=runtime)
    owns_ray = not ray.is_initialized()
    if owns_ray:
        kw = {"include_dashboard": False, "logging_level": "WARNING", **(ray_init_kwargs or {})}
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", **kw)
    owns_serve = owns_ray  # a Serve in a Ray the caller started is the caller's: only the application is deleted
    app_name = app_name or f"ortlite-{name}"
    deployed = False
    try:
        if check_resources:
            check_cluster_resources(replicas, num_cpus, num_gpus, name)
        serve.start(http_options={"host": host, "port": port})  # a no-op where Serve already runs
        t0 = time.monotonic()
        deployed = True
        _deploy(application, app_name, route_prefix, start_timeout_s, check_resources)
        _wait_ready(host, port, route_prefix, name,
                    timeout=max(30.0, start_timeout_s - (time.monotonic() - t0)))
    except BaseException:
        if deployed and not owns_serve:
            try:  # not blocking: a replica that never started takes Serve its graceful-shutdown timeout (20 s)
                serve.delete(app_name, _blocking=False)
            except Exception:  # noqa: BLE001 - the error that got us here is the one to report
                pass
        if owns_serve:
            serve.shutdown()
        if owns_ray:
            ray.shutdown()
        raise
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    prefix = "" if route_prefix in ("/", "", None) else "/" + route_prefix.strip("/")
    return Server(f"http://{shown}:{port}{prefix}", name, app_name, replicas, owns_ray, owns_serve)


def _deploy(application, app_name, route_prefix, timeout, unschedulable_fails=True):
    """Deploy without Serve's wait-forever; poll the application's status until RUNNING, DEPLOY_FAILED (raised as
    serve.run raises it: RuntimeError), a replica Serve says it cannot schedule (InsufficientResources, when
    ``unschedulable_fails``) or ``timeout`` (TimeoutError quoting the deployments' status messages)."""
    from ray import serve

    try:
        from ray.serve.api import _run
    except ImportError:  # pragma: no cover - a Serve without it: its own (unbounded) wait
        serve.run(application, name=app_name, route_prefix=route_prefix, blocking=False)
        return
    _run(application, name=app_name, route_prefix=route_prefix, _blocking=False)
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = serve.status().applications.get(app_name)
        status = str(getattr(st, "status", ""))
        if status.endswith("RUNNING"):
            return
        if status.endswith("DEPLOY_FAILED"):
            raise RuntimeError(f"Deploying application {app_name} failed: {st.message}")
        if unschedulable_fails:
            for d in (getattr(st, "deployments", None) or {}).values():
                if "to be scheduled" in (d.message or ""):  # Serve's words after 30 s of a replica unplaced
                    raise InsufficientResources(f"application {app_name}: {d.message} (check_resources=False waits "
                                                f"for an autoscaling cluster instead)")
        time.sleep(0.25)
    notes = []
    for dname, d in (getattr(st, "deployments", None) or {}).items():
        states = ", ".join(f"{getattr(k, 'value', k)} {v}" for k, v in (d.replica_states or {}).items())
        notes.append(f"{dname}: {getattr(d.status, 'value', d.status)}"
                     + (f" (replicas: {states})" if states else "") + (f": {d.message}" if d.message else ""))
    raise TimeoutError(f"application {app_name} was not running after {timeout:.0f}s"
                       + (f"; {'; '.join(notes)}" if notes else "")
                       + ". A replica Ray cannot schedule waits for CPUs / GPUs no node has free (`ray status`)")


def _wait_ready(host, port, route_prefix, name, timeout):
    """serve.run returns when the replicas run; wait until the proxy routes /v2/models/{name}/ready."""
    import urllib.error
    import urllib.request

    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    prefix = "" if route_prefix in ("/", "", None) else "/" + route_prefix.strip("/")
    url = f"http://{shown}:{port}{prefix}/v2/models/{name}/ready"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s ({last})")


__all__ = ["start", "build", "Server", "InsufficientResources", "check_cluster_resources", "INLINE_LIMIT",
           "gpu_providers"]
