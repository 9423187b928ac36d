"""Tensor-shaping kernels: Reshape, Transpose, Concat, Split, Squeeze, Unsqueeze,
Expand, Tile, Pad, Shape, Size, ConstantOfShape, Constant, Range, Flatten,
Identity, EyeLike, Trilu.

Inputs that decide output shapes (shape, repeats, pads, axes, split, ...) are
declared ``host_inputs``: they arrive as numpy arrays and are read with
``to_ints``. Shape-only ops (Reshape, Transpose, Squeeze, Unsqueeze, Flatten,
Split, Identity) return views of their input where numpy can; no kernel writes
into an input.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ortlite.errors import InvalidArgument
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel
from ortlite.types import np_dtype

from . import _direct
from ._common import (bad, check_axis_attr, check_output_size, const_ints, norm_axis, prepare_check, static_shape,
                      to_ints)

# ---------------------------------------------------------------------------
# helpers


def _zero_of(xp, dtype):
    """The 'zero' of a dtype as a 0-d array: '' for strings, False for bool, 0 else."""
    if dtype == object:
        return np.array("", dtype=object)
    return xp.zeros((), dtype=dtype)


def _scalar_of(xp, value, dtype):
    """A 0-d array of ``dtype`` holding ``value`` (a Python number, str or 1-element array)."""
    if dtype == object:
        v = np.asarray(value, dtype=object).reshape(-1)[0] if not isinstance(value, str) else value
        return np.array(v, dtype=object)
    return xp.asarray(value).reshape(()).astype(dtype)


def _reshape_values(shape, allowzero, rank=None):
    """The checks of Reshape's target that need no input shape (its rank, where known)."""
    if any(s < -1 for s in shape):
        raise bad(f"Reshape: 'shape' {list(shape)} holds a value below -1")
    if list(shape).count(-1) > 1:
        raise bad(f"Reshape: 'shape' {list(shape)} holds more than one -1")
    if allowzero and 0 in shape and -1 in shape:
        raise bad(f"Reshape: 'shape' {list(shape)} holds both 0 and -1 with allowzero=1")
    if not allowzero and rank is not None and any(s == 0 and i >= rank for i, s in enumerate(shape)):
        raise bad(f"Reshape: 'shape' {list(shape)} copies (0) a dim past the input's rank {rank}")


def _reshape_prepare(ctx, *, allowzero=0):
    shape = const_ints(ctx, 1)
    if shape is not None:
        prepare_check(ctx, _reshape_values, shape, allowzero, ctx.input_rank(0))
    # checked targets kept per (input shape, shape value): one dict look-up and x.reshape (kernels/_direct.py)
    return _direct.reshape(ctx, allowzero=allowzero)


