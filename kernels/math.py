"""Linear algebra, softmax family, top-k, arg-reductions and cumulative ops.

MatMul and Gemm are the hot ops: they run as one BLAS call on contiguous
operands, with constant weights transposed/cast once in the prepare step.
Half-precision matmul operands (float16, bfloat16) are computed in float32 and
cast back: numpy has no half-precision BLAS and float32 accumulation is what
onnxruntime does too. The softmax family runs in the input dtype (see _softmax).
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel

from . import _direct, _int8
from . import _transformer_jit as _tj
from ._common import norm_axis, to_ints


# --------------------------------------------------------------------------- helpers

def _work_dtype(dt):
    """The dtype to compute in: float32 for 16-bit (and smaller) floats, else the input's."""
    dt = np.dtype(dt)
    if dt == np.float16 or (dt.kind == "V" and dt.itemsize <= 2):  # ml_dtypes floats have kind 'V'
        return np.dtype(np.float32)
    return dt


def _to_work(xp, x):
    wd = _work_dtype(x.dtype)
    return x if x.dtype == wd else x.astype(wd)


def _matmul(xp, a, b):
    """ONNX MatMul (numpy.matmul semantics) with the batch folded into one GEMM when B is 2-D."""
    if a.ndim > 2 and b.ndim == 2 and (a.flags.c_contiguous if xp is np else True):
        rows = int(np.prod(a.shape[:-1], dtype=np.int64))
        y = xp.matmul(a.reshape(rows, a.shape[-1]), b)
        return y.reshape(a.shape[:-1] + (b.shape[1],))
    return xp.matmul(a, b)


def _scale(y, alpha):
    """y * alpha, in place when y is a float array (it is a fresh matmul result)."""
    if alpha == 1.0:
        return y
    if y.dtype.kind == "f":
        y *= y.dtype.type(alpha)
        return y
    if float(alpha).is_integer():
        y *= int(alpha)
        return y
    return (y * alpha).astype(y.dtype)


# --------------------------------------------------------------------------- MatMul / Gemm

# Few-row products (short sequences: 2..32 rows) run 10-25% faster in OpenBLAS as
# Y^T = B^T A^T with B^T [N, K] C-contiguous (the weight in Fortran order) than as A B with B
# in C order, and so do products up to 128 rows that reduce a long K to a short N (an FFN's
# down projection); other many-row ones and very wide outputs (a vocabulary projection) run
# faster the other way round (measured on OpenBLAS 0.3.31, SkylakeX kernels, 1 thread).
_T_FORM_MAX_ROWS = 32
_T_FORM_MAX_ROWS_LONG_K = 128
_T_FORM_MAX_N = 16384


class _Weight:
    """A constant 2-D GEMM operand B [K, N], cast to the compute dtype once, and the product
    A @ B in the form OpenBLAS runs fastest for A's row count.

    * one row: gemv on the Fortran-order copy, so every output is the dot product of one
      contiguous column (C order's gemv sums its column tail apart; how each BLAS kernel
      rounds is its own, so no bit-identity between columns is promised);
    * 2.._T_FORM_MAX_ROWS rows (or up to _T_FORM_MAX_ROWS_LONG_K when K >= 2N; N not huge):
      (B^T A^T)^T with B^T = the Fortran-order copy, the result copied back to C order;
    * more rows: A @ B with B in C order.

    Each layout is made when first needed (a static row count from shape inference picks it in
    the prepare step; a run-time one on first use - idempotent, so concurrent runs are safe); a
    model whose shapes do not change keeps one. The C layout shares the initializer's memory.
    """

    __slots__ = ("xp", "c", "f", "n", "t_rows")

    def __init__(self, xp, b, rows=None):
        self.xp = xp
        self.c = self.f = None
        k, self.n = b.shape
        self.t_rows = 0 if self.n > _T_FORM_MAX_N else (
            _T_FORM_MAX_ROWS_LONG_K if k >= 2 * self.n else _T_FORM_MAX_ROWS)
        if xp is np and rows is not None and self._fortran(rows):
            self.f = np.ascontiguousarray(b.T)  # B^T [N, K]
        else:
            self.c = xp.ascontiguousarray(xp.asarray(b))

    def _fortran(self, rows):
        return rows == 1 or rows <= self.t_rows

    def matmul(self, a):
        """a @ B for a 1-D or 2-D ``a`` (a fresh C-contiguous result)."""
        xp = self.xp
        if xp is not np:
            return xp.matmul(a, self._c())
        rows = a.shape[0] if a.ndim == 2 else 1
        if not self._fortran(rows):
            return np.matmul(a, self._c())
        f = self.f
        if f is None:
            f = self.f = np.ascontiguousarray(self.c.T)
        if rows == 1:
            return np.matmul(a, f.T)  # gemv down contiguous columns
        return np.ascontiguousarray(np.matmul(f, a.T).T)

    def _c(self):
        c = self.c
        if c is None:
            c = self.c = np.ascontiguousarray(self.f.T)
        return c


