"""ai.onnx.ml kernels (all but the tree ensembles, which live in ml_tree.py).

Semantics and output types follow onnxruntime, including its quirks where the
ONNX spec is vague: binary classifiers with one score column, the label used
when only one class is scored, float32 post-transforms (see _ml_util.py).

The kernels are written against numpy (object arrays of str, dicts, np.take with
out=), so all but Binarizer register for the CPU family only; per-string work is
a Python loop over elements, numeric work is vectorized.
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel

from ._ml_util import (F32, Features, as_rows_f32, batched_update, check_choice, check_post_transform, feed_error,
                       labels_array, last_width, matrix_width, model_error, plural, shape_str)

ML = "ai.onnx.ml"
CPU = ("cpu",)


def _obj(values, shape=None):
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out if shape is None else out.reshape(shape)


def _is_str_array(x):
    return x.dtype == object or x.dtype.kind in "US"


# ---------------------------------------------------------------------------
# Simple tensor transforms


@kernel("ArrayFeatureExtractor", since=1, domain=ML, families=CPU)
class ArrayFeatureExtractor:
    """Selects columns of the last axis; onnxruntime makes a 1-D input one row.

    Constant indices are checked against the input's static width at session creation.
    """

    def __init__(self, ctx):
        self.node = ctx.node
        idx = ctx.const(1)
        if idx is not None and idx.size:
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0:
                raise model_error(ctx, f"index {lo} in {ctx.node.inputs[1]} is negative")
            Features(ctx, hi + 1, f"{ctx.node.inputs[1]} selects column {hi}, so the input needs at least "
                     f"{hi + 1} features", at_least=True, width=last_width)

    def __call__(self, X, Y):
        idx = np.asarray(Y, dtype=np.int64).reshape(-1)
        width = X.shape[-1] if X.ndim else 1
        if idx.size and (idx.min() < 0 or idx.max() >= width):
            bad = int(idx[(idx < 0) | (idx >= width)][0])
            raise feed_error(self.node, f"index {bad} in {self.node.inputs[1]} is out of range [0, {width}) "
                             f"for input {self.node.inputs[0]} (shape {shape_str(X.shape)})")
        if X.ndim <= 1:
            return X.reshape(1, -1)[:, idx]
        return np.take(X, idx, axis=-1)


@kernel("Binarizer", since=1, domain=ML)
def binarizer(xp, X, *, threshold=0.0):
    if X.dtype.kind == "f" and bool(xp.isnan(X).any()):
        # onnxruntime refuses NaN ("Input data with index: i is NaN")
        i = int(xp.nonzero(xp.isnan(X).reshape(-1))[0][0])
        raise ValueError(f"Binarizer: Input data with index: {i} is NaN")
    return (X > X.dtype.type(threshold)).astype(X.dtype)


@kernel("Scaler", since=1, domain=ML, families=CPU)
class Scaler:
    """(X - offset) * scale along the last axis; offset and scale have 1 value or one per feature."""

    def __init__(self, ctx, *, offset=None, scale=None):
        self.offset = np.asarray(offset or [0.0], dtype=F32)
        self.scale = np.asarray(scale or [1.0], dtype=F32)
        o, s = self.offset.size, self.scale.size
        if o > 1 and s > 1 and o != s:
            raise model_error(ctx, f"offset has {o} values and scale {s}: each needs 1 value or one per feature")
        n = max(o, s)
        self.features = Features(ctx, n, f"{'offset' if o == n else 'scale'} has {n} values, one per feature",
                                 width=last_width) if n > 1 else None

    def __call__(self, X):
        if self.features is not None:
            self.features(X)
        x = X.astype(F32, copy=False)
        return ((x - self.offset) * self.scale).astype(F32, copy=False)


@kernel("Normalizer", since=1, domain=ML, families=CPU)
class Normalizer:
    def __init__(self, ctx, *, norm="MAX"):
        self.norm = check_choice(ctx, "norm", norm, ("MAX", "L1", "L2"))

    def __call__(self, X):
        if X.ndim > 2:
            raise ValueError(f"Normalizer: input must be 1-D or 2-D, got shape {X.shape}")
        x = X.astype(F32, copy=False)
        rows = x.reshape(1, -1) if x.ndim == 1 else x
        if self.norm == "MAX":
            d = rows.max(axis=1, keepdims=True)
        elif self.norm == "L1":
            d = np.abs(rows).sum(axis=1, keepdims=True)
        else:
            d = np.sqrt((rows * rows).sum(axis=1, keepdims=True))
        d = np.where(d == 0, F32(1), d)  # onnxruntime leaves a row with a zero norm as it is
        return (rows / d).reshape(x.shape).astype(F32, copy=False)


@kernel("Imputer", since=1, domain=ML, families=CPU)
class Imputer:
    """Replaces one value; the imputed values (floats for float inputs, int64s otherwise) are one
    value or one per feature of a 2-D input (a 1-D input cycles through them, as onnxruntime)."""

    def __init__(self, ctx, *, imputed_value_floats=None, imputed_value_int64s=None,
                 replaced_value_float=0.0, replaced_value_int64=0):
        self.fvals = np.asarray(imputed_value_floats or [], dtype=F32)
        self.ivals = np.asarray(imputed_value_int64s or [], dtype=np.int64)
        self.freplace = F32(replaced_value_float)
        self.ireplace = int(replaced_value_int64)
        dtype = ctx.input_dtype(0)
        self.features = {}  # is-float -> Features; both where the input type is not known
        for floats, vals, attr in ((True, self.fvals, "imputed_value_floats"),
                                   (False, self.ivals, "imputed_value_int64s")):
            if dtype is not None and (dtype.kind == "f") != floats:
                continue
            if vals.size == 0 and dtype is not None:
                raise model_error(ctx, f"input {ctx.node.inputs[0]} is {dtype} but {attr} is empty")
            if vals.size > 1:
                self.features[floats] = Features(ctx, vals.size, f"{attr} has {vals.size} values, one per feature",
                                                 width=matrix_width)

    def __call__(self, X):
        floats = X.dtype.kind == "f"
        if floats:
            vals, rep = self.fvals, self.freplace
            mask = np.isnan(X) if np.isnan(rep) else (X == X.dtype.type(rep))
        else:
            vals, rep = self.ivals, self.ireplace
            mask = X == rep
        if vals.size == 0:
            raise ValueError(f"Imputer: no imputed values for a {X.dtype} input")
        if floats in self.features:
            self.features[floats](X)
        c = X.shape[-1] if X.ndim else 1
        vals = vals.astype(X.dtype)
        if vals.size == 1 or vals.size == c:
            fill = np.broadcast_to(vals if vals.size == c else vals[0], X.shape)
        else:  # a 1-D input cycles through the values (onnxruntime)
            fill = vals[np.arange(X.size) % vals.size].reshape(X.shape)
        return np.where(mask, fill, X)


@kernel("FeatureVectorizer", since=1, domain=ML, families=CPU)
class FeatureVectorizer:
    """Concatenates the inputs' rows, each cut or zero-padded to its inputdimensions entry (onnxruntime)."""

    def __init__(self, ctx, *, inputdimensions=None):
        self.dims = [int(d) for d in (inputdimensions or [])]
        if len(self.dims) != ctx.num_inputs:
            n = plural(ctx.num_inputs, "input")
            raise model_error(ctx, f"inputdimensions has {len(self.dims)} entries for {n}")
        if any(d < 0 for d in self.dims):
            raise model_error(ctx, f"inputdimensions {self.dims} has a negative entry")

    def __call__(self, *inputs):
        first = inputs[0]
        n = 1 if first.ndim <= 1 else first.shape[0]
        out = np.zeros((n, sum(self.dims)), dtype=F32)
        col = 0
        for x, d in zip(inputs, self.dims):
            rows = x.reshape(n, -1)
            k = min(d, rows.shape[1])  # extra columns are dropped, missing ones stay 0
            out[:, col:col + k] = rows[:, :k]
            col += d
        return out


