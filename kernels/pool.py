"""Pooling: AveragePool, MaxPool, LpPool, their Global forms, MaxRoiPool, MaxUnpool.

Windowed pools reduce over the kernel taps: each tap is one strided view of
the input that holds, for every output position, the element that tap sees,
so the Python loop runs over the kernel taps, never over pixels. 1-D and 2-D
max / average pools are separable: the rows of each window first (kh strided
views, inner axis contiguous), then the columns of that smaller result (at
stride 1, one flat op per tap over all the images, the border columns redone);
a tap only touches the outputs whose window sees it inside the input, so
nothing is padded. On numpy the images are split over the intra-op threads.
Other cases (3-D, MaxPool's Indices, LpPool) pad the input once (with the
reduction's identity) and reduce over the views of the padded input. With
ceil_mode the last window may hang past the padded input; that overhang is
padding that no divisor ever counts (onnxruntime's rule).
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np

from ortlite.errors import InvalidArgument, InvalidGraph
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from ._common import check_window, where
from ._nn_util import (check_auto_pad, pool_geometry, prod, run_split, spatial_attrs, tap_ranges, window_slices,
                       worker_count)


def _lowest(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f" or dtype.kind == "V":
        return -np.inf
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    if dtype.kind == "b":
        return False
    raise OrtNotImplemented(f"MaxPool: element type {dtype} is not supported")


class _Window:
    """Window geometry of one pooling node for one input shape."""

    def __init__(self, op, auto_pad, x_shape, kernel_shape, strides, dilations, pads, ceil_mode):
        nd = len(x_shape) - 2
        if kernel_shape is None or len(kernel_shape) != nd:
            raise ValueError(f"{op}: kernel_shape {kernel_shape} does not match input rank {len(x_shape)}")
        kernel, strides, dilations, pads = spatial_attrs(nd, kernel_shape, strides, dilations, pads)
        in_sp = list(x_shape[2:])
        begins, ends, out_sp = pool_geometry(auto_pad, in_sp, kernel, strides, dilations, pads, ceil_mode)
        self.kernel, self.strides, self.dilations = kernel, strides, dilations
        self.in_sp, self.out_sp = in_sp, out_sp
        self.begins, self.ends = begins, ends
        # padded extent the windows read: the pads plus any ceil_mode overhang
        self.extra = [
            max(0, (out_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - (in_sp[i] + begins[i] + ends[i]))
            for i in range(nd)
        ]
        self.taps = list(itertools.product(*(range(k) for k in kernel)))
        self._counts = {}
        # separable 1-D / 2-D plan: per axis, the tap ranges (see _nn_util.tap_ranges)
        self.sep = None
        self.empty = 0 in out_sp  # a window larger than the padded input: an empty output (the spec's)
        # 2-D windows wholly inside the input (no pads, no ceil overhang, no dilation): strided views
        self.valid2d = (nd == 2 and not self.empty and not any(begins) and not any(ends) and not any(self.extra)
                        and all(d == 1 for d in dilations))
        if nd in (1, 2) and not self.empty:
            one = [1] if nd == 1 else []
            k2, s2, d2, b2 = one + kernel, one + strides, one + dilations, [0] * (2 - nd) + begins
            i2, o2 = one + in_sp, one + out_sp
            self.sep = [tap_ranges(k2[a], d2[a], b2[a], s2[a], i2[a], o2[a]) for a in range(2)]
            self.hw = (i2, o2, s2)

    def padded(self, xp, x, value):
        """x padded on the spatial axes with ``value`` (pads and overhang); negative pads crop."""
        nd = len(self.in_sp)
        b = self.begins
        e = [self.ends[i] + self.extra[i] for i in range(nd)]
        if not any(b) and not any(e):
            return x, [0] * nd
        crop = tuple(slice(max(0, -b[i]), self.in_sp[i] - max(0, -e[i])) for i in range(nd))
        x = x[(slice(None), slice(None)) + crop]
        bb = [max(0, v) for v in b]
        ee = [max(0, v) for v in e]
        shape = x.shape[:2] + tuple(x.shape[2 + i] + bb[i] + ee[i] for i in range(nd))
        out = xp.full(shape, value, dtype=x.dtype)
        out[(slice(None), slice(None)) + tuple(slice(bb[i], bb[i] + x.shape[2 + i]) for i in range(nd))] = x
        return out, [0] * nd

    def views(self, xpad, origin):
        lead = (slice(None), slice(None))
        for tap in self.taps:
            yield tap, xpad[lead + window_slices(tap, origin, self.dilations, self.strides, self.out_sp)]

    def counts(self, include_pad):
        """Divisor of every output position: the taps inside the input (or inside input + pads)."""
        got = self._counts.get(include_pad)
        if got is None:
            nd = len(self.in_sp)
            if include_pad:
                inner = [self.in_sp[i] + self.begins[i] + self.ends[i] for i in range(nd)]
                lo = [0] * nd
            else:
                inner = self.in_sp
                lo = self.begins
            full = [self.in_sp[i] + self.begins[i] + self.ends[i] + self.extra[i] for i in range(nd)]
            # per axis: how many taps of each output position fall in [lo, lo + inner)
            per_axis = []
            for i in range(nd):
                pos = np.arange(self.out_sp[i])[:, None] * self.strides[i] + np.arange(self.kernel[i])[None, :] * self.dilations[i]
                ok = (pos >= lo[i]) & (pos < lo[i] + inner[i]) & (pos < full[i])
                per_axis.append(ok.sum(axis=1))
            got = per_axis[0]
            for a in per_axis[1:]:
                got = np.multiply.outer(got, a)
            got = np.asarray(got)
            self._counts[include_pad] = got
        return got


class _Pool:
    """Attribute parsing + per-shape geometry cache shared by the windowed pools."""

    op = "Pool"

    def __init__(self, ctx, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode):
        check_auto_pad(self.op, auto_pad)
        if kernel_shape is None:
            raise InvalidGraph(f"{where(ctx)}: attribute 'kernel_shape' is required")
        rank = ctx.input_rank(0)
        if rank is not None and rank < 3:
            raise InvalidGraph(f"{where(ctx)}: input X has rank {rank}, expected at least 3 (N, C, spatial...)")
        check_window(ctx, None if rank is None else rank - 2, kernel_shape, strides, dilations, pads, pool=True)
        self.node = SimpleNamespace(node=ctx.node)  # for messages of the per-shape checks
        self.xp = ctx.xp
        self.args = (auto_pad, kernel_shape, strides, dilations, pads, int(ceil_mode))
        self._win = {}

    def window(self, x_shape):
        win = self._win.get(x_shape)
        if win is None:
            auto_pad, kernel_shape, strides, dilations, pads, ceil_mode = self.args
            if len(x_shape) < 3:
                raise InvalidArgument(f"{where(self.node)}: input X has shape {list(x_shape)}, expected rank >= 3 "
                                      f"(N, C, spatial...)")
            check_window(self.node, len(x_shape) - 2, kernel_shape, strides, dilations, pads, pool=True)
            win = _Window(self.op, auto_pad, x_shape, kernel_shape, strides, dilations, pads, ceil_mode)
            self._win[x_shape] = win
        return win


def _separable(xp, x, win, ufunc, identity):
    """Reduce every window with ``ufunc`` (maximum / add): rows first, then columns.
    Windows that lie partly in the padding just skip those taps; a window wholly in the
    padding gets ``identity``. On numpy the images are split over the intra-op threads."""
    n, c = x.shape[:2]
    (h, w), (ho, wo), _ = win.hw
    planes = n * c
    x3 = x.reshape(planes, h, w)
    y = xp.empty((planes, ho, wo), dtype=x.dtype)
    if xp is np:
        run_split(lambda lo, hi: _separable_planes(xp, x3[lo:hi], win, ufunc, identity, y[lo:hi]), planes,
                  worker_count(x.size))
    else:
        _separable_planes(xp, x3, win, ufunc, identity, y)
    return y.reshape((n, c) + tuple(win.out_sp))


def _separable_planes(xp, x3, win, ufunc, identity, y):
    """_separable on images x3 (P, H, W) into y (P, Ho, Wo)."""
    (h, w), (ho, wo), (sh, sw) = win.hw
    rows, cols = win.sep

    def reduce(src, ranges, axis, size_out, stride, out=None):
        def view(a, f, lo, hi):
            sl = slice(f + lo * stride, f + (hi - 1) * stride + 1, stride)
            return a[:, sl] if axis == 1 else a[:, :, sl]

        def part(a, lo, hi):
            return a[:, lo:hi] if axis == 1 else a[:, :, lo:hi]

        full = next((t for t, (f, lo, hi) in enumerate(ranges) if lo == 0 and hi == size_out), None)
        if out is None:
            shape = list(src.shape)
            shape[axis] = size_out
            out = xp.empty(shape, dtype=src.dtype)
        if full is not None:
            f, lo, hi = ranges[full]
            xp.copyto(out, view(src, f, lo, hi))
        else:
            out.fill(identity)
        for t, (f, lo, hi) in enumerate(ranges):
            if t == full or lo >= hi:
                continue
            o = part(out, lo, hi)
            ufunc(o, view(src, f, lo, hi), out=o)
        return out

    no_rows = len(rows) == 1 and rows[0] == (0, 0, h) and ho == h
    no_cols = len(cols) == 1 and cols[0] == (0, 0, w) and wo == w
    if no_cols:
        if no_rows:
            xp.copyto(y, x3)
        else:
            reduce(x3, rows, 1, ho, sh, out=y)
        return
    t = x3 if no_rows else reduce(x3, rows, 1, ho, sh)
    if sw == 1 and wo == w and t.flags.c_contiguous:
        _flat_columns(xp, t, cols, ufunc, identity, y)
    else:
        reduce(t, cols, 2, wo, sw, out=y)


def _flat_columns(xp, t, cols, ufunc, identity, y):
    """The column pass at stride 1 with the output as wide as the input, into y (contiguous):
    each tap is one flat op over the whole array (rows run on into the next row); the few border
    columns, where a tap falls outside the row, are then recomputed from their valid taps alone."""
    w = t.shape[-1]
    tf = t.reshape(-1)
    total = tf.size
    shifts = [f for f, lo, hi in cols]
    yf = y.reshape(-1)
    if 0 in shifts:
        xp.copyto(yf, tf)
    else:
        yf.fill(identity)
    for f in shifts:
        if f == 0 or abs(f) >= w:
            continue
        lo, hi = max(0, -f), total - max(0, f)
        ufunc(yf[lo:hi], tf[lo + f:hi + f], out=yf[lo:hi])
    border = sorted({b for f in shifts for b in (range(0, min(w, -f)) if f < 0 else range(max(0, w - f), w))})
    for b in border:
        valid = [b + f for f in shifts if 0 <= b + f < w]
        dst = y[..., b]
        if not valid:
            dst.fill(identity)
            continue
        xp.copyto(dst, t[..., valid[0]])
        for v in valid[1:]:
            ufunc(dst, t[..., v], out=dst)


def _valid_max_2d(xp, x, win):
    """MaxPool over windows that lie wholly inside a 2-D image (``win.valid2d``), on one thread: the
    maximum of the kernel's row views (strided by the row stride), then of its column views; each
    pass is one ufunc over whole arrays (NaN propagates, as in the other paths)."""
    (kh, kw), (sh, sw), (ho, wo) = win.kernel, win.strides, win.out_sp
    rows = [x[:, :, i:i + (ho - 1) * sh + 1:sh, :] for i in range(kh)]
    r = rows[0] if kh == 1 else xp.maximum(rows[0], rows[1])
    for v in rows[2:]:
        xp.maximum(r, v, out=r)
    cols = [r[..., j:j + (wo - 1) * sw + 1:sw] for j in range(kw)]
    if kw == 1:
        return cols[0].copy()  # r may be a view of x
    y = xp.maximum(cols[0], cols[1])
    for v in cols[2:]:
        xp.maximum(y, v, out=y)
    return y


def _acc_dtype(dtype):
    """float16 / bfloat16 sums accumulate in float32."""
    return np.dtype(np.float32) if np.dtype(dtype).itemsize < 4 else np.dtype(dtype)


@kernel("AveragePool", since=1)
class AveragePool(_Pool):
    """AveragePool-1 .. 22: 7 added count_include_pad, 10 ceil_mode, 19 dilations; the
    defaults reproduce the older versions, so one kernel serves them all."""

    op = "AveragePool"

    def __init__(self, ctx, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape=None, pads=None, strides=None):
        super().__init__(ctx, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode)
        self.include_pad = bool(count_include_pad)
        self._div = {}

    def __call__(self, X):
        xp = self.xp
        win = self.window(tuple(X.shape))
        if win.empty:
            return self.xp.zeros(tuple(X.shape[:2]) + tuple(win.out_sp), dtype=X.dtype)
        acc = _acc_dtype(X.dtype)
        if win.sep is not None:
            total = _separable(xp, X.astype(acc, copy=False), win, xp.add, 0)
        else:
            xpad, origin = win.padded(xp, X.astype(acc, copy=False), 0)
            total = None
            for _, v in win.views(xpad, origin):
                total = v.copy() if total is None else xp.add(total, v, out=total)
        total /= self._divisor(xp, win, acc)
        return total.astype(X.dtype, copy=False)

    def _divisor(self, xp, win, acc):
        key = (id(win), acc)
        got = self._div.get(key)
        if got is None:
            got = self._div[key] = xp.asarray(np.maximum(win.counts(self.include_pad), 1).astype(acc))
        return got


@kernel("LpPool", since=1)
class LpPool(_Pool):
    """LpPool-1 .. 22: (sum |x|^p)^(1/p) over each window (zero padding adds nothing).
    1 had a float p; 2 made it an int; 18 added ceil_mode and dilations."""

    op = "LpPool"

    def __init__(self, ctx, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2,
                 pads=None, strides=None):
        super().__init__(ctx, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode)
        self.p = p

    def __call__(self, X):
        xp = self.xp
        win = self.window(tuple(X.shape))
        if win.empty:
            return xp.zeros(tuple(X.shape[:2]) + tuple(win.out_sp), dtype=X.dtype)
        acc = _acc_dtype(X.dtype)
        p = self.p
        if p == 0:  # |x|^0 = 1 for each tap inside the input (padding adds nothing): the tap count
            counts = xp.asarray(win.counts(False).astype(acc))
            y = xp.broadcast_to(counts, tuple(X.shape[:2]) + tuple(win.out_sp)) ** acc.type(np.inf)
            return xp.ascontiguousarray(y).astype(X.dtype, copy=False)
        # padding adds nothing: 0 for p > 0, and inf (inf^p = 0) for p < 0
        xpad, origin = win.padded(xp, xp.abs(X.astype(acc, copy=False)), 0 if p > 0 else np.inf)
        total = None
        for _, v in win.views(xpad, origin):
            term = v * v if p == 2 else v ** acc.type(p)
            total = term if total is None else xp.add(total, term, out=total)
        # p = 0: (sum |x|^0)^(1/0), inf where a window has more than one tap, as onnxruntime computes it
        y = xp.sqrt(total) if p == 2 else total ** acc.type(1.0 / p if p else np.inf)
        return y.astype(X.dtype, copy=False)


@kernel("MaxPool", since=1)
class MaxPool(_Pool):
    """MaxPool-1 .. 22: 8 added the Indices output and storage_order, 10 ceil_mode and
    dilations, 12 int8/uint8; all are defaults of one kernel.

    Indices are flat positions in the input tensor (storage_order=1: column-major
    within each image); the first maximum of a window wins.
    """

    op = "MaxPool"

    def __init__(self, ctx, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
                 storage_order=0, strides=None):
        super().__init__(ctx, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode)
        self.want_indices = ctx.num_outputs > 1 and ctx.has_output(1)
        self.storage_order = int(storage_order)

    def __call__(self, X):
        xp = self.xp
        win = self.window(tuple(X.shape))
        if win.empty:
            shape = tuple(X.shape[:2]) + tuple(win.out_sp)
            y = xp.zeros(shape, dtype=X.dtype)
            return (y, xp.zeros(shape, dtype=np.int64)) if self.want_indices else y
        if not self.want_indices and X.dtype.kind != "b":
            if win.valid2d and worker_count(X.size) == 1:
                return _valid_max_2d(xp, X, win)
            if win.sep is not None:
                return _separable(xp, X, win, xp.maximum, _lowest(X.dtype))
        xpad, origin = win.padded(xp, X, _lowest(X.dtype))
        if not self.want_indices:
            best = None
            for _, v in win.views(xpad, origin):
                best = v.copy() if best is None else xp.maximum(best, v, out=best)
            return best
        best = best_tap = None
        for t, (_, v) in enumerate(win.views(xpad, origin)):
            if best is None:
                best = v.copy()
                best_tap = xp.zeros(v.shape, dtype=np.int64)
            else:
                better = v > best
                xp.copyto(best, v, where=better)
                best_tap[better] = t
        return best, self._indices(xp, win, X.shape, best_tap)

    def _indices(self, xp, win, x_shape, best_tap):
        """Flat input index of every output's winning tap."""
        nd = len(win.in_sp)
        taps = np.asarray(win.taps, dtype=np.int64).reshape(-1, nd)
        n, c = x_shape[:2]
        image = prod(win.in_sp)
        if self.storage_order == 0:
            mult = [prod(win.in_sp[i + 1:]) for i in range(nd)]
        else:  # column-major inside the image
            mult = [prod(win.in_sp[:i]) for i in range(nd)]
        idx = (xp.arange(n * c, dtype=np.int64) * image).reshape((n, c) + (1,) * nd)
        for i in range(nd):
            shape = [1] * (nd + 2)
            shape[2 + i] = win.out_sp[i]
            start = (xp.arange(win.out_sp[i], dtype=np.int64) * win.strides[i] - win.begins[i]).reshape(shape)
            coord = start + xp.asarray(taps[:, i] * win.dilations[i])[best_tap]
            idx = idx + coord * mult[i]
        return idx