def _reshape_target(in_shape, shape, allowzero):
    """ONNX Reshape's target shape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    out = list(shape)
    _reshape_values(shape, allowzero, len(in_shape))
    if not allowzero:
        for i, s in enumerate(out):
            if s == 0:
                if i >= len(in_shape):
                    raise bad(f"Reshape: 'shape' {list(shape)} copies dim {i} of an input of rank {len(in_shape)}")
                out[i] = in_shape[i]
    total = math.prod(in_shape)
    if -1 in out:
        known = math.prod(s for s in out if s != -1)
        if known == 0 or total % known:
            if total != 0 or known != 0:
                raise bad(f"Reshape: cannot infer the -1 of 'shape' {list(shape)} from input shape {tuple(in_shape)}")
            out[out.index(-1)] = 0
        else:
            out[out.index(-1)] = total // known
    elif math.prod(out) != total:
        raise bad(f"Reshape: input shape {tuple(in_shape)} ({total} elements) cannot take 'shape' {list(shape)} "
                  f"({math.prod(out)} elements)")
    return tuple(out)


# ---------------------------------------------------------------------------
# Reshape


@kernel("Reshape", since=1)  # opset 1: target shape is an attribute
def reshape_v1(xp, data, *, shape=None, consumed_inputs=None):
    if shape is None:
        raise bad("Reshape-1: the 'shape' attribute is required")
    return xp.reshape(data, _reshape_target(data.shape, shape, 0))


@kernel("Reshape", since=5, host_inputs=(1,), specialize=_reshape_prepare)  # opset 5: shape became an input; 14 added allowzero
def reshape(xp, data, shape, *, allowzero=0):
    return xp.reshape(data, _reshape_target(data.shape, to_ints(shape), allowzero))


# ---------------------------------------------------------------------------
# Transpose / Flatten / Identity


def _transpose_prepare(ctx, *, perm=None):
    from ._common import check_ints, where

    from ortlite.errors import InvalidGraph

    perm = check_ints(ctx, "perm", perm)
    rank = ctx.input_rank(0)
    if perm is not None and (sorted(perm) != list(range(len(perm))) or (rank is not None and len(perm) != rank)):
        raise InvalidGraph(f"{where(ctx)}: attribute 'perm'={perm} is not a permutation of the input's "
                           f"{rank if rank is not None else len(perm)} axes")


@kernel("Transpose", since=1, specialize=_transpose_prepare)
def transpose(xp, data, *, perm=None):
    if perm is not None and sorted(perm) != list(range(data.ndim)):
        raise bad(f"Transpose: attribute 'perm'={list(perm)} is not a permutation of the {data.ndim} axes "
                  f"of an input of shape {tuple(data.shape)}")
    return xp.transpose(data, None if perm is None else tuple(perm))


def _flatten_prepare(ctx, *, axis=1):
    check_axis_attr(ctx, axis, extra=1)


@kernel("Flatten", since=1, specialize=_flatten_prepare)  # opset 11 allows a negative axis; same code
def flatten(xp, data, *, axis=1):
    r = data.ndim
    if axis < 0:
        axis += r
    if not 0 <= axis <= r:
        raise bad(f"Flatten: axis {axis} out of range for rank {r} (expected {-r} <= axis <= {r})")
    return xp.reshape(data, (math.prod(data.shape[:axis]), math.prod(data.shape[axis:])))


@kernel("Identity", since=1)  # tensors, sequences (lists) and optionals (None) pass through
def identity(xp, x=None):
    return x


# ---------------------------------------------------------------------------
# Concat / Split


def _concat_prepare(ctx, *, axis=1):
    check_axis_attr(ctx, axis)
    # two or more numpy inputs: np.concatenate itself; any numpy error re-runs the kernel for its words
    return _direct.concat(ctx, functools.partial(concat, np, axis=axis), axis)


@kernel("Concat", since=1, specialize=_concat_prepare)  # opset 1 defaulted axis to 1; required from 4, negative from 11
def concat(xp, *inputs, axis=1):
    axis = norm_axis(axis, inputs[0].ndim)
    if len(inputs) == 1:
        return inputs[0]
    try:
        return xp.concatenate(inputs, axis=axis)
    except ValueError:
        pass  # raised below, outside the handler: numpy's error is not the cause
    shapes = [tuple(x.shape) for x in inputs]
    if len({len(s) for s in shapes}) > 1:
        raise bad(f"Concat: the inputs' rank differs (shapes {shapes})")
    raise bad(f"Concat: the inputs' shapes {shapes} differ outside axis {axis}")


def _split_dim(x, axis):
    """The length of the axis Split cuts (a scalar has none: InvalidArgument, not an IndexError)."""
    if x.ndim == 0:
        raise InvalidArgument(f"Split: input is a scalar, expected rank >= 1 to split along axis {axis}")
    return x.shape[norm_axis(axis, x.ndim)]


def _split_by(xp, x, axis, sizes):
    _split_dim(x, axis)
    axis = norm_axis(axis, x.ndim)
    if sum(sizes) != x.shape[axis] or any(s < 0 for s in sizes):
        raise bad(f"Split: 'split' sizes {sizes} do not add up to dim {x.shape[axis]} of axis {axis}")
    outs, start = [], 0
    index = [slice(None)] * x.ndim
    for s in sizes:
        index[axis] = slice(start, start + s)
        outs.append(x[tuple(index)])
        start += s
    return tuple(outs)


def _even_sizes(dim, n, allow_uneven):
    """n chunk sizes for a dim: exact parts, or (opset 18) ceil(dim/n) each with a smaller,
    possibly empty, tail - as onnxruntime does (dim 4 in 3 -> 2, 2, 0)."""
    if n <= 0:
        raise bad("Split: number of outputs must be positive")
    if dim % n == 0:
        return [dim // n] * n
    if not allow_uneven:
        raise bad(f"Split: dim {dim} does not divide into {n} equal parts")
    chunk = -(-dim // n)
    return [min(chunk, max(dim - i * chunk, 0)) for i in range(n)]


@kernel("Split", since=1, host_inputs=(1,))  # opset 1: sizes from the attribute or the 2nd input
class SplitV1:
    def __init__(self, ctx, *, axis=0, split=None):
        self.xp, self.axis, self.split, self.n = ctx.xp, axis, split, ctx.num_outputs

    def __call__(self, x, split=None):
        sizes = to_ints(split) if split is not None else self.split
        if sizes is None:
            sizes = _even_sizes(_split_dim(x, self.axis), self.n, False)
        return _split_by(self.xp, x, self.axis, list(sizes))


@kernel("Split", since=2)  # opset 2: sizes only from the attribute
class SplitV2:
    def __init__(self, ctx, *, axis=0, split=None):
        self.xp, self.axis, self.split, self.n = ctx.xp, axis, split, ctx.num_outputs

    def __call__(self, x):
        sizes = self.split
        if sizes is None:
            sizes = _even_sizes(_split_dim(x, self.axis), self.n, False)
        return _split_by(self.xp, x, self.axis, list(sizes))


@kernel("Split", since=13, host_inputs=(1,))  # opset 13: sizes became an input
class SplitV13:
    def __init__(self, ctx, *, axis=0):
        self.xp, self.axis, self.n = ctx.xp, axis, ctx.num_outputs

    def __call__(self, x, split=None):
        if split is not None and split.size:
            return _split_by(self.xp, x, self.axis, to_ints(split))
        return _split_by(self.xp, x, self.axis, _even_sizes(_split_dim(x, self.axis), self.n, False))


@kernel("Split", since=18, host_inputs=(1,))  # opset 18: num_outputs attribute, last chunk may be smaller
class SplitV18:
    def __init__(self, ctx, *, axis=0, num_outputs=None):
        self.xp, self.axis = ctx.xp, axis
        self.n = num_outputs if num_outputs is not None else ctx.num_outputs

    def __call__(self, x, split=None):
        if split is not None and split.size:
            return _split_by(self.xp, x, self.axis, to_ints(split))
        return _split_by(self.xp, x, self.axis, _even_sizes(_split_dim(x, self.axis), self.n, True))


# ---------------------------------------------------------------------------
# Squeeze / Unsqueeze


def _squeeze(xp, data, axes):
    if not axes:  # absent or empty (onnxruntime reads an empty axes tensor as absent)
        return xp.squeeze(data)
    axes = tuple(sorted({norm_axis(a, data.ndim) for a in axes}))
    for a in axes:
        if data.shape[a] != 1:
            raise ValueError(f"Squeeze: dim {a} of shape {data.shape} is not 1")
    return xp.reshape(data, tuple(d for i, d in enumerate(data.shape) if i not in axes))


def _unsqueeze(xp, data, axes):
    rank = data.ndim + len(axes)
    axes = sorted(norm_axis(a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"Unsqueeze: repeated axes {axes}")
    shape = list(data.shape)
    for a in axes:
        shape.insert(a, 1)
    return xp.reshape(data, tuple(shape))


@kernel("Squeeze", since=1, specialize=_direct.squeeze_v1)  # axes attribute (negative from 11)
def squeeze_v1(xp, data, *, axes=None):
    return _squeeze(xp, data, axes)


@kernel("Squeeze", since=13, host_inputs=(1,), specialize=_direct.squeeze)  # opset 13: axes became an input
def squeeze(xp, data, axes=None):
    return _squeeze(xp, data, None if axes is None else to_ints(axes))


@kernel("Unsqueeze", since=1, specialize=_direct.unsqueeze_v1)  # axes attribute (negative from 11)
def unsqueeze_v1(xp, data, *, axes=None):
    return _unsqueeze(xp, data, axes or [])


@kernel("Unsqueeze", since=13, host_inputs=(1,), specialize=_direct.unsqueeze)  # opset 13: axes became an input
def unsqueeze(xp, data, axes):
    return _unsqueeze(xp, data, to_ints(axes))


# ---------------------------------------------------------------------------
# Expand / Tile


def _expand_prepare(ctx):
    target, x_shape = const_ints(ctx, 1), static_shape(ctx, 0)
    if target is not None and x_shape is not None:
        prepare_check(ctx, _expand_shape, x_shape, target, np.dtype(ctx.input_dtype(0) or np.float32).itemsize)
    elif target is not None and any(d < 0 for d in target):
        prepare_check(ctx, _expand_shape, (), target, 1)


@kernel("Expand", since=8, host_inputs=(1,), specialize=_expand_prepare)
def expand(xp, data, shape):
    out_shape = _expand_shape(tuple(data.shape), to_ints(shape), data.dtype.itemsize)
    # materialise: a zero-stride read-only view would leak to users and to in-place consumers
    return xp.array(xp.broadcast_to(data, out_shape))


def _expand_shape(x_shape, target, itemsize):
    """Expand's output shape (checked: no negative dim, broadcast-compatible, under the size bound)."""
    if any(d < 0 for d in target):
        raise bad(f"Expand: 'shape' {target} holds a negative dim")
    # ONNX broadcasting in both directions: a 1 in `shape` keeps the input's dim
    a, b = tuple(x_shape), tuple(target)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    if any(x != y and x != 1 and y != 1 for x, y in zip(a, b)):
        raise bad(f"Expand: input shape {tuple(x_shape)} cannot broadcast to 'shape' {target}")
    return check_output_size("Expand: 'shape'", [y if x == 1 else x for x, y in zip(a, b)], itemsize)


