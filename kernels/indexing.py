"""Indexing kernels: Slice, Gather, GatherElements, GatherND, Scatter,
ScatterElements, ScatterND, TensorScatter, OneHot, NonZero, Unique, Compress,
ReverseSequence.

All keep the data dtype (strings as object arrays, bool, float16, bfloat16).
Scatter kernels copy the data once and write into the copy; inputs are never
modified.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from ._common import bad, check_axis_attr, check_output_size, const_ints, norm_axis, prepare_check, static_shape, to_ints

# ---------------------------------------------------------------------------
# Slice


def _slice_of(start, end, step, dim):
    """A Python slice equal to ONNX Slice's clamped (start, end, step) on a dim."""
    if step == 0:
        raise bad("Slice: 'steps' cannot hold 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
        return slice(start, end, step)
    if dim == 0:
        return slice(0, 0, 1)
    start = min(max(start, 0), dim - 1)
    end = min(max(end, -1), dim - 1)
    # end == -1 means "run past index 0": Python spells that None
    return slice(start, None if end < 0 else end, step)


def _slice(data, starts, ends, axes, steps):
    r = data.ndim
    axes, steps = _slice_check(r, starts, ends, axes, steps)
    index = [slice(None)] * r
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a] = _slice_of(s, e, st, data.shape[a])
    return data[tuple(index)]  # basic indexing: a view


def _slice_check(r, starts, ends, axes, steps):
    """Slice's lengths, axes (range, repeats) and steps (no 0) for rank ``r`` (None: unknown, the
    axes are then not checked); returns (axes, steps) normalized (axes as given when r is None)."""
    if len(ends) != len(starts):
        raise bad(f"Slice: 'starts' has {len(starts)} values, 'ends' {len(ends)}")
    if axes is None:
        axes = list(range(len(starts)))
    elif len(axes) != len(starts):
        raise bad(f"Slice: 'axes' has {len(axes)} values, 'starts' {len(starts)}")
    if steps is None:
        steps = [1] * len(starts)
    elif len(steps) != len(starts):
        raise bad(f"Slice: 'steps' has {len(steps)} values, 'starts' {len(starts)}")
    if 0 in steps:
        raise bad(f"Slice: 'steps' {list(steps)} cannot hold 0")
    if r is None:
        return axes, steps
    if len(starts) > r:
        raise bad(f"Slice: 'starts' has {len(starts)} values for an input of rank {r}")
    out = [norm_axis(a, r, "axes") for a in axes]
    if len(set(out)) != len(out):
        raise bad(f"Slice: 'axes' {list(axes)} name an axis twice")
    return out, steps


def _slice_prepare(ctx, **attrs):
    """Slice's prepare step: the starts / ends / axes / steps that are attributes (opset 1) or constants."""
    if attrs:
        vals = [attrs.get("starts"), attrs.get("ends"), attrs.get("axes"), None]
    else:
        vals = [const_ints(ctx, i) if ctx.has_input(i) else None for i in (1, 2, 3, 4)]
        if vals[0] is None or vals[1] is None or (ctx.has_input(3) and vals[2] is None) or (
                ctx.has_input(4) and vals[3] is None):
            return None  # some are only known at run time: checked there
    if vals[0] is None or vals[1] is None:
        return None
    prepare_check(ctx, _slice_check, ctx.input_rank(0), *vals)
    return None


@kernel("Slice", since=1, specialize=_slice_prepare)  # opset 1: starts/ends/axes attributes, no steps
def slice_v1(xp, data, *, starts, ends, axes=None):
    return _slice(data, starts, ends, axes, None)


@kernel("Slice", since=10, host_inputs=(1, 2, 3, 4), specialize=_slice_prepare)  # opset 10: inputs, with steps
def slice_(xp, data, starts, ends, axes=None, steps=None):
    return _slice(
        data, to_ints(starts), to_ints(ends),
        None if axes is None else to_ints(axes),
        None if steps is None else to_ints(steps),
    )


# ---------------------------------------------------------------------------
# Gather family


