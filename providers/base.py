"""The execution-provider contract.

A provider says whether it is available here (and why not), which nodes it can
run (``get_capability``), gives the array module its kernels run on, and
copies values between the host and its device.

Two kinds of provider (docs/ARCHITECTURE.md): *kernel* providers (CPU, CUDA) claim
nodes one by one through the kernel registry; *compiling* providers (OpenVINO,
TensorRT) subclass ``CompilingProvider``, claim groups of nodes, and compile each
group into an engine that runs as one fused node. The grouping rules (no cycles,
minimum size), compile-failure fallback, the engine cache and EP-context saving
live once in the core (``ortlite.compiling``), not in each provider.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass


@dataclass
class Claim:
    """A provider's answer for one node: taken, or refused with a reason."""

    node: object
    kernel: object = None
    reason: str = ""

    @property
    def taken(self) -> bool:
        return self.kernel is not None


class ExecutionProvider:
    name = "ExecutionProvider"  # onnxruntime's spelling, e.g. 'CPUExecutionProvider'
    family = "cpu"  # kernel family it runs ('cpu' numpy kernels, 'cuda' cupy kernels)
    device_type = "cpu"  # OrtValue device name

    def __init__(self, options: dict | None = None):
        self.options = {str(k): str(v) for k, v in (options or {}).items()}
        self.device_id = int(self.options.get("device_id", 0))

    # ---- availability ----------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(available, reason when not)."""
        return True, ""

    # ---- what it runs ------------------------------------------------------
    @property
    def xp(self):
        raise NotImplementedError

    def get_capability(self, node, lookup, graph=None) -> Claim:
        """Claim ``node`` when a kernel of this provider's family exists for it. ``graph`` is the IR
        graph the node is placed in (its value types), where the caller has it."""
        k = lookup(node.op_type, node.domain, node.opset, self.family)
        if k is None:
            return Claim(node, None, f"no {self.family} kernel for {node.op_type} "
                                     f"(domain '{node.domain or 'ai.onnx'}', opset {node.opset})")
        return Claim(node, k)

    def active(self):
        """A context manager making this provider's device, memory pool and stream current on
        the calling thread (kernel preparation and runs enter it); nothing to do on the CPU."""
        return contextlib.nullcontext()

    def wrap_kernel(self, fn, node, kdef):
        """Hook: the callable a run invokes for ``node`` (providers may wrap kernels)."""
        return fn

    # ---- memory ------------------------------------------------------------
    def is_on_device(self, value) -> bool:
        """Whether ``value`` lives in this provider's device memory (False on the CPU)."""
        return False

    def to_device(self, host_array):
        return host_array

    def to_host(self, value):
        return value

    def synchronize(self):
        pass

    def get_provider_options(self) -> dict:
        return dict(self.options)


def option_bool(provider: str, key: str, value) -> bool:
    """A boolean provider option as onnxruntime's users pass it (True/False, 'true'/'false', 1/0);
    InvalidArgument naming the provider, the option and the value otherwise."""
    s = str(value).strip().lower()
    if s in ("1", "true"):
        return True
    if s in ("0", "false"):
        return False
    from ortlite.errors import InvalidArgument

    raise InvalidArgument(f"{provider} option {key}={value!r}: expected true/false (or True/False, 0/1)")


class CompileError(RuntimeError):
    """A compiling provider could not build a group (the message says why); the core falls
    back to the next providers with a ProviderFallbackWarning."""


class CompilingProvider(ExecutionProvider):
    """A provider that compiles connected groups of nodes into engines (onnxruntime's
    GetCapability + Compile). The core (``ortlite.compiling``) calls, in order:

    1. ``claim_groups(graph, nodes)`` with the nodes no earlier provider took (topological
       order; ``graph.initializers`` holds every constant, folded ones included); it returns
       ``(groups, refused)``: lists of nodes it would run together, and
       ``{id(node): reason}`` for the nodes it will not run (the reason reaches the placement
       report). The core then makes the groups safe (splits any that would form a cycle with
       the nodes outside, drops those under ``min_group_size``).
    2. ``cache_key_fields()``: what besides the group's content decides the compiled result
       (compiler version, device, options); part of the engine-cache key.
    3. ``compile(spec, progress)`` for each group not in the engine cache: ``spec`` is a
       ``ortlite.compiling.GroupSpec`` (the group as a standalone ONNX model with its weights,
       its inputs and outputs with dtypes and shapes). Raise (``CompileError`` or anything) to
       refuse; ``progress(fraction)`` may be called during long builds.
    4. ``serialize(engine)`` -> bytes for the cache (None: not cacheable) and
       ``deserialize(blob, spec)`` -> engine on a cache hit; ``blob`` is bytes or, for big
       entries, a copy-on-write uint8 ``numpy.memmap`` of the file (any buffer-protocol object:
       pass it to a loader that maps it, or ``bytes(blob)``); keep it referenced while the
       engine uses it.
    5. ``make_runner(engine, spec)`` -> a callable taking the group's inputs positionally and
       returning a tuple of its outputs; it must be safe under concurrent calls.
    """

    compiles = True
    family = "compiled"  # no registry kernels: everything it runs comes from its compiler
    #: option names (onnxruntime's) for the minimum group size and the engine-cache directory
    min_group_size_option = ""
    cache_dir_option = ""

    @property
    def min_group_size(self) -> int:
        if self.min_group_size_option and self.min_group_size_option in self.options:
            return max(1, int(self.options[self.min_group_size_option]))
        return 1

    @property
    def engine_cache_dir(self):
        """Directory of the engine cache, or None (no cache on disk)."""
        if self.cache_dir_option:
            return self.options.get(self.cache_dir_option) or None
        return None

    def get_capability(self, node, lookup, graph=None) -> Claim:
        return Claim(node, None, f"{self.name} claims groups of nodes, not single nodes")

    def claim_groups(self, graph, nodes):
        raise NotImplementedError

    def cache_key_fields(self) -> dict:
        return {}

    def compile(self, spec, progress=None):
        raise NotImplementedError

    def serialize(self, engine):
        return None

    def deserialize(self, blob, spec):
        raise NotImplementedError

    def make_runner(self, engine, spec):
        raise NotImplementedError
