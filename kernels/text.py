"""String ops: StringNormalizer, StringConcat, StringSplit, RegexFullMatch, TfIdfVectorizer.

Strings are numpy object arrays of Python ``str``; these kernels run on the CPU only.
Per-string work (case folding, splitting, regex) is a Python loop over the elements:
there is no vectorized form of it in numpy.
"""
from __future__ import annotations

import re

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel


def _obj(values, shape):
    """An object array of ``shape`` from a flat list of str (np.array would make '<U' arrays)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


@kernel("StringNormalizer", since=10, families=("cpu",))
class StringNormalizer:
    def __init__(self, ctx, *, case_change_action="NONE", is_case_sensitive=0, locale="", stopwords=None):
        if case_change_action not in ("NONE", "LOWER", "UPPER"):
            raise OrtNotImplemented(f"StringNormalizer: case_change_action '{case_change_action}' not supported "
                                    "(NONE, LOWER, UPPER)")
        self.action = case_change_action
        self.case_sensitive = bool(is_case_sensitive)
        words = list(stopwords or [])
        self.stops = set(words) if self.case_sensitive else {w.lower() for w in words}

    def __call__(self, X):
        if X.ndim == 2 and X.shape[0] != 1 or X.ndim not in (1, 2):
            raise ValueError(f"StringNormalizer: input must be [C] or [1, C], got shape {X.shape}")
        words = X.reshape(-1).tolist()
        if self.stops:
            if self.case_sensitive:
                words = [w for w in words if w not in self.stops]
            else:
                words = [w for w in words if w.lower() not in self.stops]
        if self.action == "LOWER":
            words = [w.lower() for w in words]
        elif self.action == "UPPER":
            words = [w.upper() for w in words]
        if not words:
            words = [""]  # onnxruntime returns one empty string rather than an empty tensor
        return _obj(words, (len(words),) if X.ndim == 1 else (1, len(words)))


@kernel("StringConcat", since=20, families=("cpu",))
def string_concat(xp, X, Y):
    # numpy's add on object arrays calls str.__add__ element-wise, with broadcasting.
    out = np.add(X.astype(object, copy=False), Y.astype(object, copy=False))
    if not isinstance(out, np.ndarray):  # 0-d inputs give a bare str
        out = _obj([out], ())
    return out


@kernel("StringSplit", since=20, families=("cpu",))
def string_split(xp, X, *, delimiter=None, maxsplit=None):
    sep = delimiter or None  # "" and absent both mean: split on runs of whitespace
    limit = -1 if maxsplit is None else maxsplit
    # An empty string has no substrings (onnxruntime), whatever the delimiter.
    parts = [s.split(sep, limit) if s else [] for s in X.reshape(-1).tolist()]
    counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    width = int(counts.max()) if len(parts) else 0
    flat = [w for p in parts for w in p + [""] * (width - len(p))]
    return _obj(flat, X.shape + (width,)), counts.reshape(X.shape)


@kernel("RegexFullMatch", since=20, families=("cpu",))
class RegexFullMatch:
    # Python's re stands in for RE2; the syntax of common patterns is the same.
    def __init__(self, ctx, *, pattern=""):
        try:
            self.regex = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"RegexFullMatch: invalid pattern {pattern!r}: {e}") from None

    def __call__(self, X):
        match = self.regex.fullmatch
        flat = [match(s) is not None for s in X.reshape(-1).tolist()]
        return np.array(flat, dtype=np.bool_).reshape(X.shape)


@kernel("TfIdfVectorizer", since=9, families=("cpu",))
class TfIdfVectorizer:
    """N-gram counts (with skips) against a pool, then TF / IDF / TFIDF weighting.

    Tokens are mapped to ids in the pool's vocabulary (an unknown token gets id V); an
    n-gram of ids is encoded as one int64 in base V+1 and looked up in the sorted codes of
    the pool's n-grams, so counting is vectorized over rows and start positions.
    """

    def __init__(self, ctx, *, max_gram_length=None, max_skip_count=None, min_gram_length=None, mode=None,
                 ngram_counts=None, ngram_indexes=None, pool_int64s=None, pool_strings=None, weights=None):
        if mode not in ("TF", "IDF", "TFIDF"):
            raise OrtNotImplemented(f"TfIdfVectorizer: mode '{mode}' not supported (TF, IDF, TFIDF)")
        self.mode = mode
        self.min_n, self.max_n, self.max_skip = min_gram_length, max_gram_length, max_skip_count
        self.indexes = np.asarray(ngram_indexes, dtype=np.int64)
        self.out_size = int(self.indexes.max()) + 1 if self.indexes.size else 0
        self.weights = None
        if weights is not None:
            # weights[i] belongs to the i-th pool n-gram, i.e. to output slot ngram_indexes[i].
            self.weights = np.zeros(self.out_size, dtype=np.float32)
            self.weights[self.indexes] = np.asarray(weights, dtype=np.float32)
        self.strings = pool_strings is not None
        pool = list(pool_strings) if self.strings else np.asarray(pool_int64s, dtype=np.int64)
        # Vocabulary of the pool's tokens.
        if self.strings:
            vocab = sorted(set(pool))
            self.vocab = {s: i for i, s in enumerate(vocab)}
            pool_ids = np.array([self.vocab[s] for s in pool], dtype=np.int64)
        else:
            self.vocab = np.unique(pool)
            pool_ids = np.searchsorted(self.vocab, pool)
        self.V = len(vocab) if self.strings else len(self.vocab)
        base = self.V + 1
        # Per n-gram size: sorted codes and the output index of each.
        self.tables = {}
        counts = list(ngram_counts) + [len(pool)]
        gram_pos = 0
        for i in range(len(ngram_counts)):
            n = i + 1
            items = pool_ids[counts[i]:counts[i + 1]]
            grams = items.reshape(-1, n)
            if self.min_n <= n <= self.max_n and len(grams):
                if n * np.log2(base) > 62:
                    raise OrtNotImplemented(f"TfIdfVectorizer: {n}-grams over a vocabulary of {self.V} "
                                            "tokens do not fit the int64 encoding")
                codes = self._encode([grams[:, k] for k in range(n)], base)
                order = np.argsort(codes, kind="stable")
                self.tables[n] = (codes[order], self.indexes[gram_pos:gram_pos + len(grams)][order])
            gram_pos += len(grams)

    @staticmethod
    def _encode(columns, base):
        code = np.zeros(columns[0].shape, dtype=np.int64)
        for col in columns:
            code = code * base + col
        return code

    def _ids(self, X):
        if self.strings:
            uniq, inv = np.unique(X.reshape(-1).astype(object), return_inverse=True)
            lut = np.array([self.vocab.get(s, self.V) for s in uniq.tolist()], dtype=np.int64)
            return lut[inv].reshape(X.shape)
        x = X.astype(np.int64, copy=False)
        pos = np.searchsorted(self.vocab, x)
        pos_c = np.minimum(pos, max(self.V - 1, 0))
        hit = (pos < self.V) & (self.vocab[pos_c] == x) if self.V else np.zeros(x.shape, bool)
        return np.where(hit, pos, self.V)

    def __call__(self, X):
        rows = X.reshape(1, -1) if X.ndim <= 1 else X
        if rows.ndim != 2:
            raise ValueError(f"TfIdfVectorizer: input must be [C] or [B, C], got shape {X.shape}")
        B, C = rows.shape
        ids = self._ids(rows)
        base = self.V + 1
        freq = np.zeros(B * self.out_size, dtype=np.int64)
        row_off = (np.arange(B, dtype=np.int64) * self.out_size)[:, None]
        for skip in range(1, self.max_skip + 2):
            # Unigrams ignore the skip distance: count them on the first pass only.
            for n in range(max(self.min_n, 1 if skip == 1 else 2), self.max_n + 1):
                table = self.tables.get(n)
                starts = C - skip * (n - 1)
                if table is None or starts <= 0:
                    continue
                code = self._encode([ids[:, k * skip:k * skip + starts] for k in range(n)], base)
                sorted_codes, out_idx = table
                pos = np.searchsorted(sorted_codes, code)
                pos_c = np.minimum(pos, len(sorted_codes) - 1)
                hit = sorted_codes[pos_c] == code
                slots = (row_off + out_idx[pos_c])[hit]
                freq += np.bincount(slots, minlength=freq.size)
        freq = freq.reshape(B, self.out_size)
        if self.mode == "TF":
            y = freq.astype(np.float32)
        elif self.mode == "IDF":
            y = (freq > 0).astype(np.float32)
            if self.weights is not None:
                y *= self.weights
        else:
            y = freq.astype(np.float32)
            if self.weights is not None:
                y *= self.weights
        return y.reshape(self.out_size) if X.ndim <= 1 else y