def _fix_negative(xp, idx, dim):
    """Indices with negative values wrapped once (ONNX allows [-dim, dim))."""
    idx = xp.asarray(idx)
    if idx.dtype.kind not in "iu":
        idx = idx.astype(np.int64)
    if idx.dtype.kind == "i":
        idx = xp.where(idx < 0, idx + dim, idx)
    return idx


def _gather_prepare(ctx, *, axis=0):
    check_axis_attr(ctx, axis)
    shape, idx = static_shape(ctx, 0), ctx.const(1)
    if shape is not None and idx is not None and shape and np.asarray(idx).size and -len(shape) <= axis < len(shape):
        dim, idx = shape[axis], np.asarray(idx)
        if idx.dtype.kind in "iu" and (idx.min() < -dim or idx.max() >= dim):
            prepare_check(ctx, _raise, _out_of_range("Gather", idx, shape, axis % len(shape)))


def _raise(e):
    raise e


def _axis_prepare(ctx, *, axis=0, **_):
    check_axis_attr(ctx, axis)


@kernel("Gather", since=1, specialize=_gather_prepare)  # opset 11 allows negative axis / indices; same code
def gather(xp, data, indices, *, axis=0):
    if data.ndim == 0:
        raise bad("Gather: 'data' is a scalar: no axis to gather along (expected rank >= 1)")
    axis = norm_axis(axis, data.ndim)
    # take() reads negative indices from the end, as ONNX does (opset 11)
    try:
        return xp.asarray(xp.take(data, indices, axis=axis))
    except IndexError:
        pass  # raised below, outside the handler, so numpy's error is not in the chain
    raise _out_of_range("Gather", indices, data.shape, axis)


def _out_of_range(op, indices, shape, axis):
    """InvalidArgument for indices outside [-dim, dim) of ``shape[axis]`` (numpy raised IndexError)."""
    idx = np.asarray(indices)
    lo, hi = (int(idx.min()), int(idx.max())) if idx.size and idx.dtype.kind in "iu" else ("?", "?")
    dim = shape[axis]
    return bad(f"{op}: 'indices' (min {lo}, max {hi}) out of range for axis {axis} of data shape {tuple(shape)} "
               f"(expected {-dim} <= index < {dim})")


@kernel("GatherElements", since=11, specialize=_axis_prepare)
def gather_elements(xp, data, indices, *, axis=0):
    axis = norm_axis(axis, data.ndim)
    idx = indices  # fancy indexing reads negative indices from the end, as ONNX does
    if idx.ndim != data.ndim:
        raise bad(f"GatherElements: 'indices' of shape {tuple(idx.shape)} and data of shape {tuple(data.shape)} "
                  f"differ in rank")
    if any(i != axis and idx.shape[i] > data.shape[i] for i in range(data.ndim)):
        raise bad(f"GatherElements: 'indices' of shape {tuple(idx.shape)} exceed data shape {tuple(data.shape)} "
                  f"outside axis {axis}")
    # indices may be smaller than data on the other axes: cut data down to them
    full = data.shape
    if any(i != axis and idx.shape[i] != data.shape[i] for i in range(data.ndim)):
        data = data[tuple(slice(None) if i == axis else slice(0, idx.shape[i]) for i in range(data.ndim))]
    try:
        return xp.take_along_axis(data, idx, axis=axis)
    except IndexError:
        pass
    raise _out_of_range("GatherElements", idx, full, axis)


