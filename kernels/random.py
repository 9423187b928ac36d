"""Random generators: RandomNormal(Like), RandomUniform(Like), Bernoulli, Multinomial.

Values are drawn on the host with numpy's PCG64 and moved to the device array
module. With a ``seed`` attribute each run restarts the generator from that
seed, so one session returns the same values on every run; without one the node's
generator is made at session start and keeps advancing: seeded from
``ortlite.set_seed``'s seed and the node's first output name when it was called
(every session made afterwards draws the same values, each node its own stream,
as onnxruntime's set_seed), from OS entropy otherwise.

v22 of every op only added bfloat16; the kernels are registered at their first version.
"""
from __future__ import annotations

import zlib

import numpy as np

from ortlite.compat import global_seed
from ortlite.registry import kernel
from ortlite.types import np_dtype


def _seed_bits(seed):
    """ONNX seeds are floats: use their exact bit pattern so that 0.5 and 0.25 differ."""
    return int(np.asarray(seed, dtype=np.float64).view(np.int64)) & 0xFFFFFFFFFFFFFFFF


def _session_rng(ctx):
    """The generator of a node without a seed attribute (see the module docstring)."""
    seed = global_seed()
    if seed is None:
        return np.random.default_rng()
    name = ctx.node.outputs[0] if ctx.node.outputs else ctx.node.name
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(name.encode())])


class _Random:
    def __init__(self, ctx, seed):
        self.xp = ctx.xp
        self.seed = seed
        self._rng = None if seed is not None else _session_rng(ctx)

    def rng(self):
        if self.seed is not None:
            return np.random.default_rng(_seed_bits(self.seed))
        return self._rng

    def out(self, values, dtype):
        return self.xp.asarray(values.astype(dtype, copy=False))


def _like_dtype(dtype, x):
    return np_dtype(dtype) if dtype is not None else x.dtype


@kernel("RandomNormal", since=1)
class RandomNormal(_Random):
    def __init__(self, ctx, *, dtype=1, mean=0.0, scale=1.0, seed=None, shape=None):
        super().__init__(ctx, seed)
        self.dtype, self.mean, self.scale, self.shape = np_dtype(dtype), mean, scale, tuple(shape or ())

    def __call__(self):
        return self.out(self.rng().normal(self.mean, self.scale, self.shape), self.dtype)


@kernel("RandomNormalLike", since=1)
class RandomNormalLike(_Random):
    def __init__(self, ctx, *, dtype=None, mean=0.0, scale=1.0, seed=None):
        super().__init__(ctx, seed)
        self.dtype, self.mean, self.scale = dtype, mean, scale

    def __call__(self, input):
        return self.out(self.rng().normal(self.mean, self.scale, input.shape), _like_dtype(self.dtype, input))


@kernel("RandomUniform", since=1)
class RandomUniform(_Random):
    def __init__(self, ctx, *, dtype=1, high=1.0, low=0.0, seed=None, shape=None):
        super().__init__(ctx, seed)
        self.dtype, self.low, self.high, self.shape = np_dtype(dtype), low, high, tuple(shape or ())

    def __call__(self):
        return self.out(self.rng().uniform(self.low, self.high, self.shape), self.dtype)


@kernel("RandomUniformLike", since=1)
class RandomUniformLike(_Random):
    def __init__(self, ctx, *, dtype=None, high=1.0, low=0.0, seed=None):
        super().__init__(ctx, seed)
        self.dtype, self.low, self.high = dtype, low, high

    def __call__(self, input):
        return self.out(self.rng().uniform(self.low, self.high, input.shape), _like_dtype(self.dtype, input))


@kernel("Bernoulli", since=15)
class Bernoulli(_Random):
    def __init__(self, ctx, *, dtype=None, seed=None):
        super().__init__(ctx, seed)
        self.dtype = dtype

    def __call__(self, input):
        p = np.asarray(self.xp.asnumpy(input) if hasattr(self.xp, "asnumpy") else input, dtype=np.float64)
        return self.out(self.rng().random(p.shape) < p, _like_dtype(self.dtype, input))


@kernel("Multinomial", since=7)
class Multinomial(_Random):
    def __init__(self, ctx, *, dtype=6, sample_size=1, seed=None):
        super().__init__(ctx, seed)
        self.dtype, self.sample_size = np_dtype(dtype), sample_size

    def __call__(self, input):
        # input [batch, classes] holds unnormalized log-probabilities.
        if input.ndim != 2:
            from ortlite.errors import InvalidArgument

            raise InvalidArgument(f"Multinomial: input must have rank 2 (batch, classes), got shape {tuple(input.shape)}")
        logits = np.asarray(self.xp.asnumpy(input) if hasattr(self.xp, "asnumpy") else input, dtype=np.float64)
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        cdf = np.cumsum(p, axis=-1)
        cdf /= cdf[:, -1:]
        u = self.rng().random((logits.shape[0], self.sample_size))
        # Inverse-cdf sampling for all rows in one searchsorted: row r's cdf is shifted to [r, r+1].
        n, c = cdf.shape
        rows = np.arange(n, dtype=np.float64)[:, None]
        idx = np.searchsorted((cdf + rows).ravel(), (u + rows).ravel(), side="right").reshape(n, -1)
        idx -= np.arange(n)[:, None] * c
        return self.out(np.clip(idx, 0, c - 1), self.dtype)
