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

from ._common import norm_axis, to_ints

# ---------------------------------------------------------------------------
# Slice


def _slice_of(start, end, step, dim):
    """A Python slice equal to ONNX Slice's clamped (start, end, step) on a dim."""
    if step == 0:
        raise ValueError("Slice: step cannot be 0")
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
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError("Slice: starts, ends, axes and steps must have the same length")
    index = [slice(None)] * r
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = norm_axis(a, r)
        index[a] = _slice_of(s, e, st, data.shape[a])
    return data[tuple(index)]  # basic indexing: a view


@kernel("Slice", since=1)  # opset 1: starts/ends/axes attributes, no steps
def slice_v1(xp, data, *, starts, ends, axes=None):
    return _slice(data, starts, ends, axes, None)


@kernel("Slice", since=10, host_inputs=(1, 2, 3, 4))  # opset 10: inputs, with steps
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


@kernel("Gather", since=1)  # opset 11 allows negative axis / indices; same code
def gather(xp, data, indices, *, axis=0):
    axis = norm_axis(axis, data.ndim)
    # take() reads negative indices from the end, as ONNX does (opset 11)
    return xp.asarray(xp.take(data, indices, axis=axis))


@kernel("GatherElements", since=11)
def gather_elements(xp, data, indices, *, axis=0):
    axis = norm_axis(axis, data.ndim)
    idx = indices  # fancy indexing reads negative indices from the end, as ONNX does
    # indices may be smaller than data on the other axes: cut data down to them
    if any(i != axis and idx.shape[i] != data.shape[i] for i in range(data.ndim)):
        data = data[tuple(slice(None) if i == axis else slice(0, idx.shape[i]) for i in range(data.ndim))]
    return xp.take_along_axis(data, idx, axis=axis)


@kernel("GatherND", since=11)  # opset 12 added batch_dims (default 0 keeps 11's meaning)
def gather_nd(xp, data, indices, *, batch_dims=0):
    b = batch_dims
    k = indices.shape[-1]
    bshape = data.shape[:b]
    if tuple(indices.shape[:b]) != tuple(bshape):
        raise ValueError(f"GatherND: batch dims of data {data.shape} and indices {indices.shape} differ")
    inner = data.shape[b:b + k]
    nb = int(np.prod(bshape, dtype=np.int64))
    data_r = xp.reshape(data, (nb,) + tuple(data.shape[b:]))
    idx = xp.reshape(xp.asarray(indices).astype(np.int64, copy=False), (nb, -1, k))
    dims = xp.asarray(np.array(inner, dtype=np.int64))
    idx = xp.where(idx < 0, idx + dims, idx)
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
    return _scatter_into(xp, out, key, updates, reduction, idx.shape[axis] if idx.ndim else 1)


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
    key = tuple(idx[..., j] for j in range(k))
    out = data.copy()
    return _scatter_into(xp, out, key, updates, reduction, int(np.prod(indices.shape[:-1], dtype=np.int64)))


@kernel("TensorScatter", since=24)
def tensor_scatter(xp, past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    if mode not in ("linear", "circular"):
        raise OrtNotImplemented(f"TensorScatter: mode '{mode}' is not supported (supported: linear, circular)")
    axis = norm_axis(axis, past_cache.ndim)
    if axis == 0:
        raise ValueError("TensorScatter: axis cannot be the batch axis 0")
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
        raise ValueError(f"OneHot: depth must be positive, got {d}")
    r = indices.ndim + 1
    axis = norm_axis(axis, r)
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
        raise ValueError("ReverseSequence: batch_axis and time_axis must be 0 and 1")
    x = xp.moveaxis(input, (batch_axis, time_axis), (0, 1))  # (batch, time, ...)
    nb, nt = x.shape[0], x.shape[1]
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
