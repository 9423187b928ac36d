"""The execution plan: a frozen list of steps over numbered slots.

Built once per (sub)graph at session start. Each step holds the bound kernel,
the slot indices of its inputs and outputs, and the slots to release after it
(the values whose last reader it is). ``run`` only walks the steps, so the
per-node cost is a list build, a call and a few stores; a plan is never
mutated after construction, so concurrent runs (each with its own slot list)
are safe.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from ortlite.errors import Fail, RuntimeException

log = logging.getLogger("ortlite")

NONE_SLOT = 0  # slot 0 always holds None: a missing optional input reads it


class Step:
    __slots__ = ("fn", "ins", "outs", "frees", "node", "provider")

    def __init__(self, fn, ins, outs, frees, node, provider):
        self.fn, self.ins, self.outs, self.frees = fn, ins, outs, frees
        self.node, self.provider = node, provider


class Plan:
    """Steps over slots for one graph.

    Args:
        bound: list of (node, callable, provider name) in execution order.
        input_names: names fed by the caller, in order (graph inputs, then outer-scope names).
        output_names: names returned, in order.
        constants: name -> value known at session start (initializers, folded constants).
    """

    def __init__(self, bound, input_names, output_names, constants, name="graph"):
        self.name = name
        slot = {"": NONE_SLOT}

        def idx(n):
            if n not in slot:
                slot[n] = len(slot)
            return slot[n]

        for n in input_names:
            idx(n)
        for n in constants:
            idx(n)
        raw = []
        for node, fn, prov in bound:
            ins = tuple(idx(n) if n else NONE_SLOT for n in _call_inputs(node))
            outs = tuple(idx(n) if n else idx(f"\0unused:{node.name}:{k}") for k, n in enumerate(node.outputs))
            raw.append((node, fn, prov, ins, outs))
        for n in output_names:
            if n not in slot:
                raise Fail(f"graph '{name}': output '{n}' is produced by no node, input or initializer")
        self.slot_of = dict(slot)
        self.input_slots = tuple(slot[n] for n in input_names)
        self.input_names = tuple(input_names)
        self.output_slots = tuple(slot[n] for n in output_names)
        self.output_names = tuple(output_names)
        template = [None] * len(slot)
        for n, v in constants.items():
            template[slot[n]] = v
        self.template = template
        # Release each intermediate after its last reader (never inputs held by the caller's
        # feed dict - releasing only drops this run's reference - and never outputs).
        keep = set(self.output_slots) | {NONE_SLOT}
        last = {}
        for k, (_, _, _, ins, outs) in enumerate(raw):
            for i in ins:
                last[i] = k
            for o in outs:
                last.setdefault(o, k)  # produced but never read: free right away
        frees_at: dict[int, list] = {}
        for s, k in last.items():
            if s not in keep:
                frees_at.setdefault(k, []).append(s)
        self.steps = tuple(
            Step(fn, ins, outs, tuple(frees_at.get(k, ())), node, prov)
            for k, (node, fn, prov, ins, outs) in enumerate(raw)
        )
        self._fast = tuple((s.fn, s.ins, s.outs, s.frees) for s in self.steps)
        self.trace = bool(os.environ.get("ORTLITE_TRACE"))

    def run(self, inputs, fetch=None):
        """Run with ``inputs`` aligned to ``input_names``; returns the values of ``output_names``
        (or of the slots in ``fetch``)."""
        slots = self.template.copy()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        if self.trace:
            self._run_traced(slots)
        else:
            k = 0
            try:
                for k, (fn, ins, outs, frees) in enumerate(self._fast):
                    r = fn(*[slots[i] for i in ins])
                    if len(outs) == 1 and type(r) is not tuple:
                        slots[outs[0]] = r
                    else:
                        _store_many(slots, outs, r, self.steps[k])
                    for f in frees:
                        slots[f] = None
            except (Fail, RuntimeException):
                raise
            except Exception as e:  # noqa: BLE001 - name the node that failed
                raise _node_error(self.steps[k], e) from e
        return [slots[s] for s in (fetch or self.output_slots)]

    def _run_traced(self, slots):
        for step in self.steps:
            t0 = time.perf_counter()
            try:
                r = step.fn(*[slots[i] for i in step.ins])
            except (Fail, RuntimeException):
                raise
            except Exception as e:  # noqa: BLE001
                raise _node_error(step, e) from e
            if len(step.outs) == 1 and type(r) is not tuple:
                slots[step.outs[0]] = r
            else:
                _store_many(slots, step.outs, r, step)
            dt = (time.perf_counter() - t0) * 1e6
            shapes = [getattr(slots[o], "shape", type(slots[o]).__name__) for o in step.outs]
            log.warning("[trace] %-20s %-30s %8.1f us -> %s", step.node.op_type, step.node.name, dt, shapes)
            for f in step.frees:
                slots[f] = None


def _call_inputs(node):
    """Declared inputs without trailing missing ones, then the implicit (outer-scope) inputs."""
    ins = list(node.inputs)
    while ins and not ins[-1]:
        ins.pop()
    if node.implicit_inputs:
        # a kernel with implicit inputs sees every declared slot (so it can tell where they start)
        ins = list(node.inputs) + list(node.implicit_inputs)
    return ins


def _store_many(slots, outs, r, step):
    if type(r) is not tuple:
        r = (r,)
    if len(r) < sum(1 for o in step.node.outputs if o):
        produced = len(r)
        wanted = [o for k, o in enumerate(step.node.outputs) if o and k >= produced]
        if wanted:
            raise RuntimeException(
                f"{step.node.op_type} node '{step.node.name}' returned {produced} output(s) but "
                f"the model reads {wanted}"
            )
    for o, v in zip(outs, r):
        slots[o] = v


def _node_error(step, e):
    node = step.node
    return RuntimeException(
        f"Non-zero status code returned while running {node.op_type} node. Name:'{node.name}' "
        f"Status Message: {type(e).__name__}: {e}"
    )


def as_output(v):
    """Graph outputs: numpy scalars become 0-d arrays."""
    if isinstance(v, np.generic):
        return np.asarray(v)
    return v


class Subgraph:
    """A compiled If/Loop/Scan body: ``run(inputs, outer)`` returns its outputs as a list.

    ``outer`` maps outer-scope names to values; the body reads those in ``outer_names``.
    """

    __slots__ = ("plan", "input_names", "output_names", "outer_names", "input_infos", "output_infos")

    def __init__(self, plan, input_names, output_names, outer_names, input_infos=(), output_infos=()):
        self.plan = plan
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.outer_names = tuple(outer_names)
        self.input_infos = tuple(input_infos)
        self.output_infos = tuple(output_infos)

    def run(self, inputs, outer):
        vals = list(inputs)
        vals.extend([None] * (len(self.input_names) - len(vals)))
        vals.extend(outer[n] for n in self.outer_names)
        return self.plan.run(vals)