@kernel("Tile", since=1, host_inputs=(1, 2))  # opset 1: one axis and a repeat count
def tile_v1(xp, data, tiles, axis):
    reps = [1] * data.ndim
    reps[norm_axis(to_ints(axis)[0], data.ndim)] = to_ints(tiles)[0]
    return _tile(xp, data, reps)


def _tile(xp, data, reps):
    _tile_check(data.shape, reps, data.dtype.itemsize)
    return xp.tile(data, reps)


def _tile_check(x_shape, reps, itemsize, rank=None):
    rank = len(x_shape) if x_shape is not None else rank
    if rank is not None and len(reps) != rank:
        raise bad(f"Tile: 'repeats' has {len(reps)} values for an input of rank {rank}")
    if any(r < 0 for r in reps):
        raise bad(f"Tile: 'repeats' {reps} holds a negative value")
    if x_shape is not None:
        check_output_size("Tile: 'repeats'", [d * r for d, r in zip(x_shape, reps)], itemsize)


def _tile_prepare(ctx):
    reps = const_ints(ctx, 1)
    if reps is not None:
        prepare_check(ctx, _tile_check, static_shape(ctx, 0), reps,
                      np.dtype(ctx.input_dtype(0) or np.float32).itemsize, ctx.input_rank(0))


