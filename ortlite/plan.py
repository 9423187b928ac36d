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
import operator
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
        self._fast = tuple(_fast_step(s) for s in self.steps)
        # For ORT_PARALLEL: which steps each step waits for, and who reads each slot.
        producer = {}
        for k, st in enumerate(self.steps):
            for o in st.outs:
                producer[o] = k
        self._deps = tuple(len({producer[i] for i in st.ins if i in producer}) for st in self.steps)
        dependents = [[] for _ in self.steps]
        for k, st in enumerate(self.steps):
            for p in {producer[i] for i in st.ins if i in producer}:
                dependents[p].append(k)
        self._dependents = tuple(tuple(d) for d in dependents)
        readers = {}
        for st in self.steps:
            for i in st.ins:
                readers[i] = readers.get(i, 0) + 1
        self._readers = readers
        self._keep = keep | set(self.input_slots) | {slot[n] for n in constants}
        self.last_run_threads = 0
        self.trace = bool(os.environ.get("ORTLITE_TRACE"))

    def run(self, inputs, fetch=None):
        """Run with ``inputs`` aligned to ``input_names``; returns the values of ``output_names``
        (or of the slots in ``fetch``)."""
        if self.trace:
            return self.run_profiled(inputs, _Tracer, fetch)
        slots = self.template.copy()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        k = -1
        try:
            # The hot loop: per step one C-level gather of the inputs, the call, one store.
            for k, (fn, get, arity, out, frees) in enumerate(self._fast):
                if arity == 1:
                    r = fn(get(slots))
                elif arity:
                    r = fn(*get(slots))
                else:
                    r = fn()
                if out >= 0 and type(r) is not tuple:
                    slots[out] = r
                else:
                    _store_many(slots, self.steps[k].outs, r, self.steps[k])
                for f in frees:
                    slots[f] = None
        except (Fail, RuntimeException):
            raise
        except Exception as e:  # noqa: BLE001 - name the node that failed
            step = self.steps[k]
            raise _node_error(step, e, [slots[i] for i in step.ins]) from e
        return [slots[s] for s in (fetch or self.output_slots)]

    def run_parallel(self, inputs, pool, fetch=None, context=None):
        """Run independent steps concurrently on ``pool`` (a ThreadPoolExecutor).

        ``context``: a function returning a context manager each step runs in on its worker thread
        (the session's device providers made current there: device, memory pool, stream).

        A step starts as soon as the steps producing its inputs are done; an intermediate is
        released when its last reader is done. numpy and BLAS release the GIL in their heavy
        loops, so parallel branches (Inception modules, multi-head graphs) overlap.
        """
        import threading

        slots = self.template.copy()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        waiting = list(self._deps)
        readers = dict(self._readers)
        keep = self._keep
        lock = threading.Lock()
        finished = threading.Event()
        state = {"left": len(self.steps), "error": None, "threads": set()}
        if not self.steps:
            return [slots[s] for s in (fetch or self.output_slots)]

        def run_step(k):
            if state["error"] is not None:
                return
            step = self.steps[k]
            try:
                if context is None:
                    r = step.fn(*[slots[i] for i in step.ins])
                else:
                    with context():
                        r = step.fn(*[slots[i] for i in step.ins])
                if len(step.outs) == 1 and type(r) is not tuple:
                    slots[step.outs[0]] = r
                else:
                    _store_many(slots, step.outs, r, step)
            except Exception as e:  # noqa: BLE001
                state["error"] = (e if isinstance(e, (Fail, RuntimeException))
                                  else _node_error(step, e, [slots[i] for i in step.ins]))
                finished.set()
                return
            ready = []
            with lock:
                state["threads"].add(threading.get_ident())
                for i in step.ins:
                    readers[i] -= 1
                    if readers[i] == 0 and i not in keep:
                        slots[i] = None
                for d in self._dependents[k]:
                    waiting[d] -= 1
                    if waiting[d] == 0:
                        ready.append(d)
                state["left"] -= 1
                if state["left"] == 0:
                    finished.set()
            for d in ready[1:]:
                pool.submit(run_step, d)
            if ready:
                run_step(ready[0])  # keep going on this thread

        for k in [k for k, n in enumerate(self._deps) if n == 0]:
            pool.submit(run_step, k)
        finished.wait()
        if state["error"] is not None:
            raise state["error"]
        self.last_run_threads = len(state["threads"])
        return [slots[s] for s in (fetch or self.output_slots)]

    def run_profiled(self, inputs, profiler, fetch=None):
        """As ``run``, timing every step into ``profiler`` (ortlite.profiling.Profiler)."""
        slots = self.template.copy()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        clock = time.perf_counter_ns
        record = profiler.record_node
        t1 = clock()
        for step in self.steps:
            # Each step's span runs from the end of the previous one, so the events account for
            # the whole run: gathering inputs, the kernel, storing and releasing values.
            t0 = t1
            args = [slots[i] for i in step.ins]
            try:
                r = step.fn(*args)
            except (Fail, RuntimeException):
                raise
            except Exception as e:  # noqa: BLE001
                raise _node_error(step, e, args) from e
            if len(step.outs) == 1 and type(r) is not tuple:
                slots[step.outs[0]] = r
            else:
                _store_many(slots, step.outs, r, step)
            outs = [slots[o] for o in step.outs]
            for f in step.frees:
                slots[f] = None
            t1 = clock()
            record(step, t0, t1, args, outs)
        return [slots[s] for s in (fetch or self.output_slots)]