@kernel("GatherND", since=11)  # opset 12 added batch_dims (default 0 keeps 11's meaning)
def gather_nd(xp, data, indices, *, batch_dims=0):
    b = batch_dims
    if indices.ndim < 1 or data.ndim < 1:
        raise bad(f"GatherND: data {tuple(data.shape)} and 'indices' {tuple(indices.shape)} must have rank >= 1")
    if not 0 <= b < min(data.ndim, indices.ndim):
        raise bad(f"GatherND: batch_dims={b} must be below the rank of data {tuple(data.shape)} and of "
                  f"'indices' {tuple(indices.shape)}")
    k = indices.shape[-1]
    if k > data.ndim - b:
        raise bad(f"GatherND: the last dim of 'indices' {tuple(indices.shape)} ({k}) exceeds the rank of data "
                  f"{tuple(data.shape)} less batch_dims={b}")
    bshape = data.shape[:b]
    if tuple(indices.shape[:b]) != tuple(bshape):
        raise bad(f"GatherND: batch dims of data {data.shape} and 'indices' {indices.shape} differ")
    inner = data.shape[b:b + k]
    nb = int(np.prod(bshape, dtype=np.int64))
    data_r = xp.reshape(data, (nb,) + tuple(data.shape[b:]))
    idx = xp.reshape(xp.asarray(indices).astype(np.int64, copy=False), (nb, -1, k))
    dims = xp.asarray(np.array(inner, dtype=np.int64))
    idx = xp.where(idx < 0, idx + dims, idx)
    if xp is np and idx.size and ((idx < 0).any() or (idx >= dims).any()):
        raise bad(f"GatherND: 'indices' out of range for data shape {tuple(data.shape)}")
    key = (xp.arange(nb).reshape(nb, 1),) + tuple(idx[:, :, j] for j in range(k))
    out = data_r[key]  # (nb, n_index_tuples, *data.shape[b+k:])
    return xp.reshape(out, tuple(indices.shape[:-1]) + tuple(data.shape[b + k:]))


# ---------------------------------------------------------------------------
# Scatter family

_REDUCTIONS = ("none", "add", "mul", "max", "min")


# ufunc.at dtypes CuPy 14 accepts (others raise TypeError; multiply/logical_*.at do not exist).
_CUPY_AT_DTYPES = {
    "add": frozenset({"int32", "int64", "float16", "float32", "float64", "uint32", "uint64"}),
    "maximum": frozenset({"int32", "int64", "float32", "float64", "uint32", "uint64"}),
    "minimum": frozenset({"int32", "int64", "float32", "float64", "uint32", "uint64"}),
}


def _at_dtype(op, dt):
    """The dtype to accumulate ``op``.at in on CuPy for an array of dtype ``dt`` (exact: integer
    sums wrap around as in ``dt`` once cast back; max/min of float16 are exact in float32)."""
    dt = np.dtype(dt)
    if dt.name in _CUPY_AT_DTYPES[op]:
        return dt
    if dt == np.bool_:
        return np.dtype(np.int32)
    if dt.kind in "iu":
        return np.dtype(np.int64)
    if dt.kind == "f" or dt.name == "bfloat16":
        return np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)
    return dt


def _scatter_reduce_generic(xp, out, key, updates, reduction, max_dup=None):
    """out[key] (op)= updates like numpy's ufunc.at, with only what CuPy has: add/maximum/minimum.at
    on the dtypes CuPy accepts (others accumulated in a wider dtype and cast back), and multiply
    in rounds over the duplicates (each round writes distinct positions, in index order, so the
    products are numpy's exactly; ``max_dup``, known from the shapes, bounds the updates one position
    can get, else the update count). ``out`` must be contiguous (a fresh copy); returns it."""
    flat = out.reshape(-1)
    lin = xp.arange(flat.shape[0], dtype=np.int64).reshape(out.shape)[key]  # flat position per update
    upd = xp.broadcast_to(xp.asarray(updates), lin.shape).reshape(-1)
    lin = lin.reshape(-1)
    if reduction == "mul" and out.dtype == np.bool_:
        # logical_and.at: a position stays True when none of its updates is False
        zeros = xp.zeros(flat.shape[0], dtype=np.int32)
        xp.add.at(zeros, lin, xp.logical_not(upd).astype(np.int32))
        flat[...] = xp.logical_and(flat, zeros == 0)
        return out
    if reduction == "mul":
        n = lin.shape[0]
        if n == 0:
            return out
        order = xp.argsort(lin, kind="stable")  # duplicates keep their index order
        lin_s, upd_s = lin[order], upd[order]
        rank = xp.arange(n, dtype=np.int64) - xp.searchsorted(lin_s, lin_s, side="left")
        # round r multiplies in each position's r-th update (distinct positions: exact, in order);
        # the others write to a spare last slot, so no data-dependent shape (no host sync)
        size = flat.shape[0]
        ext = xp.concatenate([flat, flat[:1]])
        spare = xp.full(lin_s.shape, size, dtype=np.int64)
        for r in range(min(int(max_dup or n), n)):
            ext[xp.where(rank == r, lin_s, spare)] = ext[lin_s] * upd_s
        flat[...] = ext[:size]
        return out
    op = {"add": "add", "max": "maximum", "min": "minimum"}[reduction]
    acc_dt = _at_dtype(op, out.dtype)
    if acc_dt == out.dtype:
        getattr(xp, op).at(flat, lin, upd.astype(acc_dt, copy=False))
        return out
    acc = flat.astype(acc_dt)
    getattr(xp, op).at(acc, lin, upd.astype(acc_dt))
    if out.dtype == np.bool_:
        flat[...] = acc != 0  # logical_or (add), or/and (max/min) of 0/1 values
    else:
        flat[...] = acc.astype(out.dtype)  # integers wrap around as numpy's ufunc.at does
    return out


