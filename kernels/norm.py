"""Normalizations: BatchNormalization, InstanceNormalization, LayerNormalization,
GroupNormalization, LRN, LpNormalization, MeanVarianceNormalization, and Dropout.

Statistics of float16 / bfloat16 inputs are computed in float32 and the result
rounded once; float32 and float64 keep their own precision.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from . import _transformer_jit as _tj
from ._common import norm_axis
from ._nn_util import run_split, worker_count


def _acc(dtype):
    """Accumulation dtype: float32 for the half-precision types, else the dtype itself."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 or dtype.kind != "f" else dtype


def _channel_shape(x, v):
    """Reshape a per-channel vector (C,) to broadcast against x (N, C, *spatial)."""
    return v.reshape((-1,) + (1,) * (x.ndim - 2))


# ----------------------------------------------------------------------------------------
# BatchNormalization


class _BatchNormBase:
    """Inference form: y = x * a + b with a = scale / sqrt(var + eps), b = B - mean * a.

    When scale, B, mean and var are all constants, (a, b) are folded in the prepare step.
    """

    def __init__(self, ctx, epsilon, momentum, spatial=1, training=False):
        self.xp = ctx.xp
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.spatial = int(spatial)
        self.training = bool(training)
        self.num_outputs = ctx.num_outputs
        consts = [ctx.const(i) for i in range(1, 5)]
        self.folded = None
        if not self.training and all(c is not None for c in consts):
            self.folded = tuple(self.xp.asarray(v) for v in self._fold(np, *consts))

    def _fold(self, xp, scale, b, mean, var):
        acc = _acc(scale.dtype)
        a = scale.astype(acc) / xp.sqrt(var.astype(acc) + acc.type(self.epsilon))
        return a, b.astype(acc) - mean.astype(acc) * a

    def _shape(self, x, v):
        # spatial=0 (opset < 9): the parameters carry one value per (C, *spatial) element
        return v if not self.spatial and v.ndim > 1 else _channel_shape(x, v)

    def infer(self, X, scale, B, mean, var):
        xp = self.xp
        a, b = self.folded if self.folded is not None else self._fold(xp, scale, B, mean, var)
        acc = a.dtype
        if X.ndim > 2 and a.ndim == 1 and b.ndim == 1 and xp is np and X.size:
            # (N, C, pixels) against (C, 1): the inner loops run over whole images, not rows;
            # the channels are split over the intra-op threads
            x3 = X.reshape(X.shape[0], X.shape[1], -1).astype(acc, copy=False)
            y = np.empty(x3.shape, dtype=acc)
            a2, b2 = a.reshape(-1, 1), b.reshape(-1, 1)

            def part(lo, hi):
                yb = y[:, lo:hi]
                np.multiply(x3[:, lo:hi], a2[lo:hi], out=yb)
                np.add(yb, b2[lo:hi], out=yb)

            run_split(part, x3.shape[1], worker_count(x3.size))
            return y.reshape(X.shape).astype(X.dtype, copy=False)
        y = X.astype(acc, copy=False) * self._shape(X, a)
        y += self._shape(X, b)
        return y.astype(X.dtype, copy=False)

    def batch_stats(self, X):
        """Mean and population variance over every axis but the channel axis."""
        xp = self.xp
        acc = _acc(X.dtype)
        axes = (0,) + tuple(range(2, X.ndim))
        xa = X.astype(acc, copy=False)
        m = xp.mean(xa, axis=axes)
        v = xp.var(xa, axis=axes)
        return m, v

    def train(self, X, scale, B, mean, var):
        """Normalize with the batch statistics; returns (Y, running_mean, running_var, batch_mean, batch_var)."""
        xp = self.xp
        m, v = self.batch_stats(X)
        acc = m.dtype
        a = scale.astype(acc) / xp.sqrt(v + acc.type(self.epsilon))
        b = B.astype(acc) - m * a
        y = (X.astype(acc, copy=False) * _channel_shape(X, a) + _channel_shape(X, b)).astype(X.dtype, copy=False)
        mom = acc.type(self.momentum)
        run_mean = (mean.astype(acc) * mom + m * (1 - mom)).astype(mean.dtype)
        run_var = (var.astype(acc) * mom + v * (1 - mom)).astype(var.dtype)
        return y, run_mean, run_var, m, v


