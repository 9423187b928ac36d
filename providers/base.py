"""The execution-provider contract.

A provider says whether it is available here (and why not), which nodes it can
run (``get_capability``), gives the array module its kernels run on, and
copies values between the host and its device. Compiling providers
(TensorRT) also claim whole subgraphs and compile them.
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
