"""SessionOptions, RunOptions and the enums, with onnxruntime's names and defaults; log severity scopes."""
from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import logging

# onnxruntime's severities (0 verbose, 1 info, 2 warning, 3 error, 4 fatal) as Python logging levels
VERBOSE = 5
_LEVELS = {0: VERBOSE, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}

# (Python level, verbosity) of the session or run this context is inside, None outside any: a session's
# log_severity_level applies to its own messages only, never to other sessions or threads.
_scope: contextvars.ContextVar = contextvars.ContextVar("ortlite_log_scope", default=None)


def python_level(severity: int) -> int:
    """The logging level of an onnxruntime severity (above 4: fatal)."""
    return _LEVELS.get(int(severity), logging.CRITICAL if int(severity) > 4 else VERBOSE)


class _ScopedLogger(logging.Logger):
    """The 'ortlite' logger: inside a severity scope that scope's level decides, else the logger's own."""

    def isEnabledFor(self, level):
        scope = _scope.get()
        if scope is None:
            return super().isEnabledFor(level)
        return self.manager.disable < level and level >= scope[0]


logging.getLogger("ortlite").__class__ = _ScopedLogger


def log_scope_of(severity, verbosity=0):
    """The scope value for an options object's severity and verbosity; None for -1 (the default)."""
    if severity is None or int(severity) < 0:
        return None
    return python_level(severity), int(verbosity or 0)


@contextlib.contextmanager
def log_scope(scope):
    """Messages of the 'ortlite' logger inside follow ``scope`` (from ``log_scope_of``; None: unchanged)."""
    if scope is None:
        yield
        return
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


def verbose_trace() -> bool:
    """Severity 0 with verbosity >= 1 in force: log every node of a run (ORTLITE_TRACE's lines)."""
    scope = _scope.get()
    return scope is not None and scope[0] <= VERBOSE and scope[1] >= 1


def session_log_scope(init):
    """Decorates InferenceSession.__init__: session creation logs at its SessionOptions' severity."""
    @functools.wraps(init)
    def wrapper(self, path_or_bytes, sess_options=None, *args, **kwargs):
        scope = None if sess_options is None else log_scope_of(sess_options.log_severity_level,
                                                               sess_options.log_verbosity_level)
        with log_scope(scope):
            init(self, path_or_bytes, sess_options, *args, **kwargs)
    return wrapper


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class SessionOptions:
    """Options of an InferenceSession (onnxruntime.SessionOptions)."""

    def __init__(self):
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.optimized_model_filepath = ""
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.log_severity_level = -1  # onnxruntime's default: the default logger's severity
        self.log_verbosity_level = 0
        self.logid = ""
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.use_deterministic_compute = False
        self._config: dict[str, str] = {}
        self._free_dim_by_name: dict[str, int] = {}
        self._free_dim_by_denotation: dict[str, int] = {}
        self._initializers: dict = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        try:
            return self._config[key]
        except KeyError:
            raise KeyError(f"session config entry '{key}' is not set") from None

    def has_session_config_entry(self, key: str) -> bool:
        return key in self._config

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        self._free_dim_by_name[str(dim_name)] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        self._free_dim_by_denotation[str(dim_denotation)] = int(dim_value)

    def add_initializer(self, name: str, ortvalue) -> None:
        """Replace an initializer's value (onnxruntime's add_initializer)."""
        self._initializers[name] = ortvalue

    def __repr__(self):
        return (f"SessionOptions(graph_optimization_level={self.graph_optimization_level!r}, "
                f"intra_op_num_threads={self.intra_op_num_threads}, execution_mode={self.execution_mode!r})")

    # ---- onnxruntime's remaining SessionOptions API (docs/MIGRATION.md) ----------------------------------
    use_per_session_threads = True  # stored only: ortlite has no global thread pools to share
    _external_initializers: dict = {}  # read-only default: add_external_initializers gives the instance its own

    def add_external_initializers(self, names, ortvalues) -> None:
        """Supply initializers' data from memory by name (onnxruntime's add_external_initializers): the model's
        external files for these names are not read. Each value is an OrtValue (or a numpy array) of the
        initializer's declared type and shape; a name the model lacks fails at session creation."""
        from ortlite.errors import InvalidArgument

        names, ortvalues = list(names), list(ortvalues)
        if len(names) != len(ortvalues):
            raise InvalidArgument(f"add_external_initializers: {len(names)} names but {len(ortvalues)} values; "
                                  "expected names and ort_values lists of equal length")
        self.__dict__.setdefault("_external_initializers", {}).update(zip(map(str, names), ortvalues))

    def register_custom_ops_library(self, library_path: str) -> None:
        """Refused: a custom-op shared library holds native kernels for onnxruntime's C API, which a Python
        runtime cannot load. Register the op's Python implementation with ortlite.register_custom_op."""
        from ortlite.errors import NotImplemented as OrtNotImplemented

        raise OrtNotImplemented(
            f"register_custom_ops_library('{library_path}'): ortlite cannot load native custom-op libraries (they "
            "implement onnxruntime's C kernel API); register a Python implementation instead: "
            "ortlite.register_custom_op(domain, op_type, fn) with fn(*inputs, **attributes) returning numpy arrays")


class RunOptions:
    """Per-run options (onnxruntime.RunOptions)."""

    def __init__(self):
        self.log_severity_level = -1  # onnxruntime's default: the session's severity
        self.log_verbosity_level = 0
        self.logid = ""
        self.terminate = False  # read between plan steps and loop iterations: set from another thread to stop a run
        self.only_execute_path_to_fetches = False
        self.training_mode = False
        self._config: dict[str, str] = {}

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        return self._config[key]
