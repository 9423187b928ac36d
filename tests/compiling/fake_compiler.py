"""A compiling provider for testing the core's compiling machinery without a real compiler.

It claims the op types named in its ``ops`` option (comma-separated) and "compiles" a group
into an ortlite CPU session over the group's own ONNX model, so outputs are real. It records
every compile and load, can be told to fail groups holding an op (``fail_ops``), and keeps its
engine cache in ``cache_dir``. ``device`` names a pretend device for its device_type tests.
"""
from __future__ import annotations

import threading

from ortlite.providers.base import CompileError, CompilingProvider

MAGIC = b"FAKEENGINE1\n"


class FakeEngine:
    def __init__(self, model_bytes):
        import ortlite

        self.model_bytes = model_bytes
        self.session = ortlite.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


class FakeCompilerExecutionProvider(CompilingProvider):
    name = "FakeCompilerExecutionProvider"
    device_type = "cpu"
    min_group_size_option = "min_subgraph_size"
    cache_dir_option = "cache_dir"
    version = "1.0"
    log = []  # ("compile" | "load", group name)
    claims = []  # one entry per claim_groups call (number of candidate nodes)
    lock = threading.Lock()

    @property
    def xp(self):
        import numpy
        return numpy

    def _ops(self):
        return {o for o in self.options.get("ops", "").split(",") if o}

    def claim_groups(self, graph, nodes):
        self.claims.append(len(nodes))
        ops = self._ops()
        ok = [n for n in nodes if n.op_type in ops and n.domain in ("", "ai.onnx")]
        refused = {id(n): f"the fake compiler has no {n.op_type}" for n in nodes if n not in ok}
        # connected components of the claimed nodes
        okids = {id(n) for n in ok}
        parent = {id(n): id(n) for n in ok}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x
        prod = {o: n for n in ok for o in n.outputs if o}
        for n in ok:
            for i in n.inputs:
                if i in prod and id(prod[i]) in okids:
                    parent[find(id(n))] = find(id(prod[i]))
        comps = {}
        for n in ok:
            comps.setdefault(find(id(n)), []).append(n)
        if self.options.get("one_group") == "1" and ok:
            return [ok], refused
        return list(comps.values()), refused

    def cache_key_fields(self):
        return {"compiler": f"fake {self.version}", "device": "cpu",
                "options": {"precision": self.options.get("precision", "fp32")}}

    def compile(self, spec, progress=None):
        fail = {o for o in self.options.get("fail_ops", "").split(",") if o}
        if fail & set(spec.op_types):
            raise CompileError(f"the fake compiler refuses {sorted(fail & set(spec.op_types))}")
        with self.lock:
            self.log.append(("compile", spec.name))
        if progress is not None:
            progress(0.5)
            progress(1.0)
        return FakeEngine(spec.model_bytes)

    def serialize(self, engine):
        return MAGIC + engine.model_bytes

    def deserialize(self, blob, spec):
        blob = bytes(blob)
        if not blob.startswith(MAGIC):
            raise ValueError("not a fake engine")
        with self.lock:
            self.log.append(("load", spec.name))
        return FakeEngine(blob[len(MAGIC):])

    def make_runner(self, engine, spec):
        sess = engine.session
        names = [t.name for t in spec.inputs]
        outs = [t.name for t in spec.outputs]

        def run(*inputs):
            return tuple(sess.run(outs, dict(zip(names, inputs))))
        return run


class FakeDeviceCompilerExecutionProvider(FakeCompilerExecutionProvider):
    """The fake compiler on the tests' pretend device: its engines take and return device arrays
    (tests/partition/pretend_device.py), so copies at a group's boundary are checked."""

    name = "FakeDeviceCompilerExecutionProvider"
    device_type = "pretend"

    def make_runner(self, engine, spec):
        import numpy as np

        from partition.pretend_device import DeviceArray, to_device_array

        inner = super().make_runner(engine, spec)
        names = [t.name for t in spec.inputs]

        def run(*inputs):
            for n, a in zip(names, inputs):
                if a is not None and not isinstance(a, DeviceArray):
                    raise AssertionError(f"engine input '{n}' is on the host (a copy is missing)")
            outs = inner(*[a.view(np.ndarray) for a in inputs])
            return tuple(to_device_array(o) for o in outs)
        return run

    def is_on_device(self, value):
        from partition.pretend_device import DeviceArray
        return isinstance(value, DeviceArray)

    def to_device(self, host_array):
        from partition.pretend_device import to_device_array
        return to_device_array(host_array)

    def to_host(self, value):
        import numpy as np
        return np.array(value.view(np.ndarray))
