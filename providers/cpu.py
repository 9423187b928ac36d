"""CPUExecutionProvider: numpy kernels, always available."""
from __future__ import annotations

import ctypes
import logging
import os
import sys

import numpy as np

from ortlite.providers.base import ExecutionProvider

log = logging.getLogger("ortlite")
_malloc_tuned = False


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS after every run.

    numpy allocates each intermediate afresh; by default glibc serves big blocks with mmap
    and unmaps them on free, so every run page-faults all its intermediates in again (on
    SqueezeNet that is about half the run time). Raising the mmap and trim thresholds makes
    the next run reuse the same memory, which is what onnxruntime's arena achieves. It is
    process-wide; ``ORTLITE_MALLOC_TUNING=0`` turns it off.
    """
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("ORTLITE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return _malloc_tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 28) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc
        ok = False
    _malloc_tuned = bool(ok)
    log.debug("malloc tuning %s", "on" if ok else "unavailable")
    return _malloc_tuned


class CPUExecutionProvider(ExecutionProvider):
    name = "CPUExecutionProvider"
    family = "cpu"
    device_type = "cpu"

    def __init__(self, options=None):
        super().__init__(options)
        tune_malloc()

    @property
    def xp(self):
        return np

    def to_host(self, value):
        return value