class _Tracer:
    """ORTLITE_TRACE=1: log each node with its time and output shapes (a profiler-shaped recorder)."""

    @staticmethod
    def record_node(step, t0_ns, t1_ns, args, outs):
        shapes = [getattr(o, "shape", type(o).__name__) for o in outs]
        log.warning("[trace] %-20s %-30s %8.1f us -> %s", step.node.op_type, step.node.name,
                    (t1_ns - t0_ns) / 1e3, shapes)


def _fast_step(step):
    """(fn, input getter, arity, single output slot or -1, slots to free) for the hot loop."""
    ins = step.ins
    get = operator.itemgetter(*ins) if ins else None
    out = step.outs[0] if len(step.outs) == 1 else -1
    return step.fn, get, len(ins), out, step.frees


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


def _node_error(step, e, args):
    """onnxruntime's message for a failed node, plus the shapes and dtypes of the inputs ``args``
    it was called with (built only here, on the error path)."""
    node = step.node
    inputs = ", ".join(f"{n} {describe_value(v)}" if n else "''" for n, v in zip(_call_inputs(node), args))
    return RuntimeException(
        f"Non-zero status code returned while running {node.op_type} node. Name:'{node.name}' "
        f"Status Message: {type(e).__name__}: {e}; inputs: {inputs or 'none'}"
    )


def describe_value(v) -> str:
    """``float32[3, 2]`` for an array (numpy, CuPy: never copied), ``sequence of 3``, ``map of 2``, ``None``."""
    if v is None:
        return "None"
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"{getattr(v.dtype, 'name', v.dtype)}{list(v.shape)}"
    if isinstance(v, (list, tuple)):
        return f"sequence of {len(v)}"
    if isinstance(v, dict):
        return f"map of {len(v)}"
    return type(v).__name__


def as_output(v):
    """Graph outputs: numpy scalars become 0-d arrays."""
    if isinstance(v, np.generic):
        return np.asarray(v)
    return v


class Subgraph:
    """A compiled If/Loop/Scan body: ``run(inputs, outer)`` returns its outputs as a list.

    ``outer`` maps outer-scope names to values; the body reads those in ``outer_names``.
    The body's plan copies values it reads on a device there, and its outputs back to the host.
    """

    __slots__ = ("plan", "input_names", "output_names", "outer_names", "input_infos", "output_infos", "outer_needs")

    def __init__(self, plan, input_names, output_names, outer_names, input_infos=(), output_infos=(),
                 outer_needs=None):
        self.plan = plan
        # outer name -> where the body's readers need it ('cpu', 'cuda', ...; None: in several places)
        self.outer_needs = dict(outer_needs or {})
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