# ---------------------------------------------------------------------------
# Encoders and mappers


@kernel("OneHotEncoder", since=1, domain=ML, families=CPU)
class OneHotEncoder:
    def __init__(self, ctx, *, cats_int64s=None, cats_strings=None, zeros=1):
        if bool(cats_int64s) == bool(cats_strings):
            raise model_error(ctx, "exactly one of cats_int64s and cats_strings must be set")
        self.zeros = bool(zeros)
        if cats_int64s:
            self.cats = {int(v): i for i, v in enumerate(cats_int64s)}
            keys = np.asarray(cats_int64s, dtype=np.int64)
            self.order = np.argsort(keys, kind="stable")
            self.sorted = keys[self.order]
            self.strings = False
        else:
            self.cats = {s: i for i, s in enumerate(cats_strings)}
            self.strings = True
        self.n = len(self.cats)

    def __call__(self, X):
        if self.strings:
            if not _is_str_array(X):
                raise ValueError("OneHotEncoder: cats_strings needs a string input")
            pos = np.fromiter((self.cats.get(s, -1) for s in X.reshape(-1).tolist()), np.int64, X.size)
        else:
            if _is_str_array(X):
                raise ValueError("OneHotEncoder: cats_int64s needs a numeric input")
            v = X.reshape(-1).astype(np.int64)
            j = np.minimum(np.searchsorted(self.sorted, v), len(self.sorted) - 1)
            pos = np.where(self.sorted[j] == v, self.order[j], -1)
        if not self.zeros and (pos < 0).any():
            raise ValueError("OneHotEncoder: unknown category in input and zeros=0")
        out = np.zeros((pos.size, self.n), dtype=F32)
        hit = pos >= 0
        out[np.nonzero(hit)[0], pos[hit]] = 1
        return out.reshape(X.shape + (self.n,))