@kernel("Tile", since=6, host_inputs=(1,), specialize=_tile_prepare)  # opset 6: a repeat count per axis
def tile(xp, data, repeats):
    return _tile(xp, data, to_ints(repeats))


# ---------------------------------------------------------------------------
# Pad

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad(xp, data, begins, ends, mode, value):
    """Pad (negative amounts crop) each axis by begins[i] / ends[i]."""
    if mode not in _PAD_MODES:
        raise OrtNotImplemented(f"Pad: mode '{mode}' is not supported (supported: {', '.join(_PAD_MODES)})")
    if any(d + b + e < 0 for d, b, e in zip(data.shape, begins, ends)):
        raise bad(f"Pad: 'pads' (begins {list(begins)}, ends {list(ends)}) crop input shape {tuple(data.shape)} "
                  f"below zero")
    check_output_size("Pad: 'pads'", [d + b + e for d, b, e in zip(data.shape, begins, ends)], data.dtype.itemsize)
    # negative pads crop first
    if any(b < 0 or e < 0 for b, e in zip(begins, ends)):
        crop = tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begins, ends, data.shape))
        data = data[crop]
        begins = [max(b, 0) for b in begins]
        ends = [max(e, 0) for e in ends]
    if not any(begins) and not any(ends):
        return data
    out_shape = tuple(d + b + e for d, b, e in zip(data.shape, begins, ends))
    if mode == "constant":
        fill = _zero_of(xp, data.dtype) if value is None else _scalar_of(xp, value, data.dtype)
        out = xp.full(out_shape, fill, dtype=data.dtype)
        out[tuple(slice(b, b + d) for b, d in zip(begins, data.shape))] = data
        return out
    if data.size == 0:
        raise bad(f"Pad: mode '{mode}' cannot pad an empty tensor of shape {data.shape}")
    if mode == "reflect":
        wide = [ax for ax, (b, e, n) in enumerate(zip(begins, ends, data.shape)) if n > 1 and max(b, e) > n - 1]
        if wide:
            raise bad(f"Pad: 'pads' (begins {list(begins)}, ends {list(ends)}) reach past the edge of axis {wide[0]} "
                      f"(dim {data.shape[wide[0]]}) in reflect mode: at most dim - 1 per side")
    # gather along each padded axis with precomputed source indices (works for every dtype)
    out = data
    for ax, (b, e) in enumerate(zip(begins, ends)):
        if not b and not e:
            continue
        src = _direct.pad_source(mode, data.shape[ax], b, e)
        out = xp.take(out, xp.asarray(src), axis=ax)
    return out


