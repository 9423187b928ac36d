"""Direct (wrapper-free) bindings of shape-only and cast nodes for the plan's generated code.

Loop/If bodies and tiny models pay per node mostly for the kernel's Python wrapper (argument
normalization, axis checks, dtype dispatch): ~5-10 us where the numpy work itself is a few hundred
nanoseconds. Where the node's context proves what the wrapper would decide (numpy provider, constant
axes, a known rank, a known dtype), ``registry.kernel(..., specialize=...)`` binds the node as a
``Direct`` call to one of the closures below: one method call on the array.

Each specializer returns None where it cannot prove the result equal to the kernel's, and the kernel
binds as usual (errors such as a squeezed dim that is not 1 still raise, with numpy's words).
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import Direct


def _const_axes(ctx, i):
    """The constant axes input ``i`` as a list of ints, or None (absent, not constant)."""
    a = ctx.const(i)
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        return None
    return [int(v) for v in a.reshape(-1)]


def _norm(axes, rank):
    out = []
    for a in axes:
        if not -rank <= a < max(rank, 1):
            return None
        out.append(a + rank if a < 0 else a)
    return out


def squeeze(ctx, **attrs):
    """Squeeze-13 with constant, non-empty axes on a numpy input of known rank: ``x.squeeze(axes)``
    (numpy raises where a squeezed dim is not 1)."""
    if ctx.xp is not np or attrs:
        return None
    axes, rank = _const_axes(ctx, 1), ctx.input_rank(0)
    if not axes or rank is None:
        return None
    axes = _norm(axes, rank)
    if axes is None:
        return None
    t = tuple(sorted(set(axes)))

    def squeeze_direct(x, _axes, _t=t):
        return x.squeeze(_t)

    return Direct(squeeze_direct)


def squeeze_v1(ctx, *, axes=None):
    if ctx.xp is not np or not axes:
        return None
    rank = ctx.input_rank(0)
    if rank is None:
        return None
    axes = _norm([int(a) for a in axes], rank)
    if axes is None:
        return None
    t = tuple(sorted(set(axes)))

    def squeeze_direct(x, _t=t):
        return x.squeeze(_t)

    return Direct(squeeze_direct)


def _unsqueeze_key(axes, rank):
    out_rank = rank + len(axes)
    axes = _norm(axes, out_rank)
    if axes is None or len(set(axes)) != len(axes):
        return None
    return tuple(None if i in axes else slice(None) for i in range(out_rank))


def unsqueeze(ctx, **attrs):
    """Unsqueeze-13 with constant axes on a numpy input of known rank: ``x[key]`` with ``None`` at the
    new axes (a view, as the kernel's reshape)."""
    if ctx.xp is not np or attrs:
        return None
    axes, rank = _const_axes(ctx, 1), ctx.input_rank(0)
    if axes is None or rank is None:
        return None
    key = _unsqueeze_key(axes, rank)
    if key is None:
        return None

    def unsqueeze_direct(x, _axes, _k=key):
        return x[_k]

    return Direct(unsqueeze_direct)


def unsqueeze_v1(ctx, *, axes=None):
    if ctx.xp is not np or axes is None:
        return None
    rank = ctx.input_rank(0)
    if rank is None:
        return None
    key = _unsqueeze_key([int(a) for a in axes], rank)
    if key is None:
        return None

    def unsqueeze_direct(x, _k=key):
        return x[_k]

    return Direct(unsqueeze_direct)


def _exact_cast(src, dst):
    """Whether ``astype(dst)`` from ``src`` is what Cast computes and never warns (no overflow, no NaN
    to integer): from bool; integer to integer (wraps as Cast does); integer to float32/64; a float to
    a wider float."""
    if src == dst:
        return False
    std = "biuf"
    if src.kind not in std or dst.kind not in std or src.type.__module__ != "numpy" or dst.type.__module__ != "numpy":
        return False
    if src.kind == "b":
        return True
    if src.kind in "iu":
        return dst.kind in "iub" or dst in (np.dtype(np.float32), np.dtype(np.float64))
    return dst.kind == "f" and dst.itemsize > src.itemsize


def cast(ctx, *, to, saturate=1, round_mode="up"):
    """Cast between standard numeric dtypes where ``astype`` is exact and silent (see _exact_cast)."""
    if ctx.xp is not np or ctx.input_rank(0) is None:
        return None
    src = ctx.input_dtype(0)
    if src is None:
        return None
    from .cast import _target_dtype

    try:
        dst = np.dtype(_target_dtype(to))
    except Exception:  # noqa: BLE001 - the kernel reports a bad 'to'
        return None
    if not _exact_cast(np.dtype(src), dst):
        return None

    def cast_direct(x, _d=dst):
        return x.astype(_d)

    return Direct(cast_direct)


_INTP_IS_INT64 = np.dtype(np.intp) == np.dtype(np.int64)


def _arg(method):
    def specialize(ctx, *, axis=0, keepdims=1, select_last_index=0):
        if ctx.xp is not np or select_last_index or not _INTP_IS_INT64:
            return None
        rank, dt = ctx.input_rank(0), ctx.input_dtype(0)
        if rank is None or dt is None or np.dtype(dt).kind not in "iuf" or np.dtype(dt).type.__module__ != "numpy":
            return None
        if not keepdims and rank < 2:  # numpy would return a scalar, not a 0-d array
            return None
        ax = _norm([int(axis)], rank)
        if ax is None:
            return None
        a, kd = ax[0], bool(keepdims)
        if method == "argmax":
            def arg_direct(x, _a=a, _kd=kd):
                return x.argmax(_a, keepdims=_kd)
        else:
            def arg_direct(x, _a=a, _kd=kd):
                return x.argmin(_a, keepdims=_kd)
        return Direct(arg_direct)

    return specialize


argmax = _arg("argmax")
argmin = _arg("argmin")