@kernel("CategoryMapper", since=1, domain=ML, families=CPU)
class CategoryMapper:
    def __init__(self, ctx, *, cats_int64s=None, cats_strings=None, default_int64=-1, default_string="_Unused"):
        cats_int64s, cats_strings = list(cats_int64s or []), list(cats_strings or [])
        if len(cats_int64s) != len(cats_strings):
            raise model_error(ctx, f"cats_int64s has {len(cats_int64s)} values but cats_strings {len(cats_strings)}")
        self.s2i = dict(zip(cats_strings, cats_int64s))
        self.i2s = dict(zip(cats_int64s, cats_strings))
        self.dint, self.dstr = int(default_int64), default_string

    def __call__(self, X):
        flat = X.reshape(-1).tolist()
        if _is_str_array(X):
            return np.fromiter((self.s2i.get(s, self.dint) for s in flat), np.int64, len(flat)).reshape(X.shape)
        return _obj([self.i2s.get(v, self.dstr) for v in flat], X.shape)


class _Lookup:
    """A key -> value table applied element-wise: numeric keys by binary search, strings by dict."""

    def __init__(self, keys, values, default, out_dtype):
        self.out_dtype = np.dtype(out_dtype)
        self.default = default
        keys = np.asarray(keys)
        self.str_keys = keys.dtype == object or keys.dtype.kind in "US"
        if self.out_dtype == object:
            vals = _obj([str(v) for v in np.asarray(values).reshape(-1).tolist()])
        else:
            vals = np.asarray(values).reshape(-1).astype(self.out_dtype)
        if self.str_keys:
            self.table = dict(zip([str(k) for k in keys.reshape(-1).tolist()], vals.tolist()))
            return
        keys = keys.reshape(-1)
        # NaN keys match NaN inputs (onnxruntime); the last duplicate wins like a dict insert
        nan = np.isnan(keys) if keys.dtype.kind == "f" else np.zeros(keys.shape, bool)
        self.nan_value = vals[nan][-1] if nan.any() else None
        keys, vals = keys[~nan], vals[~nan]
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], vals[order]
        last = np.append(k[1:] != k[:-1], True) if k.size else np.zeros(0, bool)
        self.keys, self.vals = k[last], v[last]

    def __call__(self, X):
        if self.str_keys:
            if not _is_str_array(X):
                raise ValueError("LabelEncoder: string keys need a string input")
            flat = X.reshape(-1).tolist()
            d = self.default
            if self.out_dtype == object:
                return _obj([self.table.get(s, d) for s in flat], X.shape)
            return np.fromiter((self.table.get(s, d) for s in flat), self.out_dtype, len(flat)).reshape(X.shape)
        if _is_str_array(X):
            raise ValueError("LabelEncoder: numeric keys need a numeric input")
        x = X.reshape(-1)
        if self.keys.size:
            j = np.minimum(np.searchsorted(self.keys, x), self.keys.size - 1)
            hit = self.keys[j] == x
            src = self.vals[j]
        else:
            hit = np.zeros(x.shape, bool)
            src = np.empty(x.shape, self.out_dtype)
        if self.out_dtype == object:
            out = _obj([self.default] * x.size)
        else:
            out = np.full(x.shape, self.default, dtype=self.out_dtype)
        out[hit] = src[hit]
        if self.nan_value is not None and x.dtype.kind == "f":
            out[np.isnan(x)] = self.nan_value
        return out.reshape(X.shape)


