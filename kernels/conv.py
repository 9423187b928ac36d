"""Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv.

Conv is im2col + one matmul per group (a batched matmul over the groups):
the im2col buffer is filled by a loop over the kernel taps (each tap copies one
strided view of the padded input), never per output pixel. Fast paths:
1x1 kernels without padding are a plain matmul on the input itself, and
depthwise convolutions accumulate tap by tap (a matmul per channel would be
tiny). Constant weights are packed to (group, M/group, C/group*prod(k)) once,
in the prepare step. float16 / bfloat16 compute in float32 (BLAS has no
half-precision matmul in numpy) and round once at the end.
"""
from __future__ import annotations

import itertools

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from ._nn_util import check_auto_pad, conv_geometry, prod, spatial_attrs, window_slices

_EXACT = (np.dtype(np.float32), np.dtype(np.float64))


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


class _ConvCore:
    """Geometry + packed weights of one Conv node; ``run`` does the arithmetic."""

    def __init__(self, op, xp, w_const, auto_pad, dilations, group, kernel_shape, pads, strides):
        check_auto_pad(op, auto_pad)
        self.op = op
        self.xp = xp
        self.auto_pad = auto_pad
        self.group = int(group)
        self.attrs = (kernel_shape, strides, dilations, pads)
        self._geo = {}
        self.packed = None
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
            kshape = self.attrs[0] or list(w_shape[2:])
            kernel, strides, dilations, pads = spatial_attrs(nd, kshape, *self.attrs[1:])
            if list(kernel) != list(w_shape[2:]):
                raise ValueError(f"{self.op}: kernel_shape {kernel} does not match W {list(w_shape)}")
            begins, ends, out_sp = conv_geometry(self.auto_pad, x_shape[2:], kernel, strides, dilations, pads)
            geo = (kernel, strides, dilations, begins, ends, out_sp)
            self._geo[key] = geo
        return geo

    def run(self, x, w, b=None, *, pad_value=0, cdtype=None):
        """The convolution in ``cdtype`` (float32/float64): returns (N, M, *out), bias added."""
        xp = self.xp
        n, c = x.shape[:2]
        m = w.shape[0]
        g = self.group
        if c != w.shape[1] * g or m % g:
            raise ValueError(f"{self.op}: X {x.shape}, W {w.shape} and group={g} do not agree")
        cdtype = cdtype or _compute_dtype(x.dtype)
        kernel, strides, dilations, begins, ends, out_sp = self.geometry(tuple(x.shape), tuple(w.shape))
        x = x.astype(cdtype, copy=False)
        wp = self.packed if self.packed is not None else self.pack(w, cdtype)
        npix = prod(out_sp)
        if g == c and g == m and g > 1:
            y = self._depthwise(x, wp, kernel, strides, dilations, begins, ends, out_sp, pad_value)
        elif all(k == 1 for k in kernel) and not any(begins) and not any(ends):
            # 1x1: the input (strided when strides > 1) is its own im2col matrix.
            xs = x if all(s == 1 for s in strides) else x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
            y = xp.matmul(wp, xs.reshape(n, g, c // g, npix))
        else:
            xpad = pad_spatial(xp, x, begins, ends, pad_value)
            col = im2col(xp, xpad, kernel, dilations, strides, out_sp)
            y = xp.matmul(wp, col.reshape(n, g, -1, npix))
        y = y.reshape(n, m, *out_sp)
        if b is not None:
            y += b.astype(cdtype, copy=False).reshape((m,) + (1,) * len(out_sp))
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

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
        self.core = _ConvCore("Conv", ctx.xp, ctx.const(1), auto_pad, dilations, group, kernel_shape, pads, strides)

    def __call__(self, X, W, B=None):
        y = self.core.run(X, W, B)
        return y if y.dtype == X.dtype else y.astype(X.dtype)


def _int_conv_operands(xp, x, w, x_zp, w_zp):
    """(x - x_zp, w - w_zp) as float64: every int8 product sum a conv makes is exact there."""
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


@kernel("ConvInteger", since=10)
class ConvInteger:
    """Integer convolution, int32 output; the padding holds the zero point (i.e. 0 after the shift)."""

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
        self.xp = ctx.xp
        self.core = _ConvCore("ConvInteger", ctx.xp, None, auto_pad, dilations, group, kernel_shape, pads, strides)

    def __call__(self, x, w, x_zero_point=None, w_zero_point=None):
        xf, wf = _int_conv_operands(self.xp, x, w, x_zero_point, w_zero_point)
        y = self.core.run(xf, wf, cdtype=np.dtype(np.float64))
        return self.xp.rint(y).astype(np.int32)


@kernel("QLinearConv", since=10)
class QLinearConv:
    """Quantized conv: acc = conv(x - x_zp, w - w_zp) + B; y = saturate(round(acc * xs*ws/ys) + y_zp)."""

    def __init__(self, ctx, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
        self.xp = ctx.xp
        self.core = _ConvCore("QLinearConv", ctx.xp, None, auto_pad, dilations, group, kernel_shape, pads, strides)

    def __call__(self, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None):
        xp = self.xp
        xf, wf = _int_conv_operands(xp, x, w, x_zero_point, w_zero_point)
        acc = self.core.run(xf, wf, None if B is None else B.astype(np.float64), cdtype=np.dtype(np.float64))
        m = w.shape[0]
        # the requantization scale is float32 arithmetic, as onnxruntime does it
        ws = w_scale.astype(np.float32).reshape(-1)
        scale = (x_scale.astype(np.float32).reshape(-1)[0] * ws / y_scale.astype(np.float32).reshape(-1)[0])
        scale = scale.reshape((m if ws.size > 1 else 1,) + (1,) * (acc.ndim - 2))
        r = xp.rint(acc.astype(np.float32) * scale)
        out_dtype = y_zero_point.dtype if y_zero_point is not None else x.dtype
        if y_zero_point is not None:
            r += np.float32(y_zero_point.reshape(-1)[0])
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
        self.xp = ctx.xp
        self.auto_pad = auto_pad
        self.group = int(group)
        self.kernel_shape = kernel_shape
        self.dilations, self.strides, self.pads = dilations, strides, pads
        self.output_padding = output_padding
        self.output_shape = output_shape
        w = ctx.const(1)
        self.packed = None if w is None else self._pack(np.asarray(w), _compute_dtype(w.dtype))

    def _pack(self, w, cdtype):
        """W (C, M/g, *k) -> (g, M/g*prod(k), C/g): the transposed weights of each group."""
        c = w.shape[0]
        g = self.group
        wg = w.astype(cdtype, copy=False).reshape(g, c // g, -1)
        return self.xp.ascontiguousarray(wg.transpose(0, 2, 1))

    def _geometry(self, x_shape, w_shape):
        nd = len(x_shape) - 2
        in_sp = x_shape[2:]
        kernel = list(self.kernel_shape or w_shape[2:])
        strides = list(self.strides or [1] * nd)
        dil = list(self.dilations or [1] * nd)
        opad = list(self.output_padding or [0] * nd)
        if len(opad) == 2 * nd:  # some exporters write begin/end pairs
            opad = [a + b for a, b in zip(opad[:nd], opad[nd:])]
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
