"""If, Loop and Scan: kernels that run compiled subgraphs.

Subgraph attributes arrive compiled (``ortlite.plan.Subgraph``). Values the
bodies read from enclosing graphs follow the node's declared inputs in the
call (``ctx.implicit_inputs`` names them); each body's share is picked by
position (``Subgraph.outer_picker``), so no run builds a dict.

A run given RunOptions (``current_run_options``) has its terminate flag read at every Loop and Scan
iteration and before every body step (nested bodies too); a run without any reads nothing.
A Loop that runs zero times and a Scan over an empty sequence return scan outputs shaped
``(0, *body output shape)`` (unknown dims 0, an unknown rank ``(0,)``), as onnxruntime does.
"""
from __future__ import annotations

import logging

import numpy as np

from ortlite.plan import current_run_options, stop_run
from ortlite.registry import kernel
from ortlite.types import np_dtype

log = logging.getLogger("ortlite")


def _single_or_tuple(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


def _truth(cond):
    """A condition tensor's value (onnxruntime reads its first element): ``bool`` of a one-element array
    directly, the slow path for anything else."""
    try:
        return bool(cond)
    except (TypeError, ValueError):
        return bool(np.asarray(cond).reshape(-1)[0])


@kernel("If", since=1, families=("cpu",), host_inputs=(0,))
class If:
    """Runs one branch; a branch's outer values are picked from the node's implicit inputs by position.
    A constant condition (a Constant or initializer the optimizer left) picks the branch once, here."""

    def __init__(self, ctx, *, then_branch, else_branch):
        self.then_branch, self.else_branch = then_branch, else_branch
        self.names = ctx.implicit_inputs
        self.n_out = ctx.num_outputs
        self._then = (then_branch.call, then_branch.outer_picker(self.names))
        self._else = (else_branch.call, else_branch.outer_picker(self.names))
        cond = ctx.const(0)
        self._fixed = None if cond is None else (self._then if _truth(cond) else self._else)

    def __call__(self, cond, *implicit):
        run, pick = self._fixed or (self._then if _truth(cond) else self._else)
        outs = run(pick(implicit), current_run_options())
        return outs[0] if len(outs) == 1 else tuple(outs)


def _body_dtype(info):
    try:
        return np_dtype(info.elem_type) if info is not None and info.elem_type is not None else np.float32
    except TypeError:
        return np.float32


def _empty_scan(info, op, k):
    """The stacked scan output of zero iterations, from the body output's static info: ``(0, *shape)``
    (unknown dims 0); an unknown rank gives ``(0,)`` with onnxruntime's warning."""
    shape = None if info is None else info.shape
    if shape is None:
        log.warning("%s had zero iterations and the shape of subgraph output %d was not found. "
                    "Defaulting to a rank 1 shape of {0}.", op, k)
        return np.zeros((0,), dtype=_body_dtype(info))
    return np.zeros((0, *(d if isinstance(d, int) and d >= 0 else 0 for d in shape)), dtype=_body_dtype(info))


@kernel("Loop", since=1, families=("cpu",), host_inputs=(0, 1))
class Loop:
    def __init__(self, ctx, *, body):
        self.body = body
        self.n_carried = ctx.num_inputs - 2
        self.names = ctx.implicit_inputs
        self._pick = body.outer_picker(self.names)
        n_body_out = len(body.output_names)
        self.n_scan = n_body_out - 1 - self.n_carried
        infos = list(body.output_infos[1 + self.n_carried:])
        self.scan_infos = infos + [None] * (self.n_scan - len(infos))

    def __call__(self, M=None, cond=None, *rest):
        n = self.n_carried
        carried = list(rest[:n])
        outer = self._pick(rest[n:])
        run = self.body.call
        ro = current_run_options()
        trip = None if M is None else int(np.asarray(M).reshape(-1)[0])
        keep = True if cond is None else _truth(cond)
        scans = [[] for _ in range(self.n_scan)]
        i = 0
        if ro is None and trip is not None:
            # the common case (no RunOptions, a trip count): the body's generated function itself
            # (Subgraph.direct_call) and fewer list operations per iteration
            fast = self.body.direct_call()
            if fast is not None:
                return self._fast_loop(fast, trip, keep, carried, outer, scans)
        # one iteration: the terminate check (runs given RunOptions), the body's run, its results taken apart
        while keep and (trip is None or i < trip):
            if ro is not None and ro.terminate:
                stop_run()
            outs = run([np.array(i, dtype=np.int64), np.array(keep), *carried, *outer], ro)
            keep = _truth(outs[0])
            carried = outs[1:1 + n]
            for k in range(self.n_scan):
                scans[k].append(outs[1 + n + k])
            i += 1
        return self._results(carried, scans)

    def _fast_loop(self, run, trip, keep, carried, outer, scans):
        n = self.n_carried
        end = 1 + n
        outer = list(outer)
        appends = [s.append for s in scans]
        i = 0
        while keep and i < trip:
            outs = run([np.array(i, dtype=np.int64), np.array(keep), *carried, *outer])
            c = outs[0]
            try:
                keep = bool(c)
            except (TypeError, ValueError):
                keep = _truth(c)
            carried = outs[1:end]
            for k, app in enumerate(appends, end):
                app(outs[k])
            i += 1
        return self._results(carried, scans)

    def _results(self, carried, scans):
        n = self.n_carried
        results = list(carried)
        for k, s in enumerate(scans):
            if s and isinstance(s[0], list):
                results.append(s)
            elif s:
                results.append(np.stack([np.asarray(x) for x in s]))
            else:
                results.append(_empty_scan(self.scan_infos[k], "Loop", 1 + n + k))
        return _single_or_tuple(results) if results else ()


def _scan_loop(body, states, scan_inputs, outer, in_axes, in_dirs, out_axes, out_dirs, n_scan_out):
    """``outer``: the body's outer-scope values (Subgraph.outer_picker's tuple)."""
    ro = current_run_options()
    seq_len = None
    for x, ax in zip(scan_inputs, in_axes):
        length = x.shape[ax]
        if seq_len is not None and length != seq_len:
            raise ValueError(f"Scan inputs disagree on the sequence length: {seq_len} vs {length}")
        seq_len = length
    seq_len = seq_len or 0
    outs_per_step = [[] for _ in range(n_scan_out)]
    for t in range(seq_len):
        if ro is not None and ro.terminate:
            stop_run()
        step_in = []
        for x, ax, d in zip(scan_inputs, in_axes, in_dirs):
            idx = seq_len - 1 - t if d else t
            step_in.append(np.take(x, idx, axis=ax))
        outs = body.call([*states, *step_in, *outer], ro)
        states = outs[:len(states)]
        for k, y in enumerate(outs[len(states):]):
            outs_per_step[k].append(np.asarray(y))
    scan_out = []
    for k, ys in enumerate(outs_per_step):
        if out_dirs[k]:
            ys = ys[::-1]
        if ys:
            y = np.stack(ys, axis=0)
        else:
            k_out = len(states) + k
            y = _empty_scan(body.output_infos[k_out] if k_out < len(body.output_infos) else None, "Scan", k_out)
        if out_axes[k] != 0:
            y = np.moveaxis(y, 0, out_axes[k])
        scan_out.append(y)
    return list(states), scan_out


@kernel("Scan", since=9, families=("cpu",))
class Scan:
    def __init__(self, ctx, *, body, num_scan_inputs, scan_input_axes=None, scan_input_directions=None,
                 scan_output_axes=None, scan_output_directions=None):
        self.body = body
        self.m = num_scan_inputs
        self.n = ctx.num_inputs - num_scan_inputs
        self.names = ctx.implicit_inputs
        self.k = len(body.output_names) - self.n
        self._pick = body.outer_picker(self.names)
        self.in_axes = scan_input_axes or [0] * self.m
        self.in_dirs = scan_input_directions or [0] * self.m
        self.out_axes = scan_output_axes or [0] * self.k
        self.out_dirs = scan_output_directions or [0] * self.k

    def __call__(self, *args):
        states = list(args[:self.n])
        scans = list(args[self.n:self.n + self.m])
        outer = self._pick(args[self.n + self.m:])
        in_axes = [a + x.ndim if a < 0 else a for a, x in zip(self.in_axes, scans)]
        out_axes = []
        for k, a in enumerate(self.out_axes):
            info = self.body.output_infos[self.n + k] if self.n + k < len(self.body.output_infos) else None
            rank = len(info.shape) + 1 if info is not None and info.shape is not None else None
            if a < 0:
                if rank is None:
                    raise ValueError("Scan: a negative scan_output_axes needs the body output's rank")
                a += rank
            out_axes.append(a)
        states, outs = _scan_loop(self.body, states, scans, outer, in_axes, self.in_dirs, out_axes,
                                  self.out_dirs, self.k)
        return _single_or_tuple(states + outs)


# Opset 8: a leading batch axis and an optional sequence_lens input; directions attribute.
@kernel("Scan", since=8, families=("cpu",))
class Scan8:
    def __init__(self, ctx, *, body, num_scan_inputs, directions=None):
        self.body = body
        self.m = num_scan_inputs
        self.n = ctx.num_inputs - 1 - num_scan_inputs
        self.names = ctx.implicit_inputs
        self.k = len(body.output_names) - self.n
        self._pick = body.outer_picker(self.names)
        self.dirs = directions or [0] * self.m

    def __call__(self, sequence_lens, *args):
        states = list(args[:self.n])
        scans = list(args[self.n:self.n + self.m])
        outer = self._pick(args[self.n + self.m:])
        batch = (states[0] if states else scans[0]).shape[0]
        all_states, all_outs = [], []
        for b in range(batch):
            length = scans[0].shape[1] if sequence_lens is None else int(np.asarray(sequence_lens)[b])
            st, outs = _scan_loop(self.body, [s[b] for s in states], [x[b, :length] for x in scans], outer,
                                  [0] * self.m, self.dirs, [0] * self.k, [0] * self.k, self.k)
            all_states.append(st)
            all_outs.append(outs)
        res = [np.stack([s[i] for s in all_states]) for i in range(self.n)]
        res += [np.stack([o[i] for o in all_outs]) for i in range(self.k)]
        return _single_or_tuple(res)
