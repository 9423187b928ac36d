"""The execution plan: a frozen list of steps over numbered slots.

Built once per (sub)graph at session start. Each step holds the bound kernel,
the slot indices of its inputs and outputs, and the slots to release after it
(the values whose last reader it is). From the steps the plan also generates one
Python function (source built here, ``compile`` + ``exec``, as torch.fx does) that
keeps every value in a local variable, calls each step's kernel directly, ``del``s a
value after its last reader and returns the outputs: ``run`` is one call of it. A
plan is never mutated after construction and the generated function only uses
locals, so concurrent runs are safe.

The slot machinery (``run_slots``, ``run_profiled``, ``run_parallel``) stays for
profiling, ORTLITE_TRACE, ORT_PARALLEL and plans too large to generate.

A run given RunOptions reads ``terminate`` before every step: a second generated function (made on
the first such run) has the check, the plain one has none. Control-flow kernels read the run's options
(``current_run_options``) once per call and check them at every iteration and in their bodies.
"""
from __future__ import annotations

import contextlib
import functools
import keyword
import logging
import operator
import os
import threading
import time

import numpy as np

from ortlite.errors import Fail, RuntimeException
from ortlite.registry import Direct

log = logging.getLogger("ortlite")

NONE_SLOT = 0  # slot 0 always holds None: a missing optional input reads it
MAX_GENERATED_STEPS = 10000  # larger plans walk the slots (generating + compiling costs ~50 us a step)

# The profiler (or ORTLITE_TRACE's tracer) of the run_profiled on this thread, and the node it is
# running: control-flow bodies (Subgraph.run) record their nodes there, naming that node as parent.
# Set only by run_profiled. ``_profiled_runs`` counts the run_profiled calls in progress in the process,
# so a body run outside profiling reads one module global, not the thread-local.
_active = threading.local()
_profiled_runs = 0
_profiled_lock = threading.Lock()

TERMINATED = "Exiting due to terminate flag being set to true."  # onnxruntime's Fail message
# The RunOptions of the run on this thread, set only for runs given RunOptions (``running_with``).
_run_options = threading.local()

# Ops whose output may be (a view of) one of their inputs: an output reached from a feed or a
# constant through these may share the caller's or the plan's memory (``Plan._may_alias``).
VIEW_OPS = frozenset((
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast", "CastLike", "Slice",
    "Split", "Expand", "Dropout", "If", "Loop", "Scan", "Optional", "OptionalGetElement", "SequenceAt",
    "SequenceConstruct", "SplitToSequence", "ConcatFromSequence", "Concat", "Sum", "Max", "Min", "Mean",
    "Tile", "Pad", "Resize", "Upsample", "Clip", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
    "Gather", "DepthToSpace", "SpaceToDepth", "BatchNormalization", "MemcpyFromHost", "MemcpyToHost",
))


def current_run_options():
    """The RunOptions of the run on this thread, None when it was given none."""
    return getattr(_run_options, "ro", None)


class running_with:
    """Context manager: ``run_options`` is this thread's current run's options (nested runs restore)."""

    __slots__ = ("ro", "prev")

    def __init__(self, run_options):
        self.ro = run_options

    def __enter__(self):
        self.prev = getattr(_run_options, "ro", None)
        _run_options.ro = self.ro

    def __exit__(self, *exc):
        _run_options.ro = self.prev


def check_terminate(run_options):
    """Raise onnxruntime's Fail when ``run_options.terminate`` is set (None: nothing to check)."""
    if run_options is not None and run_options.terminate:
        raise Fail(TERMINATED)