@kernel("BatchNormalization", since=1)
class BatchNormalization1(_BatchNormBase):
    """BatchNormalization-1 .. 9 (consumed_inputs, is_test, spatial, momentum): inference unless
    the optional training outputs (mean, var, saved_mean, saved_var) are asked for."""

    def __init__(self, ctx, *, consumed_inputs=None, epsilon=1e-5, is_test=0, momentum=0.9, spatial=1):
        training = any(ctx.has_output(i) for i in range(1, ctx.num_outputs))
        super().__init__(ctx, epsilon, momentum, spatial, training)

    def __call__(self, X, scale, B, mean, var):
        if not self.training:
            return self.infer(X, scale, B, mean, var)
        y, rm, rv, m, v = self.train(X, scale, B, mean, var)
        saved_inv = (1 / self.xp.sqrt(v + v.dtype.type(self.epsilon))).astype(v.dtype)
        return (y, rm, rv, m.astype(mean.dtype), saved_inv.astype(var.dtype))[: self.num_outputs]


@kernel("BatchNormalization", since=14)
class BatchNormalization14(_BatchNormBase):
    """BatchNormalization-14/15: training_mode=1 normalizes with the batch statistics and
    outputs the updated running mean / variance (15 only loosened the parameter types)."""

    def __init__(self, ctx, *, epsilon=1e-5, momentum=0.9, training_mode=0):
        super().__init__(ctx, epsilon, momentum, 1, bool(training_mode))

    def __call__(self, X, scale, B, input_mean, input_var):
        if not self.training:
            y = self.infer(X, scale, B, input_mean, input_var)
            if self.num_outputs > 1:  # declared but meaningless outside training: pass the inputs on
                return (y, input_mean, input_var)[: self.num_outputs]
            return y
        y, rm, rv, _, _ = self.train(X, scale, B, input_mean, input_var)
        return (y, rm, rv)[: self.num_outputs]


# ----------------------------------------------------------------------------------------
# Instance / Layer / Group normalization


def _normalize(xp, xa, axes, epsilon):
    """(x - mean) / sqrt(var + eps) over ``axes`` of xa (already in the accumulation dtype);
    returns (normalized, mean, inv_std) with kept dims."""
    if axes == tuple(range(xa.ndim - len(axes), xa.ndim)) and xa.size:
        # trailing axes (the usual case): rows of a 2-D view, the variance as one dot per row
        kept = xa.shape[: xa.ndim - len(axes)]
        rows = xa.reshape(-1, int(np.prod(xa.shape[xa.ndim - len(axes):])))
        mean = rows.mean(axis=1, keepdims=True)
        d = rows - mean
        # a reduction on devices: CuPy runs this einsum as a batched 1x1 cuBLAS GEMM per row
        sq = xp.einsum("ij,ij->i", d, d) if xp is np else (d * d).sum(axis=1)
        var = sq.reshape(-1, 1) / xa.dtype.type(rows.shape[1])
        inv = 1 / xp.sqrt(var + xa.dtype.type(epsilon))
        d *= inv
        stat_shape = kept + (1,) * len(axes)
        return d.reshape(xa.shape), mean.reshape(stat_shape), inv.reshape(stat_shape)
    mean = xp.mean(xa, axis=axes, keepdims=True)
    d = xa - mean
    var = xp.mean(d * d, axis=axes, keepdims=True)
    inv = 1 / xp.sqrt(var + xa.dtype.type(epsilon))
    d *= inv
    return d, mean, inv