def _spatial_axes(x):
    return tuple(range(2, x.ndim))


@kernel("GlobalAveragePool", since=1)
def global_average_pool(xp, X):
    """Mean over every spatial axis (float16 accumulates in float32, as numpy's mean does)."""
    return xp.asarray(xp.mean(X, axis=_spatial_axes(X), keepdims=True, dtype=_acc_dtype(X.dtype))).astype(X.dtype, copy=False)


@kernel("GlobalMaxPool", since=1)
def global_max_pool(xp, X):
    return xp.asarray(xp.max(X, axis=_spatial_axes(X), keepdims=True))


@kernel("GlobalLpPool", since=1)
def global_lp_pool(xp, X, *, p=2):
    """(sum |x|^p)^(1/p) over every spatial axis (1 had a float p, 2 an int; same meaning)."""
    acc = _acc_dtype(X.dtype)
    a = xp.abs(X.astype(acc, copy=False))
    if p == 2:
        y = xp.sqrt(xp.sum(a * a, axis=_spatial_axes(X), keepdims=True))
    else:
        y = xp.sum(a ** acc.type(p), axis=_spatial_axes(X), keepdims=True) ** acc.type(1.0 / p if p else np.inf)
    return xp.asarray(y).astype(X.dtype, copy=False)


@kernel("MaxRoiPool", since=1, families=("cpu",))
def max_roi_pool(xp, X, rois, *, pooled_shape=None, spatial_scale=1.0):
    """Caffe's ROI max pooling: each ROI (batch, x1, y1, x2, y2) is cut into pooled_shape bins.

    Per ROI (a loop over boxes), the bins' maxima come from two masked reductions
    (rows, then columns) over the ROI's bounding region; empty bins give 0.
    """
    if pooled_shape is None or len(pooled_shape) != 2:
        raise ValueError(f"MaxRoiPool: pooled_shape must have 2 values, got {pooled_shape}")
    ph, pw = (int(v) for v in pooled_shape)
    n, c, h, w = X.shape
    out = np.zeros((rois.shape[0], c, ph, pw), dtype=X.dtype)
    low = _lowest(X.dtype)

    def bins(start, length, count, limit):
        size = length / count
        k = np.arange(count)
        lo = np.clip(np.floor(k * size).astype(np.int64) + start, 0, limit)
        hi = np.clip(np.ceil((k + 1) * size).astype(np.int64) + start, 0, limit)
        return lo, hi

    for r, roi in enumerate(np.asarray(rois, dtype=np.float64)):
        b = int(roi[0])
        x1, y1, x2, y2 = (int(np.round(v * spatial_scale)) for v in roi[1:5])
        hs, he = bins(y1, max(y2 - y1 + 1, 1), ph, h)
        ws, we = bins(x1, max(x2 - x1 + 1, 1), pw, w)
        r0, r1 = int(hs.min()), int(max(he.max(), hs.min()))
        c0, c1 = int(ws.min()), int(max(we.max(), ws.min()))
        if r1 <= r0 or c1 <= c0:
            continue
        region = X[b, :, r0:r1, c0:c1]
        rows = np.arange(r0, r1)
        cols = np.arange(c0, c1)
        rmask = (rows[None, :] >= hs[:, None]) & (rows[None, :] < he[:, None])  # (ph, rows)
        cmask = (cols[None, :] >= ws[:, None]) & (cols[None, :] < we[:, None])  # (pw, cols)
        by_row = np.where(rmask[None, :, :, None], region[:, None, :, :], low).max(axis=2)  # (C, ph, cols)
        best = np.where(cmask[None, None, :, :], by_row[:, :, None, :], low).max(axis=3)  # (C, ph, pw)
        empty = ~(rmask.any(axis=1)[:, None] & cmask.any(axis=1)[None, :])
        out[r] = np.where(empty[None], 0, best)
    return out


@kernel("MaxUnpool", since=9, host_inputs=(2,))
def max_unpool(xp, X, I, output_shape=None, *, kernel_shape=None, pads=None, strides=None):
    """Scatter the pooled values back to the flat positions MaxPool's Indices name; zeros elsewhere."""
    nd = X.ndim - 2
    kernel, strides, _, pads = spatial_attrs(nd, kernel_shape, strides, None, pads)
    # the shape MaxPool's indices were computed in: the inverse of the pooling geometry
    shape = tuple(X.shape[:2]) + tuple(
        (X.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[i + nd] for i in range(nd)
    )
    idx = I.reshape(-1)
    if output_shape is not None:
        target = tuple(int(v) for v in np.asarray(output_shape).reshape(-1))
        if target != shape:  # same coordinates, laid out in the larger output
            idx = xp.ravel_multi_index(xp.unravel_index(idx, shape), target)
            shape = target
    y = xp.zeros(prod(shape), dtype=X.dtype)
    y[idx] = X.reshape(-1)
    return y.reshape(shape)