def stop_run():
    """Raise onnxruntime's Fail for a run whose RunOptions.terminate was set."""
    raise Fail(TERMINATED)


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
        self._out_pos = {s: k for k, s in reversed(list(enumerate(self.output_slots)))}
        self._n_in = len(self.input_slots)
        self._const_slots = frozenset(slot[n] for n in constants)
        self.own_slots = self._may_alias()
        self._const_roots = {id(_root(v)): v for v in constants.values() if type(v) is np.ndarray}
        for _, fn, _ in bound:  # an If/Loop/Scan may return its bodies' constants
            for sub in getattr(fn, "__dict__", {}).values():
                if type(sub) is Subgraph:
                    self._const_roots.update(sub.plan._const_roots)
        self._generated = None
        self._checked = None
        self.source = None
        if len(self.steps) <= MAX_GENERATED_STEPS:
            self._generated, self.source, self._line_step = _generate(self)

    def run(self, inputs, fetch=None, run_options=None):
        """Run with ``inputs`` aligned to ``input_names``; returns the values of ``output_names``
        (or of the output slots in ``fetch``). With ``run_options``, its ``terminate`` is read before
        every step."""
        if self.trace:
            return self.run_profiled(inputs, _Tracer, fetch, run_options=run_options)
        gen = self._generated
        if gen is None or len(inputs) != self._n_in:
            return self.run_slots(inputs, fetch, run_options)
        if run_options is not None:
            checked = self._checked
            if checked is None:
                checked = self._checked = _generate(self, checked=True)[0]
            gen = functools.partial(checked, _ro=run_options)
        if fetch is None:
            return gen(inputs)
        pos = self._out_pos
        if all(s in pos for s in fetch):
            out = gen(inputs)
            return [out[pos[s]] for s in fetch]
        return self.run_slots(inputs, fetch, run_options)

    def _may_alias(self):
        """Output slots whose value may share memory with a feed, a constant or another output (a view
        op's result, a pass-through of a kernel's input): only these are checked after a run
        (``own_outputs``); every other output is the kernel's fresh array, returned as it is."""
        producer = {o: st for st in self.steps for o in st.outs}
        sources = set(self.input_slots) | set(self._const_slots)
        aliasy = {}  # slot -> may be a view of a feed or constant

        def from_source(s):
            if s in sources:
                return True
            if s not in aliasy:
                st = producer.get(s)
                aliasy[s] = False  # a cycle cannot occur; this only bounds the recursion
                aliasy[s] = st is not None and st.node.op_type in VIEW_OPS and any(map(from_source, st.ins))
            return aliasy[s]

        def roots(s):  # the slots whose memory ``s`` may be (itself, through view ops)
            out, todo = set(), [s]
            while todo:
                t = todo.pop()
                if t in out or t == NONE_SLOT:
                    continue
                out.add(t)
                st = producer.get(t)
                if st is not None and st.node.op_type in VIEW_OPS:
                    todo.extend(st.ins)
            return out

        own, seen = set(), {}
        for s in self.output_slots:
            st = producer.get(s)
            direct = st.ins if st is not None else ()
            if from_source(s) or any(from_source(i) for i in direct) or (
                    st is not None and st.node.op_type in VIEW_OPS):  # a read-only view (Expand), a body's constant
                own.add(s)
            for r in roots(s) | set(direct):  # outputs reaching the same slot may be the same array
                if r in seen and seen[r] != s:
                    own.update((s, seen[r]))
                seen.setdefault(r, s)
        if len(set(self.output_slots)) < len(self.output_slots):
            own.update(s for s in self.output_slots if self.output_slots.count(s) > 1)
        return frozenset(own)

    def own_outputs(self, values, slots, inputs):
        """``values`` (of ``slots``) as arrays the caller owns, as onnxruntime returns them: an output in
        ``own_slots`` that is read-only, shares memory with a feed (``inputs``) or a constant, or with an
        output before it is copied; the others are returned as they are."""
        own = self.own_slots
        feeds = None  # the feeds' memory roots, gathered at the first output that needs them
        out, kept = list(values), []
        for k, s in enumerate(slots):
            if s not in own:
                continue
            v = out[k]
            if isinstance(v, np.ndarray):
                copy = not v.flags.writeable
                if not copy:
                    root = id(_root(v))
                    if feeds is None:
                        feeds = {id(_root(x)) for w in inputs for x in (w if type(w) is list else (w,))
                                 if type(x) is np.ndarray}
                    copy = (root in feeds or root in self._const_roots
                            or any(np.may_share_memory(v, w) for w in kept))
                if copy:
                    v = out[k] = v.copy()
                kept.append(v)
            elif isinstance(v, list):  # a sequence: a new list, its arrays owned the same way
                out[k] = self.own_outputs(v, [s] * len(v), inputs)
        return out

    def run_slots(self, inputs, fetch=None, run_options=None):
        """``run`` over the slot list (the generated function's reference semantics)."""
        slots = self.template.copy()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        k = -1
        try:
            # The hot loop: per step one C-level gather of the inputs, the call, one store.
            for k, (fn, get, arity, out, frees) in enumerate(self._fast):
                if run_options is not None and run_options.terminate:
                    stop_run()
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

    def _generated_error(self, e, values):
        """The generated function's error path: which step raised (from the line of the frame
        that caught it) and the values it was called with (its locals)."""
        tb = e.__traceback__
        k = self._line_step.get(tb.tb_lineno if tb is not None else -1, -1)
        if k < 0:
            return None
        step = self.steps[k]
        return _node_error(step, e, [_value_of(self, i, values) for i in step.ins])

    def run_parallel(self, inputs, pool, fetch=None, context=None, run_options=None):
        """Run independent steps concurrently on ``pool`` (a ThreadPoolExecutor).

        ``context``: a function returning a context manager each step runs in on its worker thread
        (the session's device providers made current there: device, memory pool, stream).
        ``run_options``: read before each step, and current on the worker threads (for bodies).

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
                check_terminate(run_options)
                with (context or contextlib.nullcontext)(), running_with(run_options):
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

    def run_profiled(self, inputs, profiler, fetch=None, parent=None, run_options=None):
        """As ``run``, timing every step into ``profiler`` (ortlite.profiling.Profiler).

        ``parent``: the name of the If/Loop/Scan node whose body this plan is (None at the top).
        While a step runs, the bodies it runs (Subgraph.run on this thread) are profiled too, their
        events naming the step's node as parent."""
        slots = self.template.copy()
        for s, v in zip(self.input_slots, inputs):
            slots[s] = v
        clock = time.perf_counter_ns
        record = profiler.record_node
        prev = getattr(_active, "ctx", None)
        ctx = [profiler, None]
        _active.ctx = ctx
        global _profiled_runs
        with _profiled_lock:
            _profiled_runs += 1
        try:
            t1 = clock()
            for step in self.steps:
                # Each step's span runs from the end of the previous one, so the events account for
                # the whole run: gathering inputs, the kernel, storing and releasing values.
                t0 = t1
                if run_options is not None and run_options.terminate:
                    stop_run()
                args = [slots[i] for i in step.ins]
                ctx[1] = step.node.name
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
                record(step, t0, t1, args, outs, parent)
        finally:
            _active.ctx = prev
            with _profiled_lock:
                _profiled_runs -= 1
        return [slots[s] for s in (fetch or self.output_slots)]


