"""Sequence and optional values: sequences are Python lists of arrays, an empty optional is None.

Kernels never mutate an input list: each returns a new one.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import InvalidArgument
from ortlite.registry import kernel
from ortlite.kernels._common import norm_axis as _norm_axis


def _pos(seq, pos, allow_end):
    p = int(np.asarray(pos).reshape(-1)[0])
    n = len(seq)
    hi = n if allow_end else n - 1
    if not -n <= p <= hi:
        raise InvalidArgument(f"'position' {p} out of range for a sequence of {n}")
    return p + n if p < 0 else p


@kernel("SequenceEmpty", since=11, families=("cpu",))
def sequence_empty(xp, *, dtype=1):
    return []


@kernel("SequenceConstruct", since=11, families=("cpu",))
def sequence_construct(xp, *inputs):
    return list(inputs)


@kernel("SequenceAt", since=11, families=("cpu",), host_inputs=(1,))
def sequence_at(xp, seq, position):
    return seq[_pos(seq, position, False)]


@kernel("SequenceInsert", since=11, families=("cpu",), host_inputs=(2,))
def sequence_insert(xp, seq, tensor, position=None):
    out = list(seq)
    if position is None:
        out.append(tensor)
    else:
        out.insert(_pos(seq, position, True), tensor)
    return out


@kernel("SequenceErase", since=11, families=("cpu",), host_inputs=(1,))
def sequence_erase(xp, seq, position=None):
    out = list(seq)
    if not out:
        raise InvalidArgument("SequenceErase on an empty sequence")
    del out[-1 if position is None else _pos(seq, position, False)]
    return out


@kernel("SequenceLength", since=11, families=("cpu",))
def sequence_length(xp, seq):
    return np.array(len(seq), dtype=np.int64)


@kernel("SplitToSequence", since=11, families=("cpu",), host_inputs=(1,))
def split_to_sequence(xp, x, split=None, *, axis=0, keepdims=1):
    if x.ndim == 0:
        raise InvalidArgument(f"SplitToSequence: input is a scalar, expected rank >= 1 to split along axis {axis}")
    axis = _norm_axis(axis, x.ndim)
    n = x.shape[axis]
    if split is None:
        parts = [xp.take(x, [i], axis=axis) for i in range(n)]
        return [xp.squeeze(p, axis=axis) for p in parts] if not keepdims else parts
    split = np.asarray(split)
    if split.ndim == 0:
        size = int(split)
        bounds = list(range(size, n, size))
    else:
        bounds = list(np.cumsum(split.astype(np.int64))[:-1])
    return list(xp.split(x, bounds, axis=axis))


@kernel("ConcatFromSequence", since=11, families=("cpu",))
def concat_from_sequence(xp, seq, *, axis, new_axis=0):
    if not seq:
        raise InvalidArgument("ConcatFromSequence of an empty sequence")
    if new_axis:
        return xp.stack(seq, axis=_norm_axis(axis, seq[0].ndim + 1))
    return xp.concatenate(seq, axis=_norm_axis(axis, seq[0].ndim))


@kernel("SequenceMap", since=17, families=("cpu",))
class SequenceMap:
    def __init__(self, ctx, *, body):
        self.body = body
        self.names = ctx.implicit_inputs
        self.n_in = ctx.num_inputs

    def __call__(self, seq, *rest):
        extra = rest[:self.n_in - 1]
        outer = dict(zip(self.names, rest[self.n_in - 1:]))
        results = [[] for _ in self.body.output_names]
        for i in range(len(seq)):
            args = [seq[i]] + [e[i] if isinstance(e, list) else e for e in extra]
            for k, y in enumerate(self.body.run(args, outer)):
                results[k].append(y)
        return results[0] if len(results) == 1 else tuple(results)


@kernel("Optional", since=15, families=("cpu",))
def optional(xp, input=None, *, type=None):  # noqa: A002 - ONNX names
    return input


@kernel("OptionalHasElement", since=15, families=("cpu",))
def optional_has_element(xp, input=None):  # noqa: A002
    return np.array(input is not None)


@kernel("OptionalGetElement", since=15, families=("cpu",))
def optional_get_element(xp, input):  # noqa: A002
    if input is None:
        raise InvalidArgument("OptionalGetElement of an empty optional")
    return input