def _static_rows(t, skip_last=1):
    """The product of a ValueInfo's leading dims (all but the last ``skip_last``) when all are
    known integers, else None."""
    shape = getattr(t, "shape", None) if t is not None else None
    if shape is None or len(shape) < skip_last:
        return None
    dims = shape[: len(shape) - skip_last] if skip_last else shape
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        return None
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


def _lean_gemm_candidate(ctx, transA=0, c_input=None):
    """Cheap pre-check (before a kernel is prepared twice) for kernels._direct's GEMM bindings: numpy, A a
    2-D float32/float64 input (not constant, not transposed), B a constant of A's dtype, C (input
    ``c_input``) constant or absent."""
    if ctx.xp is not np or transA or ctx.input_rank(0) != 2 or ctx.const(0) is not None:
        return False
    dt = ctx.input_dtype(0)
    if dt is None or np.dtype(dt) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return False
    b = ctx.const(1)
    if b is None or b.ndim != 2 or b.dtype != np.dtype(dt):
        return False
    return c_input is None or not ctx.has_input(c_input) or ctx.const(c_input) is not None


def _matmul_specialize(ctx):
    """MatMul with a constant 2-D weight and a 2-D A at small row counts: a Direct call (kernels._direct)."""
    if not _lean_gemm_candidate(ctx):
        return None
    return _direct.matmul(ctx, MatMul(ctx))


def _gemm_specialize(ctx, **attrs):
    """Gemm with a constant B (and C): a Direct call (kernels._direct.gemm_direct)."""
    if not _lean_gemm_candidate(ctx, attrs.get("transA", 0), 2):
        return None
    g = Gemm(ctx, **attrs)
    parts = _direct.gemm_parts(ctx, g)
    return None if parts is None else _direct.gemm_direct(parts, g)


@kernel("MatMul", since=1, specialize=_matmul_specialize)  # 9 and 13 only add types
class MatMul:
    def __init__(self, ctx):
        self.xp = ctx.xp
        b = ctx.const(1)
        # A constant weight is cast to the compute dtype once; a 2-D one is laid out for the
        # GEMM or gemv that runs it (see _Weight). Other ranks stay C-contiguous.
        self.B = self.W = None
        if b is not None:
            bw = _to_work(np, b)
            if bw.ndim == 2:
                t = ctx.input_types[0] if ctx.input_types else None
                self.W = _Weight(self.xp, bw, _static_rows(t))
            else:
                self.B = self.xp.asarray(np.ascontiguousarray(bw))

    def __call__(self, A, B):
        xp = self.xp
        a = _to_work(xp, A)
        if self.W is not None and (a.ndim <= 2 or (a.flags.c_contiguous if xp is np else True)):
            k = a.shape[-1]
            y = self.W.matmul(a if a.ndim <= 2 else a.reshape(-1, k))
            if a.ndim > 2:
                y = y.reshape(a.shape[:-1] + (y.shape[-1],))
        else:
            if self.W is not None:
                b = self.W._c()
            else:
                b = self.B if self.B is not None else _to_work(xp, B)
            y = xp.asarray(_matmul(xp, a, b))  # 1-D @ 1-D gives a numpy scalar
        return y if y.dtype == A.dtype else y.astype(A.dtype)