class _Tracer:
    """ORTLITE_TRACE=1: log each node with its time and output shapes (a profiler-shaped recorder)."""

    level = logging.WARNING

    @classmethod
    def record_node(cls, step, t0_ns, t1_ns, args, outs, parent=None):
        shapes = [getattr(o, "shape", type(o).__name__) for o in outs]
        name = step.node.name if parent is None else f"{parent}/{step.node.name}"
        log.log(cls.level, "[trace] %-20s %-30s %8.1f us -> %s", step.node.op_type, name,
                (t1_ns - t0_ns) / 1e3, shapes)


class VerboseTracer(_Tracer):
    """The same lines at verbose severity: a run at log severity 0 with verbosity >= 1."""

    level = 5  # options.VERBOSE


def _generate(plan, checked=False):
    """The plan as one Python function ``run(inputs) -> outputs``: values in locals ``v<slot>``,
    constants and kernels in its globals, ``del`` after each value's last reader, the whole body
    in one try whose handler finds the failing step from the line number. Returns (function,
    source, {line: step index}). ``checked``: ``run(inputs, _ro)``, reading ``_ro.terminate``
    before every step (one attribute read)."""
    steps = plan.steps
    input_slots = set(plan.input_slots)
    written = {o for st in steps for o in st.outs}
    const_slots = {s for s in plan._const_slots if s != NONE_SLOT and s not in input_slots}
    glob = {"_tuple": tuple, "_type": type, "_Pass": (Fail, RuntimeException), "_err": plan._generated_error,
            "_one": lambda r, k: _unpack(plan, r, k, 1), "_many": lambda r, k, n: _unpack(plan, r, k, n),
            "_stop": stop_run}
    as_global = set()
    prologue = []
    for s in sorted(const_slots):
        glob[f"c{s}"] = plan.template[s]
        if s in written:  # overwritten by a step: a local starting at the constant
            prologue.append(f"    v{s} = c{s}")
        else:
            as_global.add(s)

    def ref(s):
        if s == NONE_SLOT:
            return "None"
        return f"c{s}" if s in as_global else f"v{s}"

    defined = set(input_slots) | (const_slots - as_global)
    need_none = set()
    for st in steps:
        for i in st.ins:
            if i != NONE_SLOT and i not in as_global and i not in defined:
                need_none.add(i)
        defined.update(st.outs)
    for s in plan.output_slots:
        if s != NONE_SLOT and s not in as_global and s not in defined:
            need_none.add(s)
    prologue += [f"    v{s} = None" for s in sorted(need_none)]

    lines = ["def run(inputs, _ro):" if checked else "def run(inputs):"]
    if plan.input_slots:
        lines.append("    " + ", ".join("_" if s == NONE_SLOT else f"v{s}" for s in plan.input_slots) + ", = inputs")
    lines += prologue
    lines.append("    try:")
    line_step = {}
    for k, st in enumerate(steps):
        fn, pre, kw, post = _unwrap(st.fn)
        glob[f"f{k}"] = fn
        for j, a in enumerate(pre):
            glob[f"a{k}_{j}"] = a
        for j, a in enumerate(post):
            glob[f"e{k}_{j}"] = a
        for name, a in kw.items():
            glob[f"k{k}_{name}"] = a
        call = f"f{k}(" + ", ".join([f"a{k}_{j}" for j in range(len(pre))] + [ref(i) for i in st.ins]
                                    + [f"e{k}_{j}" for j in range(len(post))]
                                    + [f"{name}=k{k}_{name}" for name in kw]) + ")"
        if len(st.outs) == 1 and type(st.fn) is Direct:  # one array, never a tuple
            body = [f"        v{st.outs[0]} = {call}"]
        elif len(st.outs) == 1:
            o = f"v{st.outs[0]}"
            body = [f"        {o} = {call}",
                    f"        if _type({o}) is _tuple: {o} = _one({o}, {k})"]
        elif not st.outs:
            body = [f"        {call}"]
        else:
            n = len(st.outs)
            outs = ", ".join(f"v{o}" for o in st.outs)
            body = [f"        _r = {call}",
                    f"        {outs} = _r if _type(_r) is _tuple and len(_r) == {n} else _many(_r, {k}, {n})"]
        if checked:
            lines.append("        if _ro.terminate: _stop()")
        for line in body:
            lines.append(line)
            line_step[len(lines)] = k
        dels = [f"v{f}" for f in st.frees if f != NONE_SLOT and f not in as_global]
        if dels:
            lines.append("        del " + ", ".join(dels))
    if not steps:
        lines.append("        pass")
    lines += ["    except _Pass:",
              "        raise",
              "    except Exception as e:",
              "        _x = _err(e, locals())",
              "        if _x is None:",
              "            raise",
              "        raise _x from e",
              "    return [" + ", ".join(ref(s) for s in plan.output_slots) + "]"]
    source = "\n".join(lines) + "\n"
    filename = f"<ortlite plan {plan.name} {id(plan):x}{' checked' if checked else ''}>"
    exec(compile(source, filename, "exec"), glob)  # noqa: S102 - our own generated source
    return glob["run"], source, line_step


