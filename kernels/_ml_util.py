"""Helpers shared by the ai.onnx.ml kernels: score post-transforms and attribute checks.

onnxruntime computes the post-transforms in float32 with its own formulas (PROBIT is
an approximation of erfinv, SOFTMAX_ZERO skips zeros), and has special cases for a
single score column ("binary case"), where a second column is made from the first.
The helpers here reproduce those formulas, vectorized over rows.

The checks (``model_error``, ``check_choice``, ``Features``) refuse attribute lists that do
not fit each other or the input's feature count, ids out of range and unknown modes, where
onnxruntime would fail or read a prefix of them or past their end: at session creation
(``ModelError``) when the input's width is known from shape inference, else on each feed.
"""
from __future__ import annotations

import math

import numpy as np

from ortlite.errors import Fail, InvalidArgument, InvalidGraph, RuntimeException

F32 = np.float32
POST_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")
# TreeEnsemble (ai.onnx.ml opset 5) encodes post_transform as an int. The spec says 1 = SOFTMAX,
# 2 = LOGISTIC; onnxruntime (1.2x-1.32) reads the int in its own enum order (1 = LOGISTIC,
# 2 = SOFTMAX). ortlite follows onnxruntime.
POST_TRANSFORM_CODES = {0: "NONE", 1: "LOGISTIC", 2: "SOFTMAX", 3: "SOFTMAX_ZERO", 4: "PROBIT"}


def check_post_transform(ctx, value):
    return check_choice(ctx, "post_transform", value, POST_TRANSFORMS)


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
    # onnxruntime's running maximum starts at -FLT_MAX and skips a NaN (NaN > m is false)
    m = np.fmax(np.fmax.reduce(v, axis=1, keepdims=True), F32(-np.finfo(F32).max))
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


# ---------------------------------------------------------------------------
# Attribute checks


class FeedError(RuntimeException, InvalidArgument):
    """A feed the node's attributes cannot take (too few features, an index out of range).

    onnxruntime reports it as INVALID_ARGUMENT from the node, so this is an InvalidArgument;
    it is also a RuntimeException, which the plan passes on unchanged (the message already
    names the node, in the plan's words) and which callers catch for kernel failures.
    """


def feed_error(node, message):
    """A FeedError worded as onnxruntime (and ortlite's plan) word a node's failure."""
    return FeedError(f"Non-zero status code returned while running {node.op_type} node. "
                     f"Name:'{node.name}' Status Message: {message}")


class ModelError(InvalidGraph, Fail):
    """Attributes that do not fit each other, the spec or the input's static shape.

    An InvalidGraph (the model is wrong, not the feed); also a Fail, which onnxruntime raises
    for the same models at session creation and which the session passes on unchanged.
    """


def model_error(ctx, message):
    """A ModelError naming the node; ``message`` names the attribute and what was expected."""
    return ModelError(f"{ctx.node.op_type} node '{ctx.node.name}': {message}")


def check_choice(ctx, attr, value, choices):
    """``value`` if it is one of ``choices``, else a ModelError naming ``attr`` and the choices."""
    if value not in choices:
        raise model_error(ctx, f"{attr} {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def plural(n, word):
    """'1 class', '3 classes', '2 targets'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def check_lengths(ctx, ref, n, lists):
    """Fail naming the first attribute of ``lists`` (name -> list or array; None when not set)
    whose length is not ``n``, the length of attribute ``ref``."""
    for name, v in lists.items():
        size = None if v is None else v.size if isinstance(v, np.ndarray) else len(v)
        if size is not None and size != n:
            raise model_error(ctx, f"{name} has {size} entries but {ref} has {n}")


def _fixed(dims):
    return all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims)


def row_width(shape):
    """Features per row as ``as_rows_f32`` reads a shape: the length of a 1-D input, the product of
    the dims after the first otherwise; None for a scalar or where a dim is not a fixed number."""
    if shape is None or len(shape) == 0:
        return None
    dims = shape[:1] if len(shape) == 1 else shape[1:]
    return int(math.prod(dims)) if _fixed(dims) else None


def last_width(shape):
    """The length of the last axis (1 for a scalar); None where it is not a fixed number."""
    if shape is None:
        return None
    dims = list(shape[-1:]) or [1]
    return int(dims[0]) if _fixed(dims) else None


def matrix_width(shape):
    """The last axis of an input of rank 2 or more; None for 1-D and scalar inputs."""
    return last_width(shape) if shape is not None and len(shape) >= 2 else None


def shape_str(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class Features:
    """The feature count a node's attributes need from its input ``i``.

    Built in the prepare step: where shape inference fixed the input's width (``width``
    of its shape) and it does not fit, session creation fails (``Fail``). Called with each
    feed, it raises ``FeedError`` (InvalidArgument) before any numpy work runs.

    Args:
        need: the feature count (or, with ``at_least``, the smallest one) the attributes need.
        why: how the attributes come to need it, e.g. "12 coefficients for 3 classes means
            4 features per class"; the message goes on ", but input X has 2 features (shape [3, 2])".
        width: shape -> features (``row_width``, ``last_width`` or ``matrix_width``).
    """

    __slots__ = ("node", "input", "need", "why", "at_least", "width")

    def __init__(self, ctx, need, why, *, at_least=False, width=row_width, i=0):
        self.node, self.input = ctx.node, ctx.node.inputs[i]
        self.need, self.why, self.at_least, self.width = int(need), why, at_least, width
        info = ctx.input_types[i] if i < len(ctx.input_types) else None
        shape = None if info is None else info.shape
        c = width(shape)
        if c is not None and not self.fits(c):
            raise model_error(ctx, self.describe(c, shape))

    def fits(self, c):
        return c >= self.need if self.at_least else c == self.need

    def describe(self, c, shape):
        return f"{self.why}, but input {self.input} has {c} features (shape {shape_str(shape)})"

    def __call__(self, X):
        c = self.width(X.shape)
        if c is not None and not self.fits(c):
            raise feed_error(self.node, self.describe(c, X.shape))