def _scatter_into(xp, out, key, updates, reduction, max_dup=None):
    """out[key] (op)= updates, with duplicates in key accumulated for the reductions (``max_dup``:
    the most updates one position can get, from the shapes)."""
    if reduction == "none":
        out[key] = updates
    elif xp is not np and reduction in ("add", "mul", "max", "min"):
        return _scatter_reduce_generic(xp, out, key, updates, reduction, max_dup)
    elif reduction == "add":
        if out.dtype == np.bool_:
            xp.logical_or.at(out, key, updates)
        else:
            xp.add.at(out, key, updates)
    elif reduction == "mul":
        if out.dtype == np.bool_:
            xp.logical_and.at(out, key, updates)
        else:
            xp.multiply.at(out, key, updates)
    elif reduction == "max":
        xp.maximum.at(out, key, updates)
    elif reduction == "min":
        xp.minimum.at(out, key, updates)
    else:
        raise OrtNotImplemented(
            f"Scatter: reduction '{reduction}' is not supported (supported: {', '.join(_REDUCTIONS)})"
        )
    return out


def _scatter_elements(xp, data, indices, updates, axis, reduction):
    axis = norm_axis(axis, data.ndim)
    idx = _fix_negative(xp, indices, data.shape[axis])
    # full coordinates: indices along `axis`, the element's own position elsewhere
    key = tuple(
        idx if i == axis else xp.arange(n).reshape((1,) * i + (n,) + (1,) * (idx.ndim - i - 1))
        for i, n in enumerate(idx.shape)
    )
    out = data.copy()
    try:
        return _scatter_into(xp, out, key, updates, reduction, idx.shape[axis] if idx.ndim else 1)
    except IndexError:
        pass
    raise _out_of_range("ScatterElements", indices, data.shape, axis)


@kernel("Scatter", since=9)  # deprecated alias of ScatterElements without reduction
def scatter(xp, data, indices, updates, *, axis=0):
    return _scatter_elements(xp, data, indices, updates, axis, "none")


@kernel("ScatterElements", since=11)  # 16 added reduction add/mul, 18 max/min
def scatter_elements(xp, data, indices, updates, *, axis=0, reduction="none"):
    return _scatter_elements(xp, data, indices, updates, axis, reduction)


@kernel("ScatterND", since=11)  # 16 added reduction add/mul, 18 max/min
def scatter_nd(xp, data, indices, updates, *, reduction="none"):
    k = indices.shape[-1]
    idx = xp.asarray(indices).astype(np.int64, copy=False)
    dims = xp.asarray(np.array(data.shape[:k], dtype=np.int64))
    idx = xp.where(idx < 0, idx + dims, idx)
    if k > data.ndim:
        raise bad(f"ScatterND: the last dim of 'indices' {tuple(indices.shape)} exceeds the rank of data {tuple(data.shape)}")
    if xp is np and idx.size and ((idx < 0).any() or (idx >= dims).any()):
        raise bad(f"ScatterND: 'indices' out of range for data shape {tuple(data.shape)}")
    key = tuple(idx[..., j] for j in range(k))
    out = data.copy()
    return _scatter_into(xp, out, key, updates, reduction, int(np.prod(indices.shape[:-1], dtype=np.int64)))