def _unwrap(fn):
    """(function, leading args, keywords, trailing args) of a ``functools.partial`` (a function kernel
    bound to its provider's array module and attributes) or a ``Direct`` call, called directly in the
    generated code; else (fn, (), {}, ())."""
    if type(fn) is Direct:
        return fn.fn, (), {}, fn.extra
    if type(fn) is functools.partial and callable(fn.func):
        kw = fn.keywords or {}
        if all(n.isidentifier() and not keyword.iskeyword(n) for n in kw):
            return fn.func, fn.args, dict(kw), ()
    return fn, (), {}, ()


def _root(a):
    """The object owning an array's memory (numpy keeps ``base`` pointing at the array that owns it, or
    at the buffer object an array was made over)."""
    b = a.base
    while b is not None:
        a = b
        b = getattr(a, "base", None) if type(a) is np.ndarray else None
    return a


def _unpack(plan, r, k, n):
    """A step's results as ``n`` values, as _store_many stores them (a tuple from a single-output
    kernel, fewer results than outputs: the missing ones None unless the model reads them)."""
    if n == 1 and len(r) == 1:
        return r[0]
    step = plan.steps[k]
    tmp = [None] * n
    _store_many(tmp, range(n), r, step)
    return tmp[0] if n == 1 else tmp