def _pad_prepare(ctx, *, mode="constant", pads=None, paddings=None, value=0.0):
    """Pad's prepare step (a ``specialize`` hook that binds nothing): the mode, and the pads attribute's
    length where the rank is known. Raises InvalidGraph naming the node."""
    from ._common import check_ints, where

    if mode not in _PAD_MODES:
        raise OrtNotImplemented(f"{where(ctx)}: attribute 'mode'={mode!r} is not supported "
                                f"(supported: {', '.join(_PAD_MODES)})")
    rank = ctx.input_rank(0)
    name, vals = ("pads", pads) if pads is not None else ("paddings", paddings)
    check_ints(ctx, name, vals, length=None if rank is None else 2 * rank)
    if (ctx.opset or 0) >= 11 and rank is not None:  # pads (and axes) inputs: checked where they are constants
        p, axes = const_ints(ctx, 1), const_ints(ctx, 3)
        if axes is not None:
            prepare_check(ctx, _pad_axes, axes, rank)
        if p is not None and (axes is not None or not ctx.has_input(3)):
            n = len(axes) if axes is not None else rank
            if len(p) != 2 * n:
                prepare_check(ctx, _raise, bad(f"Pad: 'pads' has {len(p)} values, expected {2 * n}"))
        if p is not None and not ctx.has_input(3):  # constant pads: the gathers kept per input shape
            return _direct.pad_direct(ctx, functools.partial(pad, np, mode=mode), p, mode)
    return None


def _raise(e):
    raise e


