"""Pattern-matching helpers shared by the fusion passes (the EXTENDED level).

* :class:`View`: a snapshot of who produces and who reads each value, plus what is known
  about a value (constant, dtype, shape) - the questions every matcher asks;
* :func:`rewrite_each`: the driver most passes use (visit anchor nodes, let the matcher
  rewrite, refresh the view after each rewrite);
* :func:`absorb` / :func:`closed` / :func:`prune_dead`: which nodes a rewrite may delete
  and clean-up of what it leaves dead;
* a small symbolic evaluator for shape tensors (``Shape -> Gather -> Unsqueeze -> Concat``
  chains), so a matcher can prove that a ``Reshape`` target is ``[x.shape[0], x.shape[1], N, D]``
  even when the dims are only known at run time.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

MS = "com.microsoft"
_FLOAT_NP = (np.dtype(np.float32), np.dtype(np.float16))


class View:
    """What a matcher needs to know about the graph right now (rebuild it after an edit)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.graph = ctx.graph
        self.cons = ctx.consumers()
        self.prods = ctx.producers()
        self.outputs = set(ctx.outputs)
        self.alive = {id(n) for n in ctx.graph.nodes}

    # ---- structure ---------------------------------------------------------------
    def producer(self, name, op_type=None, domain=""):
        """The node producing ``name`` (of ``op_type``/``domain`` when given, plain nodes only), or None."""
        if not name:
            return None
        p = self.prods.get(name)
        if p is None:
            return None
        if op_type is not None:
            ops = (op_type,) if isinstance(op_type, str) else tuple(op_type)
            if p.op_type not in ops or p.domain != domain or p.subgraphs:
                return None
        return p

    def consumers(self, name):
        return self.cons.get(name, []) if name else []

    def sole_consumer(self, name, op_type=None, domain=""):
        """The only reader of ``name`` when there is exactly one and ``name`` is not a graph output."""
        if not name or name in self.outputs:
            return None
        cs = self.cons.get(name, [])
        if len(cs) != 1:
            return None
        c = cs[0]
        if op_type is not None:
            ops = (op_type,) if isinstance(op_type, str) else tuple(op_type)
            if c.op_type not in ops or c.domain != domain or c.subgraphs:
                return None
        if name in c.implicit_inputs:
            return None
        return c

    def private(self, name, reader) -> bool:
        """``name`` is read by ``reader`` only and is not a graph output."""
        return self.sole_consumer(name) is reader

    # ---- values ------------------------------------------------------------------
    def const(self, name):
        return self.ctx.const(name)

    def scalar(self, name):
        """A float for a constant holding one number (any shape of size 1), else None."""
        c = self.const(name)
        if c is None or c.size != 1 or c.dtype.kind not in "fiu":
            return None
        return float(c.reshape(()))

    def scalar_for(self, name, x):
        """Like :meth:`scalar`, but only for a constant that cannot raise the rank of ``x`` when
        broadcast against it (0-d, or of rank <= the known rank of ``x``)."""
        c = self.const(name)
        if c is None or c.size != 1 or c.dtype.kind not in "fiu":
            return None
        if c.ndim:
            r = self.rank(x)
            if r is None or c.ndim > r:
                return None
        return float(c.reshape(()))

    def is_value(self, name, target, x=None) -> bool:
        """``name`` is a constant equal to ``target`` up to the rounding of its own dtype
        (relative 1e-5 for float32/64, 1e-3 for float16); ``x`` as in :meth:`scalar_for`."""
        v = self.scalar_for(name, x) if x is not None else self.scalar(name)
        if v is None:
            return False
        c = self.const(name)
        rel = 1e-3 if c.dtype.itemsize <= 2 else 1e-5
        return abs(v - target) <= rel * abs(target) + (0.0 if target else 1e-12)

    def info(self, name):
        return self.graph.info(name) if name else None

    def shape(self, name):
        """A list of dims (int, symbolic str or None) or None when the rank is unknown."""
        c = self.const(name)
        if c is not None:
            return list(c.shape)
        vi = self.info(name)
        if vi is None or vi.shape is None:
            return None
        return list(vi.shape)

    def rank(self, name):
        s = self.shape(name)
        return None if s is None else len(s)

    def static_dim(self, name, axis):
        s = self.shape(name)
        if s is None or not -len(s) <= axis < len(s):
            return None
        d = s[axis]
        return d if isinstance(d, int) and not isinstance(d, bool) else None

    def dtype(self, name):
        c = self.const(name)
        if c is not None:
            return c.dtype
        vi = self.info(name)
        return None if vi is None else vi.dtype

    def is_float(self, *names) -> bool:
        """Every name known to be float32/float16 and no name known to be anything else."""
        seen = False
        for n in names:
            dt = self.dtype(n)
            if dt is None:
                continue
            if np.dtype(dt) not in _FLOAT_NP:
                return False
            seen = True
        return seen