def _value_of(plan, s, values):
    if s == NONE_SLOT:
        return None
    v = values.get(f"v{s}", plan.template[s] if s < len(plan.template) else None)
    return v


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
    Kernels that run a body often (Loop, Scan, If) pick its outer values once with ``outer_picker``
    and call ``call`` with the values in the plan's input order: no dict, no padding per run.
    """

    __slots__ = ("plan", "input_names", "output_names", "outer_names", "input_infos", "output_infos", "outer_needs",
                 "_run")

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
        # the generated function itself where Plan.run would only forward to it
        gen = plan._generated
        self._run = gen if gen is not None and not plan.trace else plan.run

    def outer_picker(self, names):
        """A function from a node's implicit input values (a tuple, in the order of ``names``) to the
        tuple of this body's outer-scope values."""
        names = tuple(names)
        missing = [n for n in self.outer_names if n not in names]
        if missing:
            raise Fail(f"graph '{self.plan.name}' reads outer-scope values {missing} its node does not pass")
        if names == self.outer_names:
            return tuple
        pos = [names.index(n) for n in self.outer_names]
        if not pos:
            return lambda values: ()
        if len(pos) == 1:
            k = pos[0]
            return lambda values: (values[k],)
        return operator.itemgetter(*pos)

    def direct_call(self):
        """The function ``call`` would end in for a run without RunOptions outside a profiled run (the
        generated function, ``vals`` -> outputs), or None inside a profiled run. A kernel that runs the
        body many times in one call (Loop) asks once per call."""
        if _profiled_runs and getattr(_active, "ctx", None) is not None:
            return None
        return self._run

    def call(self, vals, run_options=None):
        """Run with ``vals`` aligned to the plan's inputs: every body input, then the outer values.
        ``run_options``: the run's (``current_run_options``), its terminate flag read before each step."""
        if _profiled_runs:
            ctx = getattr(_active, "ctx", None)
            if ctx is not None:  # inside a profiled (or traced) run: the body's nodes are recorded too
                return self.plan.run_profiled(vals, ctx[0], parent=ctx[1], run_options=run_options)
        if run_options is not None:
            return self.plan.run(vals, run_options=run_options)
        return self._run(vals)

    def run(self, inputs, outer):
        vals = list(inputs)
        vals.extend([None] * (len(self.input_names) - len(vals)))
        vals.extend(outer[n] for n in self.outer_names)
        return self.call(vals)
