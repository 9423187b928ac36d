"""Exact 8-bit integer GEMMs on BLAS (shared by MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv and the com.microsoft quantized ops).

numpy has no int8 GEMM and its integer matmul does not use BLAS (it is very slow). Products of
8-bit values are small integers, so a float GEMM computes their sums exactly as long as no
partial sum leaves the range where the float type holds every integer: |s| <= 2**24 in float32,
2**53 in float64. Every partial sum a GEMM forms (in any order, blocked or with FMA) is a sum
of a subset of the K products, so it is bounded by K * max|a| * max|b|.

On numpy the operands are shifted by their zero points (exactly: small integers in float32) and
K is split into blocks of at most ``(2**24) // (max|a| * max|b|)`` - the bounds come from the
operand dtypes and the actual zero points (u8 - zp lies in [-zp, 255 - zp]) - each block runs
as a float32 GEMM (about twice as fast as float64 in OpenBLAS and half the memory traffic), and
the block results (exact integers below 2**24) are added in float64, exactly. One block needs
no float64 pass at all. On other array modules (CuPy) the product runs in float64, which is
exact for any realistic K and never depends on a TF32 setting, without reading the zero points
back to the host.
"""
from __future__ import annotations

import functools

import numpy as np

F32_EXACT = 1 << 24  # every integer of magnitude <= 2**24 is a float32
# Blocks smaller than this (wide integer types) run in float64 instead.
_MIN_BLOCK = 32