def _normalize_rows(xp, rows, epsilon, inplace=False):
    """(x - mean) / sqrt(var + eps) of each row of the 2-D float array ``rows``; returns
    (normalized, mean, inv_std), the statistics as [R, 1]. The two-pass variance (of the
    centered rows, as _normalize) stays exact for rows with a large mean. With numpy the row
    sums and sums of squares are BLAS gemv / np.vecdot calls (several times faster than
    ndarray.mean and einsum on short rows); ``inplace`` centers ``rows`` itself (a fresh array
    of the caller's)."""
    r, h = rows.shape
    if xp is not np or h == 0 or rows.dtype not in (np.float32, np.float64):
        y, mean, inv = _normalize(xp, rows, (1,), epsilon)
        return y, mean, inv
    dt = rows.dtype.type
    ones = np.ones(h, rows.dtype)
    mean = np.matmul(rows, ones)
    mean /= dt(h)
    mean = mean.reshape(r, 1)
    d = np.subtract(rows, mean, out=rows if inplace else None)
    var = np.vecdot(d, d)
    var /= dt(h)
    if bool(np.any(mean[:, 0] * mean[:, 0] > var)):
        # rows far from 0: the BLAS sum's rounding (a few ulp of the row's magnitude) is no
        # longer small next to the spread - refine the mean with the centered rows' sum
        # (the corrected two-pass algorithm), at two more passes
        c = np.matmul(d, ones)
        c /= dt(h)
        var -= c * c
        np.maximum(var, dt(0), out=var)
        mean += c.reshape(r, 1)
        d -= c.reshape(r, 1)
    var += dt(epsilon)
    inv = np.sqrt(var, out=var)
    np.divide(dt(1), inv, out=inv)
    inv = inv.reshape(r, 1)
    d *= inv
    return d, mean, inv


@kernel("InstanceNormalization", since=1)
def instance_normalization(xp, input, scale, B, *, epsilon=1e-5, consumed_inputs=None):
    """Normalize each (n, c) plane over its spatial axes, then scale and shift per channel
    (1 had consumed_inputs; 6 and 22 only changed the types)."""
    acc = _acc(input.dtype)
    y, _, _ = _normalize(xp, input.astype(acc, copy=False), tuple(range(2, input.ndim)), epsilon)
    y *= _channel_shape(input, scale.astype(acc, copy=False))
    y += _channel_shape(input, B.astype(acc, copy=False))
    return y.astype(input.dtype, copy=False)


@kernel("LayerNormalization", since=17)
class LayerNormalization:
    """Normalize over the axes from ``axis`` on; Mean / InvStdDev (optional outputs) keep those
    axes as 1. stash_type=1 computes in float32 (float64 inputs stay float64)."""

    def __init__(self, ctx, *, axis=-1, epsilon=1e-5, stash_type=1):
        self.xp = ctx.xp
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.stash_type = int(stash_type)
        self.num_outputs = ctx.num_outputs
        self.stat_dtype = ctx.output_dtype(1) if ctx.num_outputs > 1 else None
        # the compiled rows loop (kernels._transformer_jit) for the accumulation dtype, compiled now
        dt = ctx.input_dtype(0)
        self.jit_dtype = (_acc(dt) if self.stash_type == 1 else dt) if dt is not None else np.dtype(np.float32)
        self.jit = (_tj.norm_rows(self.jit_dtype)
                    if ctx.xp is np and self.jit_dtype in (np.float32, np.float64) else None)

    def __call__(self, X, Scale, B=None):
        axis = norm_axis(self.axis, X.ndim)
        acc = _acc(X.dtype) if self.stash_type == 1 else np.dtype(X.dtype)
        done = None
        if self.jit is not None and acc == self.jit_dtype and X.dtype.kind == "f":
            done = _tj.norm_axes(self.jit, X, axis, Scale, B, self.epsilon, acc)
        if done is not None:
            y, mean, inv = done
        else:
            y, mean, inv = self._numpy(X, Scale, B, axis, acc)
        y = y.astype(X.dtype, copy=False)
        if self.num_outputs == 1:
            return y
        sd = self.stat_dtype or (np.dtype(np.float32) if self.stash_type == 1 else X.dtype)
        return (y, mean.astype(sd, copy=False), inv.astype(sd, copy=False))[: self.num_outputs]

    def _numpy(self, X, Scale, B, axis, acc):
        xp = self.xp
        xa = X.astype(acc, copy=False)
        if xp is np and X.size and xa.flags.c_contiguous:
            # rows of a 2-D view (the usual trailing-axes case): the fast row statistics
            kept = X.shape[:axis]
            r = int(np.prod(kept, dtype=np.int64))
            y, mean, inv = _normalize_rows(xp, xa.reshape(r, -1), self.epsilon, inplace=xa is not X)
            stat = kept + (1,) * (X.ndim - axis)
            y, mean, inv = y.reshape(X.shape), mean.reshape(stat), inv.reshape(stat)
        else:
            y, mean, inv = _normalize(xp, xa, tuple(range(axis, X.ndim)), self.epsilon)
        y *= Scale.astype(acc, copy=False)
        if B is not None:
            y += B.astype(acc, copy=False)
        return y, mean, inv