def _broadcasts_into(small, big) -> bool:
    """Whether an array of shape ``small`` broadcasts to ``big`` without growing it (np.broadcast_shapes
    costs ~5 us a call; this a fraction of one)."""
    if len(small) > len(big):
        return False
    for s_, b_ in zip(reversed(small), reversed(big)):
        if s_ != b_ and s_ != 1:
            return False
    return True


@kernel("Gemm", since=1, specialize=_gemm_specialize)  # 1/6: 'broadcast' attribute (we always broadcast); 7: unidirectional
class Gemm:  # broadcasting; 11: C optional; 9/13: types. One kernel covers them all.
    def __init__(self, ctx, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
        xp = self.xp = ctx.xp
        self.alpha, self.beta = float(alpha), float(beta)
        self.transA, self.transB = bool(transA), bool(transB)
        # Constant operands: transpose and cast once, so a run is one contiguous GEMM.
        a, b, c = ctx.const(0), ctx.const(1), ctx.const(2)
        self.A = None if a is None else xp.ascontiguousarray(xp.asarray(_to_work(np, a.T if self.transA else a)))
        self.W = None  # B's layout: see _Weight
        if b is not None:
            rows = None
            t = ctx.input_types[0] if ctx.input_types else None
            if t is not None and getattr(t, "shape", None) is not None and len(t.shape) == 2:
                d = t.shape[1] if self.transA else t.shape[0]
                rows = int(d) if isinstance(d, (int, np.integer)) and not isinstance(d, bool) else None
            self.W = _Weight(xp, _to_work(np, b.T if self.transB else b), rows)
        self.C = None
        if c is not None and self.beta != 0.0:
            cw = _to_work(np, c)
            if self.beta != 1.0:
                cw = (cw * self.beta).astype(cw.dtype) if cw.dtype.kind == "f" else cw * self.beta
            self.C = xp.asarray(cw)

    def __call__(self, A, B, C=None):
        xp = self.xp
        out_dtype = A.dtype
        a = self.A if self.A is not None else _to_work(xp, A.T if self.transA else A)
        if self.W is not None and a.ndim == 2:
            y = self.W.matmul(a)
        else:
            b = self.W._c() if self.W is not None else _to_work(xp, B.T if self.transB else B)
            y = xp.matmul(a, b)
        y = _scale(y, self.alpha)  # fresh array: scaled and biased in place
        if C is not None and self.beta != 0.0:
            c = self.C
            if c is None:
                c = _to_work(xp, C)
                if self.beta != 1.0:
                    c = c * (c.dtype.type(self.beta) if c.dtype.kind == "f" else self.beta)
            if c.dtype == y.dtype and _broadcasts_into(c.shape, y.shape):
                y += c
            else:
                y = (y + c).astype(y.dtype)
        return y if y.dtype == out_dtype else y.astype(out_dtype)


@kernel("MatMulInteger", since=10)
class MatMulInteger:
    """int8/uint8 matmul with zero points, int32 result, exact: float32 BLAS on K blocks small
    enough that every partial sum is an exact float32 integer (kernels/_int8.py); a constant B
    (with a constant or absent zero point) is shifted and converted once."""

    def __init__(self, ctx):
        self.xp = ctx.xp
        self.B = _int8.constant_operand(ctx, 1, 3)

    def __call__(self, A, B, a_zero_point=None, b_zero_point=None):
        xp = self.xp
        b = self.B if self.B is not None else _int8.IntOperand.make(xp, B, b_zero_point)
        if xp is np:
            return _int8.exact_int_matmul(xp, A, b, a_zero_point)
        # device: float64 operands (exact for any realistic K), one cuBLAS GEMM
        a = _int8.IntOperand.make(xp, A, a_zero_point, per_row=True)
        return _matmul(xp, a.values, b.values).astype(np.int32)


# --------------------------------------------------------------------------- Einsum / Det

@kernel("Einsum", since=12)  # 28 only adds types
class Einsum:
    def __init__(self, ctx, *, equation):
        self.xp = ctx.xp
        self.eq = equation.replace(" ", "")
        self._paths = {}  # contraction path per tuple of input shapes

    def __call__(self, *inputs):
        xp = self.xp
        out_dtype = inputs[0].dtype
        ops = [_to_work(xp, x) for x in inputs]
        if len(ops) <= 1:
            y = xp.einsum(self.eq, *ops)
        elif xp is np:
            key = tuple(x.shape for x in ops)
            path = self._paths.get(key)
            if path is None:
                if len(self._paths) > 64:  # dynamic shapes: keep the cache bounded
                    self._paths.clear()
                path = self._paths[key] = np.einsum_path(self.eq, *ops, optimize="greedy")[0]
            y = np.einsum(self.eq, *ops, optimize=path)
        else:
            y = xp.einsum(self.eq, *ops, optimize=True)
        return xp.asarray(y, dtype=out_dtype)


@kernel("Det", since=11)  # 22 only adds bfloat16
def det(xp, X):
    y = xp.linalg.det(_to_work(xp, X))  # numpy's linalg has no float16/bfloat16
    return xp.asarray(y, dtype=X.dtype)


# --------------------------------------------------------------------------- CumSum / CumProd

def _cumulative(xp, X, axis, exclusive, reverse, fn, identity):
    axis = norm_axis(to_ints(axis)[0], X.ndim)
    x = xp.flip(X, axis) if reverse else X
    c = fn(x, axis=axis, dtype=X.dtype)
    if exclusive:
        out = xp.empty_like(c)
        dst = [slice(None)] * X.ndim
        src = [slice(None)] * X.ndim
        first = [slice(None)] * X.ndim
        dst[axis], src[axis], first[axis] = slice(1, None), slice(None, -1), slice(0, 1)
        out[tuple(dst)] = c[tuple(src)]
        out[tuple(first)] = identity
        c = out
    return xp.flip(c, axis) if reverse else c


@kernel("CumSum", since=11, host_inputs=(1,))  # 14 only adds types
def cumsum(xp, x, axis, *, exclusive=0, reverse=0):
    return _cumulative(xp, x, axis, exclusive, reverse, xp.cumsum, 0)


@kernel("CumProd", since=26, host_inputs=(1,))
def cumprod(xp, x, axis, *, exclusive=0, reverse=0):
    return _cumulative(xp, x, axis, exclusive, reverse, xp.cumprod, 1)


# --------------------------------------------------------------------------- softmax family

def _softmax(xp, X, axes, log):
    # Runs in the input dtype, op by op, as the spec's function body does: float16 sums
    # accumulate in float32 inside numpy anyway; bfloat16 (ml_dtypes) rounds after every
    # op, which is what the reference results carry.
    m = xp.max(X, axis=axes, keepdims=True)
    with np.errstate(invalid="ignore"):  # all -inf slices give NaN, as in onnxruntime
        e = X - m  # fresh array, reused in place below
    if log:
        e -= xp.log(xp.sum(xp.exp(e), axis=axes, keepdims=True))
    else:
        xp.exp(e, out=e)
        e /= xp.sum(e, axis=axes, keepdims=True)
    return e


def _trailing_axes(axis, ndim):
    """Opset < 13 semantics: the input is coerced to 2-D at `axis`; the softmax runs over all trailing dims."""
    if ndim == 0:
        return None
    return tuple(range(norm_axis(axis, ndim), ndim))


@kernel("Softmax", since=1)  # 1/11: coerce to 2-D at axis (11 allows negative axis)
def softmax_v1(xp, input, *, axis=1):
    return _softmax(xp, input, _trailing_axes(axis, input.ndim), False)


@kernel("Softmax", since=13)  # 13: normalizes along the single `axis`, default -1
class Softmax13:
    """Softmax along ``axis``; float32 over the last axis through the compiled rows loop
    (kernels._transformer_jit, compiled now) when numba is there."""

    def __init__(self, ctx, *, axis=-1):
        self.xp = ctx.xp
        self.axis = int(axis)
        rank, dt = ctx.input_rank(0), ctx.input_dtype(0)
        last = rank is None or norm_axis(self.axis, max(rank, 1)) == max(rank, 1) - 1
        self.jit = _tj.softmax_rows() if ctx.xp is np and dt in (None, np.float32) and last else None

    def __call__(self, input):
        if (self.jit is not None and input.dtype == np.float32 and input.size >= _tj.MIN_SIZE and input.ndim
                and norm_axis(self.axis, input.ndim) == input.ndim - 1 and input.shape[-1]):
            x2 = np.ascontiguousarray(input).reshape(-1, input.shape[-1])
            return _tj.run_softmax(self.jit, x2).reshape(input.shape)
        return _softmax(self.xp, input, norm_axis(self.axis, input.ndim) if input.ndim else None, False)


@kernel("LogSoftmax", since=1)  # 1/11: coerce to 2-D at axis
def log_softmax_v1(xp, input, *, axis=1):
    return _softmax(xp, input, _trailing_axes(axis, input.ndim), True)


@kernel("LogSoftmax", since=13)  # 13: single axis, default -1
def log_softmax_v13(xp, input, *, axis=-1):
    return _softmax(xp, input, norm_axis(axis, input.ndim) if input.ndim else None, True)


def _hardmax_last(xp, x2):
    """One-hot of the first maximum along the last axis."""
    idx = xp.argmax(x2, axis=-1)[..., None]
    return (xp.arange(x2.shape[-1]) == idx).astype(x2.dtype)


@kernel("Hardmax", since=1)  # 1/11: coerce to 2-D at axis
def hardmax_v1(xp, input, *, axis=1):
    a = norm_axis(axis, input.ndim)
    lead = int(np.prod(input.shape[:a], dtype=np.int64))
    x2 = input.reshape(lead, -1) if input.size else input.reshape(lead, int(np.prod(input.shape[a:])))
    return _hardmax_last(xp, x2).reshape(input.shape)


@kernel("Hardmax", since=13)  # 13: along the single `axis`, default -1
def hardmax_v13(xp, input, *, axis=-1):
    a = norm_axis(axis, input.ndim)
    return xp.moveaxis(_hardmax_last(xp, xp.moveaxis(input, a, -1)), -1, a)


# --------------------------------------------------------------------------- TopK

def _sorted_order(xp, x, largest):
    """Stable ordering along the last axis: by value, ties by smaller index first."""
    if not largest:
        return xp.argsort(x, axis=-1, kind="stable")
    # Stable ascending sort of the reversed axis, read backwards: descending values, and
    # among equal values the smaller original index first (the spec's tie rule).
    n = x.shape[-1]
    return (n - 1) - xp.flip(xp.argsort(xp.flip(x, -1), axis=-1, kind="stable"), -1)


def _topk_select(xp, x, k, largest):
    """Indices [rows, k] (ascending) of the k best elements of each row of the 2-D `x`.

    argpartition finds the k best in O(n). When the k-th best value t is tied with
    elements outside that set, the spec wants the smallest indices among the ties: then
    every element strictly better than t is taken plus the first ties. Returns None when
    NaNs upset the count (the caller then sorts fully).
    """
    n = x.shape[-1]
    if largest:
        sel = xp.argpartition(x, n - k, axis=-1)[:, n - k:]
        t = xp.min(xp.take_along_axis(x, sel, axis=-1), axis=-1, keepdims=True)
        at_least = x >= t
    else:
        sel = xp.argpartition(x, k - 1, axis=-1)[:, :k]
        t = xp.max(xp.take_along_axis(x, sel, axis=-1), axis=-1, keepdims=True)
        at_least = x <= t
    if bool((xp.count_nonzero(at_least, axis=-1) == k).all()):
        return xp.sort(sel, axis=-1)  # no tie crosses the boundary: the partition is the answer
    equal = x == t
    need = k - xp.count_nonzero(at_least & ~equal, axis=-1)[:, None]
    take = (at_least & ~equal) | (equal & (xp.cumsum(equal, axis=-1) <= need))
    rows, cols = xp.nonzero(take)
    if cols.shape[0] != x.shape[0] * k:
        return None
    return cols.reshape(x.shape[0], k)  # nonzero is row-major: indices ascend within a row


def _topk(xp, X, k, axis, largest, sorted_):
    axis = norm_axis(axis, X.ndim)
    n = X.shape[axis]
    if not 0 <= k <= n:
        from ortlite.errors import InvalidArgument

        raise InvalidArgument(f"TopK: k={k} out of range for axis {axis} of size {n} (expected 0 <= k <= {n})")
    x = xp.moveaxis(X, axis, -1)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, n)
    idx = None
    if 0 < k and 4 * k <= n and n >= 64:
        sel = _topk_select(xp, x2, k, largest)
        if sel is not None:
            vals = xp.take_along_axis(x2, sel, axis=-1)
            idx = xp.take_along_axis(sel, _sorted_order(xp, vals, largest), axis=-1)
    if idx is None:
        idx = _sorted_order(xp, x2, largest)[:, :k]
    idx = xp.ascontiguousarray(idx, dtype=np.int64)
    vals = xp.take_along_axis(x2, idx, axis=-1)
    shape = lead + (k,)
    return (xp.moveaxis(vals.reshape(shape), -1, axis), xp.moveaxis(idx.reshape(shape), -1, axis))