@kernel("LabelEncoder", since=1, domain=ML, families=CPU)
class LabelEncoderV1:
    # opset 1: classes_strings; string -> its index, int64 -> the string at that index
    def __init__(self, ctx, *, classes_strings=None, default_int64=-1, default_string="_Unused"):
        self.classes = list(classes_strings or [])
        self.s2i = {s: i for i, s in enumerate(self.classes)}
        self.dint, self.dstr = int(default_int64), default_string

    def __call__(self, X):
        flat = X.reshape(-1).tolist()
        if _is_str_array(X):
            return np.fromiter((self.s2i.get(s, self.dint) for s in flat), np.int64, len(flat)).reshape(X.shape)
        n = len(self.classes)
        return _obj([self.classes[v] if 0 <= v < n else self.dstr for v in flat], X.shape)


_LE_DEFAULTS = {"default_float": -0.0, "default_int64": -1, "default_string": "_Unused"}


@kernel("LabelEncoder", since=2, domain=ML, families=CPU)
class LabelEncoder:
    # opset 2: keys_*/values_* pairs of any of string/int64/float; opset 4 adds *_tensor attributes
    # (and int16/int32/double types) and default_tensor.
    def __init__(self, ctx, *, keys_floats=None, keys_int64s=None, keys_strings=None, keys_tensor=None,
                 values_floats=None, values_int64s=None, values_strings=None, values_tensor=None,
                 default_float=-0.0, default_int64=-1, default_string="_Unused", default_tensor=None):
        keys = [(k, t, a) for k, t, a in ((keys_floats, F32, "keys_floats"), (keys_int64s, np.int64, "keys_int64s"),
                                          (keys_strings, object, "keys_strings")) if k is not None]
        vals = [(v, t, a) for v, t, a in ((values_floats, F32, "values_floats"),
                                          (values_int64s, np.int64, "values_int64s"),
                                          (values_strings, object, "values_strings")) if v is not None]
        if keys_tensor is not None:
            keys.append((keys_tensor.reshape(-1), keys_tensor.dtype, "keys_tensor"))
        if values_tensor is not None:
            vals.append((values_tensor.reshape(-1), values_tensor.dtype, "values_tensor"))
        if len(keys) != 1 or len(vals) != 1:
            raise model_error(ctx, "exactly one keys_* and one values_* attribute must be set")
        (k, kt, ka), (v, vt, va) = keys[0], vals[0]
        if len(k) != len(v):
            raise model_error(ctx, f"{ka} has {len(k)} keys but {va} {len(v)} values")
        vt = np.dtype(vt)
        if vt.kind in "US":
            vt = np.dtype(object)
        if default_tensor is not None:
            default = default_tensor.reshape(-1)[0]
            default = str(default) if vt == object else vt.type(default)
        elif vt == object:
            default = default_string
        elif vt.kind == "f":
            default = vt.type(default_float)
        else:
            default = vt.type(default_int64)
        kk = np.asarray(k, dtype=object if np.dtype(kt).kind in "OUS" else kt)
        self.lookup = _Lookup(kk, v, default, vt)

    def __call__(self, X):
        return self.lookup(X)


@kernel("DictVectorizer", since=1, domain=ML, families=CPU)
class DictVectorizer:
    """A map (or a list of maps, one row each) -> a dense row over the vocabulary."""

    def __init__(self, ctx, *, int64_vocabulary=None, string_vocabulary=None):
        vocab = list(string_vocabulary or []) or [int(v) for v in (int64_vocabulary or [])]
        self.index = {k: i for i, k in enumerate(vocab)}
        self.n = len(vocab)
        self.out_dtype = ctx.output_dtype(0)

    def __call__(self, X):
        rows = X if isinstance(X, (list, tuple)) else [X]
        rows = [r.item() if isinstance(r, np.ndarray) else r for r in rows]
        dtype = self.out_dtype
        if dtype is None:  # from the first value
            first = next((v for r in rows for v in r.values()), 0.0)
            dtype = np.dtype(object) if isinstance(first, str) else np.asarray(first).dtype
        if dtype == object:
            out = _obj([""] * (len(rows) * self.n), (len(rows), self.n))
        else:
            out = np.zeros((len(rows), self.n), dtype=dtype)
        idx = self.index
        for i, r in enumerate(rows):
            for k, v in r.items():
                j = idx.get(k if isinstance(k, str) else int(k))
                if j is not None:
                    out[i, j] = v
        return out