# ---- small predicates ---------------------------------------------------------------

def other_input(node, name):
    """For a two-input node reading ``name``: the other input (None if ``name`` is not one of them)."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if a == name:
        return b
    if b == name:
        return a
    return None


def common_provider(nodes):
    """The provider all ``nodes`` were placed on, or None when they differ or are unplaced."""
    provs = {n.provider for n in nodes}
    if len(provs) != 1:
        return None
    return next(iter(provs))


def can_fuse(ctx, nodes, op_type, domain):
    """The provider to give a fused ``op_type`` node replacing ``nodes``, or None."""
    prov = common_provider(nodes)
    if prov is None or not ctx.has_kernel(op_type, domain, prov):
        return None
    return prov


def dims_equal(a, b) -> bool:
    """Two dims known to be equal: the same int, or the same symbolic name."""
    if a is None or b is None:
        return False
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b and a != ""
    return int(a) == int(b)


def shapes_equal(a, b) -> bool:
    return a is not None and b is not None and len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def axes_of(view, node, input_index=1):
    """The ``axes`` of a reduce / (un)squeeze node: attribute before the op's input form, else the
    constant input. Returns a list, [] when absent, None when not constant."""
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > input_index and node.inputs[input_index]:
        c = view.const(node.inputs[input_index])
        if c is None or c.dtype.kind not in "iu":
            return None
        return [int(a) for a in np.asarray(c).reshape(-1)]
    return []


def is_last_axis(view, axes, x) -> bool:
    """``axes`` names exactly the last axis of ``x``."""
    if axes is None or len(axes) != 1:
        return False
    a = axes[0]
    if a == -1:
        return True
    r = view.rank(x)
    return r is not None and a == r - 1


# ---- rewriting -------------------------------------------------------------------------

def rewrite_each(ctx, anchors, fn) -> bool:
    """Call ``fn(view, node)`` for each plain node whose op_type is in ``anchors`` (domain "" unless
    the anchor is given as ``(op_type, domain)``); ``fn`` does its rewrite and returns True, or False.
    The view is rebuilt after every rewrite; nodes removed meanwhile are skipped."""
    keys = set()
    for a in anchors:
        keys.add(a if isinstance(a, tuple) else (a, ""))
    changed = False
    view = View(ctx)
    for node in list(ctx.graph.nodes):
        if id(node) not in view.alive or node.subgraphs or (node.op_type, node.domain) not in keys:
            continue
        if fn(view, node):
            changed = True
            view = View(ctx)
    return changed


def absorb(view, core, roots, protect=(), max_depth=12):
    """``core`` plus the ancestors of ``roots`` that only feed ``core`` (shape chains, a
    Shape of a core value...): what may be deleted together with ``core``. Producers of the
    ``protect`` names (what the replacement reads) are never taken. A list of nodes."""
    keep = {id(n): n for n in core}
    cand = {}
    protect = set(protect)
    stack = [(r, 0) for r in roots if r]
    while stack:
        name, d = stack.pop()
        p = view.producer(name)
        if p is None or id(p) in keep or id(p) in cand or p.subgraphs or d > max_depth:
            continue
        if any(o in protect for o in p.outputs):
            continue
        cand[id(p)] = p
        stack.extend((i, d + 1) for i in p.inputs if i)
    grew = True
    while grew:
        grew = False
        for k, n in list(cand.items()):
            if k in keep:
                continue
            ok = all(
                o not in view.outputs and all(id(c) in keep for c in view.consumers(o))
                for o in n.outputs if o
            )
            if ok:
                keep[k] = n
                grew = True
    return list(keep.values())


def closed(view, nodes, results) -> bool:
    """Every value produced by ``nodes``, except those in ``results``, is read only inside
    ``nodes`` and is no graph output: deleting ``nodes`` loses nothing anyone else reads."""
    ids = {id(n) for n in nodes}
    results = set(results)
    for n in nodes:
        for o in n.outputs:
            if not o or o in results:
                continue
            if o in view.outputs:
                return False
            if any(id(c) not in ids for c in view.consumers(o)):
                return False
    return True


def prune_dead(ctx, names):
    """Remove nodes left without readers by a rewrite: producers of ``names`` whose outputs are
    all unread and not graph outputs, then their producers in turn (plain nodes only)."""
    todo = [n for n in names if n]
    if not todo:
        return
    cons = ctx.consumers()
    prods = ctx.producers()
    outputs = set(ctx.outputs)
    dead = set()
    while todo:
        name = todo.pop()
        p = prods.get(name)
        if p is None or id(p) in dead or p.subgraphs:
            continue
        if any(o in outputs or any(id(c) not in dead for c in cons.get(o, [])) for o in p.outputs if o):
            continue
        dead.add(id(p))
        todo.extend(i for i in p.inputs if i)
    if dead:
        ctx.graph.nodes = [n for n in ctx.graph.nodes if id(n) not in dead]


def replace(ctx, old, new, dead_inputs=True):
    """ctx.replace, then drop the producers the removed nodes leave unread."""
    names = [i for n in old for i in n.inputs if i] if dead_inputs else []
    ctx.replace(old, new)
    prune_dead(ctx, names)


# ---- symbolic shape tensors -------------------------------------------------------------
# A shape vector is a list of terms; a term is an int or ("dim", tensor, axis) (axis >= 0),
# or ("sub", term, term) for a difference of two scalars.

_MAX_DEPTH = 16


def shape_vector(view, name, depth=0):
    """The terms of a 1-D int tensor computed from shapes and constants, or None."""
    if depth > _MAX_DEPTH or not name:
        return None
    c = view.const(name)
    if c is not None:
        if c.ndim != 1 or c.dtype.kind not in "iu":
            return None
        return [int(v) for v in c]
    p = view.producer(name)
    if p is None or p.subgraphs or p.domain != "":
        return None
    op = p.op_type
    if op == "Shape":
        r = view.rank(p.inputs[0])
        if r is None:
            return None
        start, end = int(p.attrs.get("start", 0)), int(p.attrs.get("end", r))
        start = max(0, min(r, start + r if start < 0 else start))
        end = max(0, min(r, end + r if end < 0 else end))
        return [("dim", p.inputs[0], i) for i in range(start, end)]
    if op == "Concat":
        if int(p.attrs.get("axis", 0)) not in (0, -1):
            return None
        out = []
        for i in p.inputs:
            v = shape_vector(view, i, depth + 1)
            if v is None:
                return None
            out.extend(v)
        return out
    if op == "Unsqueeze":
        axes = axes_of(view, p)
        if axes not in ([0], [-1]):
            return None
        t = shape_scalar(view, p.inputs[0], depth + 1)
        return None if t is None else [t]
    if op in ("Cast", "Identity"):
        if op == "Cast" and int(p.attrs.get("to", 0)) not in (TensorProto.INT64, TensorProto.INT32):
            return None
        return shape_vector(view, p.inputs[0], depth + 1)
    if op == "Gather":
        if int(p.attrs.get("axis", 0)) != 0:
            return None
        idx = view.const(p.inputs[1])
        vec = shape_vector(view, p.inputs[0], depth + 1)
        if idx is None or vec is None or idx.ndim != 1:
            return None
        try:
            return [vec[int(i)] for i in idx]
        except IndexError:
            return None
    if op == "Slice":
        if "starts" in p.attrs:  # Slice-1: attributes
            return None
        vec = shape_vector(view, p.inputs[0], depth + 1)
        ins = list(p.inputs) + [""] * 5
        starts, ends, axes, steps = (view.const(ins[k]) if ins[k] else None for k in range(1, 5))
        if vec is None or starts is None or ends is None or starts.size != 1 or ends.size != 1:
            return None
        if axes is not None and [int(a) for a in axes.reshape(-1)] not in ([0], [-1]):
            return None
        step = 1 if steps is None else int(steps.reshape(-1)[0])
        if step == 0:
            return None
        return vec[slice(int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0]), step)]
    return None


def shape_scalar(view, name, depth=0):
    """A 0-d int tensor computed from shapes and constants, as a term, or None."""
    if depth > _MAX_DEPTH or not name:
        return None
    c = view.const(name)
    if c is not None:
        if c.ndim != 0 or c.dtype.kind not in "iu":
            return None
        return int(c)
    p = view.producer(name)
    if p is None or p.subgraphs or p.domain != "":
        return None
    op = p.op_type
    if op == "Gather":
        if int(p.attrs.get("axis", 0)) != 0:
            return None
        idx = view.const(p.inputs[1])
        vec = shape_vector(view, p.inputs[0], depth + 1)
        if idx is None or vec is None or idx.ndim != 0:
            return None
        try:
            return vec[int(idx)]
        except IndexError:
            return None
    if op == "Squeeze":
        vec = shape_vector(view, p.inputs[0], depth + 1)
        return vec[0] if vec is not None and len(vec) == 1 else None
    if op in ("Cast", "Identity"):
        if op == "Cast" and int(p.attrs.get("to", 0)) not in (TensorProto.INT64, TensorProto.INT32):
            return None
        return shape_scalar(view, p.inputs[0], depth + 1)
    if op == "Sub":
        a = shape_scalar(view, p.inputs[0], depth + 1)
        b = shape_scalar(view, p.inputs[1], depth + 1)
        if a is None or b is None:
            return None
        if isinstance(a, int) and isinstance(b, int):
            return a - b
        return ("sub", a, b)
    return None


def term_is(view, term, dims) -> bool:
    """``term`` certainly equals the dim(s) in ``dims`` (a list of (tensor, axis) that are all
    equal by construction): by identity, or by equal static sizes from shape inference."""
    if isinstance(term, tuple) and term[0] == "dim":
        if (term[1], term[2]) in dims:
            return True
        a = view.static_dim(term[1], term[2])
    elif isinstance(term, int):
        a = term
    else:
        return False
    if a is None:
        return False
    return any(view.static_dim(t, ax) == a for t, ax in dims)


def reshape_target(view, node, expected):
    """Whether Reshape ``node`` certainly produces the shape ``expected``: a list whose items are
    ints or lists of equal dims [(tensor, axis), ...]. A 0 in the target copies the input dim
    (allowzero=0); one -1 is accepted when every other position matches (the element count then
    fixes it). Returns True / False."""
    if node.op_type != "Reshape" or int(node.attrs.get("allowzero", 0)) != 0:
        return False
    vec = shape_vector(view, node.inputs[1])
    if vec is None or len(vec) != len(expected):
        return False
    x = node.inputs[0]
    wild = 0
    for i, (t, e) in enumerate(zip(vec, expected)):
        if t == -1:
            wild += 1
            continue
        if t == 0:
            t = ("dim", x, i)
        if isinstance(e, int):
            if not (t == e or (isinstance(t, tuple) and view.static_dim(t[1], t[2]) == e)):
                return False
        elif not term_is(view, t, e):
            return False
    return wild <= 1