def _pad_axes(axes, rank):
    axes_l = [norm_axis(a, rank, "axes") for a in axes]
    if len(set(axes_l)) != len(axes_l):
        raise bad(f"Pad: 'axes' {list(axes)} name an axis twice")
    return axes_l


@kernel("Pad", since=1, specialize=_pad_prepare)  # opset 1: 'paddings' attribute as (begin, end) pairs per axis
def pad_v1(xp, data, *, paddings, mode="constant", value=0.0):
    if len(paddings) != 2 * data.ndim:
        raise bad(f"Pad: attribute 'paddings' has {len(paddings)} values for an input of rank {data.ndim}")
    return _pad(xp, data, paddings[0::2], paddings[1::2], mode, value)


@kernel("Pad", since=2, specialize=_pad_prepare)  # opset 2: 'pads' attribute [begins..., ends...]
def pad_v2(xp, data, *, pads, mode="constant", value=0.0):
    r = data.ndim
    if len(pads) != 2 * r:
        raise bad(f"Pad: attribute 'pads' has {len(pads)} values, expected {2 * r} for an input of rank {r}")
    return _pad(xp, data, pads[:r], pads[r:], mode, value)


# opset 11: pads and constant_value became inputs; 18 added axes; 19 added mode 'wrap'
@kernel("Pad", since=11, host_inputs=(1, 3), specialize=_pad_prepare)
def pad(xp, data, pads, constant_value=None, axes=None, *, mode="constant"):
    p = to_ints(pads)
    r = data.ndim
    if axes is None:
        axes_l = list(range(r))
    else:
        axes_l = _pad_axes(to_ints(axes), r)
    n = len(axes_l)
    if len(p) != 2 * n:
        raise bad(f"Pad: 'pads' has {len(p)} values, expected {2 * n} (2 x {'len(axes)' if axes is not None else 'rank'})")
    if constant_value is not None and constant_value.size > 1:
        raise bad(f"Pad: 'constant_value' must hold one value, got shape {tuple(constant_value.shape)}")
    begins, ends = [0] * r, [0] * r
    for i, a in enumerate(axes_l):
        begins[a], ends[a] = p[i], p[n + i]
    value = None
    if constant_value is not None and constant_value.size:
        value = constant_value
    return _pad(xp, data, begins, ends, mode, value)


# ---------------------------------------------------------------------------
# Shape / Size


@kernel("Shape", since=1)  # opset 15 added start/end (defaults keep the whole shape)
def shape(xp, data, *, start=0, end=None):
    r = data.ndim
    s = start + r if start < 0 else start
    e = r if end is None else (end + r if end < 0 else end)
    s, e = min(max(s, 0), r), min(max(e, 0), r)
    return xp.asarray(data.shape[s:e] if s < e else (), dtype=np.int64)


@kernel("Size", since=1)
def size(xp, data):
    return xp.asarray(data.size, dtype=np.int64)


# ---------------------------------------------------------------------------
# Constant / ConstantOfShape


@kernel("Constant", since=1)  # 11 added sparse_value, 12 the value_* forms
class Constant:
    def __init__(self, ctx, *, value=None, sparse_value=None, value_float=None, value_floats=None,
                 value_int=None, value_ints=None, value_string=None, value_strings=None):
        if value is not None:
            v = np.asarray(value)
        elif sparse_value is not None:
            v = np.asarray(sparse_value)
        elif value_float is not None:
            v = np.array(value_float, dtype=np.float32)
        elif value_floats is not None:
            v = np.array(value_floats, dtype=np.float32).reshape(-1)
        elif value_int is not None:
            v = np.array(value_int, dtype=np.int64)
        elif value_ints is not None:
            v = np.array(value_ints, dtype=np.int64).reshape(-1)
        elif value_string is not None:
            v = np.array(value_string, dtype=object)
        elif value_strings is not None:
            v = np.empty(len(value_strings), dtype=object)
            v[:] = list(value_strings)
        else:
            raise ValueError(f"Constant node '{ctx.node.name}' has no value attribute")
        self.value = v if v.dtype == object else ctx.xp.asarray(v)

    def __call__(self):
        return self.value