@functools.lru_cache(maxsize=None)
def _range(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def value_bound(dtype, zero_point=None):
    """max |x - zero_point| over every value x of the integer ``dtype`` (numpy zero point or None)."""
    lo, hi = _range(np.dtype(dtype))
    if zero_point is None:
        return max(-lo, hi)
    z = np.asarray(zero_point)
    if z.size == 0:
        return max(-lo, hi)
    if z.size == 1:  # the common per-tensor zero point: no reductions
        zmin = zmax = int(z.reshape(-1)[0])
    else:
        zmin, zmax = int(z.min()), int(z.max())
    return max(abs(hi - zmin), abs(lo - zmax), abs(hi - zmax), abs(lo - zmin))


def block_size(bound_a, bound_b):
    """Largest K whose float32 partial sums of products are all exact."""
    return max(1, F32_EXACT // max(1, bound_a * bound_b))


def _zp_array(xp, zero_point, ndim, per_row):
    z = xp.asarray(zero_point)
    if per_row and z.ndim == 1 and z.size > 1 and ndim >= 2:
        z = z.reshape(-1, 1)  # one zero point per row of an [.., M, K] operand
    return z


class IntOperand:
    """An integer operand minus its zero point, as float values (exact), with the bound of
    |value| used to size the exact float32 blocks. Make one once for a constant operand.

    ``column_bound()`` (B operands) is max over the columns of sum_k |b[k, n]|: every partial
    sum of a product column is bounded by ``bound(a) * column_bound()``, usually far below
    ``bound(a) * K * bound(b)`` (real weights are mostly small), so one float32 GEMM is exact
    for K well past the elementwise block size. It is computed when first needed and kept
    (a constant B: once per session)."""

    __slots__ = ("values", "bound", "_l1", "_t")

    def __init__(self, values, bound):
        self.values = values
        self.bound = bound
        self._l1 = None
        self._t = None

    def column_bound(self):
        """max_n sum_k |values[..., k, n]| (sum over the whole vector for 1-D), exact."""
        l1 = self._l1
        if l1 is None:
            v = self.values
            if v.size == 0:
                l1 = 0
            else:  # float64 sums of small integers: exact
                l1 = int(np.abs(v).sum(axis=-2 if v.ndim >= 2 else 0, dtype=np.float64).max())
            self._l1 = l1
        return l1

    def transposed(self):
        """values.T, C-contiguous, made once (a prepared 2-D B: one-row products run as gemv on
        it, each output the dot product of one contiguous row - about 25% faster in OpenBLAS)."""
        t = self._t
        if t is None:
            t = self._t = np.ascontiguousarray(self.values.T)
        return t

    @classmethod
    def make(cls, xp, x, zero_point=None, per_row=False):
        """``x - zero_point``; a 1-D zero point is per row when ``per_row`` (A of a matmul), else
        it broadcasts on the last axis (per column of B)."""
        if xp is not np:  # device arrays: float64, no host read of the zero point
            v = x.astype(np.float64)
            if zero_point is not None:
                v -= _zp_array(xp, zero_point, x.ndim, per_row).astype(np.float64)
            return cls(v, None)
        x = np.asarray(x)
        bound = value_bound(x.dtype, zero_point)
        if zero_point is None:
            return cls(x.astype(np.float32), bound)
        z = _zp_array(np, zero_point, x.ndim, per_row)
        # one pass: the small integers minus the zero point, in float32 (exact)
        return cls(np.subtract(x, z.astype(np.float32), dtype=np.float32), bound)


def constant_operand(ctx, b_index, zp_index):
    """A kernel's constant B operand (input ``b_index``), prepared once in its prepare step: shifted by
    its constant or absent zero point (input ``zp_index``), column bound computed; None when B or its
    zero point is only known at run time."""
    b, bzp = ctx.const(b_index), ctx.const(zp_index)
    if b is None or (bzp is None and ctx.has_input(zp_index)):
        return None
    op = IntOperand.make(ctx.xp, b, bzp)
    if ctx.xp is np:
        op.column_bound()
    return op


def _operand(xp, x, zero_point, per_row):
    return x if isinstance(x, IntOperand) else IntOperand.make(xp, x, zero_point, per_row)


def exact_int_matmul_float(xp, a, b, a_zero=None, b_zero=None):
    """(a - a_zero) @ (b - b_zero) with numpy.matmul's batching / broadcasting, the exact integer
    results in a float array (float32 when they fit one exact block, else float64).

    ``a`` / ``b`` are integer arrays or prepared ``IntOperand``s (then their zero point is
    ignored). A 1-D ``a_zero`` with more than one value is per row of ``a``; ``b_zero``
    broadcasts on the last axis (per column of ``b``)."""
    prepared_b = isinstance(b, IntOperand)
    a = _operand(xp, a, a_zero, True)
    b = _operand(xp, b, b_zero, False)
    av, bv = a.values, b.values
    if xp is not np or a.bound is None or b.bound is None:
        return xp.matmul(av.astype(np.float64, copy=False), bv.astype(np.float64, copy=False))
    fold = None
    if av.ndim > 2 and bv.ndim == 2:  # one GEMM over the folded batch
        fold = av.shape[:-1]
        av = av.reshape(-1, av.shape[-1])
    k = av.shape[-1]
    kb = block_size(a.bound, b.bound)
    if k > kb and a.bound * b.column_bound() <= F32_EXACT:
        kb = k  # every partial sum of every column is exact: one block
    if prepared_b and bv.ndim == 2 and (av.ndim == 1 or av.shape[0] == 1) and kb >= _MIN_BLOCK:
        y = _gemv_t(av.reshape(-1), b.transposed(), kb)
        y = y if av.ndim == 1 else y.reshape(1, -1)
    elif k <= kb:
        y = np.matmul(av, bv)
    elif kb < _MIN_BLOCK:
        y = np.matmul(av.astype(np.float64), bv.astype(np.float64))
    else:
        nb = -(-k // kb)
        kb = -(-k // nb)  # even blocks
        y = None
        for k0 in range(0, k, kb):
            ab = av[..., k0:k0 + kb]
            bb = bv[k0:k0 + kb] if bv.ndim == 1 else bv[..., k0:k0 + kb, :]
            part = np.matmul(ab, bb)
            if y is None:
                y = part.astype(np.float64)
            else:
                np.add(y, part, out=y)
    if fold is not None:
        y = y.reshape(fold + y.shape[-1:])
    return y


def _gemv_t(a, bt, kb):
    """a [K] @ B with B^T [N, K] given: exact float32 gemv blocks over K, added in float64."""
    k = a.shape[0]
    if k <= kb:
        return np.matmul(bt, a)
    nb = -(-k // kb)
    kb = -(-k // nb)
    y = None
    for k0 in range(0, k, kb):
        part = np.matmul(bt[:, k0:k0 + kb], a[k0:k0 + kb])
        if y is None:
            y = part.astype(np.float64)
        else:
            np.add(y, part, out=y)
    return y


def exact_int_matmul(xp, a, b, a_zero=None, b_zero=None):
    """(a - a_zero) @ (b - b_zero) as int32 (see exact_int_matmul_float)."""
    return exact_int_matmul_float(xp, a, b, a_zero, b_zero).astype(np.int32)
