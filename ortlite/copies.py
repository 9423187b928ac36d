"""Explicit copies where a value crosses devices, and their accounting.

After placement, every input of every node has a required location: the host
for CPU nodes and for inputs a kernel declares host-only, the node's device
otherwise (Shape/Size read only metadata and need no copy). Where a value
lives elsewhere, a copy step (onnxruntime's MemcpyFromHost / MemcpyToHost) is
inserted before its first reader and shared by all readers on that side.
Constants read on a device are copied once at session start, never per run.
Each copy counts its bytes in a per-thread tally that the session reads back
after a run.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


from ortlite.ir import Node
from ortlite.partition import METADATA_ONLY_OPS, Placement, host_inputs

COPY_DOMAIN = "ortlite"
HOST = "cpu"


@dataclass(frozen=True)
class CopyInfo:
    """One copy step of the plan: ``value`` moved from ``src`` to ``dst`` for ``reader``."""

    value: str
    src: str
    dst: str
    reader: str


class CopyStats(threading.local):
    """Copies made by the current thread's run (reset at the start of each run)."""

    def __init__(self):
        self.count = 0
        self.bytes = 0

    def reset(self):
        self.count = 0
        self.bytes = 0

    def add(self, value):
        self.count += 1
        self.bytes += int(getattr(value, "nbytes", 0))


def _copy_fn(provider, to_host, stats):
    """A copy step; a value already where it must be passes through uncounted (fed values
    may arrive on either side: from host feeds, or device OrtValues through IOBinding)."""
    if to_host:
        def copy(value):
            if not provider.is_on_device(value):
                return value
            stats.add(value)
            return provider.to_host(value)
    else:
        def copy(value):
            if provider.is_on_device(value):
                return value
            stats.add(value)
            return provider.to_device(value)
    return copy


def insert_copies(graph, placements, providers, constants, stats):
    """Add copy steps to ``placements`` (in place, in execution order).

    Returns (placements with copy steps as (node, fn, provider) tuples mixed in,
    list of CopyInfo for the report, names of fed values read on the host).
    """
    by_device = {}
    for p in providers:
        by_device.setdefault(p.device_type, p)
    location = {}
    for pl in placements:
        for o in pl.node.outputs:
            if o:
                location[o] = pl.provider.device_type
    copies: dict[tuple, str] = {}
    infos = []
    host_read_feeds = set()
    steps = []
    for pl in placements:
        node = pl.node
        dev = pl.provider.device_type
        meta = (node.domain, node.op_type) in METADATA_ONLY_OPS
        hosts = host_inputs(pl)
        new_inputs = list(node.inputs)
        for k, name in enumerate(node.inputs):
            if not name or meta:
                continue
            need = HOST if dev == HOST or k in hosts else dev
            if name in constants:
                if need != HOST:  # a device copy of the constant, made once
                    dname = f"{name}@{need}"
                    if dname not in constants:
                        constants[dname] = by_device[need].to_device(constants[name])
                    new_inputs[k] = dname
                continue
            # Graph inputs and outer-scope values count as host values: a device reader gets a
            # copy step that passes values already on the device through (IOBinding), and the
            # session brings device-resident feeds that host readers need back first.
            have = location.get(name)
            if have is None:
                if need == HOST:
                    host_read_feeds.add(name)
                    continue
                have = HOST
            if have == need:
                continue
            key = (name, need)
            if key not in copies:
                to_host = need == HOST
                prov = by_device[need] if not to_host else by_device[have]
                cname = f"{name}@{need}"
                cnode = Node("MemcpyToHost" if to_host else "MemcpyFromHost", COPY_DOMAIN,
                             f"Memcpy({name}->{need})", [name], [cname])
                cnode.provider = prov.name
                steps.append((cnode, _copy_fn(prov, to_host, stats), prov.name))
                infos.append(CopyInfo(name, have, need, node.name))
                copies[key] = cname
                location[cname] = need
            new_inputs[k] = copies[key]
        if new_inputs != node.inputs:  # the plan reads the copies; the IR keeps its names
            pl = Placement(dataclasses.replace(node, inputs=new_inputs), pl.provider, pl.kernel, pl.refused, node)
        steps.append(pl)
    return steps, infos, host_read_feeds