@kernel("ConstantOfShape", since=9, host_inputs=(0,))  # later versions only add types
def constant_of_shape(xp, input, *, value=None):
    v = np.asarray(value) if value is not None else None
    shape = check_output_size("ConstantOfShape: input 'shape'", to_ints(input), 4 if v is None else v.dtype.itemsize)
    if value is None:
        return xp.zeros(shape, dtype=np.float32)
    if v.dtype == object:
        out = np.empty(shape, dtype=object)
        out[...] = v.reshape(-1)[0]
        return out
    return xp.full(shape, xp.asarray(v.reshape(())), dtype=v.dtype)


# ---------------------------------------------------------------------------
# Range

_LOW_FLOATS = ("float16", "bfloat16")


def _range(xp, start, limit, delta, stash):
    dt = start.dtype
    s, l, d = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if dt.kind in "iu":
        s, l, d = int(s), int(l), int(d)
        if d == 0:
            raise bad("Range: 'delta' is 0")
        n = max(-((s - l) // d), 0)  # ceil((l - s) / d) in exact integer arithmetic
        check_output_size("Range: (limit - start) / delta", [n], dt.itemsize)
        return xp.asarray(s + d * np.arange(n, dtype=np.int64), dtype=dt) if n else xp.zeros((0,), dtype=dt)
    if float(d) == 0:
        raise bad("Range: 'delta' is 0")
    # element count as onnxruntime computes it: difference in T, division in double
    count = float(l - s) / float(d)
    if not math.isfinite(count):
        raise bad(f"Range: the element count (limit - start) / delta = {count} is not finite")
    n = max(int(math.ceil(count)), 0)
    check_output_size("Range: (limit - start) / delta", [n], dt.itemsize)
    work = dt
    if dt.name in _LOW_FLOATS:
        work = np.dtype(np.float64) if stash == 11 else np.dtype(np.float32)
    vals = np.arange(n, dtype=work) * work.type(d) + work.type(s)
    return xp.asarray(vals.astype(dt))


@kernel("Range", since=11, host_inputs=(0, 1, 2))
def range_(xp, start, limit, delta):
    return _range(xp, start, limit, delta, 1)


@kernel("Range", since=27, host_inputs=(0, 1, 2))  # opset 27: stash_type for float16/bfloat16
def range_v27(xp, start, limit, delta, *, stash_type=1):
    return _range(xp, start, limit, delta, stash_type)


# ---------------------------------------------------------------------------
# EyeLike / Trilu


@kernel("EyeLike", since=9)
def eye_like(xp, input, *, dtype=None, k=0):
    if input.ndim != 2:
        raise bad(f"EyeLike: input must be 2-D, got shape {input.shape}")
    if dtype is None:
        out_dtype = input.dtype
    else:
        out_dtype = np_dtype(dtype)
    n, m = input.shape
    out = xp.zeros((n, m), dtype=out_dtype)
    # set the k-th diagonal through a flat strided view
    if -n < k < m:
        first = k if k >= 0 else -k * m
        count = min(n - max(-k, 0), m - max(k, 0))
        out.reshape(-1)[first: first + count * (m + 1): m + 1] = 1
    return out


@kernel("Trilu", since=14, host_inputs=(1,))
def trilu(xp, input, k=None, *, upper=1):
    kk = 0 if k is None else to_ints(k)[0]
    if input.ndim < 2:
        raise bad(f"Trilu: input must have rank >= 2, got shape {input.shape}")
    n, m = input.shape[-2:]
    rows = xp.arange(n).reshape(n, 1)
    cols = xp.arange(m).reshape(1, m)
    keep = (cols - rows >= kk) if upper else (cols - rows <= kk)
    return xp.where(keep, input, _zero_of(xp, input.dtype))
