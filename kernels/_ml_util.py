"""Score post-transforms shared by the ai.onnx.ml classifiers and regressors.

onnxruntime computes these in float32 with its own formulas (PROBIT is an
approximation of erfinv, SOFTMAX_ZERO skips zeros), and has special cases for
a single score column ("binary case"), where a second column is made from the
first. The helpers here reproduce those formulas, vectorized over rows.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented

F32 = np.float32
POST_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")
# TreeEnsemble (ai.onnx.ml opset 5) encodes post_transform as an int. The spec says 1 = SOFTMAX,
# 2 = LOGISTIC; onnxruntime (1.2x-1.32) reads the int in its own enum order (1 = LOGISTIC,
# 2 = SOFTMAX). ortlite follows onnxruntime.
POST_TRANSFORM_CODES = {0: "NONE", 1: "LOGISTIC", 2: "SOFTMAX", 3: "SOFTMAX_ZERO", 4: "PROBIT"}


def check_post_transform(op, value):
    if value not in POST_TRANSFORMS:
        raise OrtNotImplemented(f"{op}: post_transform '{value}' not supported ({', '.join(POST_TRANSFORMS)})")
    return value


def logistic(v):
    v = np.asarray(v, dtype=F32)
    e = F32(1) / (F32(1) + np.exp(-np.abs(v)))
    return np.where(v < 0, F32(1) - e, e).astype(F32, copy=False)


def probit(v):
    """sqrt(2) * erfinv(2v - 1) with onnxruntime's closed-form erfinv approximation."""
    x = F32(2) * np.asarray(v, dtype=F32) - F32(1)
    sgn = np.where(x < 0, F32(-1), F32(1)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = (F32(1) - x) * (F32(1) + x)
        lg = np.log(y)
        a = F32(2) / (F32(np.pi) * F32(0.147)) + F32(0.5) * lg
        b = F32(1) / F32(0.147) * lg
        r = sgn * np.sqrt(-a + np.sqrt(a * a - b))
    return (F32(np.sqrt(2)) * r).astype(F32, copy=False)


def softmax(v):
    v = np.asarray(v, dtype=F32)
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(F32, copy=False)


def softmax_zero(v):
    """Softmax where (near-)zero scores stay zero instead of contributing exp(0)."""
    v = np.asarray(v, dtype=F32)
    m = v.max(axis=1, keepdims=True)
    nz = (v > F32(1e-7)) | (v < F32(-1e-7))
    e = np.where(nz, np.exp(v - m), v * np.exp(-m))
    s = np.where(nz, e, F32(0)).sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (e / s).astype(F32, copy=False)


def transform(scores, post):
    """Apply ``post`` to an (N, K) float32 score matrix with K >= 2."""
    if post == "NONE":
        return scores
    if post == "LOGISTIC":
        return logistic(scores)
    if post == "SOFTMAX":
        return softmax(scores)
    if post == "SOFTMAX_ZERO":
        return softmax_zero(scores)
    return probit(scores)


def binary_scores(s, post, second):
    """One score per row -> two columns, as onnxruntime's ``add_second_class`` modes do.

    second: -1 keeps one column; 0/1 (all weights positive) gives (1 - s, s);
    2/3 (mixed-sign weights) gives (-s, s); LOGISTIC gives (logistic(-s), logistic(s)) for both.
    PROBIT only transforms the score (onnxruntime leaves the second column unwritten; 0 here).
    """
    s = np.asarray(s, dtype=F32).reshape(-1)
    if post == "PROBIT":
        p = probit(s)
        if second < 0:
            return p[:, None]
        return np.stack([p, np.zeros_like(p)], axis=1)
    if second < 0:
        return s[:, None]
    if post == "LOGISTIC":  # onnxruntime >= 1.1x: the logistic for every mode
        return np.stack([logistic(-s), logistic(s)], axis=1)
    if second in (0, 1):
        return np.stack([F32(1) - s, s], axis=1)
    return np.stack([-s, s], axis=1)


def batched_update(scores, post, second=-1):
    """onnxruntime's batched score update: K >= 2 columns get ``post``; one column goes to ``binary_scores``."""
    scores = np.asarray(scores, dtype=F32)
    if scores.shape[1] >= 2:
        return transform(scores, post)
    return binary_scores(scores[:, 0], post, second)


def labels_array(values, use_strings):
    """Class labels as int64 or an object array of str."""
    if use_strings:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    return np.asarray(values, dtype=np.int64)


def as_rows_f32(X):
    """The (N, F) float32 view of a classifier input; 1-D input is one row (onnxruntime)."""
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError("input needs at least one dimension")
    if X.ndim == 1:
        X = X[None, :]
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    return X.astype(F32, copy=False)
