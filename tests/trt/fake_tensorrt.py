"""A CPU stand-in for the ``tensorrt`` Python module, with TensorRT 10.x and 11.x personalities.

Spec: ../shared/reference/tensorrt-notes.md §1 and §5. Names and parameter names follow the real
bindings (NVIDIA/TensorRT python/src/infer/pyCore.cpp, parsers/pyOnnx.cpp at v10.16 and v11.1);
members a version lacks are absent (AttributeError). Failures are return values + logger messages,
as on real TensorRT; exceptions only where the real bindings raise.

Getting a module
----------------
``personality("10.16.1")`` / ``personality("11.4.0")`` -> a fresh module object named ``tensorrt``
(tests use the fixtures ``fake_trt`` (both), ``fake_trt10``, ``fake_trt11`` from tests/trt/conftest.py,
which install it as ``sys.modules["tensorrt"]`` and reset the controls below). ``mod._fake`` is this
module (the controls), ``mod._personality`` "10" or "11".

Controls (module globals of fake_tensorrt; the fixtures call ``reset()`` before and after each test)
------------------------------------------------------------------------------------------------
* ``SUPPORT.supported_ops``: ``None`` (default) = every op ortlite's CPU provider has a kernel for
  (domain "" / "ai.onnx"; other domains as "domain:Op"), minus ``SUPPORT.DEFAULT_UNSUPPORTED``
  (sequence/optional/string ops TensorRT has no importer for). Or a set of op names to accept.
* ``SUPPORT.unsupported_ops``: set of op_type names (or "domain:Op") refused by the parser's static
  check (``UNSUPPORTED_NODE``, "No importer registered for op: X"). E.g. ``fake.SUPPORT.unsupported_ops = {"NonZero"}``.
* ``SUPPORT.failing_nodes``: set of node names whose import fails dynamically (``INVALID_NODE``;
  the parse stops there: "at most one dynamic error").
* ``STATS``: counters ``builds``, ``build_failures``, ``deserializations``, ``deserialize_failures``,
  ``parses``, ``support_queries``, ``executions``, ``contexts``; ``STATS.messages`` = every
  ``(severity_name, msg)`` the fake logged (whatever logger it went to).
* ``FAULTS.fail_next_build`` (int: the next N builds return None with an ERROR logged),
  ``FAULTS.fail_next_deserialize`` (same for ``deserialize_cuda_engine``).
* ``DEVICE.cc`` (default "sm_90"): the "GPU" compute capability; embedded in plans and timing caches.
  A plan built for another cc (or by the other personality = other TRT major.minor) is refused by
  ``deserialize_cuda_engine`` (None + ERROR), unless built with
  ``HardwareCompatibilityLevel.AMPERE_PLUS`` and both ccs are >= sm_80.
* ``reset()``: restores all of the above.

Device memory (fake_tensorrt_memory.py)
----------------------------------------
``set_tensor_address(name, ptr)`` takes ints. Every strict-CuPy array (tests/cuda_provider/strict_cupy.py)
is registered automatically (``install_strict_cupy_hook()``, called by the fixtures); register other
buffers with ``register_device_buffer(array)`` (re-exported here). ``execute_async_v3`` reads inputs
from / writes outputs into the registered memory at those addresses, synchronously (the stream int is
recorded, not used). An unknown or freed address, or a buffer too small for the tensor, raises
``AssertionError`` (a test failure, never garbage). ``set_tensor_address`` returns False for a pointer
not 256-byte aligned relative to its allocation (allocations count as pool-aligned), for 0 and for
unknown names.

Plans
-----
``build_serialized_network`` returns a plan: magic ``FAKETRT1`` + JSON header (TRT major.minor, cc,
hardware-compat level, fp16/int8 flags, strong typing, profiles, I/O names/modes/dtypes/shapes) + the
ONNX model bytes. Engines run that model with ortlite's CPU provider, casting to the I/O dtypes. On
10.x with ``BuilderFlag.FP16`` on a weakly typed network, float32 tensors are rounded through float16
(I/O dtypes stay float32); on 11.x precision comes from the graph (a float16 ONNX model has HALF I/O).

Not modelled: shape-tensor inputs (``is_shape_inference_io`` is always False, every I/O is DEVICE),
refit, weight streaming, DLA, plugins, user-managed device memory (``set_device_memory`` is recorded only),
IStreamReader/Writer overloads, layer-level network editing.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import types
import warnings

import numpy as np

from trt import fake_tensorrt_enums as E
from trt import fake_tensorrt_memory as devmem
register_device_buffer = devmem.register_device_buffer  # re-exported control API

PLAN_MAGIC = b"FAKETRT1"
CACHE_MAGIC = b"FAKETRTTC1"

# --------------------------------------------------------------------------------------------- controls


class _Support:
    DEFAULT_UNSUPPORTED = frozenset({
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
        "SplitToSequence", "ConcatFromSequence", "SequenceMap", "Optional", "OptionalGetElement",
        "OptionalHasElement", "StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch", "TfIdfVectorizer",
        "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
    })

    def __init__(self):
        self.reset()

    def reset(self):
        self.supported_ops = None
        self.unsupported_ops = set()
        self.failing_nodes = set()

    def is_supported(self, domain, op_type):
        key = op_type if domain in ("", "ai.onnx") else f"{domain}:{op_type}"
        if key in self.unsupported_ops or op_type in self.unsupported_ops and domain in ("", "ai.onnx"):
            return False
        if self.supported_ops is not None:
            return key in self.supported_ops
        return key in _cpu_ops() and key not in self.DEFAULT_UNSUPPORTED


class _Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.builds = self.build_failures = 0
        self.deserializations = self.deserialize_failures = 0
        self.parses = self.support_queries = self.executions = self.contexts = 0
        self.messages = []


class _Faults:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fail_next_build = 0
        self.fail_next_deserialize = 0


class _Device:
    def __init__(self):
        self.reset()

    def reset(self):
        self.cc = "sm_90"
        self.name = "Fake NVIDIA GPU"


SUPPORT, STATS, FAULTS, DEVICE = _Support(), _Stats(), _Faults(), _Device()
_state_lock = threading.RLock()


def reset():
    """Restore every control (SUPPORT, STATS, FAULTS, DEVICE) to its default."""
    for c in (SUPPORT, STATS, FAULTS, DEVICE):
        c.reset()


_CPU_OPS = []


def _cpu_ops():
    if not _CPU_OPS:
        from ortlite import registry

        registry.load_all_kernels()
        ops = set()
        for dom, op in registry.registered_ops("cpu"):
            ops.add(op if dom in ("", "ai.onnx") else f"{dom}:{op}")
        _CPU_OPS.append(frozenset(ops))
    return _CPU_OPS[0]


def _cc_num(cc):
    return int(str(cc).replace("sm_", "").replace("sm", "").replace(".", ""))


def _cc_dotted(cc):
    n = _cc_num(cc)
    return f"{n // 10}.{n % 10}"


# --------------------------------------------------------------------------------------------- ONNX helpers

# ONNX TensorProto elem type -> TensorRT DataType name (onnx-tensorrt convertDtype)
_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 16: "BF16", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8",
                17: "FP8", 22: "INT4", 23: "FP4"}
_NP_OF = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}
_DDS_OPS = {"NonZero", "NonMaxSuppression", "Unique", "Compress"}


def _toposort(nodes):
    """Node indices in topological order (stable: ties keep graph order); None on a cycle."""
    producer = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    deps = [set() for _ in nodes]
    users = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for name in list(n.input) + _subgraph_inputs(n):
            p = producer.get(name)
            if p is not None and p != i and p not in deps[i]:
                deps[i].add(p)
                users[p].append(i)
    import heapq

    ready = [i for i in range(len(nodes)) if not deps[i]]
    heapq.heapify(ready)
    order = []
    remaining = [len(d) for d in deps]
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                heapq.heappush(ready, u)
    return order if len(order) == len(nodes) else None


def _subgraph_inputs(node):
    """Outer-scope names a control-flow node's subgraphs read."""
    names = []
    for a in node.attribute:
        graphs = [a.g] if a.HasField("g") else list(a.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                local |= set(n.output)
            for n in g.node:
                names += [x for x in list(n.input) + _subgraph_inputs(n) if x and x not in local]
    return names


def _unsupported_in(node):
    """The first op (node itself or inside its subgraphs) the parser cannot import, or None."""
    if not SUPPORT.is_supported(node.domain, node.op_type):
        return node.op_type
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else list(a.graphs)):
            for n in g.node:
                bad = _unsupported_in(n)
                if bad:
                    return bad
    return None