@kernel("CastMap", since=1, domain=ML, families=CPU)
class CastMap:
    def __init__(self, ctx, *, cast_to="TO_FLOAT", map_form="DENSE", max_map=1):
        check_choice(ctx, "cast_to", cast_to, ("TO_FLOAT", "TO_STRING", "TO_INT64"))
        check_choice(ctx, "map_form", map_form, ("DENSE", "SPARSE"))
        self.cast_to, self.sparse, self.max_map = cast_to, map_form == "SPARSE", int(max_map)

    def _cast(self, values):
        if self.cast_to == "TO_STRING":
            # std::to_string of the float32 value, as onnxruntime writes it
            return _obj([v if isinstance(v, str) else "%f" % float(F32(v)) for v in values])
        # the map holds float32 values (map(int64, float)); strings are parsed
        arr = np.asarray([float(v) for v in values], dtype=np.float64).astype(F32)
        return arr if self.cast_to == "TO_FLOAT" else arr.astype(np.int64)

    def __call__(self, X):
        items = sorted((int(k), v) for k, v in X.items())
        if not self.sparse:
            return self._cast([v for _, v in items]).reshape(1, -1)
        if self.cast_to == "TO_STRING":
            out = _obj(["0.f"] * self.max_map)  # onnxruntime's pad string, verbatim
        else:
            out = np.zeros(self.max_map, dtype=F32 if self.cast_to == "TO_FLOAT" else np.int64)
        keep = [(k, v) for k, v in items if 0 <= k < self.max_map]
        if keep:
            out[[k for k, _ in keep]] = self._cast([v for _, v in keep])
        return out.reshape(1, -1)


@kernel("ZipMap", since=1, domain=ML, families=CPU)
class ZipMap:
    """(N, C) scores -> a list of N dicts {label: float}, keys in sorted order like onnxruntime's std::map."""

    def __init__(self, ctx, *, classlabels_int64s=None, classlabels_strings=None):
        if bool(classlabels_int64s) == bool(classlabels_strings):
            raise model_error(ctx, "exactly one of classlabels_int64s and classlabels_strings must be set")
        labels = [int(v) for v in classlabels_int64s] if classlabels_int64s else list(classlabels_strings)
        self.order = sorted(range(len(labels)), key=lambda i: labels[i])
        self.keys = [labels[i] for i in self.order]
        n = len(labels)
        self.features = Features(ctx, n, f"{plural(n, 'class label')} means {plural(n, 'score column')}")

    def __call__(self, X):
        self.features(X)
        rows = X.reshape(1, -1) if X.ndim == 1 else X
        if rows.ndim != 2:
            raise ValueError(f"ZipMap: input must be 1-D or 2-D, got shape {list(X.shape)}")
        keys = self.keys
        vals = rows[:, self.order].astype(np.float64).tolist()
        return [dict(zip(keys, r)) for r in vals]


# ---------------------------------------------------------------------------
# Linear models


def _class_labels(ints, strings, op):
    if strings:
        return list(strings), True
    return [int(v) for v in (ints or [])], False


def _weight_rows(ctx, coef, rows, what):
    """Features for ``coefficients`` read as ``rows`` rows of weights (one per class or target)."""
    if rows < 1 or coef.size == 0 or coef.size % rows:
        raise model_error(ctx, f"{plural(coef.size, 'coefficient')} do not split into {plural(rows, what)}")
    f = coef.size // rows
    return Features(ctx, f, f"{plural(coef.size, 'coefficient')} for {plural(rows, what)} means "
                    f"{plural(f, 'feature')} per {what}")


@kernel("LinearRegressor", since=1, domain=ML, families=CPU)
class LinearRegressor:
    def __init__(self, ctx, *, coefficients=None, intercepts=None, post_transform="NONE", targets=1):
        self.post = check_post_transform(ctx, post_transform)
        self.targets = int(targets)
        coef = np.asarray(coefficients or [], dtype=F32)
        if intercepts and len(intercepts) != self.targets:
            raise model_error(ctx, f"{plural(len(intercepts), 'intercept')} for {plural(self.targets, 'target')}")
        self.features = _weight_rows(ctx, coef, self.targets, "target")
        self.coef = coef.reshape(self.targets, -1)
        self.b = np.asarray(intercepts, dtype=F32) if intercepts else None

    def __call__(self, X):
        self.features(X)
        x = as_rows_f32(X)
        y = x @ self.coef.T
        if self.b is not None:
            y += self.b
        if self.post != "NONE":
            y = batched_update(y, self.post)
        return y.astype(F32, copy=False)


