"""Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv.

Conv on numpy (1-D and 2-D; 1-D runs as height 1) picks its algorithm per shape, once:

* 1x1 without padding: a plain matmul on the input itself (strided when strides > 1);
* depthwise (group == C == M): per channel, the kh row-shifted copies R (kh, pixels) of the
  image times the (kw, kh) weights give kw planes, which are summed with their column shifts
  (strided convs split the columns into their stride phases first). Runs in channel blocks
  that stay in cache;
* stride 1 with the output as wide as the input ("same" width), group 1: a shift-GEMM when it
  moves less memory than im2col - one GEMM on the input (or on its kh row-shifted copies)
  gives a plane per tap (or per column tap), summed with flat shifts;
* otherwise im2col + GEMM. The im2col buffer is filled tap by tap without a padded copy of the
  input: at stride 1 with "same" width a tap is one flat copy of every image, strided convs do
  the same on the input's stride phases, and other taps copy their valid rectangle and zero the
  border strips. With batch > 1 and small images one GEMM covers the whole batch (columns
  (image, pixel)), which suits BLAS far better than N thin products.

In every case the epilogue (bias, FusedConv's residual Z and activation) runs in place on the
fresh output, and the larger elementwise passes (copies, shifted adds, epilogues) are split
over the intra-op threads (see _nn_util.run_split). Grouped convolutions are a batched matmul
over the groups; 3-D convolutions and other array modules take the generic padded im2col.
Constant weights are packed once, in the prepare step. float16 / bfloat16 compute in float32
(BLAS has no half-precision matmul in numpy) and round once at the end.
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np

from ortlite.errors import InvalidArgument, InvalidGraph
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from . import _conv_jit, _int8, _jit, cuda_fused
from ._common import check_scratch, check_window, where
from ._jit import ACT_NONE
from ._nn_util import (check_auto_pad, conv_geometry, prod, run_split, spatial_attrs, tap_ranges, window_slices,
                       worker_count)

_EXACT = (np.dtype(np.float32), np.dtype(np.float64))

# Per-channel depthwise work (the kh row copies of a channel block) per step.
_DW_BLOCK_BYTES = 1 << 19
# Output rows per band of a shift-GEMM conv: its GEMM output (and copies) in about this many bytes.
_SHIFT_BAND_BYTES = 1 << 23
# Batch > 1 runs one GEMM over the whole batch when an image has at most this many output pixels.
_BATCH_GEMM_PIXELS = 400
# Depthwise convs with at most this many output pixels per plane run the channel-blocked loop
# (kernels._conv_jit); wider planes run kernels._jit's row loop, which is faster there.
_DW_BLOCKED_PIXELS = 256
# Convolutions whose im2col matrix holds at most this many elements (a 1-D conv over a few frames, the
# last layers of a small net) run as one gather through a cached index table and one GEMM: the
# general paths' per-call set-up (padding, window views, tap loops) costs more than their arithmetic.
_TINY_COLUMN = 16384
# Outputs this small take the numpy epilogue: two ufunc calls cost less than entering a compiled loop.
_SMALL_EPILOGUE = 4096


def _compute_dtype(dtype):
    """The dtype a convolution runs its matmul in (BLAS: float32 / float64 only)."""
    dtype = np.dtype(dtype)
    return dtype if dtype in _EXACT else np.dtype(np.float32)


def pad_spatial(xp, x, begins, ends, value=0):
    """x (N, C, *sp) padded with ``value`` on the spatial axes (negative pads crop)."""
    if not any(begins) and not any(ends):
        return x
    nd = len(begins)
    crop = (slice(None), slice(None)) + tuple(
        slice(max(0, -b), x.shape[2 + i] - max(0, -e)) for i, (b, e) in enumerate(zip(begins, ends))
    )
    x = x[crop]
    b = [max(0, v) for v in begins]
    e = [max(0, v) for v in ends]
    shape = x.shape[:2] + tuple(x.shape[2 + i] + b[i] + e[i] for i in range(nd))
    out = xp.zeros(shape, dtype=x.dtype) if value == 0 else xp.full(shape, value, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(b[i], b[i] + x.shape[2 + i]) for i in range(nd))] = x
    return out


def im2col(xp, xpad, kernel, dilations, strides, out_sp):
    """(N, C, *padded) -> (N, C, *kernel, *out_sp): one strided copy per kernel tap."""
    n, c = xpad.shape[:2]
    col = xp.empty((n, c, *kernel, *out_sp), dtype=xpad.dtype)
    zeros = [0] * len(kernel)
    lead = (slice(None), slice(None))
    for tap in itertools.product(*(range(k) for k in kernel)):
        col[lead + tap] = xpad[lead + window_slices(tap, zeros, dilations, strides, out_sp)]
    return col


def _span(first, lo, hi, s):
    """The input slice read by outputs lo..hi-1 of one tap."""
    return slice(first + lo * s, first + (hi - 1) * s + 1, s)


class _Plan2D:
    """Per input shape: the tap ranges of a 2-D window (1-D runs as height 1)."""

    def __init__(self, in_hw, kernel, strides, dilations, begins, out_hw):
        h, w = in_hw
        ho, wo = out_hw
        self.h, self.w, self.ho, self.wo = h, w, ho, wo
        self.kernel, self.strides = tuple(kernel), tuple(strides)
        self.dilations, self.begins = tuple(dilations), tuple(begins)
        self.rows = tap_ranges(kernel[0], dilations[0], begins[0], strides[0], h, ho)
        self.cols = tap_ranges(kernel[1], dilations[1], begins[1], strides[1], w, wo)
        # stride 1 and output width == input width: a tap is one flat shift of the image
        self.flat = strides[0] == 1 and strides[1] == 1 and wo == w
        self.phase_hw = (-(-h // strides[0]), -(-w // strides[1]))
        # im2col rows as wide as the source (the input at stride 1, else its stride phases), so a
        # tap is one flat copy; the columns past wo are computed and cropped in the epilogue
        # (taken when they add at most an eighth)
        src_w = self.phase_hw[1]
        self.col_w = src_w if wo <= src_w <= wo + max(0, wo // 8) else wo
        self.flat_col = self.col_w == src_w and strides[0] == 1 and strides[1] == 1
        self.phased = self.col_w == src_w and not self.flat_col
        self.dw = None  # depthwise column phases, filled on first use


def _flat_tap(dst, src, hs, ws, qr, qc, rows, cols):
    """One im2col tap as one flat copy: dst (N, C, Ho, Wo) with Wo == ws gets, at output (o, p),
    src (N, C, hs*ws) at row o + qr, column p + qc; outside ``rows`` / ``cols`` (ranges of o / p)
    it is 0. The flat copy lands the reads of the invalid columns in the neighbouring rows: those
    columns are zeroed after it."""
    n, c, ho, wo = dst.shape
    ar, br = rows
    ac, bc = cols
    off = qr * ws + qc
    lo, hi = max(ar * ws, -off), min(br * ws, hs * ws - off)
    dstf = dst.reshape(n, c, ho * wo)
    if lo < hi:
        dstf[:, :, lo:hi] = src[:, :, lo + off:hi + off]
    else:
        lo = hi = 0
    if lo:
        dstf[:, :, :lo] = 0
    if hi < ho * wo:
        dstf[:, :, hi:] = 0
    if ac:
        dst[:, :, ar:br, :ac] = 0
    if bc < wo:
        dst[:, :, ar:br, bc:] = 0


def _phases(x, plan):
    """x (N, C, H, W) split by stride phase: (sh, sw, N, C, Hq, Wq), P[a, b] = x[:, :, a::sh, b::sw]
    zero-padded to Hq = ceil(H / sh) rows and Wq = ceil(W / sw) columns."""
    n, c = x.shape[:2]
    sh, sw = plan.strides
    hq, wq = plan.phase_hw
    p = np.empty((sh, sw, n, c, hq, wq), dtype=x.dtype)
    for a in range(sh):
        ra = len(range(a, plan.h, sh))
        for b in range(sw):
            rb = len(range(b, plan.w, sw))
            p[a, b, :, :, :ra, :rb] = x[:, :, a::sh, b::sw]
            if ra < hq:
                p[a, b, :, :, ra:] = 0
            if rb < wq:
                p[a, b, :, :, :ra, rb:] = 0
    return p


def _im2col_2d(x, plan, col):
    """Fill col (N, C, kh, kw, Ho, plan.col_w) - any strides, possibly a transposed view - from
    x (N, C, H, W). With col_w as wide as the input (stride 1) every tap is one flat copy of the
    images; with col_w as wide as the input's stride phases, the same on the phases (one strided
    copy of the input first). Otherwise (col_w == Wo) each tap copies its valid rectangle and
    zeroes the border strips. The taps are split over the intra-op threads."""
    n, c = x.shape[:2]
    h, w, ho = plan.h, plan.w, plan.ho
    wo = plan.col_w
    sh, sw = plan.strides
    taps = [(i, j) for i in range(len(plan.rows)) for j in range(len(plan.cols))]
    if len(taps) > 16:  # (col_w may exceed Wo: those columns read padding and are cropped later)
        _im2col_windows(x, plan, col)  # long kernels (an STFT-like 1-D conv): one strided copy, not a loop
        return
    if plan.flat_col:
        xf = x.reshape(n, c, h * w)

        def tap(i, j):
            (fr, ar, br), (fc, ac, bc) = plan.rows[i], plan.cols[j]
            dst = col[:, :, i, j]
            if ar >= br or ac >= bc:
                dst[...] = 0
            else:
                _flat_tap(dst, xf, h, w, fr, fc, (ar, br), (ac, bc))
    elif plan.phased:
        hq, wq = plan.phase_hw
        ph = _phases(x, plan).reshape(sh, sw, n, c, hq * wq)

        def tap(i, j):
            (fr, ar, br), (fc, ac, bc) = plan.rows[i], plan.cols[j]
            dst = col[:, :, i, j]
            a, qr = fr % sh, fr // sh
            b, qc = fc % sw, fc // sw
            rows = (max(0, -qr), min(ho, hq - qr))
            cols = (max(0, -qc), min(wo, wq - qc))
            if ar >= br or ac >= bc or rows[0] >= rows[1] or cols[0] >= cols[1]:
                dst[...] = 0
            else:
                _flat_tap(dst, ph[a, b], hq, wq, qr, qc, rows, cols)
    else:
        def tap(i, j):
            (fr, ar, br), (fc, ac, bc) = plan.rows[i], plan.cols[j]
            dst = col[:, :, i, j]
            if ar >= br or ac >= bc:
                dst[...] = 0
                return
            dst[:, :, ar:br, ac:bc] = x[:, :, _span(fr, ar, br, sh), _span(fc, ac, bc, sw)]
            if ar:
                dst[:, :, :ar] = 0
            if br < ho:
                dst[:, :, br:] = 0
            if ac:
                dst[:, :, ar:br, :ac] = 0
            if bc < wo:
                dst[:, :, ar:br, bc:] = 0

    def part(lo, hi):
        for k in range(lo, hi):
            tap(*taps[k])

    run_split(part, len(taps), worker_count(col.size))


def _im2col_windows(x, plan, col):
    """col (N, C, kh, kw, Ho, Wo) from x (N, C, H, W) as one copy of a strided window view of the
    zero-padded input (numpy)."""
    from numpy.lib.stride_tricks import as_strided

    n, c, h, w = x.shape
    kh, kw = plan.kernel
    dh, dw = plan.dilations
    sh, sw = plan.strides
    bh, bw = plan.begins
    ho, wo = plan.ho, plan.col_w
    # output o, tap i reads input row o*sh + i*dh - bh (bh: the padding before): pad so every read is inside
    pt, pl = max(0, bh), max(0, bw)
    pb = max(0, (ho - 1) * sh + (kh - 1) * dh - bh + 1 - h)
    pr = max(0, (wo - 1) * sw + (kw - 1) * dw - bw + 1 - w)
    xp_ = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if pt or pl or pb or pr else x
    base = xp_[:, :, pt - bh:, pl - bw:]
    s0, s1, s2, s3 = base.strides
    col[...] = as_strided(base, shape=(n, c, kh, kw, ho, wo),
                          strides=(s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw), writeable=False)


def _epilogue(xp, y, bias, z, act):
    """y += bias; y += z; act(y) - in place on a fresh block."""
    if bias is not None:
        xp.add(y, bias, out=y)
    if z is not None:
        xp.add(y, z, out=y)
    if act is not None:
        act(xp, y)


def _bias_act_jit(y, bias, z, act):
    """y = act(y + bias (+ z)) in one compiled pass per channel block (kernels._jit); False
    when it cannot run (no numba, an activation it lacks, an odd layout)."""
    code = _jit.act_code(act)
    if code is None or not y.flags.c_contiguous:
        return False
    fn = _jit.bias_act(y.dtype, code[0], z is not None)
    if fn is None:
        return False
    n, m = y.shape[:2]
    y3 = y.reshape(n, m, -1)
    b1 = np.zeros(m, dtype=y.dtype) if bias is None else np.ascontiguousarray(bias.reshape(m), dtype=y.dtype)
    z3 = y3 if z is None else np.ascontiguousarray(z.reshape(y3.shape), dtype=y.dtype)
    prm = _jit.act_params(code, y.dtype)
    run_split(lambda lo, hi: fn(y3, b1, z3, prm, lo, hi), m, worker_count(y.size))
    return True


def _finish(y, bias, z, act, src=None):
    """The numpy epilogue of y (N, M, P): y = src + bias when src is given (else y += bias),
    then y += z and act(y) in place - split over the intra-op threads by output channels."""
    if src is None and bias is None and z is None and act is None:
        return
    if src is None and y.size > _SMALL_EPILOGUE and _bias_act_jit(y, bias, z, act):
        return

    def part(lo, hi):
        yb = y[:, lo:hi]
        if src is not None:
            if bias is not None:
                np.add(src[:, lo:hi], bias[lo:hi], out=yb)
            else:
                np.copyto(yb, src[:, lo:hi])
        elif bias is not None:
            np.add(yb, bias[lo:hi], out=yb)
        if z is not None:
            np.add(yb, z[:, lo:hi], out=yb)
        if act is not None:
            act(np, yb)

    run_split(part, y.shape[1], worker_count(y.size))


def _tiny_index(in_sp, cg, g, kernel, strides, dilations, begins, out_sp):
    """Indices into a flattened (C, *in_sp) image plus one pad element (index C * prod(in_sp)) giving
    the im2col matrix of each group: shape (g, cg * prod(kernel), prod(out_sp)), rows ordered
    (channel, *kernel) as the packed weights are."""
    nd = len(in_sp)
    pos = np.zeros((1,) * (2 * nd), dtype=np.int64)  # flat offset within a channel plane
    ok = np.ones((1,) * (2 * nd), dtype=bool)
    step = 1
    for d in reversed(range(nd)):
        shape_k = [1] * (2 * nd)
        shape_k[d] = kernel[d]
        shape_o = [1] * (2 * nd)
        shape_o[nd + d] = out_sp[d]
        coord = (np.arange(kernel[d]).reshape(shape_k) * dilations[d]
                 + np.arange(out_sp[d]).reshape(shape_o) * strides[d] - begins[d])
        ok = ok & (coord >= 0) & (coord < in_sp[d])
        pos = pos + coord * step
        step *= in_sp[d]
    plane = step
    kk, npix = prod(kernel), prod(out_sp)
    pos = np.broadcast_to(pos, tuple(kernel) + tuple(out_sp)).reshape(1, kk, npix)
    ok = np.broadcast_to(ok, tuple(kernel) + tuple(out_sp)).reshape(1, kk, npix)
    chans = np.arange(g * cg).reshape(g * cg, 1, 1) * plane
    idx = np.where(ok, chans + pos, g * cg * plane)
    return np.ascontiguousarray(idx.reshape(g, cg * kk, npix)).astype(np.intp)


def _check_conv_attrs(ctx, w_const, group, kernel_shape, strides, dilations, pads, output_padding=None):
    """The prepare step's checks of Conv / ConvTranspose attributes (InvalidGraph, as onnxruntime refuses
    them at session creation): group >= 1, the window attributes for the spatial rank shape inference or
    a constant W tells."""
    if int(group) < 1:
        raise InvalidGraph(f"{where(ctx)}: attribute 'group'={group} must be >= 1")
    rank = ctx.input_rank(0) or ctx.input_rank(1) or (None if w_const is None else w_const.ndim)
    if rank is not None and rank < 3:
        raise InvalidGraph(f"{where(ctx)}: input X has rank {rank}, expected at least 3 (N, C, spatial...)")
    check_window(ctx, None if rank is None else rank - 2, kernel_shape, strides, dilations, pads,
                 output_padding=output_padding)


def _plain_1x1(x_shape, group, kernel, strides, begins, out_sp):
    """A 1x1 convolution with stride 1, no pads and one group: its input is its own column matrix."""
    return (group == 1 and all(k == 1 for k in kernel) and all(v == 1 for v in strides) and not any(begins)
            and tuple(out_sp) == tuple(x_shape[2:]))


class _ConvCore:
    """Geometry + packed weights of one Conv node; ``run`` does the arithmetic."""

    def __init__(self, op, xp, w_const, auto_pad, dilations, group, kernel_shape, pads, strides, ctx=None):
        check_auto_pad(op, auto_pad)
        if ctx is not None:
            _check_conv_attrs(ctx, w_const, group, kernel_shape, strides, dilations, pads)
        self.op = op
        self.node = SimpleNamespace(node=getattr(ctx, "node", None))  # for messages of the per-shape checks
        self.where = where(ctx) if ctx is not None else op
        self.xp = xp
        self.auto_pad = auto_pad
        self.group = int(group)
        self.attrs = (kernel_shape, strides, dilations, pads)
        self._geo = {}
        self._dw = {}
        self._shift = {}
        self._jit_consts = {}
        self._tiny_index = {}
        self._tiny_route = {}  # input shape -> what _tiny_fast needs (numpy, constant W)
        self._cudnn = None
        self.algo_search = "EXHAUSTIVE"  # the CUDA provider's cudnn_conv_algo_search
        self.packed = None
        self._w_shape = None if w_const is None else tuple(w_const.shape)
        if w_const is not None:
            self.packed = self.pack(np.asarray(w_const), _compute_dtype(w_const.dtype))
            self.packed = xp.asarray(self.packed) if xp is not np else self.packed

    def pack(self, w, cdtype):
        """W (M, C/g, *k) -> (g, M/g, C/g*prod(k)) in the compute dtype, contiguous."""
        m = w.shape[0]
        g = self.group
        return self.xp.ascontiguousarray(w.reshape(g, m // g, -1).astype(cdtype, copy=False))

    def geometry(self, x_shape, w_shape):
        key = (x_shape, w_shape)
        geo = self._geo.get(key)
        if geo is None:
            nd = len(x_shape) - 2
            if nd < 1 or len(w_shape) != len(x_shape):
                raise InvalidArgument(f"{self.where}: X {list(x_shape)} and W {list(w_shape)} must have the same "
                                      f"rank, at least 3 (N, C, spatial...)")
            check_window(self.node, nd, *self.attrs)  # the rank may have been unknown at the prepare step
            kshape = self.attrs[0] or list(w_shape[2:])
            kernel, strides, dilations, pads = spatial_attrs(nd, kshape, *self.attrs[1:])
            if list(kernel) != list(w_shape[2:]):
                raise InvalidArgument(f"{self.where}: kernel_shape {kernel} does not match W {list(w_shape)}")
            begins, ends, out_sp = conv_geometry(self.auto_pad, x_shape[2:], kernel, strides, dilations, pads)
            plan = None
            if nd in (1, 2):
                one = [1] if nd == 1 else []
                plan = _Plan2D(one + list(x_shape[2:]), one + list(kernel), one + list(strides),
                               one + list(dilations), [0] * (2 - nd) + list(begins), one + list(out_sp))
            geo = (kernel, strides, dilations, begins, ends, out_sp, plan)
            self._geo[key] = geo
        return geo

    def run(self, x, w, b=None, *, pad_value=0, cdtype=None, z=None, act=None):
        """The convolution in ``cdtype`` (float32/float64): returns a fresh (N, M, *out) array with
        the bias added, then ``z`` (same shape as the output) added, then ``act(xp, y)`` applied
        in place."""
        if z is None and cdtype is None and pad_value == 0 and self._tiny_route:
            route = self._tiny_route.get(x.shape)
            if route is not None and x.dtype == route[0] and (b is None or b.dtype == route[0]):
                return self._tiny_fast(x, b, act, route)
        xp = self.xp
        n, c = x.shape[:2]
        m = w.shape[0]
        g = self.group
        if c != w.shape[1] * g or m % g:
            raise InvalidArgument(f"{self.where}: X {list(x.shape)}, W {list(w.shape)} and group={g} do not agree "
                                  f"(expected C = W.shape[1] * group and M divisible by group)")
        kernel, strides, dilations, begins, ends, out_sp, plan = self.geometry(tuple(x.shape), tuple(w.shape))
        if n == 0 or m == 0:  # an empty batch (or no output channel): the empty result, as onnxruntime
            return xp.empty((n, m, *out_sp), dtype=cdtype or _compute_dtype(x.dtype))
        if xp is not np and cdtype is None and pad_value == 0:
            y = self._cudnn_run(x, w, b, begins, ends, strides, dilations, z, act, out_sp)
            if y is not None:
                return y
        cdtype = cdtype or _compute_dtype(x.dtype)
        x = x.astype(cdtype, copy=False)
        wp = self.packed if self.packed is not None else self.pack(w, cdtype)
        bias = None if b is None else b.astype(cdtype, copy=False).reshape(m, 1)
        if z is not None:
            z = z.astype(cdtype, copy=False)
            if tuple(z.shape) != (n, m, *out_sp):
                y = self.run(x, w, b, pad_value=pad_value, cdtype=cdtype)
                y = y + z  # broadcasting Z: a fresh array
                if act is not None:
                    act(xp, y)
                return y
        npix = prod(out_sp)
        if xp is np and n * c * prod(kernel) * npix <= _TINY_COLUMN and not (g == c == m and g > 1):
            y = self._tiny(x, wp, bias, z, act, kernel, strides, dilations, begins, out_sp, pad_value)
            if (z is None and pad_value == 0 and wp is self.packed and x.dtype == cdtype
                    and y.size <= _SMALL_EPILOGUE and w.shape == self._w_shape):
                # the next call with this input shape skips the checks and the geometry (_tiny_fast)
                self._tiny_route[tuple(x.shape)] = (np.dtype(cdtype), self._tiny_index[(tuple(x.shape[2:]), c)],
                                                    m, (n, m, *out_sp),
                                                    _plain_1x1(x.shape, g, kernel, strides, begins, out_sp))
            return y.reshape(n, m, *out_sp)
        fast = xp is np and plan is not None and pad_value == 0
        if g == c and g == m and g > 1:
            if fast and min(begins) >= 0 and min(ends) >= 0:
                y = self._depthwise_jit(x, wp, bias, z, act, plan, cdtype)
                if y is not None:
                    return y.reshape(n, m, *out_sp)
            if fast:
                return self._depthwise_gemm(x, wp, bias, z, act, plan).reshape(n, m, *out_sp)
            y = self._depthwise(x, wp, kernel, strides, dilations, begins, ends, out_sp, pad_value)
            _epilogue(xp, y, None if bias is None else bias.reshape((m,) + (1,) * len(out_sp)), z, act)
            return y
        pointwise = all(k == 1 for k in kernel) and not any(begins) and not any(ends)
        if fast and g == 1:
            return self._gemm(x, wp[0], bias, z, act, plan, pointwise, wp is self.packed).reshape(n, m, *out_sp)
        if pointwise:
            # 1x1: the input (strided when strides > 1) is its own im2col matrix.
            xs = x if all(s == 1 for s in strides) else x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
            y = xp.matmul(wp, xs.reshape(n, g, c // g, npix))
        else:
            if fast:
                self._check_col(x, n * c * prod(plan.kernel) * plan.ho * plan.col_w, n * m * npix)
                col = np.empty((n, c, *plan.kernel, plan.ho, plan.col_w), dtype=cdtype)
                _im2col_2d(x.reshape(n, c, plan.h, plan.w), plan, col)
                y = np.matmul(wp, col.reshape(n, g, -1, plan.ho * plan.col_w))
                if plan.col_w != plan.wo:  # crop the extra columns while adding the bias
                    t = y.reshape(n, m, plan.ho, plan.col_w)[..., :plan.wo]
                    y = np.empty((n, m, plan.ho, plan.wo), dtype=cdtype)
                    _finish(y, None if bias is None else bias.reshape(m, 1, 1), z, act, src=t)
                    return y.reshape(n, m, *out_sp)
            else:
                self._check_col(x, n * c * prod(kernel) * npix, n * m * npix)
                xpad = pad_spatial(xp, x, begins, ends, pad_value)
                col = im2col(xp, xpad, kernel, dilations, strides, out_sp)
                y = xp.matmul(wp, col.reshape(n, g, -1, npix))
        y = y.reshape(n, m, npix)
        if xp is np:
            _finish(y, bias, None if z is None else z.reshape(n, m, npix), act)
        elif not cuda_fused.bias_act(xp, y, bias, None if z is None else z.reshape(n, m, npix), act):
            _epilogue(xp, y, bias, None if z is None else z.reshape(n, m, npix), act)
        return y.reshape(n, m, *out_sp)

    def _tiny(self, x, wp, bias, z, act, kernel, strides, dilations, begins, out_sp, pad_value):
        """A small convolution on numpy: the columns gathered in one indexing step from the flattened
        image with one pad element appended (taps outside the image read it), then one (grouped) GEMM
        and the epilogue. The index table is made once per input shape."""
        n, c = x.shape[:2]
        g = self.group
        key = (tuple(x.shape[2:]), c)
        idx = self._tiny_index.get(key)
        if idx is None:
            idx = _tiny_index(tuple(x.shape[2:]), c // g, g, kernel, strides, dilations, begins, out_sp)
            self._tiny_index[key] = idx
        if _plain_1x1(x.shape, g, kernel, strides, begins, out_sp):
            col = x.reshape(n, 1, c, -1)  # a plain 1x1: the image is its own column matrix, no gather
        else:
            flat = np.empty((n, x[0].size + 1), dtype=x.dtype)
            flat[:, :-1] = x.reshape(n, -1)
            flat[:, -1] = pad_value
            col = flat[:, idx]  # (n, g, C/g * prod(k), npix)
        y = np.matmul(wp, col).reshape(n, -1, idx.shape[-1])
        m = y.shape[1]
        _finish(y, bias, None if z is None else z.reshape(n, m, -1), act)
        return y

    def _tiny_fast(self, x, b, act, route):
        """_tiny for an input shape it ran before with the constant W, no Z, zero padding and the
        compute dtype (``route``: that dtype, the index table, M, the output shape): the same gather,
        GEMM and epilogue (bias, then the activation, in place) with no per-call geometry or checks."""
        dt, idx, m, out_shape, plain = route
        n = x.shape[0]
        if plain:
            col = x.reshape(n, 1, x.shape[1], -1)
        elif n == 1:
            flat = np.empty(x.size + 1, dtype=dt)
            flat[:-1] = x.reshape(-1)
            flat[-1] = 0
            col = flat.take(idx)[None]  # take: ~3x faster than fancy indexing, same values
        else:
            flat = np.empty((n, x[0].size + 1), dtype=dt)
            flat[:, :-1] = x.reshape(n, -1)
            flat[:, -1] = 0
            col = flat.take(idx, axis=1)
        y = np.matmul(self.packed, col).reshape(n, m, idx.shape[-1])
        if b is not None:
            np.add(y, b.reshape(m, 1), out=y)
        if act is not None:
            act(np, y)
        return y.reshape(out_shape)

    def _cudnn_run(self, x, w, b, begins, ends, strides, dilations, z, act, out_sp):
        """On CUDA: the conv (+ bias) as a cached cuDNN graph, then Z and the activation in one
        fused kernel; None when cuDNN cannot take it (im2col + cuBLAS runs)."""
        if self._cudnn is None:
            self._cudnn = cuda_fused.CudnnConv(self.algo_search)
        y = self._cudnn.run(self.xp, x, w, b, begins, ends, strides, dilations, self.group)
        if y is None:
            return None
        if z is not None and tuple(z.shape) != tuple(y.shape):
            y = y + z
            z = None
        if z is not None or act is not None:
            n, m = y.shape[:2]
            zz = None if z is None else z.astype(y.dtype, copy=False).reshape(n, m, -1)
            if not cuda_fused.bias_act(self.xp, y.reshape(n, m, -1), None, zz, act):
                _epilogue(self.xp, y, None, zz.reshape(y.shape) if zz is not None else None, act)
        return y

    def _check_col(self, x, col_size, out_size):
        """Refuse an im2col buffer of ``col_size`` elements far beyond the output's size (Fail)."""
        check_scratch(f"{self.where}: im2col", col_size * x.itemsize, out_size * x.itemsize)

    def _gemm(self, x, w2, bias, z, act, plan, pointwise, const):
        """Group 1 on numpy: im2col (or the input itself) and one GEMM per image, or one GEMM over
        the whole batch for small images; stride-1 "same"-width kernels may run as a shift-GEMM."""
        n, c = x.shape[:2]
        m, kdim = w2.shape
        ho, wo = plan.ho, plan.wo
        npix = ho * wo
        x4 = x.reshape(n, c, plan.h, plan.w)
        zf = None if z is None else z.reshape(n, m, npix)
        if n > 1 and npix <= _BATCH_GEMM_PIXELS:
            # One GEMM over the batch: columns ordered (image, pixel).
            if pointwise:
                col = np.empty((c, n, ho, wo), dtype=x.dtype)
                sh, sw = plan.strides
                np.copyto(col.transpose(1, 0, 2, 3), x4[:, :, ::sh, ::sw])
                t = np.matmul(w2, col.reshape(kdim, n * npix)).reshape(m, n, npix).transpose(1, 0, 2)
            else:
                cw = plan.col_w
                self._check_col(x, n * c * prod(plan.kernel) * ho * cw, m * n * npix)
                col = np.empty((c, *plan.kernel, n, ho, cw), dtype=x.dtype)
                _im2col_2d(x4, plan, col.transpose(3, 0, 1, 2, 4, 5))
                t = np.matmul(w2, col.reshape(kdim, n * ho * cw)).reshape(m, n, ho, cw)[..., :wo]
                t = t.transpose(1, 0, 2, 3)
            y = np.empty((n, m, ho, wo), dtype=x.dtype)
            _finish(y, None if bias is None else bias.reshape(m, 1, 1), None if z is None else z.reshape(y.shape),
                    act, src=t.reshape(n, m, ho, wo))
            return y
        if pointwise:
            if plan.strides == (1, 1):
                col = x.reshape(n, c, npix)
            else:
                col = np.ascontiguousarray(x4[:, :, ::plan.strides[0], ::plan.strides[1]]).reshape(n, c, npix)
        else:
            mode = self._shift_mode(plan, c, m)
            if mode is not None:
                return self._shift_gemm(x4, w2, bias, zf, act, plan, mode, const)
            cw = plan.col_w
            self._check_col(x, n * c * prod(plan.kernel) * ho * cw, m * n * npix)
            col = np.empty((n, c, *plan.kernel, ho, cw), dtype=x.dtype)
            _im2col_2d(x4, plan, col)
            if cw != wo:  # crop the extra columns while adding the bias
                t = np.matmul(w2, col.reshape(n, kdim, ho * cw)).reshape(n, m, ho, cw)[..., :wo]
                y = np.empty((n, m, ho, wo), dtype=x.dtype)
                _finish(y, None if bias is None else bias.reshape(m, 1, 1),
                        None if z is None else z.reshape(y.shape), act, src=t)
                return y
            col = col.reshape(n, kdim, npix)
        y = np.matmul(w2, col)
        _finish(y, bias, zf, act)
        return y

    @staticmethod
    def _shift_mode(plan, c, m):
        """How a stride-1 "same"-width conv best runs (None: im2col). "taps": one GEMM gives every
        tap's plane from the input itself, the planes are added with their flat shifts; "cols":
        the kh row-shifted copies of the input are the GEMM operand and only the kw column
        planes are added. Picked by the memory traffic each needs (copies, adds, GEMM output)."""
        if not plan.flat:
            return None
        kh, kw = plan.kernel
        taps = kh * kw
        if taps == 1:
            return None
        # per output pixel: elements copied + elements added + half the GEMM output
        cost = {None: taps * c + 0.5 * m,
                "cols": kh * c + (kw - 1) * m + 0.5 * kw * m}
        if plan.ho == plan.h:  # the tap planes are computed on the input's own rows
            cost["taps"] = (taps - 1) * m + 0.5 * taps * m
        return min(cost, key=cost.get)

    def _shift_weights(self, w2, mode, plan, c, const):
        got = self._shift.get(mode) if const else None
        if got is None:
            m = w2.shape[0]
            kh, kw = plan.kernel
            w6 = w2.reshape(m, c, kh, kw)
            if mode == "taps":  # rows (i, j, m), columns c
                got = np.ascontiguousarray(w6.transpose(2, 3, 0, 1).reshape(kh * kw * m, c))
            else:  # rows (j, m), columns (i, c)
                got = np.ascontiguousarray(w6.transpose(3, 0, 2, 1).reshape(kw * m, kh * c))
            if const:
                self._shift[mode] = got
        return got

    def _shift_gemm(self, x4, w2, bias, zf, act, plan, mode, const):
        """Stride 1, output as wide as the input: Y = sum over taps of shift(W_tap @ X), where a
        shift is one flat add (the columns that would wrap into the next row are zeroed first).
        Runs in bands of output rows so each band's GEMM output stays in cache."""
        n, c, h, w = x4.shape
        m = w2.shape[0]
        kh, kw = plan.kernel
        ho = plan.ho
        wt = self._shift_weights(w2, mode, plan, c, const)
        y = np.empty((n, m, ho * w), dtype=x4.dtype)
        xf = x4.reshape(n, c, h * w)
        rows = plan.rows
        if mode == "taps":
            taps = [(i * kw + j, fr, fc) for i, (fr, _, _) in enumerate(rows) for j, (fc, _, _) in enumerate(plan.cols)]
            frmin = min(fr for _, fr, _ in taps)
            frmax = max(fr for _, fr, _ in taps)
            per_row = len(taps) * m * w * x4.itemsize
        else:
            taps = [(j, 0, fc) for j, (fc, _, _) in enumerate(plan.cols)]
            per_row = kw * m * w * x4.itemsize + kh * c * w * x4.itemsize
            r = np.empty((kh, c, min(ho, max(1, _SHIFT_BAND_BYTES // per_row)), w), dtype=x4.dtype)
        band = min(ho, max(1, _SHIFT_BAND_BYTES // per_row))
        first = next((t for t, fr, fc in taps if fr == 0 and fc == 0), None)
        for k in range(n):
            for b0 in range(0, ho, band):
                b1 = min(ho, b0 + band)
                nb = b1 - b0
                if mode == "taps":
                    r0, r1 = max(0, b0 + frmin), min(h, b1 + frmax)
                    zk = np.matmul(wt, xf[k, :, r0 * w:r1 * w])
                    base = b0 - r0  # row of Z that output row b0 reads at fr = 0
                else:
                    rb = r[:, :, :nb]

                    def build(c0, c1, rb=rb, k=k, b0=b0, b1=b1, nb=nb):
                        for i, (fr, lo, hi) in enumerate(rows):
                            lo, hi = max(lo, b0) - b0, min(hi, b1) - b0
                            dst = rb[i, c0:c1]
                            if lo >= hi:
                                dst[...] = 0
                                continue
                            if lo:
                                dst[:, :lo] = 0
                            if hi < nb:
                                dst[:, hi:] = 0
                            dst[:, lo:hi] = x4[k, c0:c1, b0 + fr + lo:b0 + fr + hi]

                    run_split(build, c, worker_count(rb.size))
                    zk = np.matmul(wt, rb.reshape(kh * c, nb * w))
                    r0, r1, base = b0, b1, 0
                zk = zk.reshape(-1, m, (r1 - r0) * w)
                self._shift_adds(zk, y[k, :, b0 * w:b1 * w], taps, first, base, w, r1 - r0, bias,
                                 None if zf is None else zf[k, :, b0 * w:b1 * w], act)
        return y

    @staticmethod
    def _shift_adds(zk, yk, taps, first, base, w, zrows, bias, zb, act):
        """yk (M, rows*w) = sum over taps of zk[t] (M, zrows*w) read at flat offset
        (base + fr) * w + fc, then the epilogue - split over the output channels."""
        ylen = yk.shape[1]
        zlen = zrows * w

        def part(lo_m, hi_m):
            y = yk[lo_m:hi_m]
            z = zk[:, lo_m:hi_m]
            if first is not None:
                off = base * w
                if bias is not None:
                    np.add(z[first, :, off:off + ylen], bias[lo_m:hi_m], out=y)
                else:
                    np.copyto(y, z[first, :, off:off + ylen])
            elif bias is not None:
                y[...] = bias[lo_m:hi_m]
            else:
                y.fill(0)
            z4 = z.reshape(z.shape[0], hi_m - lo_m, zrows, w)
            for t, fr, fc in taps:
                if t == first or abs(fc) >= w:
                    continue
                off = (base + fr) * w + fc
                lo, hi = max(0, -off), min(ylen, zlen - off)
                if lo >= hi:
                    continue
                if fc < 0:  # the last -fc columns of a row would land in the next row
                    z4[t, :, :, w + fc:] = 0
                elif fc > 0:
                    z4[t, :, :, :fc] = 0
                y[:, lo:hi] += z[t, :, lo + off:hi + off]
            if zb is not None:
                np.add(y, zb[lo_m:hi_m], out=y)
            if act is not None:
                act(np, y)

        run_split(part, yk.shape[0], worker_count(zk.size))

    def _jit_attrs(self, w_shape):
        """(kernel, strides, dilations) as 2-D lists for a depthwise 1-D/2-D conv, else None."""
        nd = len(w_shape) - 2
        if nd not in (1, 2):
            return None
        kshape = self.attrs[0] or list(w_shape[2:])
        try:
            kernel, strides, dilations, _ = spatial_attrs(nd, kshape, *self.attrs[1:])
        except ValueError:
            return None  # the run reports it
        one = [1] * (2 - nd)
        return one + list(kernel), one + list(strides), one + list(dilations)

    def prepare_jit(self, dtype, act, has_z):
        """At session start: compile (or load from numba's cache) the loop this node's runs use -
        the depthwise loop, or the GEMM paths' epilogue - so the first run does not pay for it.
        Only for constant weights on numpy."""
        if self.xp is not np or self.packed is None or dtype is None or not _jit.enabled():
            return
        code = _jit.act_code(act)
        cdtype = _compute_dtype(dtype)
        m, per_group = self._w_shape[:2]
        if self.group == 1:
            if code is not None:
                _jit.bias_act(cdtype, code[0], has_z)
        elif per_group == 1 and m == self.group:  # depthwise
            attrs = self._jit_attrs(self._w_shape)
            if attrs is not None:
                act_c = ACT_NONE if code is None else code[0]
                _jit.depthwise2d(cdtype, *attrs, act_c, has_z)
                _conv_jit.depthwise_cb(cdtype, *attrs, act_c, has_z)

    def _depthwise_jit(self, x, wp, bias, z, act, plan, cdtype):
        """Depthwise 2-D through the compiled loop (kernels._jit): one pass per plane with the
        taps, bias, residual and (where it can) the activation fused. None without numba."""
        code = _jit.act_code(act)
        numpy_act = None
        if code is None:  # an activation the compiled epilogue lacks: numpy runs it afterwards
            code, numpy_act = (ACT_NONE, 0.0, 0.0), act
        if plan.ho * plan.wo <= _DW_BLOCKED_PIXELS:
            y = self._depthwise_blocked(x, wp, bias, z, code, plan, cdtype)
            if y is not None:
                if numpy_act is not None:
                    _finish(y.reshape(1, -1, plan.ho * plan.wo), None, None, numpy_act)
                return y
        fn = _jit.depthwise2d(cdtype, plan.kernel, plan.strides, plan.dilations, code[0], z is not None)
        if fn is None:
            return None
        n, c = x.shape[:2]
        kh, kw = plan.kernel
        planes = n * c
        w3 = self._jit_consts.get(cdtype.str) if wp is self.packed else None
        if w3 is None:
            w3 = np.ascontiguousarray(wp.reshape(c, kh, kw), dtype=cdtype)
            if wp is self.packed:
                self._jit_consts[cdtype.str] = w3
        prm = _jit.act_params(code, cdtype)
        b1 = np.zeros(c, dtype=cdtype) if bias is None else np.ascontiguousarray(bias.reshape(c), dtype=cdtype)
        x3 = np.ascontiguousarray(x.reshape(planes, plan.h, plan.w))
        y = np.empty((planes, plan.ho, plan.wo), dtype=cdtype)
        z3 = y if z is None else np.ascontiguousarray(z.reshape(planes, plan.ho, plan.wo))
        pt, pl = plan.begins
        workers = worker_count(planes * plan.ho * plan.wo * kh * kw)
        run_split(lambda p0, p1: fn(x3, w3, b1, z3, prm, y, pt, pl, p0, p1), planes, workers)
        if numpy_act is not None:
            _finish(y.reshape(1, planes, -1), None, None, numpy_act)
        return y

    def _depthwise_blocked(self, x, wp, bias, z, code, plan, cdtype):
        """Depthwise 2-D on small planes through the channel-blocked loop (kernels._conv_jit):
        taps summed as vectors over blocks of channels, bias / residual / activation ``code``
        fused. Returns (N, C, Ho, Wo), or None without numba. Constant weights are packed (repeated
        along an output row) once per output width."""
        fn = _conv_jit.depthwise_cb(cdtype, plan.kernel, plan.strides, plan.dilations, code[0], z is not None)
        if fn is None:
            return None
        n, c = x.shape[:2]
        kh, kw = plan.kernel
        ho, wo = plan.ho, plan.wo
        key = ("blocked", cdtype.str, wo)
        w3 = self._jit_consts.get(key) if wp is self.packed else None
        if w3 is None:
            w3 = _conv_jit.pack_depthwise(wp.reshape(c, kh, kw), wo, cdtype)
            if wp is self.packed:
                self._jit_consts[key] = w3
        b2 = _conv_jit.pack_bias(bias, c, wo, cdtype)
        x3 = np.ascontiguousarray(x.reshape(n, c, plan.h * plan.w))
        y = np.empty((n, c, ho, wo), dtype=cdtype)
        y3 = y.reshape(n, c, ho * wo)
        z3 = y3 if z is None else np.ascontiguousarray(z.reshape(n, c, ho * wo))
        prm = _jit.act_params(code, cdtype)
        pt, pl = plan.begins
        hw = (plan.h, plan.w, ho, wo)
        blocks = n * w3.shape[0]
        workers = worker_count(n * c * ho * wo * kh * kw)
        run_split(lambda b0, b1: fn(x3, w3, b2, z3, prm, y3, hw, pt, pl, b0, b1), blocks, workers)
        return y

    def _dw_plan(self, plan):
        """Per shape: the column phases of a depthwise conv (see _depthwise_gemm)."""
        dw = plan.dw
        if dw is None:
            sw = plan.strides[1]
            wq = -(-plan.w // sw)
            phases = []
            for b in range(sw):
                taps = [j for j, (f, lo, hi) in enumerate(plan.cols) if f % sw == b and lo < hi]
                if not taps:
                    continue
                real = len(range(b, plan.w, sw))
                shifts = [plan.cols[j][0] // sw for j in taps]
                phases.append((b, taps, shifts, real))
            flat = wq == plan.wo
            first = None
            for pi, (b, taps, shifts, real) in enumerate(phases):
                for t, q in enumerate(shifts):
                    if q == 0 and (flat or plan.wo <= real):
                        first = (pi, 0)  # the tap that covers every output, moved to its phase's front
                        order = [t] + [u for u in range(len(taps)) if u != t]
                        phases[pi] = (b, [taps[u] for u in order], [shifts[u] for u in order], real)
                        break
                if first is not None:
                    break
            dw = plan.dw = (wq, flat, phases, first)
        return dw

    def _dw_weights(self, wp, n, kh, kw, phases):
        """Per column phase, the (N*C, taps, kh) depthwise weights tiled over the batch
        (cached per batch size when the weights are constant)."""
        const = wp is self.packed
        got = self._dw.get(n) if const else None
        if got is None:
            c = wp.shape[0]
            wm = wp.reshape(c, kh, kw).transpose(0, 2, 1)  # (C, kw, kh)
            got = []
            for b, taps, shifts, real in phases:
                wb = wm[:, taps]
                got.append(np.ascontiguousarray(np.broadcast_to(wb, (n,) + wb.shape).reshape((n * c,) + wb.shape[1:])))
            if const:
                self._dw[n] = got
        return got

    def _depthwise_gemm(self, x, wp, bias, z, act, plan):
        """Depthwise 2-D on numpy, in blocks of channels that stay in cache. The input's columns
        are split into their stride phases (one phase at stride 1); per phase and channel, the kh
        row taps of the image R (kh, Ho*Wq) times the (taps, kh) weights of the phase's column
        taps give one plane per column tap, and the output is the sum of those planes, each
        shifted by its column offset. When a phase is as wide as the output, a shift is one flat
        add over the whole block (the columns that would wrap to the next row are zeroed first)."""
        n, c = x.shape[:2]
        h, w, ho, wo = plan.h, plan.w, plan.ho, plan.wo
        kh, kw = plan.kernel
        sh, sw = plan.strides
        wq, flat, phases, first = self._dw_plan(plan)
        wms = self._dw_weights(wp, n, kh, kw, phases)
        planes = n * c
        xs = x.reshape(planes, h, w)
        npix = ho * wo
        span = ho * wq
        dt = x.dtype
        bb = None
        if bias is not None:
            bb = bias if n == 1 else np.ascontiguousarray(np.broadcast_to(bias, (n, c, 1)).reshape(planes, 1))
        zf = None if z is None else z.reshape(planes, npix)
        y = np.empty((planes, npix), dtype=dt)
        workers = worker_count(planes * (span * (kh + len(phases)) + npix))
        step = max(1, min(-(-planes // workers), _DW_BLOCK_BYTES // (kh * len(phases) * span * x.itemsize)))

        def part(lo_p, hi_p):
            rbuf = [np.empty((kh, step, ho, wq), dtype=dt) for _ in phases]
            zbuf = [np.empty((len(taps), step, span), dtype=dt) for _, taps, _, _ in phases]
            for p0 in range(lo_p, hi_p, step):
                p1 = min(hi_p, p0 + step)
                k = p1 - p0
                zs = []
                for pi, (b, taps, shifts, real) in enumerate(phases):
                    r = rbuf[pi][:, :k]
                    for i, (f, lo, hi) in enumerate(plan.rows):
                        if lo:
                            r[i, :, :lo] = 0
                        if hi < ho:
                            r[i, :, hi:] = 0
                        if lo < hi:
                            src = xs[p0:p1, _span(f, lo, hi, sh)]
                            if sw == 1:
                                r[i, :, lo:hi] = src
                            else:
                                r[i, :, lo:hi, :real] = src[:, :, b::sw]
                                if real < wq:
                                    r[i, :, lo:hi, real:] = 0
                    zb = zbuf[pi][:, :k]
                    np.matmul(wms[pi][p0:p1], r.reshape(kh, k, span).transpose(1, 0, 2), out=zb.transpose(1, 0, 2))
                    zs.append(zb)
                bk = None if bb is None else bb[p0:p1]
                yk = y[p0:p1]
                if flat:
                    # one flat add per column tap over the whole block (k * npix elements)
                    if first is not None:
                        src = zs[first[0]][first[1]]
                        if bk is not None:
                            np.add(src, bk, out=yk)
                        else:
                            np.copyto(yk, src)
                    elif bk is not None:
                        yk[...] = bk
                    else:
                        yk.fill(0)
                    yl = yk.reshape(-1)
                    total = k * npix
                    for pi, (b, taps, shifts, real) in enumerate(phases):
                        for t, q in enumerate(shifts):
                            if first == (pi, t) or abs(q) >= wq:
                                continue
                            zt = zs[pi][t]
                            z3 = zt.reshape(k, ho, wq)
                            zl = zt.reshape(-1)
                            if q < 0:  # the last -q columns of a row would land in the next row
                                z3[:, :, wq + q:] = 0
                                yl[-q:] += zl[:total + q]
                            else:
                                z3[:, :, :q] = 0
                                yl[:total - q] += zl[q:]
                else:
                    y3 = yk.reshape(k, ho, wo)
                    if first is not None:
                        src = zs[first[0]][first[1]].reshape(k, ho, wq)[:, :, :wo]
                        if bk is not None:
                            np.add(src, bk.reshape(k, 1, 1), out=y3)
                        else:
                            np.copyto(y3, src)
                    elif bk is not None:
                        y3[...] = bk.reshape(k, 1, 1)
                    else:
                        y3.fill(0)
                    for pi, (b, taps, shifts, real) in enumerate(phases):
                        for t, q in enumerate(shifts):
                            lo, hi = max(0, -q), min(wo, real - q)
                            if first == (pi, t) or lo >= hi:
                                continue
                            y3[:, :, lo:hi] += zs[pi][t].reshape(k, ho, wq)[:, :, lo + q:hi + q]
                if zf is not None or act is not None:
                    _epilogue(np, yk, None, None if zf is None else zf[p0:p1], act)

        # whole channel blocks per thread
        blocks = -(-planes // step)
        run_split(lambda lo, hi: part(lo * step, min(planes, hi * step)), blocks, workers)
        return y

    def _depthwise(self, x, wp, kernel, strides, dilations, begins, ends, out_sp, pad_value):
        """One input and one output channel per group: accumulate tap by tap (FMA over the image)."""
        xp = self.xp
        n, c = x.shape[:2]
        nd = len(kernel)
        wt = wp.reshape(c, -1)  # (C, taps)
        taps = list(itertools.product(*(range(k) for k in kernel)))
        if all(s == 1 for s in strides) and pad_value == 0 and min(begins + ends) >= 0:
            # Stride 1: work on the flattened padded image, where every tap is one contiguous
            # window; the rows are computed over the padded width and cropped at the end.
            padded = [x.shape[2 + i] + begins[i] + ends[i] for i in range(nd)]
            pstride = [prod(padded[i + 1:]) for i in range(nd)]
            offs = [sum(t * d * ps for t, d, ps in zip(tap, dilations, pstride)) for tap in taps]
            length = out_sp[0] * pstride[0]
            size = prod(padded)
            buf = xp.zeros((n, c, size + max(offs)), dtype=x.dtype)
            img = buf[:, :, :size].reshape(n, c, *padded)
            img[(slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(begins, x.shape[2:]))] = x
            y = xp.empty((n, c, length), dtype=x.dtype)
            tmp = xp.empty_like(y)
            for t, off in enumerate(offs):
                wk = wt[:, t].reshape(c, 1)
                if t == 0:
                    xp.multiply(buf[:, :, off:off + length], wk, out=y)
                else:
                    xp.multiply(buf[:, :, off:off + length], wk, out=tmp)
                    y += tmp
            y = y.reshape(n, c, out_sp[0], *padded[1:])
            return xp.ascontiguousarray(y[(slice(None), slice(None), slice(None)) + tuple(slice(0, o) for o in out_sp[1:])])
        xpad = pad_spatial(xp, x, begins, ends, pad_value)
        bshape = (c,) + (1,) * nd
        zeros = [0] * nd
        lead = (slice(None), slice(None))
        y = tmp = None
        for t, tap in enumerate(taps):
            view = xpad[lead + window_slices(tap, zeros, dilations, strides, out_sp)]
            wk = wt[:, t].reshape(bshape)
            if y is None:
                y = view * wk
                tmp = xp.empty_like(y)
            else:
                xp.multiply(view, wk, out=tmp)
                y += tmp
        return y


@kernel("Conv", since=1)
class Conv:
    """Conv-1 .. Conv-22: the meaning never changed (11 made kernel_shape optional, 22 added bfloat16)."""

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None,
                 act=None, has_z=False):
        self.core = _ConvCore("Conv", ctx.xp, ctx.const(1), auto_pad, dilations, group, kernel_shape, pads, strides,
                              ctx=ctx)
        self.core.prepare_jit(ctx.input_dtype(0), act, has_z)
        opts = getattr(ctx.provider, "cuda_options", None)
        if opts is not None:
            self.core.algo_search = opts.cudnn_conv_algo_search

    def __call__(self, X, W, B=None):
        y = self.core.run(X, W, B)
        return y if y.dtype == X.dtype else y.astype(X.dtype)


def _int_conv_operands(xp, x, w, x_zp, w_zp):
    """(x - x_zp, w - w_zp) as float64: every int8 product sum a conv makes is exact there
    (the device path; numpy runs _IntConv)."""
    xf = x.astype(np.float64)
    if x_zp is not None:
        if x_zp.size != 1:
            raise OrtNotImplemented("ConvInteger/QLinearConv: only a per-tensor x_zero_point is supported")
        xf -= float(x_zp.reshape(-1)[0])
    wf = w.astype(np.float64)
    if w_zp is not None:
        if w_zp.size == 1:
            wf -= float(w_zp.reshape(-1)[0])
        else:  # per output channel
            wf -= w_zp.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
    return xf, wf


class _IntConv:
    """conv(x - x_zp, w - w_zp) exactly on numpy, with the float Conv's algorithms in float32.

    Every algorithm _ConvCore runs (im2col GEMM, shift-GEMM, depthwise, 1x1) sums the products
    of a window in some order, so each partial sum is bounded by K * max|x'| * max|w'| with K the
    window size per group (C/g * taps); where that is below 2**24 one float32 conv is exact.
    Otherwise the input channels of each group are split into chunks whose K is (one float32
    conv each, exact) and the chunk results are added in float64; a single tap window too large
    even for that runs in float64. The bounds come from the dtypes and the zero points
    (kernels/_int8.py). A constant W (and W zero point) is shifted and split once."""

    def __init__(self, core, w=None, w_zp=None, const_w=False):
        self.core = core
        self.w_key = None
        if const_w and w is not None:
            self.w_key = self._weights(np.asarray(w), None if w_zp is None else np.asarray(w_zp))

    @staticmethod
    def _weights(w, w_zp):
        ws = w.astype(np.float32)
        if w_zp is not None and w_zp.any():
            if w_zp.size == 1:
                ws -= np.float32(w_zp.reshape(-1)[0])
            else:  # per output channel
                ws -= w_zp.astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        return ws, _int8.value_bound(w.dtype, w_zp), {}

    def run(self, x, w, x_zp, w_zp):
        """The exact integer conv in a float array (float32 when one exact block, else float64)."""
        if x_zp is not None and x_zp.size != 1:
            raise OrtNotImplemented("ConvInteger/QLinearConv: only a per-tensor x_zero_point is supported")
        ws, wbound, chunks = self.w_key if self.w_key is not None else self._weights(w, w_zp)
        xb = _int8.value_bound(x.dtype, x_zp)
        xs = x.astype(np.float32)
        if x_zp is not None and x_zp.any():
            xs -= np.float32(x_zp.reshape(-1)[0])
        kb = _int8.block_size(xb, wbound)
        g = self.core.group
        m, cg = ws.shape[:2]
        taps = prod(ws.shape[2:])
        if cg * taps <= kb:
            return self.core.run(xs, ws, cdtype=np.dtype(np.float32))
        if taps > kb:
            return self.core.run(xs.astype(np.float64), ws.astype(np.float64), cdtype=np.dtype(np.float64))
        cc = kb // taps
        nchunk = -(-cg // cc)
        cc = -(-cg // nchunk)  # even chunks
        n, sp = x.shape[0], x.shape[2:]
        xg = xs.reshape(n, g, cg, *sp)
        y = None
        for c0 in range(0, cg, cc):
            c1 = min(cg, c0 + cc)
            wc = chunks.get((c0, c1))
            if wc is None:
                wc = np.ascontiguousarray(ws[:, c0:c1])
                if self.w_key is not None:
                    chunks[(c0, c1)] = wc
            xc = np.ascontiguousarray(xg[:, :, c0:c1]).reshape(n, g * (c1 - c0), *sp)
            part = self.core.run(xc, wc, cdtype=np.dtype(np.float32))
            if y is None:
                y = part.astype(np.float64)
            else:
                np.add(y, part, out=y)
        return y


def _const_int_weights(ctx, w_index, zp_index):
    """W and its zero point when both are constants (or the zero point is absent)."""
    w, zp = ctx.const(w_index), ctx.const(zp_index)
    if w is not None and (zp is not None or not ctx.has_input(zp_index)):
        return w, zp, True
    return None, None, False


@kernel("ConvInteger", since=10)
class ConvInteger:
    """Integer convolution, int32 output; the padding holds the zero point (i.e. 0 after the shift).
    Exact: float32 convs on channel chunks small enough for exact sums (see _IntConv)."""

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
        self.xp = ctx.xp
        self.core = _ConvCore("ConvInteger", ctx.xp, None, auto_pad, dilations, group, kernel_shape, pads, strides,
                              ctx=ctx)
        self.int_conv = _IntConv(self.core, *_const_int_weights(ctx, 1, 3)) if ctx.xp is np else None

    def __call__(self, x, w, x_zero_point=None, w_zero_point=None):
        if self.int_conv is not None:
            return self.int_conv.run(x, w, x_zero_point, w_zero_point).astype(np.int32)
        xf, wf = _int_conv_operands(self.xp, x, w, x_zero_point, w_zero_point)
        y = self.core.run(xf, wf, cdtype=np.dtype(np.float64))
        return self.xp.rint(y).astype(np.int32)


@kernel("QLinearConv", since=10)
class QLinearConv:
    """Quantized conv: acc = conv(x - x_zp, w - w_zp) + B; y = saturate(round(acc * xs*ws/ys) + y_zp)."""

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
        self.xp = ctx.xp
        self.core = _ConvCore("QLinearConv", ctx.xp, None, auto_pad, dilations, group, kernel_shape, pads, strides,
                              ctx=ctx)
        self.int_conv = _IntConv(self.core, *_const_int_weights(ctx, 3, 5)) if ctx.xp is np else None

    def __call__(self, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None):
        xp = self.xp
        m = w.shape[0]
        if self.int_conv is not None:
            acc = self.int_conv.run(x, w, x_zero_point, w_zero_point)  # exact integers
            if B is not None:  # int32 bias: added exactly in float64, then rounded to float32 below
                acc = acc.astype(np.float64, copy=False)
                acc += B.astype(np.float64).reshape((m,) + (1,) * (acc.ndim - 2))
        else:
            xf, wf = _int_conv_operands(xp, x, w, x_zero_point, w_zero_point)
            acc = self.core.run(xf, wf, None if B is None else B.astype(np.float64), cdtype=np.dtype(np.float64))
        # the requantization scale is float32 arithmetic, as onnxruntime does it
        ws = w_scale.astype(np.float32).reshape(-1)
        scale = (x_scale.astype(np.float32).reshape(-1)[0] * ws / y_scale.astype(np.float32).reshape(-1)[0])
        scale = scale.reshape((m if ws.size > 1 else 1,) + (1,) * (acc.ndim - 2))
        r = xp.rint(acc.astype(np.float32) * scale)
        out_dtype = y_zero_point.dtype if y_zero_point is not None else x.dtype
        if y_zero_point is not None:
            r += y_zero_point.reshape(-1)[0].astype(np.float32)  # a 0-d device array on CuPy
        info = np.iinfo(out_dtype)
        return xp.clip(r, info.min, info.max).astype(out_dtype)


@kernel("ConvTranspose", since=1)
class ConvTranspose:
    """ConvTranspose-1 .. 22 (11 made kernel_shape optional, 22 added bfloat16).

    One matmul per group gives every (output channel, tap, input pixel) product;
    col2im then adds each tap's plane into a strided view of the output
    (a loop over taps, not pixels). When output_shape is given the pads come
    from it (SAME_UPPER puts the odd pad at the end, otherwise at the begin).
    """

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                 output_padding=None, output_shape=None, pads=None, strides=None):
        check_auto_pad("ConvTranspose", auto_pad)
        w = ctx.const(1)
        _check_conv_attrs(ctx, w, group, kernel_shape, strides, dilations, pads, output_padding)
        self.node = SimpleNamespace(node=ctx.node)
        self.where = where(ctx)
        self.xp = ctx.xp
        self.auto_pad = auto_pad
        self.group = int(group)
        self.kernel_shape = kernel_shape
        self.dilations, self.strides, self.pads = dilations, strides, pads
        self.output_padding = output_padding
        self.output_shape = output_shape
        self._geo = {}
        self.packed = None if w is None else self._pack(np.asarray(w), _compute_dtype(w.dtype))

    def _pack(self, w, cdtype):
        """W (C, M/g, *k) -> (g, M/g*prod(k), C/g): the transposed weights of each group."""
        c = w.shape[0]
        g = self.group
        wg = w.astype(cdtype, copy=False).reshape(g, c // g, -1)
        return self.xp.ascontiguousarray(wg.transpose(0, 2, 1))

    def _geometry(self, x_shape, w_shape):
        """(kernel, strides, dilations, begins, out_sp) for one pair of shapes, checked and cached."""
        key = (x_shape, w_shape)
        geo = self._geo.get(key)
        if geo is None:
            geo = self._geo[key] = self._make_geometry(x_shape, w_shape)
        return geo

    def _make_geometry(self, x_shape, w_shape):
        nd = len(x_shape) - 2
        if nd < 1 or len(w_shape) != len(x_shape):
            raise InvalidArgument(f"{self.where}: X {list(x_shape)} and W {list(w_shape)} must have the same "
                                  f"rank, at least 3 (N, C, spatial...)")
        check_window(self.node, nd, self.kernel_shape, self.strides, self.dilations, self.pads,
                     output_padding=self.output_padding)
        if x_shape[1] != w_shape[0] or x_shape[1] % self.group:
            raise InvalidArgument(f"{self.where}: X {list(x_shape)}, W {list(w_shape)} and group={self.group} do "
                                  f"not agree (expected C = W.shape[0], divisible by group)")
        if self.kernel_shape and list(self.kernel_shape) != list(w_shape[2:]):
            raise InvalidArgument(f"{self.where}: kernel_shape {list(self.kernel_shape)} does not match "
                                  f"W {list(w_shape)}")
        in_sp = x_shape[2:]
        kernel = list(self.kernel_shape or w_shape[2:])
        strides = list(self.strides or [1] * nd)
        dil = list(self.dilations or [1] * nd)
        opad = list(self.output_padding or [0] * nd)
        if len(opad) == 2 * nd:  # some exporters write begin/end pairs
            opad = [a + b for a, b in zip(opad[:nd], opad[nd:])]
        if any(opad[i] >= max(strides[i], dil[i]) for i in range(nd)):
            raise InvalidArgument(f"{self.where}: output_padding {opad} must be smaller than the strides {strides} "
                                  f"or the dilations {dil}")
        full = [strides[i] * (in_sp[i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(nd)]
        if self.output_shape is not None:
            out_sp = list(self.output_shape)[-nd:]
            total = [full[i] - out_sp[i] for i in range(nd)]
            if self.auto_pad == "SAME_UPPER":
                begins = [t // 2 for t in total]
            else:
                begins = [t - t // 2 for t in total]
        elif self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out_sp = [in_sp[i] * strides[i] for i in range(nd)]
            total = [max(0, full[i] - out_sp[i]) for i in range(nd)]
            if self.auto_pad == "SAME_UPPER":
                begins = [t // 2 for t in total]
            else:
                begins = [t - t // 2 for t in total]
        else:
            pads = list(self.pads or [0] * (2 * nd)) if self.auto_pad != "VALID" else [0] * (2 * nd)
            begins = pads[:nd]
            out_sp = [full[i] - pads[i] - pads[i + nd] for i in range(nd)]
        return kernel, strides, dil, begins, out_sp

    def __call__(self, X, W, B=None):
        xp = self.xp
        n, c = X.shape[:2]
        g = self.group
        mg = W.shape[1]
        m = mg * g
        cdtype = _compute_dtype(X.dtype)
        kernel, strides, dil, begins, out_sp = self._geometry(tuple(X.shape), tuple(W.shape))
        if n == 0 or m == 0 or min(out_sp) <= 0:  # empty in, empty out (onnxruntime too)
            return xp.empty((n, m, *[max(o, 0) for o in out_sp]), dtype=X.dtype)
        in_sp = X.shape[2:]
        nd = len(in_sp)
        wp = self.packed if self.packed is not None else self._pack(W, cdtype)
        x = X.astype(cdtype, copy=False).reshape(n, g, c // g, -1)
        col = xp.matmul(wp, x).reshape(n, m, *kernel, *in_sp)  # (N, M, *k, *in)
        # Scatter-add every tap into a buffer that holds the full (uncropped) output and
        # whatever part of the requested output lies outside it (negative pads).
        reach = [(kernel[i] - 1) * dil[i] + strides[i] * (in_sp[i] - 1) + 1 for i in range(nd)]
        lo = [min(0, begins[i]) for i in range(nd)]
        hi = [max(reach[i], begins[i] + out_sp[i]) for i in range(nd)]
        buf = xp.zeros((n, m, *[hi[i] - lo[i] for i in range(nd)]), dtype=cdtype)
        lead = (slice(None), slice(None))
        shift = [-v for v in lo]
        for tap in itertools.product(*(range(k) for k in kernel)):
            dst = tuple(
                slice(shift[i] + tap[i] * dil[i], shift[i] + tap[i] * dil[i] + strides[i] * (in_sp[i] - 1) + 1, strides[i])
                for i in range(nd)
            )
            buf[lead + dst] += col[lead + tap]
        y = buf[lead + tuple(slice(shift[i] + begins[i], shift[i] + begins[i] + out_sp[i]) for i in range(nd))]
        if B is not None:
            y = y + B.astype(cdtype, copy=False).reshape((m,) + (1,) * nd)
        return y.astype(X.dtype, copy=False) if y.dtype != X.dtype else xp.ascontiguousarray(y)


def _bilinear_gather(xp, img, ys, xs):
    """Bilinear samples of img (N, C, H, W) at (N, P) float positions; outside corners read 0.

    Returns (N, C, P).
    """
    n, c, h, w = img.shape
    flat = img.reshape(n, c, h * w)
    y0 = xp.floor(ys)
    x0 = xp.floor(xs)
    wy1 = ys - y0
    wx1 = xs - x0
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    out = None
    bidx = xp.arange(n).reshape(n, 1, 1)
    cidx = xp.arange(c).reshape(1, c, 1)
    for dy, wy in ((0, 1 - wy1), (1, wy1)):
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            yy = y0 + dy
            xx = x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = xp.where(ok, yy * w + xx, 0)
            wt = xp.where(ok, wy * wx, 0).astype(img.dtype)
            v = flat[bidx, cidx, idx[:, None, :]] * wt[:, None, :]
            out = v if out is None else out + v
    return out


@kernel("DeformConv", since=19)
class DeformConv:
    """Deformable 2-D convolution (DeformConv-19; 22 added bfloat16).

    Each kernel tap samples the input bilinearly at its regular position plus a
    learned offset (per offset group), optionally scaled by a mask; the sampled
    columns then go through the same per-group matmul as Conv.
    """

    def __init__(self, ctx, *, dilations=None, group=1, kernel_shape=None, offset_group=1, pads=None, strides=None):
        self.xp = ctx.xp
        self.group = int(group)
        self.offset_group = int(offset_group)
        self.attrs = (kernel_shape, strides, dilations, pads)

    def __call__(self, X, W, offset, B=None, mask=None):
        xp = self.xp
        if X.ndim != 4:
            raise OrtNotImplemented(f"DeformConv: only 2-D inputs are supported, got rank {X.ndim}")
        cdtype = _compute_dtype(X.dtype)
        n, c, h, w = X.shape
        m = W.shape[0]
        g, og = self.group, self.offset_group
        kernel, strides, dil, pads = spatial_attrs(2, self.attrs[0] or W.shape[2:], *self.attrs[1:])
        kh, kw = kernel
        oh, ow = offset.shape[2:]
        k = kh * kw
        x = X.astype(cdtype, copy=False)
        off = offset.astype(cdtype, copy=False).reshape(n, og, kh, kw, 2, oh * ow)
        # regular sampling grid of every tap and output pixel
        base_y = (xp.arange(oh) * strides[0] - pads[0]).astype(cdtype)
        base_x = (xp.arange(ow) * strides[1] - pads[1]).astype(cdtype)
        tap_y = (xp.arange(kh) * dil[0]).astype(cdtype)
        tap_x = (xp.arange(kw) * dil[1]).astype(cdtype)
        grid_y = (tap_y[:, None, None, None] + base_y[None, None, :, None]) + xp.zeros((1, kw, 1, ow), cdtype)
        grid_x = (tap_x[None, :, None, None] + base_x[None, None, None, :]) + xp.zeros((kh, 1, oh, 1), cdtype)
        grid_y = grid_y.reshape(kh, kw, oh * ow)
        grid_x = grid_x.reshape(kh, kw, oh * ow)
        msk = None
        if mask is not None:
            msk = mask.astype(cdtype, copy=False).reshape(n, og, k * oh * ow)
        cpg = c // og
        col = xp.empty((n, c, k * oh * ow), dtype=cdtype)
        for o in range(og):
            ys = (grid_y + off[:, o, :, :, 0]).reshape(n, -1)
            xs = (grid_x + off[:, o, :, :, 1]).reshape(n, -1)
            v = _bilinear_gather(xp, x[:, o * cpg:(o + 1) * cpg], ys, xs)
            if msk is not None:
                v *= msk[:, o][:, None, :]
            col[:, o * cpg:(o + 1) * cpg] = v
        wp = W.astype(cdtype, copy=False).reshape(g, m // g, -1)
        y = xp.matmul(wp, col.reshape(n, g, (c // g) * k, oh * ow)).reshape(n, m, oh, ow)
        if B is not None:
            y += B.astype(cdtype, copy=False).reshape(m, 1, 1)
        return y.astype(X.dtype, copy=False)


@kernel("CausalConvWithState", since=27)
def causal_conv_with_state(xp, input, weight, bias=None, past_state=None, *, activation="none"):
    """Causal depthwise 1-D conv over (batch, channels, length), prefixed by the carried state
    (zeros when absent); returns (output, present_state = the last k-1 positions).
    The sum runs over the k taps, each a shifted view of the whole sequence."""
    if activation not in ("none", "silu", "swish"):
        raise OrtNotImplemented(f"CausalConvWithState: activation={activation!r} is not supported (none, silu, swish)")
    b, c, length = input.shape
    k = weight.shape[2]
    if past_state is None:
        past_state = xp.zeros((b, c, k - 1), dtype=input.dtype)
    padded = xp.concatenate([past_state.astype(input.dtype, copy=False), input], axis=2)
    acc = _compute_dtype(input.dtype)
    pa = padded.astype(acc, copy=False)
    w = weight.astype(acc, copy=False).reshape(c, k)
    y = pa[:, :, 0:length] * w[:, 0:1]
    for t in range(1, k):
        y += pa[:, :, t:t + length] * w[:, t:t + 1]
    if bias is not None:
        y += bias.astype(acc, copy=False).reshape(c, 1)
    if activation != "none":  # silu / swish: y * sigmoid(y)
        y = y / (1 + xp.exp(-y))
    present = xp.ascontiguousarray(padded[:, :, padded.shape[2] - (k - 1):])
    return y.astype(input.dtype, copy=False), present
