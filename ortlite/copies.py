"""Explicit copies where a value crosses devices, and their accounting.

After placement, every input of every node has a required location: the host
for CPU nodes and for inputs a kernel declares host-only, the node's device
otherwise (Shape/Size read only metadata and need no copy). Where a value
lives elsewhere, a copy step (onnxruntime's MemcpyFromHost / MemcpyToHost) is
inserted before its first reader and shared by all readers on that side.
Constants read on a device are copied once at session start, never per run.
Each copy counts its bytes in a per-thread tally that the session reads back
after a run. A sequence (a list of arrays) is copied element by element.

If/Loop/Scan run on the host (as in onnxruntime) and their bodies are placed like
any graph: a body copies what its device nodes read to the device and its outputs
back to the host; an outer-scope value every body reader needs in one place is
copied there once, before the control-flow node.
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
    may arrive on either side: from host feeds, or device OrtValues through IOBinding).
    A sequence (a Python list of arrays) is copied element by element, each element counted."""
    on_device = provider.is_on_device
    if to_host:
        def one(value):
            if value is None or not on_device(value):
                return value
            stats.add(value)
            return provider.to_host(value)
    else:
        def one(value):
            if value is None or on_device(value):
                return value
            stats.add(value)
            return provider.to_device(value)

    def copy(value):
        if type(value) is list:
            return [one(x) for x in value]
        return one(value)
    return copy


MIXED = None  # an outer-scope value read in more than one place (or where it is not known)


def insert_copies(graph, placements, providers, constants, stats, subgraph=None, implicit_needs=None):
    """Add copy steps to ``placements`` (in place, in execution order).

    Returns (placements with copy steps as (node, fn, provider) tuples mixed in,
    list of CopyInfo for the report, names of fed values read on the host,
    {outer-scope name: where this graph's readers need it, or MIXED}).

    ``subgraph`` is None for the main graph. For an If/Loop/Scan body it is
    (body input names, body output names, output names list to rewrite): the control-flow
    kernel runs on the host, feeds the body host values and reads its outputs on the host
    (as onnxruntime). So with a device provider in the session, readers of outer-scope
    values (which may live on either side) get copy steps that pass values already in place
    through uncounted, and body outputs not produced on the host are copied back to the host
    at the body's boundary (the output list is rewritten in place to name the copies).

    ``implicit_needs`` maps id(node) of a node with subgraphs to {outer name: location its
    bodies need it in, or MIXED}: where every reader in the bodies needs a value in one place,
    it is copied there once, before the node (a constant at session start), so the body's own
    copy steps pass it through. Without a device provider nothing changes.
    """
    by_device = {}
    for p in providers:
        by_device.setdefault(p.device_type, p)
    devices = [p for p in providers if p.device_type != HOST]
    location = {}
    for pl in placements:
        for o in pl.node.outputs:
            if o:
                location[o] = pl.provider.device_type
    body_inputs = set(subgraph[0]) if subgraph is not None else set()
    in_body = subgraph is not None and bool(devices)
    implicit_needs = implicit_needs or {}
    copies: dict[tuple, str] = {}
    infos = []
    host_read_feeds = set()
    steps = []
    needs: dict[str, set] = {}

    def outer(name):
        return name and name not in constants and name not in location and name not in body_inputs

    def copy_step(name, have, need, reader, prov):
        key = (name, need)
        if key not in copies:
            to_host = need == HOST
            cname = f"{name}@{need}"
            cnode = Node("MemcpyToHost" if to_host else "MemcpyFromHost", COPY_DOMAIN,
                         f"Memcpy({name}->{need})", [name], [cname])
            cnode.provider = prov.name
            steps.append((cnode, _copy_fn(prov, to_host, stats), prov.name))
            infos.append(CopyInfo(name, have, need, reader))
            copies[key] = cname
            location[cname] = need
        return copies[key]

    def place(name, need, reader):
        """The name to read ``name`` by, where ``need`` says (a copy step when it lives elsewhere)."""
        if outer(name):
            needs.setdefault(name, set()).add(need)
        if name in constants:
            if need == HOST:
                return name
            dname = f"{name}@{need}"  # a device copy of the constant, made once
            if dname not in constants:
                constants[dname] = by_device[need].to_device(constants[name])
            return dname
        # Graph inputs and outer-scope values count as host values: a device reader gets a
        # copy step that passes values already on the device through (IOBinding), and the
        # session brings device-resident feeds that host readers need back first. In a body,
        # host readers of outer-scope values get a to-host step (passing host values through).
        have = location.get(name)
        if have is None:
            if need == HOST:
                if in_body and name not in body_inputs:
                    return copy_step(name, devices[0].device_type, HOST, reader, devices[0])
                if subgraph is None:
                    host_read_feeds.add(name)
                return name
            have = HOST
        if have == need:
            return name
        prov = by_device[have] if need == HOST else by_device[need]
        return copy_step(name, have, need, reader, prov)

    for pl in placements:
        node = pl.node
        dev = pl.provider.device_type
        meta = (node.domain, node.op_type) in METADATA_ONLY_OPS
        hosts = host_inputs(pl)
        new_inputs = list(node.inputs)
        for k, name in enumerate(node.inputs):
            if not name or meta:
                continue
            new_inputs[k] = place(name, HOST if dev == HOST or k in hosts else dev, node.name)
        new_implicit = list(node.implicit_inputs)
        body_needs = implicit_needs.get(id(node)) if devices else None
        if body_needs is not None:
            for k, name in enumerate(node.implicit_inputs):
                need = body_needs.get(name, MIXED)
                if need is MIXED:  # passed through as it is; the bodies' copy steps decide
                    if outer(name):
                        needs.setdefault(name, set()).add(MIXED)
                    continue
                new_implicit[k] = place(name, need, node.name)
        if new_inputs != node.inputs or new_implicit != node.implicit_inputs:
            # the plan reads the copies; the IR keeps its names
            view = dataclasses.replace(node, inputs=new_inputs, implicit_inputs=new_implicit)
            pl = Placement(view, pl.provider, pl.kernel, pl.refused, node)
        steps.append(pl)
    if in_body:  # the host control-flow kernel reads the body's outputs
        outs = subgraph[2]
        reader = f"outputs of '{graph.name}'"
        for k, name in enumerate(outs):
            if not name or name in constants or name in body_inputs:
                continue
            if outer(name):
                needs.setdefault(name, set()).add(HOST)
            have = location.get(name)
            if have == HOST:
                continue
            prov = by_device[have] if have is not None else devices[0]
            outs[k] = copy_step(name, prov.device_type, HOST, reader, prov)
    outer_needs = {n: (next(iter(s)) if len(s) == 1 else MIXED) for n, s in needs.items()}
    return steps, infos, host_read_feeds, outer_needs