@kernel("LinearClassifier", since=1, domain=ML, families=CPU)
class LinearClassifier:
    def __init__(self, ctx, *, coefficients=None, intercepts=None, classlabels_ints=None,
                 classlabels_strings=None, multi_class=0, post_transform="NONE"):
        self.post = check_post_transform(ctx, post_transform)
        self.labels, self.strings = _class_labels(classlabels_ints, classlabels_strings, "LinearClassifier")
        coef = np.asarray(coefficients or [], dtype=F32)
        # onnxruntime counts classes by the intercepts
        self.k = len(intercepts) if intercepts else max(len(self.labels), 1)
        n = len(self.labels)
        if (n != self.k) if self.k > 1 else (n > 2):  # one weight row goes with up to 2 labels
            raise model_error(ctx, f"{plural(self.k, 'intercept')} (classes) but {plural(n, 'class label')}")
        self.features = _weight_rows(ctx, coef, self.k, "class")
        self.coef_t = np.ascontiguousarray(coef.reshape(self.k, -1).T)
        self.b = np.asarray(intercepts, dtype=F32) if intercepts else np.zeros(self.k, F32)
        # one weight row with two labels: a second score column is made (1 - s, s)
        self.add_second = self.k == 1 and len(self.labels) == 2

    def __call__(self, X):
        self.features(X)
        x = as_rows_f32(X)
        s = x @ self.coef_t + self.b
        if self.k == 1:
            if len(self.labels) == 2:
                neg, pos = self.labels
            else:
                neg, pos = ("0", "1") if self.strings else (0, 1)
            lab = labels_array([neg, pos], self.strings)[(s[:, 0] > 0).astype(np.intp)]
        else:
            lab = labels_array(self.labels, self.strings)[np.argmax(s, axis=1)]
        if self.post != "NONE" or self.add_second:
            s = batched_update(s, self.post, 1 if self.add_second else -1)
        return lab, s.astype(F32, copy=False)


# ---------------------------------------------------------------------------
# Support vector machines


class _SVMKernel:
    """kernel_type / kernel_params -> k(X, V) for rows of X against rows of V (float32 results)."""

    def __init__(self, ctx, kernel_type, kernel_params):
        check_choice(ctx, "kernel_type", kernel_type, ("LINEAR", "POLY", "RBF", "SIGMOID"))
        if kernel_params and len(kernel_params) != 3:  # onnxruntime reads three values from a non-empty list
            raise model_error(ctx, f"kernel_params has {len(kernel_params)} values, not 3 (gamma, coef0, degree)")
        self.kind = kernel_type
        p = list(kernel_params or []) + [0.0, 0.0, 0.0]
        self.gamma, self.coef0, self.degree = F32(p[0]), F32(p[1]), F32(p[2])

    def __call__(self, x, v, c=0.0):
        if self.kind == "RBF":
            # squared distances through the dot product, in float64 to avoid cancellation
            x64, v64 = x.astype(np.float64), v.astype(np.float64)
            d2 = (x64 * x64).sum(1)[:, None] + (v64 * v64).sum(1)[None, :] - 2.0 * (x64 @ v64.T)
            return np.exp(-self.gamma * np.maximum(d2, 0).astype(F32))
        if self.kind == "LINEAR":
            out = x @ v.T
            return out + F32(c) if c else out
        out = self.gamma * (x @ v.T) + self.coef0
        if self.kind == "POLY":
            return out ** self.degree
        return np.tanh(out)


