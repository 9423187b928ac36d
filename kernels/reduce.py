"""Reduce* operators.

Versions: `axes` is an attribute up to opset 12 (ReduceSum) / 17 (the others) and a
host input from 13 (ReduceSum) / 18 (the others), which also brought
`noop_with_empty_axes`. Later versions (ReduceMax/Min 12 and 20, ReduceLogSum* 28)
only change the type lists, so two kernels per op cover every opset.

Results keep the input dtype. Half-precision floats accumulate in float32; integer
sums stay in their own dtype (numpy would otherwise widen int32 to int64). A
reduction over an empty set gives the op's identity (0 for sums, 1 for products,
-inf/+inf or the integer extremes for max/min, -inf for the log reductions).
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel

from . import _direct
from ._common import norm_axes, to_ints


def _float_work(dt):
    """Work dtype for the float-valued reductions (sqrt, log, exp, mean)."""
    if dt.kind == "f" and dt.itemsize >= 4:
        return dt
    if dt.kind in "iub":
        return np.dtype(np.float64)
    return np.dtype(np.float32)  # float16, bfloat16 (ml_dtypes kind 'V')


def _sum_work(dt):
    """Work dtype for sums/products: keep ints and 32/64-bit floats, widen half floats."""
    if dt.kind in "iu" or (dt.kind == "f" and dt.itemsize >= 4):
        return dt
    return np.dtype(np.float32)


def _r_sum(xp, x, ax, kd):
    return xp.sum(x, axis=ax, keepdims=kd, dtype=_sum_work(x.dtype))


def _r_mean(xp, x, ax, kd):
    return xp.mean(x, axis=ax, keepdims=kd, dtype=_float_work(x.dtype))


def _r_max(xp, x, ax, kd):
    return xp.max(x, axis=ax, keepdims=kd)


def _r_min(xp, x, ax, kd):
    return xp.min(x, axis=ax, keepdims=kd)


def _r_prod(xp, x, ax, kd):
    return xp.prod(x, axis=ax, keepdims=kd, dtype=_sum_work(x.dtype))


def _r_sum_square(xp, x, ax, kd):
    x = x.astype(_sum_work(x.dtype), copy=False)
    return xp.sum(x * x, axis=ax, keepdims=kd)


def _r_l1(xp, x, ax, kd):
    x = x.astype(_sum_work(x.dtype), copy=False)
    return xp.sum(xp.abs(x), axis=ax, keepdims=kd)


def _r_l2(xp, x, ax, kd):
    x = x.astype(_float_work(x.dtype), copy=False)
    return xp.sqrt(xp.sum(x * x, axis=ax, keepdims=kd))


def _r_log_sum(xp, x, ax, kd):
    with np.errstate(divide="ignore"):
        return xp.log(xp.sum(x, axis=ax, keepdims=kd, dtype=_float_work(x.dtype)))


def _r_log_sum_exp(xp, x, ax, kd):
    x = x.astype(_float_work(x.dtype), copy=False)
    m = xp.max(x, axis=ax, keepdims=True)
    m = xp.where(xp.isfinite(m), m, m.dtype.type(0))  # all -inf (or inf) slices: no shift
    with np.errstate(divide="ignore"):
        s = xp.log(xp.sum(xp.exp(x - m), axis=ax, keepdims=True))
    s += m
    return s if kd else s.reshape([d for i, d in enumerate(s.shape) if i not in ax])


def _lowest(dt):
    if dt.kind == "b":
        return False
    if dt.kind in "iu":
        return np.iinfo(dt).min
    return -np.inf


def _highest(dt):
    if dt.kind == "b":
        return True
    if dt.kind in "iu":
        return np.iinfo(dt).max
    return np.inf


# name -> (reduction, identity of the empty reduction as a function of the dtype)
_OPS = {
    "ReduceSum": (_r_sum, lambda dt: 0),
    "ReduceMean": (_r_mean, lambda dt: np.nan if dt.kind not in "iub" else 0),
    "ReduceMax": (_r_max, _lowest),
    "ReduceMin": (_r_min, _highest),
    "ReduceProd": (_r_prod, lambda dt: 1),
    "ReduceSumSquare": (_r_sum_square, lambda dt: 0),
    "ReduceL1": (_r_l1, lambda dt: 0),
    "ReduceL2": (_r_l2, lambda dt: 0),
    "ReduceLogSum": (_r_log_sum, lambda dt: -np.inf if dt.kind not in "iub" else _lowest(dt)),
    "ReduceLogSumExp": (_r_log_sum_exp, lambda dt: -np.inf if dt.kind not in "iub" else _lowest(dt)),
}


def _reduce(xp, op, data, axes, keepdims, noop_with_empty_axes):
    fn, identity = _OPS[op]
    if axes is None or len(axes) == 0:
        if noop_with_empty_axes:
            return data.copy()
        ax = tuple(range(data.ndim))
    else:
        ax = norm_axes(axes, data.ndim)
    kd = bool(keepdims)
    if any(data.shape[a] == 0 for a in ax):
        shape = [1 if i in ax else d for i, d in enumerate(data.shape) if kd or i not in ax]
        return xp.full(shape, identity(data.dtype), dtype=data.dtype)
    y = fn(xp, data, ax, kd)
    return xp.asarray(y, dtype=data.dtype)  # numpy scalars for full reductions; cast back from work dtype


def _register(op, input_since):
    def reduce_attr_axes(xp, data, *, axes=None, keepdims=1):
        return _reduce(xp, op, data, axes, keepdims, 0)

    def reduce_input_axes(xp, data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        return _reduce(xp, op, data, None if axes is None else to_ints(axes), keepdims, noop_with_empty_axes)

    # ReduceSum / ReduceMean with constant axes: one np.add.reduce call (kernels/_direct.py)
    direct = op in ("ReduceSum", "ReduceMean")
    # axes attribute (11 allows negative axes; 12/13 add types)
    kernel(op, since=1, specialize=_direct.reduce(op, reduce_attr_axes, False) if direct else None)(
        reduce_attr_axes)
    # axes input, noop_with_empty_axes
    kernel(op, since=input_since, host_inputs=(1,),
           specialize=_direct.reduce(op, reduce_input_axes, True) if direct else None)(reduce_input_axes)

    reduce_attr_axes.__name__ = reduce_attr_axes.__qualname__ = f"{op}_v1"
    reduce_input_axes.__name__ = reduce_input_axes.__qualname__ = f"{op}_v{input_since}"


for _op in _OPS:
    _register(_op, 13 if _op == "ReduceSum" else 18)