def _topk_check(k, axis, rank, shape):
    from ortlite.errors import InvalidArgument

    if rank is not None:
        axis = norm_axis(axis, rank)
    if k is not None and (k < 0 or (shape is not None and rank and k > shape[axis])):
        raise InvalidArgument(f"TopK: k={k} out of range for axis {axis} of input shape {list(shape or [])} "
                              f"(expected 0 <= k <= dim)")


def _topk_prepare(ctx, *, axis=-1, k=None, **_):
    """TopK's prepare step: the axis against the input's rank; k (the attribute, or the constant K)
    against the axis' dim where shape inference knows it."""
    from ._common import const_ints, prepare_check, static_shape

    if k is None and (ctx.opset or 0) >= 10:
        kk = const_ints(ctx, 1)
        if kk is not None and len(kk) != 1:
            from ortlite.errors import InvalidGraph
            from ._common import where

            raise InvalidGraph(f"{where(ctx)}: input 'K' must hold one value, got {len(kk)}")
        k = kk[0] if kk else None
    prepare_check(ctx, _topk_check, k, int(axis), ctx.input_rank(0), static_shape(ctx, 0))


@kernel("TopK", since=1, specialize=_topk_prepare)  # 1: k is an attribute
def topk_v1(xp, X, *, k, axis=-1):
    return _topk(xp, X, int(k), axis, True, True)