class _GroupNormBase:
    def __init__(self, ctx, epsilon, num_groups, stash_type=1):
        if num_groups is None:
            raise ValueError("GroupNormalization: the num_groups attribute is required")
        self.xp = ctx.xp
        self.epsilon = float(epsilon)
        self.groups = int(num_groups)
        self.stash_type = int(stash_type)

    def normalize(self, X):
        n, c = X.shape[:2]
        g = self.groups
        if c % g:
            raise ValueError(f"GroupNormalization: {c} channels do not split into {g} groups")
        acc = _acc(X.dtype) if self.stash_type == 1 else np.dtype(X.dtype)
        xg = X.astype(acc, copy=False).reshape(n, g, -1)
        y, _, _ = _normalize(self.xp, xg, (2,), self.epsilon)
        return y.reshape(X.shape), acc


@kernel("GroupNormalization", since=18)
class GroupNormalization18(_GroupNormBase):
    """GroupNormalization-18: scale and bias hold one value per group."""

    def __init__(self, ctx, *, epsilon=1e-5, num_groups=None):
        super().__init__(ctx, epsilon, num_groups)

    def __call__(self, X, scale, bias):
        y, acc = self.normalize(X)
        cpg = X.shape[1] // self.groups
        s = self.xp.repeat(scale.astype(acc, copy=False), cpg) if scale.size == self.groups else scale.astype(acc)
        b = self.xp.repeat(bias.astype(acc, copy=False), cpg) if bias.size == self.groups else bias.astype(acc)
        y *= _channel_shape(X, s)
        y += _channel_shape(X, b)
        return y.astype(X.dtype, copy=False)


@kernel("GroupNormalization", since=21)
class GroupNormalization21(_GroupNormBase):
    """GroupNormalization-21: scale and bias hold one value per channel; stash_type added."""

    def __init__(self, ctx, *, epsilon=1e-5, num_groups=None, stash_type=1):
        super().__init__(ctx, epsilon, num_groups, stash_type)

    def __call__(self, X, scale, bias):
        y, acc = self.normalize(X)
        y *= _channel_shape(X, scale.astype(acc, copy=False))
        y += _channel_shape(X, bias.astype(acc, copy=False))
        return y.astype(X.dtype, copy=False)


# ----------------------------------------------------------------------------------------
# LRN, LpNormalization, MeanVarianceNormalization


@kernel("LRN", since=1)
def lrn(xp, X, *, alpha=0.0001, beta=0.75, bias=1.0, size=None):
    """y = x / (bias + alpha / size * sum of x^2 over a window of ``size`` channels) ^ beta.

    The window spans floor((size-1)/2) channels before and ceil((size-1)/2) after;
    the sum is a loop over the window offsets (size is small).
    """
    if size is None:
        raise ValueError("LRN: the size attribute is required")
    acc = _acc(X.dtype)
    x = X.astype(acc, copy=False)
    sq = x * x
    c = X.shape[1]
    before = (size - 1) // 2
    after = size - 1 - before
    total = sq.copy()
    for off in range(-before, after + 1):
        if off == 0 or abs(off) >= c:
            continue
        if off > 0:
            total[:, : c - off] += sq[:, off:]
        else:
            total[:, -off:] += sq[:, : c + off]
    denom = (acc.type(bias) + acc.type(alpha / size) * total) ** acc.type(beta)
    return (x / denom).astype(X.dtype, copy=False)


@kernel("LpNormalization", since=1)
def lp_normalization(xp, input, *, axis=-1, p=2):
    """x / ||x||_p along ``axis`` (p = 1 or 2); a zero norm gives 0."""
    acc = _acc(input.dtype)
    x = input.astype(acc, copy=False)
    if p == 2:
        norm = xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))
    elif p == 1:
        norm = xp.sum(xp.abs(x), axis=axis, keepdims=True)
    else:
        raise OrtNotImplemented(f"LpNormalization: p={p} is not supported (1 or 2)")
    safe = xp.where(norm == 0, acc.type(1), norm)
    y = xp.where(norm == 0, acc.type(0), x / safe)
    return y.astype(input.dtype, copy=False)