def _dims_of(value_info):
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]


_SESSIONS = {}
_SESSIONS_LOCK = threading.Lock()


def _session(model_bytes):
    key = hashlib.sha1(model_bytes).hexdigest()
    with _SESSIONS_LOCK:
        s = _SESSIONS.get(key)
        if s is None:
            import ortlite

            s = (ortlite.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]), threading.Lock())
            _SESSIONS[key] = s
            if len(_SESSIONS) > 64:
                _SESSIONS.pop(next(iter(_SESSIONS)))
    return s


def _dds_outputs(model):
    """Graph outputs whose shape depends on data (downstream of NonZero, NonMaxSuppression, ...)."""
    tainted = set()
    for i in _toposort(list(model.graph.node)) or []:
        n = model.graph.node[i]
        if n.op_type in _DDS_OPS or any(x in tainted for x in list(n.input) + _subgraph_inputs(n)):
            tainted |= {o for o in n.output if o}
    return {o.name for o in model.graph.output if o.name in tainted}


# --------------------------------------------------------------------------------------------- personality


def personality(version: str) -> types.ModuleType:
    """A fresh module named ``tensorrt`` imitating TensorRT ``version`` ("10.16.1", "11.4.0", ...)."""
    major = int(version.split(".")[0])
    if major not in (10, 11):
        raise ValueError(f"fake tensorrt imitates 10.x and 11.x, not {version}")
    V10 = major == 10
    P = "10" if V10 else "11"
    mm = ".".join(version.split(".")[:2])
    trt = types.ModuleType("tensorrt", f"Fake TensorRT {version} (tests/trt/fake_tensorrt.py)")
    trt.__version__ = version
    trt._fake = sys.modules[__name__]
    trt._personality = P

    def deprecated(what, instead):
        warnings.warn(f"{what} is deprecated. Use {instead} instead.", DeprecationWarning, stacklevel=3)

    def common_enter(this):
        warnings.warn("Context managers for TensorRT types are deprecated. Memory will be freed automatically "
                      "when the reference count reaches 0.", DeprecationWarning, stacklevel=2)
        return this

    def common_exit(this, exc_type, exc_value, traceback):
        pass

    def new(cls, *args, **kwargs):
        """Instances of classes the real bindings expose without a constructor."""
        obj = object.__new__(cls)
        obj._init(*args, **kwargs)
        return obj

    def check_type(value, cls, what):
        if not isinstance(value, cls):
            raise TypeError(f"{what}(): incompatible function arguments: expected tensorrt.{cls.__name__}, "
                            f"got {type(value).__module__}.{type(value).__name__}")

    # ---- enums
    class ILogger:
        """Subclass and call ``ILogger.__init__(self)``; override ``log(severity, msg)``."""

        def __init__(self):
            pass

        def log(self, severity, msg):
            raise RuntimeError('Tried to call pure virtual function "ILogger::log"')

        __enter__ = common_enter

        def __exit__(self, exc_type, exc_value, traceback):
            return None

    Severity = E.make_enum("Severity", E.SEVERITY, arithmetic=True)
    ILogger.Severity = Severity
    for k, v in Severity.__members__.items():
        setattr(ILogger, k, v)

    class Logger(ILogger):
        def __init__(self, min_severity=Severity.WARNING):
            ILogger.__init__(self)
            self.min_severity = min_severity

        def log(self, severity, msg):
            if severity <= self.min_severity:
                tag = {0: "F", 1: "E", 2: "W", 3: "I", 4: "V"}[int(severity)]
                print(f"[TRT] [{tag}] {msg}", file=sys.stderr)

    Logger.Severity = Severity
    for k, v in Severity.__members__.items():
        setattr(Logger, k, v)

    def emit(logger, sev, msg):
        STATS.messages.append((sev, msg))
        if logger is None:
            return
        try:
            logger.log(getattr(Severity, sev), msg)
        except Exception as e:  # noqa: BLE001 - PyLogger catches and prints, never propagates
            print(f"[ERROR] Exception caught in log(): {e}", file=sys.stderr)

    DataType = E.make_enum("DataType", E.DATATYPE, extra={
        "itemsize": property(lambda self: E.DATATYPE_ITEMSIZE[self.name])})
    for alias, name in [("float32", "FLOAT"), ("float16", "HALF"), ("bfloat16", "BF16"), ("int8", "INT8"),
                        ("int32", "INT32"), ("int64", "INT64"), ("bool", "BOOL"), ("uint8", "UINT8"),
                        ("fp8", "FP8"), ("int4", "INT4"), ("fp4", "FP4"), ("e8m0", "E8M0")]:
        setattr(trt, alias, getattr(DataType, name))

    def nptype(trt_type):
        if isinstance(trt_type, DataType) and trt_type.name in _NP_OF:
            return _NP_OF[trt_type.name]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    def volume(iterable):
        vol = 1
        for elem in iterable:
            vol *= elem
        return vol

    BuilderFlag = E.make_enum("BuilderFlag", E.BUILDER_FLAG[P], arithmetic=True)
    NetworkDefinitionCreationFlag = E.make_enum("NetworkDefinitionCreationFlag", E.NETWORK_FLAG[P], arithmetic=True)
    OnnxParserFlag = E.make_enum("OnnxParserFlag", E.ONNX_PARSER_FLAG)
    ErrorCode = E.make_enum("ErrorCode", E.PARSER_ERROR_CODE, extra={
        "__str__": lambda self: self.name, "__repr__": lambda self: self.name})
    MemoryPoolType = E.make_enum("MemoryPoolType", E.MEMORY_POOL)
    TensorIOMode = E.make_enum("TensorIOMode", E.TENSOR_IO_MODE)
    TensorLocation = E.make_enum("TensorLocation", E.TENSOR_LOCATION)
    ExecutionContextAllocationStrategy = E.make_enum("ExecutionContextAllocationStrategy", E.ALLOC_STRATEGY,
                                                     arithmetic=True)
    HardwareCompatibilityLevel = E.make_enum("HardwareCompatibilityLevel", E.HW_COMPAT)
    ProfilingVerbosity = E.make_enum("ProfilingVerbosity", E.PROFILING_VERBOSITY)
    DeviceType = E.make_enum("DeviceType", E.DEVICE_TYPE)
    EngineCapability = E.make_enum("EngineCapability", E.ENGINE_CAPABILITY)
    TacticSource = E.make_enum("TacticSource", E.TACTIC_SOURCE[P], arithmetic=True)
    TilingOptimizationLevel = E.make_enum("TilingOptimizationLevel", E.TILING_LEVEL)
    SerializationFlag = E.make_enum("SerializationFlag", E.SERIALIZATION_FLAG, arithmetic=True)

    class Dims(E.Dims):
        pass

    Dims.__name__ = Dims.__qualname__ = "Dims"

    def dims(x):
        return x if isinstance(x, Dims) else Dims(x)

    def invalid_dims():
        d = Dims(())
        d._nb = -1
        return d

    # ---- host memory (buffer protocol via a ctypes array base)
    import ctypes

    class IHostMemory:
        @property
        def nbytes(self):
            return ctypes.sizeof(self)

        @property
        def dtype(self):
            return DataType.UINT8

        __enter__ = common_enter
        __exit__ = common_exit

    def host_memory(data: bytes):
        cls = type("IHostMemory", (ctypes.c_ubyte * len(data), IHostMemory), {"__module__": "tensorrt"})
        return cls.from_buffer_copy(data)

    # ---- interfaces users subclass
    class IProgressMonitor:
        def __init__(self):
            pass

        def phase_start(self, phase_name, parent_phase, num_steps):
            raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_start"')

        def step_complete(self, phase_name, step):
            raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::step_complete"')

        def phase_finish(self, phase_name):
            raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_finish"')

    class IOutputAllocator:
        def __init__(self):
            pass

    # ---- network
    class ITensor:
        def _init(self, name, shape, dtype, is_input):
            self._name, self._shape, self._dtype, self._is_input = name, Dims(shape), dtype, is_input

        name = property(lambda s: s._name)
        shape = property(lambda s: Dims(s._shape))
        dtype = property(lambda s: s._dtype)
        is_network_input = property(lambda s: s._is_input)
        is_network_output = property(lambda s: not s._is_input)
        is_shape_tensor = property(lambda s: False)
        is_execution_tensor = property(lambda s: True)
        location = property(lambda s: TensorLocation.DEVICE)

    class INetworkDefinition:
        def _init(self, builder, flags):
            self._builder, self._flags = builder, int(flags)
            self._inputs, self._outputs = [], []
            self._model_bytes, self._ok, self._num_layers, self._parser = None, False, 0, None
            self._has_qdq = False
            self._name = "Unnamed Network 0"

        name = property(lambda s: s._name, lambda s, v: setattr(s, "_name", str(v)))
        num_layers = property(lambda s: s._num_layers)
        num_inputs = property(lambda s: len(s._inputs))
        num_outputs = property(lambda s: len(s._outputs))
        flags = property(lambda s: s._flags)

        def get_input(self, index):
            return self._inputs[index] if 0 <= index < len(self._inputs) else None

        def get_output(self, index):
            return self._outputs[index] if 0 <= index < len(self._outputs) else None

        def get_flag(self, flag):
            check_type(flag, NetworkDefinitionCreationFlag, "get_flag")
            if not V10 and flag.name == "STRONGLY_TYPED":
                return True  # 11.x: always strongly typed
            return bool(self._flags & (1 << int(flag)))

        @property
        def _strongly_typed(self):
            return (not V10) or bool(self._flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED.value))

        __enter__ = common_enter
        __exit__ = common_exit

    # ---- parser
    class ParserError:
        def _init(self, code, desc, node=-1, node_name="", node_operator="", file="", func="", line=0):
            self._c, self._d, self._n, self._nn, self._no = code, desc, node, node_name, node_operator
            self._file, self._func, self._line = file, func, line

        def code(self):
            return self._c

        def desc(self):
            return self._d

        def file(self):
            return self._file

        def line(self):
            return self._line

        def func(self):
            return self._func

        def node(self):
            return self._n

        def node_name(self):
            return self._nn

        def node_operator(self):
            return self._no

        def local_function_stack(self):
            return []

        def local_function_stack_size(self):
            return 0

        def __str__(self):
            info = f"({self._func}): {self._c.name}: {self._d}"
            if self._c.name in ("MODEL_DESERIALIZE_FAILED", "REFIT_FAILED"):
                return info
            return f"In node {self._n} with name: {self._nn} and operator: {self._no} {info}"

        __repr__ = __str__

    class OnnxParser:
        def __init__(self, network, logger):
            check_type(network, INetworkDefinition, "OnnxParser.__init__")
            check_type(logger, ILogger, "OnnxParser.__init__")
            self._network, self._logger = network, logger
            network._parser = self  # keep_alive<2, 1>
            self._errors, self._subgraphs = [], []
            self._flags = 1 << OnnxParserFlag.NATIVE_INSTANCENORM.value
            self._model = None

        # -- parsing
        def parse(self, model, path=None):
            return self._parse(bytes(memoryview(model)), path)

        def parse_from_file(self, model):
            try:
                with open(model, "rb") as f:
                    data = f.read()
            except OSError as e:
                self._errors = [new(ParserError, ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to open file {model}: {e}",
                                            func="parseFromFile")]
                emit(self._logger, "ERROR", str(self._errors[0]))
                return False
            return self._parse(data, model)

        def _parse(self, data, path):
            import onnx

            with _state_lock:
                STATS.parses += 1
            self._errors = []
            try:
                m = onnx.load_from_string(data)
            except Exception:  # noqa: BLE001
                return self._fail(new(ParserError, ErrorCode.MODEL_DESERIALIZE_FAILED, "Failed to parse the ONNX model.",
                                              func="parseWithWeightDescriptors"))
            if path and any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer):
                from onnx.external_data_helper import load_external_data_for_model

                load_external_data_for_model(m, os.path.dirname(os.path.abspath(path)))
                data = m.SerializeToString()
            self._model = m
            net = self._network
            g = m.graph
            inits = {t.name for t in g.initializer}
            net._inputs, net._outputs, net._num_layers = [], [], 0
            net._model_bytes, net._ok = data, False
            net._has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)
            errors = []
            for vi in g.input:
                if vi.name in inits:
                    continue
                dt = _ONNX_TO_TRT.get(vi.type.tensor_type.elem_type)
                shape = _dims_of(vi)
                if dt is None:
                    errors.append(new(ParserError, ErrorCode.UNSUPPORTED_NODE,
                                              "Failed to convert ONNX date type to TensorRT data type.",
                                              file=vi.name, func="importInput"))
                elif shape is None:
                    errors.append(new(ParserError, ErrorCode.UNSUPPORTED_GRAPH,
                                              "Failed to convert ONNX dimensions to TensorRT dimensions.",
                                              file=vi.name, func="importInput"))
                else:
                    net._inputs.append(new(ITensor, vi.name, shape, getattr(DataType, dt), True))
            if errors:
                return self._fail(*errors)
            nodes = list(g.node)
            order = _toposort(nodes)
            if order is None:
                return self._fail(new(ParserError, ErrorCode.INVALID_GRAPH, "Failed to sort the model topologically.",
                                              func="parseGraph"))
            # static check: every node; then at most one dynamic error
            for i in order:
                bad = _unsupported_in(nodes[i])
                if bad:
                    errors.append(new(ParserError,
                        ErrorCode.UNSUPPORTED_NODE,
                        f"No importer registered for op: {bad}. Attempted to import as plugin but no plugin "
                        "creator was found.", i, nodes[i].name, nodes[i].op_type, func="parseNodeStaticCheck"))
            out_types = {o.name: o for o in g.output}
            if not errors:
                for i in order:
                    n = nodes[i]
                    bad_out = [o for o in n.output if o in out_types
                               and _ONNX_TO_TRT.get(out_types[o].type.tensor_type.elem_type) is None]
                    if n.name in SUPPORT.failing_nodes or bad_out:
                        code = ErrorCode.UNSUPPORTED_NODE_DATATYPE if bad_out else ErrorCode.INVALID_NODE
                        desc = (f"Unsupported output data type for network output {bad_out[0]}" if bad_out
                                else f"Invalid Node - {n.name}")
                        errors.append(new(ParserError, code, desc, i, n.name, n.op_type, func="parseNode"))
                        break
                    net._num_layers += 1
            for o in g.output:
                dt = _ONNX_TO_TRT.get(o.type.tensor_type.elem_type)
                if dt is not None:
                    net._outputs.append(new(ITensor, o.name, _dims_of(o) or [], getattr(DataType, dt), False))
            if errors:
                return self._fail(*errors)
            net._ok = True
            return True

        def _fail(self, *errors):
            self._errors = list(errors)
            for e in errors:
                emit(self._logger, "ERROR", str(e))
            return False

        # -- support query
        def supports_model_v2(self, model, path=None):
            with _state_lock:
                STATS.support_queries += 1
            ok = self._parse(bytes(memoryview(model)), path)
            self._subgraphs = self._report_subgraphs(ok)
            return ok and len(self._subgraphs) == 1 and self._subgraphs[0][1]

        def _report_subgraphs(self, ok):
            """onnx-tensorrt ModelImporter::reportSubgraphs."""
            if self._model is None:
                return []
            error_node, input_node = -1, ""
            all_supported = ok and not self._errors
            for e in self._errors:
                if e.node() != -1:
                    error_node = e.node()
                else:
                    input_node = e.file()
            nodes = list(self._model.graph.node)
            order = _toposort(nodes)
            if order is None:
                return []
            subgraphs, new = [], True
            for i in order:
                consumes_bad_input = bool(input_node) and input_node in nodes[i].input
                if not consumes_bad_input and i != error_node:
                    if new:
                        subgraphs.append([[], False])
                        new = False
                    subgraphs[-1][0].append(i)
                else:
                    new, all_supported = True, False
            if all_supported and len(subgraphs) == 1:
                subgraphs[0][1] = True
            return [(idx, sup) for idx, sup in subgraphs]

        @property
        def num_subgraphs(self):
            return len(self._subgraphs)

        def is_subgraph_supported(self, index):
            if not 0 <= index < len(self._subgraphs):
                emit(self._logger, "ERROR", f"Subgraph index {index} out of range")
                return False
            return self._subgraphs[index][1]

        def get_subgraph_nodes(self, index):
            if not 0 <= index < len(self._subgraphs):
                emit(self._logger, "ERROR", f"Subgraph index {index} out of range")
                return []
            return list(self._subgraphs[index][0])

        if V10:
            def supports_model(self, model, path=None):
                deprecated("supports_model", "supports_model_v2")
                ok = self.supports_model_v2(model, path)
                return ok, [(list(idx), sup) for idx, sup in self._subgraphs]

        def supports_operator(self, op_name):
            return SUPPORT.is_supported("", op_name)

        # -- errors and flags
        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return self._errors[index] if 0 <= index < len(self._errors) else None

        def clear_errors(self):
            self._errors = []

        flags = property(lambda s: s._flags, lambda s, v: setattr(s, "_flags", int(v)))

        def set_flag(self, flag):
            check_type(flag, OnnxParserFlag, "set_flag")
            self._flags |= 1 << int(flag)

        def clear_flag(self, flag):
            check_type(flag, OnnxParserFlag, "clear_flag")
            self._flags &= ~(1 << int(flag))

        def get_flag(self, flag):
            check_type(flag, OnnxParserFlag, "get_flag")
            return bool(self._flags & (1 << int(flag)))

        def get_used_vc_plugin_libraries(self):
            return []

        __enter__ = common_enter
        __exit__ = common_exit

    # ---- profiles, timing cache, config
    class IOptimizationProfile:
        def _init(self):
            self._shapes, self._values = {}, {}
            self._valid = True
            self.extra_memory_target = 1.0

        def set_shape(self, input, min, opt, max):  # noqa: A002 - the binding's parameter names
            mn, op, mx = dims(min), dims(opt), dims(max)
            if not (len(mn) == len(op) == len(mx)):
                self._valid = False
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            for a, b, c in zip(mn, op, mx):
                if not (0 <= a <= b <= c):
                    self._valid = False
                    raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self._shapes[input] = (mn, op, mx)

        def get_shape(self, input):  # noqa: A002
            s = self._shapes.get(input)
            return [Dims(x) for x in s] if s else []

        def set_shape_input(self, input, min, opt, max):  # noqa: A002
            self._values[input] = (list(min), list(opt), list(max))

        def get_shape_input(self, input):  # noqa: A002
            v = self._values.get(input)
            return [list(x) for x in v] if v else []

        def __bool__(self):
            return self._valid

        __nonzero__ = __bool__

    class ITimingCache:
        def _init(self, cc, entries):
            self._cc, self._entries = cc, dict(entries)

        def serialize(self):
            head = json.dumps({"trt": mm, "cc": self._cc, "entries": self._entries}, sort_keys=True).encode()
            return host_memory(CACHE_MAGIC + head)

        def combine(self, input_cache, ignore_mismatch):
            check_type(input_cache, ITimingCache, "combine")
            if input_cache._cc != self._cc and not ignore_mismatch:
                return False
            self._entries.update(input_cache._entries)
            return True

        def reset(self):
            self._entries.clear()
            return True

    class IBuilderConfig:
        def _init(self, builder):
            self._builder = builder
            self._pools = {}
            self._flags = 1 << BuilderFlag.TF32.value
            self._profiles = []
            self._timing_cache = None
            self.builder_optimization_level = 3
            self.progress_monitor = None
            self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
            self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
            self.max_aux_streams = -1
            self.max_num_tactics = -1
            self.tiling_optimization_level = TilingOptimizationLevel.NONE
            self.default_device_type = DeviceType.GPU
            self.engine_capability = EngineCapability.STANDARD
            self.DLA_core = -1
            self.profile_stream = 0
            self._tactic_sources = sum(1 << m.value for m in TacticSource)
            self._preview = {}
            if V10:
                self._int8_calibrator = None

        def set_memory_pool_limit(self, pool, pool_size):
            check_type(pool, MemoryPoolType, "set_memory_pool_limit")
            if int(pool_size) < 0:
                emit(self._builder._logger, "ERROR", "IBuilderConfig::setMemoryPoolLimit: Error Code 3: "
                     "API Usage Error (INVALID_ARGUMENT: pool size must be non-negative)")
                return
            self._pools[pool.name] = int(pool_size)

        def get_memory_pool_limit(self, pool):
            check_type(pool, MemoryPoolType, "get_memory_pool_limit")
            return self._pools.get(pool.name, 80 * 1024 ** 3 if pool.name == "WORKSPACE" else 0)

        flags = property(lambda s: s._flags, lambda s, v: setattr(s, "_flags", int(v)))

        def set_flag(self, flag):
            check_type(flag, BuilderFlag, "set_flag")
            self._flags |= 1 << int(flag)

        def clear_flag(self, flag):
            check_type(flag, BuilderFlag, "clear_flag")
            self._flags &= ~(1 << int(flag))

        def get_flag(self, flag):
            check_type(flag, BuilderFlag, "get_flag")
            return bool(self._flags & (1 << int(flag)))

        def _has(self, name):
            f = getattr(BuilderFlag, name, None)
            return f is not None and bool(self._flags & (1 << f.value))

        def add_optimization_profile(self, profile):
            check_type(profile, IOptimizationProfile, "add_optimization_profile")
            if not profile:
                emit(self._builder._logger, "ERROR", "IBuilderConfig::addOptimizationProfile: Error Code 3: "
                     "API Usage Error (profile is not valid)")
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        num_optimization_profiles = property(lambda s: len(s._profiles))

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(memoryview(serialized_timing_cache))
            if not data:
                return new(ITimingCache, DEVICE.cc, {})
            try:
                assert data.startswith(CACHE_MAGIC)
                head = json.loads(data[len(CACHE_MAGIC):].decode())
            except Exception:  # noqa: BLE001
                emit(self._builder._logger, "ERROR", "IBuilderConfig::createTimingCache: Error Code 1: Serialization "
                     "(Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
                return None
            if head["trt"] != mm:
                emit(self._builder._logger, "WARNING", f"The timing cache was created by TensorRT {head['trt']}; "
                     f"this is {mm}: it is ignored and an empty cache is used.")
                return new(ITimingCache, DEVICE.cc, {})
            return new(ITimingCache, head["cc"], head["entries"])

        def set_timing_cache(self, cache, ignore_mismatch):
            check_type(cache, ITimingCache, "set_timing_cache")
            if cache._cc != DEVICE.cc and not ignore_mismatch:
                emit(self._builder._logger, "ERROR", "IBuilderConfig::setTimingCache: Error Code 3: API Usage Error "
                     f"(the timing cache was created on a device ({cache._cc}) different from the current one "
                     f"({DEVICE.cc}))")
                return False
            self._timing_cache = cache  # keep_alive<1, 2>
            return True

        def get_timing_cache(self):
            return self._timing_cache

        def set_tactic_sources(self, tactic_sources):
            self._tactic_sources = int(tactic_sources)
            return True

        def get_tactic_sources(self):
            return self._tactic_sources

        def set_preview_feature(self, feature, enable):
            self._preview[int(feature)] = bool(enable)

        def get_preview_feature(self, feature):
            return self._preview.get(int(feature), False)

        def reset(self):
            self._init(self._builder)

        if V10:
            @property
            def int8_calibrator(self):
                return self._int8_calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, value):
                deprecated("int8_calibrator", "explicit quantization")
                self._int8_calibrator = value

        __enter__ = common_enter
        __exit__ = common_exit

    # ---- builder
    class Builder:
        def __init__(self, logger):
            check_type(logger, ILogger, "Builder.__init__")
            self._logger = logger  # keep_alive<1, 2>
            self.max_threads = 16

        logger = property(lambda s: s._logger)
        num_DLA_cores = property(lambda s: 0)
        max_DLA_batch_size = property(lambda s: 1)

        def create_network(self, flags=0):
            return new(INetworkDefinition, self, flags)

        def create_builder_config(self):
            return new(IBuilderConfig, self)

        def create_optimization_profile(self):
            return new(IOptimizationProfile)

        if V10:
            @property
            def platform_has_tf32(self):
                deprecated("platform_has_tf32", "CUDA device properties")
                return _cc_num(DEVICE.cc) >= 80

            @property
            def platform_has_fast_fp16(self):
                deprecated("platform_has_fast_fp16", "CUDA device properties")
                return True

            @property
            def platform_has_fast_int8(self):
                deprecated("platform_has_fast_int8", "CUDA device properties")
                return True

        def is_network_supported(self, network, config):
            return bool(network._ok)

        def reset(self):
            pass

        def build_serialized_network(self, network, config):
            check_type(network, INetworkDefinition, "build_serialized_network")
            check_type(config, IBuilderConfig, "build_serialized_network")
            plan = self._build(network, config)
            with _state_lock:
                if plan is None:
                    STATS.build_failures += 1
                else:
                    STATS.builds += 1
            return None if plan is None else host_memory(plan)

        def _error(self, msg):
            emit(self._logger, "ERROR", msg)
            return None

        def _build(self, net, config):
            with _state_lock:
                if FAULTS.fail_next_build:
                    FAULTS.fail_next_build -= 1
                    return self._error("IBuilder::buildSerializedNetwork: Error Code 10: Internal Error "
                                       "(Could not find any implementation for node {ForeignNode[fake]}: forced "
                                       "failure (fake_tensorrt.FAULTS.fail_next_build).)")
            if net._model_bytes is None or not net._outputs:
                return self._error("IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error "
                                   "(Network must have at least one output)")
            if not net._ok:
                return self._error("IBuilder::buildSerializedNetwork: Error Code 4: Internal Error (Network is "
                                   "incomplete: the ONNX parse failed; see the parser errors)")
            strongly = net._strongly_typed
            if V10 and strongly:
                for name in ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4"):
                    if config._has(name):
                        return self._error(
                            "IBuilder::buildSerializedNetwork: Error Code 3: API Usage Error (Parameter check "
                            f"failed, condition: !config.getFlag(BuilderFlag::k{name}). BuilderFlag::k{name} is "
                            "not allowed in strongly typed mode (precision comes from the network).)")
            # optimization profiles
            dynamic = [t for t in net._inputs if -1 in list(t._shape)]
            profiles = []
            if dynamic and not config._profiles:
                return self._error("IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error (Network has "
                                   "dynamic or shape inputs, but no optimization profile has been defined.)")
            for pi, prof in enumerate(config._profiles or [None]):
                entry = {}
                for t in net._inputs:
                    static = list(t._shape)
                    s = prof._shapes.get(t._name) if prof is not None else None
                    if s is None:
                        if -1 in static:
                            return self._error(
                                "IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error (Optimization "
                                f"profile {pi} is missing values for network input {t._name}.)")
                        entry[t._name] = [static, static, static]
                        continue
                    mn, op, mx = (list(x) for x in s)
                    if len(mn) != len(static):
                        return self._error(
                            f"IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error (Optimization profile "
                            f"{pi}: rank of {t._name} is {len(mn)}, the network input has rank {len(static)}.)")
                    for k, d in enumerate(static):
                        if d != -1 and not (mn[k] == op[k] == mx[k] == d):
                            return self._error(
                                f"IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error (Optimization "
                                f"profile {pi}: dimension {k} of {t._name} is static ({d}) but the profile gives "
                                f"[{mn[k]}, {op[k]}, {mx[k]}].)")
                    entry[t._name] = [mn, op, mx]
                profiles.append(entry)
            # progress
            mon = config.progress_monitor
            if mon is not None:
                phase = "Building engine"
                steps = max(1, min(net._num_layers, 8))
                mon.phase_start(phase, None, steps)
                for step in range(steps):
                    if mon.step_complete(phase, step) is False:
                        mon.phase_finish(phase)
                        return self._error("IBuilder::buildSerializedNetwork: Error Code 2: Internal Error (Engine "
                                           "build was cancelled by the progress monitor.)")
                mon.phase_finish(phase)
            # timing cache
            tc = config._timing_cache
            if tc is not None and not config._has("DISABLE_TIMING_CACHE"):
                import onnx

                m = onnx.load_from_string(net._model_bytes)
                for n in m.graph.node:
                    key = hashlib.sha1(f"{n.op_type}|{n.domain}".encode()).hexdigest()[:16]
                    tc._entries.setdefault(key, f"tactic-{key[:6]}")
            fp16 = bool(V10 and not strongly and config._has("FP16"))
            header = {
                "trt": mm, "version": version, "cc": DEVICE.cc,
                "hw": config.hardware_compatibility_level.name,
                "strongly_typed": strongly, "fp16": fp16, "int8": bool(V10 and config._has("INT8")),
                "refit": config._has("REFIT"), "name": net._name, "num_layers": net._num_layers,
                "profiles": profiles,
                "io": [{"name": t._name, "mode": "INPUT", "dtype": t._dtype.name, "shape": list(t._shape)}
                       for t in net._inputs]
                + [{"name": t._name, "mode": "OUTPUT", "dtype": t._dtype.name, "shape": list(t._shape)}
                   for t in net._outputs],
            }
            head = json.dumps(header, sort_keys=True).encode()
            return PLAN_MAGIC + len(head).to_bytes(4, "little") + head + net._model_bytes

        __enter__ = common_enter
        __exit__ = common_exit

    # ---- runtime and engine
    class Runtime:
        def __init__(self, logger):
            check_type(logger, ILogger, "Runtime.__init__")
            self._logger = logger
            self.engine_host_code_allowed = False
            self.max_threads = 16
            self.DLA_core = 0
            self.temporary_directory = ""
            self.tempfile_control_flags = 3

        logger = property(lambda s: s._logger)
        num_DLA_cores = property(lambda s: 0)

        def deserialize_cuda_engine(self, serialized_engine):
            eng = self._deserialize(bytes(memoryview(serialized_engine)))
            with _state_lock:
                if eng is None:
                    STATS.deserialize_failures += 1
                else:
                    STATS.deserializations += 1
            return eng

        def _deserialize(self, data):
            def fail(msg):
                emit(self._logger, "ERROR", msg)
                return None

            with _state_lock:
                if FAULTS.fail_next_deserialize:
                    FAULTS.fail_next_deserialize -= 1
                    return fail("IRuntime::deserializeCudaEngine: Error Code 1: Internal Error (forced failure: "
                                "fake_tensorrt.FAULTS.fail_next_deserialize)")
            if not data.startswith(PLAN_MAGIC):
                return fail("IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                            "plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.)")
            try:
                n = int.from_bytes(data[8:12], "little")
                head = json.loads(data[12:12 + n].decode())
                model_bytes = data[12 + n:]
            except Exception:  # noqa: BLE001
                return fail("IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                            "failed: corrupted plan)")
            if head["trt"] != mm:
                return fail("IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan file is "
                            f"not compatible with this version of TensorRT, expecting library version {version} got "
                            f"{head['version']}, please rebuild.)")
            if head["cc"] != DEVICE.cc:
                portable = head["hw"] == "AMPERE_PLUS" and _cc_num(DEVICE.cc) >= 80 and _cc_num(head["cc"]) >= 80
                if not portable:
                    return fail("IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan file "
                                "is generated on an incompatible device, expecting compute "
                                f"{_cc_dotted(DEVICE.cc)} got compute {_cc_dotted(head['cc'])}, please rebuild.)")
            return new(ICudaEngine, self, head, model_bytes, data)

        __enter__ = common_enter
        __exit__ = common_exit

    class ICudaEngine:
        def _init(self, runtime, head, model_bytes, plan):
            self._runtime, self._head, self._model_bytes, self._plan = runtime, head, model_bytes, plan
            self._io = head["io"]
            self._by_name = {t["name"]: t for t in self._io}
            self._shape_cache = {}
            self._dds = None
            self._lock = threading.Lock()
            self.weight_streaming_budget_v2 = 0

        def _logger(self):
            return self._runtime._logger

        num_io_tensors = property(lambda s: len(s._io))
        num_layers = property(lambda s: s._head["num_layers"])
        num_optimization_profiles = property(lambda s: len(s._head["profiles"]))
        name = property(lambda s: s._head["name"])
        refittable = property(lambda s: s._head["refit"])
        device_memory_size_v2 = property(lambda s: 1 << 20)
        streamable_weights_size = property(lambda s: 0)
        num_aux_streams = property(lambda s: 0)
        hardware_compatibility_level = property(lambda s: getattr(HardwareCompatibilityLevel, s._head["hw"]))
        engine_capability = property(lambda s: EngineCapability.STANDARD)

        def __getitem__(self, arg0):
            n = len(self._io)
            index = arg0 + n if arg0 < 0 else arg0
            if not 0 <= index < n:
                raise IndexError("Out of bounds")
            return self._io[index]["name"]

        def get_tensor_name(self, index):
            return self._io[index]["name"] if 0 <= index < len(self._io) else None

        def get_tensor_mode(self, name):
            t = self._by_name.get(name)
            return getattr(TensorIOMode, t["mode"]) if t else TensorIOMode.NONE

        def get_tensor_dtype(self, name):
            t = self._by_name.get(name)
            return getattr(DataType, t["dtype"]) if t else DataType.FLOAT

        def get_tensor_shape(self, name):
            t = self._by_name.get(name)
            return Dims(t["shape"]) if t else invalid_dims()

        def get_tensor_location(self, name):
            return TensorLocation.DEVICE

        def is_shape_inference_io(self, name):
            return False

        def get_tensor_format_desc(self, name):
            return "Row major linear FP32 format (kLINEAR)" if name in self._by_name else ""

        def get_tensor_vectorized_dim(self, name):
            return -1

        def get_tensor_bytes_per_component(self, name):
            t = self._by_name.get(name)
            return int(max(1, E.DATATYPE_ITEMSIZE[t["dtype"]])) if t else -1

        def get_tensor_components_per_element(self, name):
            return 1 if name in self._by_name else -1

        def get_tensor_profile_shape(self, name, profile_index):
            t = self._by_name.get(name)
            profs = self._head["profiles"]
            if t is None or t["mode"] != "INPUT" or not 0 <= profile_index < len(profs):
                if not 0 <= profile_index < len(profs):
                    emit(self._logger(), "ERROR", f"ICudaEngine::getProfileShape: Error Code 3: API Usage Error "
                         f"(profile index {profile_index} out of range [0, {len(profs)}))")
                return [invalid_dims(), invalid_dims(), invalid_dims()]
            return [Dims(x) for x in profs[profile_index][name]]

        def get_device_memory_size_for_profile_v2(self, profile_index):
            return 1 << 20

        def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
            check_type(strategy, ExecutionContextAllocationStrategy, "create_execution_context")
            with _state_lock:
                STATS.contexts += 1
            return new(IExecutionContext, self, strategy)

        if V10:
            def create_execution_context_without_device_memory(self):
                deprecated("create_execution_context_without_device_memory", "create_execution_context")
                return new(IExecutionContext, self, ExecutionContextAllocationStrategy.USER_MANAGED)

        def serialize(self):
            return host_memory(self._plan)

        # -- helpers for the context
        def _session(self):
            return _session(self._model_bytes)

        def _dds_outputs(self):
            if self._dds is None:
                import onnx

                self._dds = _dds_outputs(onnx.load_from_string(self._model_bytes))
            return self._dds

        def _output_shapes(self, input_shapes):
            """{output: tuple} for these input shapes; -1 where the shape depends on data."""
            key = tuple(sorted(input_shapes.items()))
            with self._lock:
                hit = self._shape_cache.get(key)
            if hit is not None:
                return hit
            dds = self._dds_outputs()
            outs = [t for t in self._io if t["mode"] == "OUTPUT"]
            res = {}
            need_run = [t for t in outs if t["name"] not in dds]
            if need_run:
                sess, lock = self._session()
                feeds = {n: np.zeros(s, _NP_OF.get(self._by_name[n]["dtype"], np.float32))
                         for n, s in input_shapes.items()}
                try:
                    with lock, np.errstate(all="ignore"):
                        vals = sess.run([t["name"] for t in need_run], feeds)
                    for t, v in zip(need_run, vals):
                        res[t["name"]] = tuple(np.shape(v))
                except Exception:  # noqa: BLE001 - shape unknowable without data
                    for t in need_run:
                        res[t["name"]] = tuple(t["shape"])
            for t in outs:
                if t["name"] in dds:
                    res[t["name"]] = tuple(t["shape"])  # -1 stays for the data-dependent dims
            with self._lock:
                self._shape_cache[key] = res
            return res

        __enter__ = common_enter
        __exit__ = common_exit

    class IExecutionContext:
        def _init(self, engine, strategy):
            self._engine, self._strategy = engine, strategy
            self._profile = 0
            self._shapes = {}
            self._addr = {}  # name -> (ptr, Allocation or None)
            self._allocators = {}
            self._warned_default_stream = False
            self.name = ""
            self.debug_sync = False
            self.profiler = None
            self.persistent_cache_limit = 0
            self.nvtx_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
            self.error_recorder = None
            for t in engine._io:
                if t["mode"] == "INPUT" and -1 not in t["shape"]:
                    self._shapes[t["name"]] = tuple(t["shape"])

        engine = property(lambda s: s._engine)
        active_optimization_profile = property(lambda s: s._profile)

        def _err(self, msg):
            emit(self._engine._logger(), "ERROR", msg)
            return False

        def set_optimization_profile_async(self, profile_index, stream_handle):
            if not 0 <= profile_index < self._engine.num_optimization_profiles:
                raise RuntimeError(f"Failed to set optimization profile {profile_index} (engine has "
                                   f"{self._engine.num_optimization_profiles})")
            self._profile = int(profile_index)
            return True

        def set_input_shape(self, name, shape):
            t = self._engine._by_name.get(name)
            if t is None or t["mode"] != "INPUT":
                return self._err(f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (Parameter check "
                                 f"failed, condition: mEngine.bindingIsInput(bindingIndex). {name} is not an input "
                                 "tensor.)")
            shape = tuple(int(x) for x in shape)
            static = t["shape"]
            if len(shape) != len(static) or any(s != -1 and s != d for s, d in zip(static, shape)):
                return self._err(f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (Static dimension "
                                 f"mismatch while setting input shape for {name}. Set dimensions are {list(shape)}. "
                                 f"Expected dimensions are {static}.)")
            mn, _, mx = self._engine._head["profiles"][self._profile][name]
            if any(not (lo <= d <= hi) for lo, d, hi in zip(mn, shape, mx)):
                return self._err(f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (Parameter check "
                                 f"failed, condition: satisfyProfile. Set dimension {list(shape)} for tensor {name} "
                                 f"does not satisfy any optimization profiles. Valid range for profile "
                                 f"{self._profile}: {mn}..{mx}.)")
            self._shapes[name] = shape
            return True

        def _inputs_ready(self):
            return all(t["name"] in self._shapes for t in self._engine._io if t["mode"] == "INPUT")

        def get_tensor_shape(self, name):
            t = self._engine._by_name.get(name)
            if t is None:
                return invalid_dims()
            if t["mode"] == "INPUT":
                return Dims(self._shapes.get(name, t["shape"]))
            if not self._inputs_ready():
                return Dims(t["shape"])
            return Dims(self._engine._output_shapes(dict(self._shapes))[name])

        def get_tensor_strides(self, name):
            shape = list(self.get_tensor_shape(name))
            strides, acc = [], 1
            for d in reversed(shape):
                strides.insert(0, acc)
                acc *= max(d, 1)
            return Dims(strides)

        def infer_shapes(self):
            return [t["name"] for t in self._engine._io if t["mode"] == "INPUT" and t["name"] not in self._shapes]

        @property
        def all_binding_shapes_specified(self):
            return self._inputs_ready()

        if V10:
            @property
            def all_shape_inputs_specified(self):
                return True

        def set_tensor_address(self, name, memory):
            if name not in self._engine._by_name:
                return self._err(f"IExecutionContext::setTensorAddress: Error Code 3: API Usage Error (Given "
                                 f"invalid tensor name: {name})")
            ptr = int(memory)
            if ptr and not devmem.is_aligned(ptr):
                return self._err(f"IExecutionContext::setTensorAddress: Error Code 3: API Usage Error (Parameter "
                                 f"check failed, condition: (reinterpret_cast<uintptr_t>(data) % alignment) == 0. "
                                 f"Tensor {name} address 0x{ptr:x} is not aligned to 256 bytes.)")
            self._addr[name] = (ptr, devmem.lookup(ptr) if ptr else None)
            return True

        def get_tensor_address(self, name):
            return self._addr.get(name, (0, None))[0]

        def set_output_allocator(self, name, output_allocator):
            t = self._engine._by_name.get(name)
            if t is None or t["mode"] != "OUTPUT":
                return self._err(f"IExecutionContext::setOutputAllocator: Error Code 3: API Usage Error ({name} is "
                                 "not an output tensor)")
            if output_allocator is not None:
                check_type(output_allocator, IOutputAllocator, "set_output_allocator")
            self._allocators[name] = output_allocator  # keep_alive<1, 3>
            return True

        def get_output_allocator(self, name):
            return self._allocators.get(name)

        def get_max_output_size(self, name):
            return 0

        def set_device_memory(self, memory, size):
            self._device_memory = (int(memory), int(size))

        def update_device_memory_size_for_shapes(self):
            return 1 << 20

        def set_input_consumed_event(self, event):
            return True

        def set_aux_streams(self, aux_streams):
            pass

        def execute_v2(self, bindings):
            for t, ptr in zip(self._engine._io, bindings):
                self._addr[t["name"]] = (int(ptr), devmem.lookup(int(ptr)))
            return self.execute_async_v3(0)

        def execute_async_v3(self, stream_handle):
            if not isinstance(stream_handle, int):
                raise TypeError("execute_async_v3(): incompatible function arguments: stream_handle must be an int")
            eng = self._engine
            if stream_handle == 0 and not self._warned_default_stream:
                self._warned_default_stream = True
                emit(eng._logger(), "WARNING", "Using default stream in enqueueV3() may lead to performance issues "
                     "due to additional calls to cudaStreamSynchronize() by TensorRT to ensure correct "
                     "synchronization. Please use non-default stream instead.")
            feeds = {}
            for t in eng._io:
                name = t["name"]
                if t["mode"] == "INPUT":
                    if name not in self._shapes:
                        return self._err(f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Parameter "
                                         f"check failed. The shape of input tensor {name} is not specified.)")
                    ptr, alloc = self._addr.get(name, (0, None))
                    if not ptr:
                        return self._err(f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Address is "
                                         f"not set for input tensor {name}. Call setInputTensorAddress or "
                                         "setTensorAddress before enqueue/execute.)")
                    npdt = _NP_OF.get(t["dtype"])
                    assert npdt is not None, f"fake tensorrt: input dtype {t['dtype']} not modelled"
                    feeds[name] = devmem.read(ptr, npdt, self._shapes[name], f"input {name}", alloc)
                elif not self._addr.get(name, (0, None))[0] and self._allocators.get(name) is None:
                    return self._err(f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Address is not "
                                     f"set for output tensor {name}. Call setOutputTensorAddress, setTensorAddress or "
                                     "setOutputAllocator before enqueue/execute.)")
            fp16 = eng._head["fp16"]
            if fp16:
                feeds = {k: (v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v)
                         for k, v in feeds.items()}
            outs = [t for t in eng._io if t["mode"] == "OUTPUT"]
            sess, lock = eng._session()
            with lock:
                vals = sess.run([t["name"] for t in outs], feeds)
            expected = eng._output_shapes(dict(self._shapes))
            for t, v in zip(outs, vals):
                name = t["name"]
                v = np.asarray(v)
                if fp16 and v.dtype == np.float32:
                    v = v.astype(np.float16).astype(np.float32)
                v = np.ascontiguousarray(v.astype(_NP_OF[t["dtype"]], copy=False))
                alloc_obj = self._allocators.get(name)
                if alloc_obj is not None:
                    cur = self._addr.get(name, (0, None))[0]
                    size = max(v.nbytes, 1)
                    fn = getattr(alloc_obj, "reallocate_output_async", None)
                    ptr = (fn(name, cur, size, 256, stream_handle) if fn is not None
                           else alloc_obj.reallocate_output(name, cur, size, 256))
                    if not ptr:
                        return self._err(f"IExecutionContext::enqueueV3: Error Code 2: OutOfMemory (the output "
                                         f"allocator returned nullptr for {name} ({size} bytes))")
                    ptr = int(ptr)
                    devmem.write(ptr, v, f"output {name} (from the output allocator)")
                    self._addr[name] = (ptr, devmem.lookup(ptr))
                    alloc_obj.notify_shape(name, Dims(v.shape))
                else:
                    want = expected.get(name)
                    if want is not None and -1 not in want:
                        assert tuple(v.shape) == tuple(want), (
                            f"fake tensorrt: output {name} has shape {v.shape}, context said {want}")
                    ptr, alloc = self._addr[name]
                    devmem.write(ptr, v, f"output {name}", alloc)
            with _state_lock:
                STATS.executions += 1
            return True

        def __del__(self):
            pass

        __enter__ = common_enter
        __exit__ = common_exit

    def init_libnvinfer_plugins(logger, namespace):
        return True

    def get_nv_onnx_parser_version():
        return major * 10000 + int(version.split(".")[1]) * 100

    for name in ["ILogger", "Logger", "DataType", "nptype", "volume", "BuilderFlag", "NetworkDefinitionCreationFlag",
                 "OnnxParserFlag", "ErrorCode", "MemoryPoolType", "TensorIOMode", "TensorLocation",
                 "ExecutionContextAllocationStrategy", "HardwareCompatibilityLevel", "ProfilingVerbosity",
                 "DeviceType", "EngineCapability", "TacticSource", "TilingOptimizationLevel", "SerializationFlag",
                 "Dims", "IHostMemory", "IProgressMonitor", "IOutputAllocator", "ITensor", "INetworkDefinition",
                 "ParserError", "OnnxParser", "IOptimizationProfile", "ITimingCache", "IBuilderConfig", "Builder",
                 "Runtime", "ICudaEngine", "IExecutionContext", "init_libnvinfer_plugins",
                 "get_nv_onnx_parser_version"]:
        obj = locals()[name]
        setattr(trt, name, obj)
        if isinstance(obj, type):
            obj.__module__ = "tensorrt"
    return trt