@kernel("TopK", since=10, host_inputs=(1,), specialize=_topk_prepare)  # 10: k is an input; 11: largest/sorted, negative axis
def topk_v10(xp, X, K, *, axis=-1, largest=1, sorted=1):  # noqa: A002 - ONNX name
    if K.size != 1:
        from ortlite.errors import InvalidArgument

        raise InvalidArgument(f"TopK: input 'K' must hold one value, got shape {tuple(K.shape)}")
    return _topk(xp, X, to_ints(K)[0], axis, largest, sorted)


# --------------------------------------------------------------------------- ArgMax / ArgMin

def _arg(xp, fn, X, axis, keepdims, select_last_index):
    axis = norm_axis(axis, X.ndim)
    if select_last_index:
        idx = (X.shape[axis] - 1) - fn(xp.flip(X, axis), axis=axis, keepdims=bool(keepdims))
    else:
        idx = fn(X, axis=axis, keepdims=bool(keepdims))
    return xp.asarray(idx, dtype=np.int64)


def argmax(xp, data, *, axis=0, keepdims=1, select_last_index=0):
    return _arg(xp, xp.argmax, data, axis, keepdims, select_last_index)


def argmin(xp, data, *, axis=0, keepdims=1, select_last_index=0):
    return _arg(xp, xp.argmin, data, axis, keepdims, select_last_index)


# 11: negative axis; 12: select_last_index; 13: types. Direct x.argmax(axis) calls: kernels/_direct.py
kernel("ArgMax", since=1, specialize=_direct._arg("argmax", argmax))(argmax)
kernel("ArgMin", since=1, specialize=_direct._arg("argmin", argmin))(argmin)

