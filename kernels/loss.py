"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Both gather -log_prob[n, target[n, d...], d...] with one take_along_axis; ignored
targets (ignore_index) get weight 0. 'mean' divides by the sum of the applied
weights (the count of non-ignored targets when no weight is given).
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel


def _work(dt):
    return dt if dt.kind == "f" and dt.itemsize >= 4 else np.dtype(np.float32)


def _nll(xp, logp, target, weight, reduction, ignore_index):
    """Loss from log-probabilities `logp` [N, C, d...] (already in the work dtype)."""
    if logp.ndim < 2:
        raise ValueError(f"loss input must have rank >= 2, got shape {logp.shape}")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"loss: reduction must be none, sum or mean, got {reduction!r}")
    c = logp.shape[1]
    t = target.astype(np.int64, copy=False)
    valid = None if ignore_index is None else (t != ignore_index)
    # Ignored targets may lie outside [0, C): clamp them so the gather stays in bounds.
    tc = t if valid is None else xp.where(valid, t, 0)
    tc = xp.clip(tc, 0, c - 1)
    loss = -xp.take_along_axis(logp, xp.expand_dims(tc, 1), axis=1)[:, 0]
    if weight is not None:
        w = weight.astype(logp.dtype, copy=False)[tc]
        if valid is not None:
            w = xp.where(valid, w, logp.dtype.type(0))
    elif valid is not None:
        w = valid.astype(logp.dtype)
    else:
        w = None
    if w is not None:
        loss = loss * w
    if valid is not None:
        loss = xp.where(valid, loss, logp.dtype.type(0))  # -0 * 0 and inf * 0 must not leak
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if reduction == "sum":
        return total
    return total / (xp.sum(w) if w is not None else logp.dtype.type(loss.size))


@kernel("NegativeLogLikelihoodLoss", since=12)  # 13 and 22 only add types
def negative_log_likelihood_loss(xp, input, target, weight=None, *, ignore_index=None, reduction="mean"):  # noqa: A002
    x = input.astype(_work(input.dtype), copy=False)
    loss = _nll(xp, x, target, weight, reduction, ignore_index)
    return xp.asarray(loss, dtype=input.dtype)


@kernel("SoftmaxCrossEntropyLoss", since=12)  # 13 only adds types
def softmax_cross_entropy_loss(xp, scores, labels, weights=None, *, ignore_index=None, reduction="mean"):
    x = scores.astype(_work(scores.dtype), copy=False)
    # log-softmax over the class axis
    logp = x - xp.max(x, axis=1, keepdims=True)
    logp -= xp.log(xp.sum(xp.exp(logp), axis=1, keepdims=True))
    loss = _nll(xp, logp, labels, weights, reduction, ignore_index)
    return xp.asarray(loss, dtype=scores.dtype), logp.astype(scores.dtype, copy=False)