@kernel("MeanVarianceNormalization", since=9)
def mean_variance_normalization(xp, X, *, axes=(0, 2, 3)):
    """(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9), as the op's function body defines it
    (13 only added bfloat16)."""
    acc = _acc(X.dtype)
    x = X.astype(acc, copy=False)
    # axes past the rank are dropped, as onnxruntime does: the default (0, 2, 3) on a rank-2 input
    # normalizes over axis 0 (onnxruntime's result, checked in tests/reliability/test_swapped_ops.py)
    axes = tuple(sorted({norm_axis(int(a), X.ndim, "axes") for a in axes if int(a) < X.ndim}))
    if not axes:
        from ortlite.errors import InvalidArgument

        raise InvalidArgument(f"MeanVarianceNormalization: no attribute 'axes' value lies within rank {X.ndim}")
    mean = xp.mean(x, axis=axes, keepdims=True)
    var = xp.mean(x * x, axis=axes, keepdims=True) - mean * mean
    y = (x - mean) / (xp.sqrt(xp.maximum(var, acc.type(0))) + acc.type(1e-9))
    return y.astype(X.dtype, copy=False)


# ----------------------------------------------------------------------------------------
# Dropout


def _dropout(xp, data, ratio, training, seed, num_outputs, mask_dtype=np.bool_):
    """Identity (mask all true) unless training with ratio > 0; then keep each element with
    probability 1 - ratio and scale the kept ones by 1 / (1 - ratio)."""
    if not training or ratio == 0:
        if num_outputs < 2:
            return data
        return data, xp.ones(data.shape, dtype=mask_dtype)
    if not 0 <= ratio < 1:
        raise ValueError(f"Dropout: ratio must be in [0, 1), got {ratio}")
    # A given seed reproduces numpy's legacy generator, as onnx's reference does.
    rng = np.random.RandomState(seed) if seed is not None else np.random.default_rng()
    keep = rng.uniform(0.0, 1.0, data.shape) >= ratio
    keep = xp.asarray(keep)
    acc = _acc(data.dtype)
    y = (data.astype(acc, copy=False) * keep * acc.type(1.0 / (1.0 - ratio))).astype(data.dtype, copy=False)
    if num_outputs < 2:
        return y
    return y, keep.astype(mask_dtype, copy=False)


@kernel("Dropout", since=1, families=("cpu",))
class Dropout1:
    """Dropout-1/6 (consumed_inputs, is_test): run as inference, i.e. identity, whatever
    is_test says (onnxruntime has no kernel for these versions); mask of the data's type."""

    def __init__(self, ctx, *, consumed_inputs=None, is_test=0, ratio=0.5):
        self.num_outputs = ctx.num_outputs

    def __call__(self, data):
        return _dropout(np, data, 0.0, False, None, self.num_outputs, data.dtype)


@kernel("Dropout", since=7, families=("cpu",))
class Dropout7:
    """Dropout-7: always inference (identity); mask of the data's type.

    The spec leaves the inference mask open; onnxruntime returns all zeros for
    versions 7-11 (all ones from 12), and so do we.
    """

    mask_dtype = None  # the data's dtype

    def __init__(self, ctx, *, ratio=0.5):
        self.num_outputs = ctx.num_outputs

    def __call__(self, data):
        if self.num_outputs < 2:
            return data
        return data, np.zeros(data.shape, dtype=self.mask_dtype or data.dtype)


@kernel("Dropout", since=10, families=("cpu",))
class Dropout10(Dropout7):
    """Dropout-10: as 7, but the mask is bool."""

    mask_dtype = np.bool_


@kernel("Dropout", since=12, families=("cpu",), host_inputs=(1, 2))
class Dropout12:
    """Dropout-12 .. 22: ratio and training_mode became optional inputs; seed attribute."""

    def __init__(self, ctx, *, seed=None):
        self.seed = seed
        self.num_outputs = ctx.num_outputs

    def __call__(self, data, ratio=None, training_mode=None):
        r = 0.5 if ratio is None else float(np.asarray(ratio).reshape(-1)[0])
        training = False if training_mode is None else bool(np.asarray(training_mode).reshape(-1)[0])
        return _dropout(np, data, r, training, self.seed, self.num_outputs)