def _multiclass_probability(r):
    """Pairwise probabilities r (N, K, K) -> class probabilities (N, K), libsvm's iterative method
    as onnxruntime runs it in float32: at most 100 sweeps, rows stop when converged."""
    n, k = r.shape[0], r.shape[1]
    q = np.zeros((n, k, k), dtype=F32)
    for i in range(k):
        for j in range(k):
            if j != i:
                q[:, i, i] += r[:, j, i] * r[:, j, i]
        for j in range(i):
            q[:, i, j] = q[:, j, i]
        for j in range(i + 1, k):
            q[:, i, j] = -r[:, j, i] * r[:, i, j]
    p = np.full((n, k), F32(1) / F32(k), dtype=F32)
    eps = F32(0.005) / F32(k)
    active = np.ones(n, dtype=bool)
    one = F32(1)
    for _ in range(100):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        qa, pa = q[idx], p[idx]
        qp = np.einsum("nij,nj->ni", qa, pa).astype(F32)
        pqp = (pa * qp).sum(1).astype(F32)
        err = np.abs(qp - pqp[:, None]).max(axis=1)
        done = err < eps
        active[idx[done]] = False
        go = ~done
        if not go.any():
            break
        qa, pa, qp, pqp, rows = qa[go], pa[go], qp[go], pqp[go], idx[go]
        for i in range(k):
            diff = (-qp[:, i] + pqp) / qa[:, i, i]
            pa[:, i] += diff
            pqp = (pqp + diff * (diff * qa[:, i, i] + F32(2) * qp[:, i])) / (one + diff) / (one + diff)
            qp = (qp + diff[:, None] * qa[:, i, :]) / (one + diff)[:, None]
            pa = pa / (one + diff)[:, None]
        p[rows] = pa
    return p


@kernel("SVMClassifier", since=1, domain=ML, families=CPU)
class SVMClassifier:
    def __init__(self, ctx, *, classlabels_ints=None, classlabels_strings=None, coefficients=None,
                 kernel_params=None, kernel_type="LINEAR", post_transform="NONE", prob_a=None, prob_b=None,
                 rho=None, support_vectors=None, vectors_per_class=None):
        self.post = check_post_transform(ctx, post_transform)
        self.labels, self.strings = _class_labels(classlabels_ints, classlabels_strings, "SVMClassifier")
        if not self.labels:
            raise model_error(ctx, "classlabels_ints or classlabels_strings is required")
        k = self.k = len(self.labels)
        coef = np.asarray(coefficients or [], dtype=F32)
        if coef.size == 0:
            raise model_error(ctx, "coefficients are required")
        self.rho = np.asarray(rho or [0.0], dtype=F32)
        self.prob_a = np.asarray(prob_a or [], dtype=F32)
        self.prob_b = np.asarray(prob_b or [], dtype=F32)
        if self.prob_a.size != self.prob_b.size:
            raise model_error(ctx, f"prob_a has {self.prob_a.size} values but prob_b {self.prob_b.size}")
        self.all_positive = bool((coef >= 0).all())
        vpc = [int(v) for v in (vectors_per_class or [])]
        self.svc = sum(vpc) > 0
        self.kernel = _SVMKernel(ctx, kernel_type if self.svc else "LINEAR", kernel_params)
        if not self.svc:  # liblinear: one weight row per class
            self.features = _weight_rows(ctx, coef, k, "class")
            self.coef = coef.reshape(k, -1)
            return
        nv = sum(vpc)
        if len(vpc) != k or min(vpc) < 0:
            raise model_error(ctx, f"vectors_per_class {vpc} does not count the vectors of {plural(k, 'class')}")
        sv = np.asarray(support_vectors or [], dtype=F32)
        if sv.size == 0 or sv.size % nv:
            raise model_error(ctx, f"{sv.size} support_vectors values do not split into {plural(nv, 'support vector')}")
        if coef.size != (k - 1) * nv:
            raise model_error(ctx, f"{plural(coef.size, 'coefficient')} for {plural(k, 'class')} and "
                              f"{plural(nv, 'support vector')}: expected (classes - 1) x vectors = {(k - 1) * nv}")
        npairs = k * (k - 1) // 2
        for attr, n in (("rho", len(rho or [])), ("prob_a", self.prob_a.size), ("prob_b", self.prob_b.size)):
            if n and n != npairs:
                raise model_error(ctx, f"{attr} has {n} values for {plural(npairs, 'class pair')} "
                                  f"({plural(k, 'class')}), one per pair")
        f = sv.size // nv
        self.features = Features(ctx, f, f"{sv.size} support_vectors values for {plural(nv, 'support vector')} "
                                 f"means {plural(f, 'feature')} per vector")
        self.sv = sv.reshape(nv, -1)
        coef = coef.reshape(k - 1, nv)
        start = np.concatenate([[0], np.cumsum(vpc)])
        # pairwise decision values = kernels @ M + rho; column p of M mixes the two classes' coefficients
        self.pairs = [(i, j) for i in range(self.k - 1) for j in range(i + 1, self.k)]
        m = np.zeros((nv, len(self.pairs)), dtype=np.float64)
        for p, (i, j) in enumerate(self.pairs):
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            m[si, p] = coef[j - 1, si]
            m[sj, p] = coef[i, sj]
        self.m = m

    def __call__(self, X):
        self.features(X)
        x = as_rows_f32(X)
        n = x.shape[0]
        have_proba = self.prob_a.size > 0
        if not self.svc:
            z = self.kernel(x, self.coef, self.rho[0])
            maxclass = np.argmax(z, axis=1)
            maxw = z[np.arange(n), maxclass]
            votes = None
        else:
            kern = self.kernel(x, self.sv)
            dec = (kern.astype(np.float64) @ self.m + self.rho.astype(np.float64)).astype(F32)
            votes = np.zeros((n, self.k), dtype=np.int64)
            for p, (i, j) in enumerate(self.pairs):
                pos = dec[:, p] > 0
                votes[:, i] += pos
                votes[:, j] += ~pos
            maxclass = np.argmax(votes, axis=1)
            maxw = np.zeros(n, dtype=F32)
            if have_proba:
                r = np.zeros((n, self.k, self.k), dtype=F32)
                for p, (i, j) in enumerate(self.pairs):
                    v = F32(1) - _logistic_f32(dec[:, p] * self.prob_a[p] + self.prob_b[p])
                    v = np.minimum(np.maximum(v, F32(1e-7)), F32(1) - F32(1e-7))
                    r[:, i, j] = v
                    r[:, j, i] = F32(1) - v
                z = _multiclass_probability(r)
            else:
                z = dec
        labels = labels_array(self.labels, self.strings)
        if self.k == 2:  # onnxruntime's binary label rule
            if not have_proba:
                pick1 = (self.all_positive & (maxw >= 0.5)) | ((maxw > 0) & (not self.all_positive))
                lab = np.where(pick1, labels[1], labels[maxclass])
            else:
                lab = labels[maxclass]
            if isinstance(lab, np.ndarray) and self.strings:
                lab = lab.astype(object)
        else:
            lab = labels[maxclass]
        if self.svc and not have_proba:
            second = -1
            if self.k <= 2:
                second = 2 if self.post == "NONE" else 0
            z = batched_update(z, self.post, second)
        else:
            z = batched_update(z, self.post, -1)
        return lab, z.astype(F32, copy=False)