@kernel("TensorScatter", since=24)
def tensor_scatter(xp, past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    if mode not in ("linear", "circular"):
        raise OrtNotImplemented(f"TensorScatter: mode '{mode}' is not supported (supported: linear, circular)")
    axis = norm_axis(axis, past_cache.ndim)
    if axis == 0:
        raise bad("TensorScatter: axis cannot be the batch axis 0")
    batch, max_len, seq = past_cache.shape[0], past_cache.shape[axis], update.shape[axis]
    out = past_cache.copy()
    if write_indices is None:
        start = xp.zeros((batch, 1), dtype=np.int64)
    else:
        start = xp.asarray(write_indices).astype(np.int64).reshape(batch, 1)
    pos = start + xp.arange(seq, dtype=np.int64).reshape(1, seq)  # (batch, seq)
    if mode == "circular":
        pos = pos % max_len
    # move the sequence axis next to batch: views, so writes land in `out`
    out_v = xp.moveaxis(out, axis, 1)
    upd_v = xp.moveaxis(update, axis, 1)
    out_v[xp.arange(batch).reshape(batch, 1), pos] = upd_v
    return out


# ---------------------------------------------------------------------------
# OneHot


def _one_hot(xp, indices, depth, values, axis, wrap_negative):
    d = int(np.asarray(depth).reshape(-1)[0])
    if d <= 0:
        raise bad(f"OneHot: 'depth' must be positive, got {d}")
    if values.size != 2:
        raise bad(f"OneHot: 'values' must hold 2 values (off, on), got shape {tuple(values.shape)}")
    r = indices.ndim + 1
    axis = norm_axis(axis, r)
    check_output_size("OneHot: 'depth'", tuple(indices.shape[:axis]) + (d,) + tuple(indices.shape[axis:]),
                      values.dtype.itemsize)
    ind = xp.asarray(indices)
    if ind.dtype.kind not in "iu":
        ind = ind.astype(np.int64)  # float indices are truncated, as onnxruntime does
    if wrap_negative and ind.dtype.kind == "i":
        ind = xp.where(ind < 0, ind + d, ind)
    cls = xp.arange(d).reshape((d,) + (1,) * (r - axis - 1))
    hot = xp.expand_dims(ind, axis) == cls  # out-of-range indices match nothing: all off
    vals = values.reshape(-1)
    return xp.where(hot, vals[1], vals[0])


# Opset 11 made negative indices count back from depth (opset 9 turned them all 'off');
# onnxruntime applies the opset-11 reading to opset 9 models too, and so do we.
@kernel("OneHot", since=9, host_inputs=(1,))
def one_hot(xp, indices, depth, values, *, axis=-1):
    return _one_hot(xp, indices, depth, values, axis, True)


# ---------------------------------------------------------------------------
# NonZero / Compress


@kernel("NonZero", since=9)
def non_zero(xp, X):
    if X.ndim == 0:  # numpy refuses nonzero() on 0-d arrays; onnxruntime reads a scalar as shape (1,)
        X = xp.reshape(X, (1,))
    if X.dtype == object:
        X = X.astype(bool)
    nz = xp.nonzero(X)
    return xp.stack(nz).astype(np.int64, copy=False) if nz else xp.zeros((0, 0), dtype=np.int64)


@kernel("Compress", since=9)  # opset 11 allows a negative axis; same code
def compress(xp, input, condition, *, axis=None):
    cond = xp.asarray(condition).reshape(-1).astype(bool, copy=False)
    if axis is None:
        flat = xp.reshape(input, (-1,))
        return flat[: cond.shape[0]][cond[: flat.shape[0]]]
    axis = norm_axis(axis, input.ndim)
    n = input.shape[axis]
    sel = xp.nonzero(cond[:n])[0]
    return xp.take(input, sel, axis=axis)


# ---------------------------------------------------------------------------
# ReverseSequence


@kernel("ReverseSequence", since=10)
def reverse_sequence(xp, input, sequence_lens, *, batch_axis=1, time_axis=0):
    if {batch_axis, time_axis} != {0, 1}:
        raise bad("ReverseSequence: batch_axis and time_axis must be 0 and 1")
    if input.ndim < 2:
        raise bad(f"ReverseSequence: input must have rank >= 2, got shape {tuple(input.shape)}")
    x = xp.moveaxis(input, (batch_axis, time_axis), (0, 1))  # (batch, time, ...)
    nb, nt = x.shape[0], x.shape[1]
    if sequence_lens.size != nb:
        raise bad(f"ReverseSequence: 'sequence_lens' has {sequence_lens.size} values for a batch of {nb}")
    if xp is np and nb and (sequence_lens.min() < 0 or sequence_lens.max() > nt):
        raise bad(f"ReverseSequence: 'sequence_lens' {sequence_lens.tolist()} out of range [0, {nt}]")
    lens = xp.asarray(sequence_lens).astype(np.int64).reshape(nb, 1)
    t = xp.arange(nt, dtype=np.int64).reshape(1, nt)
    src = xp.where(t < lens, lens - 1 - t, t)  # (batch, time) source time step
    out = x[xp.arange(nb).reshape(nb, 1), src]
    return xp.ascontiguousarray(xp.moveaxis(out, (0, 1), (batch_axis, time_axis)))


# ---------------------------------------------------------------------------
# Unique


def _group_rows(xp, rows):
    """Sort rows (n, m) lexicographically (stable); return (order, is_new) for the sorted rows."""
    n, m = rows.shape
    if m == 1:
        order = xp.argsort(rows[:, 0], kind="stable")
    elif rows.dtype != object:
        order = xp.lexsort(rows.T[::-1])  # stable; first column is the primary key
    else:  # lexsort needs ordered dtypes: do its passes by hand, last column first
        order = np.arange(n)
        for j in range(m - 1, -1, -1):
            order = order[np.argsort(rows[order, j], kind="stable")]
    srt = rows[order]
    is_new = xp.ones(n, dtype=bool)
    if n > 1:
        is_new[1:] = (srt[1:] != srt[:-1]).any(axis=1)
    return order, is_new


@kernel("Unique", since=11)  # later versions only add types
def unique(xp, X, *, axis=None, sorted=1):
    if axis is None:
        rows = xp.reshape(X, (-1, 1))
    else:
        axis = norm_axis(axis, X.ndim)
        moved = xp.moveaxis(X, axis, 0)
        rows = xp.reshape(moved, (moved.shape[0], -1))
    n = rows.shape[0]
    if n == 0:
        empty = xp.zeros((0,), dtype=np.int64)
        return X.reshape(-1) if axis is None else X, empty, empty, empty
    order, is_new = _group_rows(xp, rows)
    group = xp.cumsum(is_new) - 1  # unique id of each sorted position
    starts = xp.nonzero(is_new)[0]
    first = order[starts]  # the stable sort keeps the first occurrence first
    counts = xp.diff(xp.concatenate([starts, xp.asarray([n])]))
    inverse = xp.empty(n, dtype=np.int64)
    inverse[order] = group
    if not sorted:  # re-number the uniques by first occurrence
        by_first = xp.argsort(first, kind="stable")
        rank = xp.empty_like(by_first)
        rank[by_first] = xp.arange(by_first.shape[0])
        first, counts, inverse = first[by_first], counts[by_first], rank[inverse]
    if axis is None:
        Y = xp.reshape(X, (-1,))[first]
    else:
        Y = xp.take(X, first, axis=axis)
    as64 = lambda a: xp.asarray(a).astype(np.int64, copy=False)  # noqa: E731
    return Y, as64(first), as64(inverse), as64(counts)