def _logistic_f32(v):
    v = v.astype(F32)
    e = F32(1) / (F32(1) + np.exp(-np.abs(v)))
    return np.where(v < 0, F32(1) - e, e).astype(F32)


@kernel("SVMRegressor", since=1, domain=ML, families=CPU)
class SVMRegressor:
    def __init__(self, ctx, *, coefficients=None, kernel_params=None, kernel_type="LINEAR", n_supports=0,
                 one_class=0, post_transform="NONE", rho=None, support_vectors=None):
        check_post_transform(ctx, post_transform)  # onnxruntime ignores it
        coef = self.coef = np.asarray(coefficients or [], dtype=F32)
        if coef.size == 0:
            raise model_error(ctx, "coefficients are required")
        self.rho = F32((rho or [0.0])[0])
        self.one_class = bool(one_class)
        nv = int(n_supports)
        self.svc = nv > 0
        self.kernel = _SVMKernel(ctx, kernel_type if self.svc else "LINEAR", kernel_params)
        if not self.svc:  # linear: the coefficients are the weights
            self.features = Features(ctx, coef.size, f"{plural(coef.size, 'coefficient')} (linear, n_supports=0) "
                                     f"means {plural(coef.size, 'feature')}")
            return
        sv = np.asarray(support_vectors or [], dtype=F32)
        if sv.size == 0 or sv.size % nv:
            raise model_error(ctx, f"{sv.size} support_vectors values do not split into n_supports={nv} vectors")
        if coef.size != nv:
            raise model_error(ctx, f"{plural(coef.size, 'coefficient')} for n_supports={nv} support vectors "
                              "(one each)")
        f = sv.size // nv
        self.features = Features(ctx, f, f"{sv.size} support_vectors values for n_supports={nv} vectors "
                                 f"means {plural(f, 'feature')} per vector")
        self.sv = sv.reshape(nv, -1)

    def __call__(self, X):
        self.features(X)
        x = as_rows_f32(X)
        if self.svc:
            y = self.kernel(x, self.sv) @ self.coef + self.rho
        else:
            y = x @ self.coef + self.rho
        if self.one_class:
            y = np.where(y > 0, F32(1), F32(-1))
        return y.astype(F32, copy=False).reshape(-1, 1)
