"""Spatial sampling and rearrangement: GridSample, AffineGrid, RoiAlign, Col2Im,
DepthToSpace, SpaceToDepth, CenterCropPad.

Sampling ops gather every output position at once for each interpolation tap
(2 per axis for linear, 4 for cubic): flat indices and weights are computed
as whole arrays, so the Python loops run over taps (and over boxes for
RoiAlign), never over pixels.
"""
from __future__ import annotations

import itertools

import numpy as np

from ortlite.errors import InvalidArgument
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from ._common import norm_axis


def _acc(dtype):
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


# ----------------------------------------------------------------------------------------
# GridSample


def _reflect(xp, x, lo, hi):
    """Fold coordinates into [lo, hi] by reflecting at the borders (repeatedly)."""
    rng = hi - lo
    if rng <= 0:
        return xp.zeros_like(x) + lo
    below = x < lo
    above = x > hi
    d = xp.where(below, lo - x, xp.where(above, x - hi, 0))
    n = xp.trunc(d / rng)
    r = d - n * rng
    even = (n % 2) == 0
    from_low = xp.where(even, lo + r, hi - r)
    from_high = xp.where(even, hi - r, lo + r)
    return xp.where(below, from_low, xp.where(above, from_high, x))


def _cubic_weights(t, a=-0.75):
    """Weights of the taps x0-1 .. x0+2 for a fraction t in [0, 1)."""
    return (
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
        ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
    )


def _grid_sample(xp, X, grid, mode, padding_mode, align_corners):
    if mode not in ("linear", "nearest", "cubic"):
        raise OrtNotImplemented(f"GridSample: mode={mode!r} is not supported")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise OrtNotImplemented(f"GridSample: padding_mode={padding_mode!r} is not supported")
    n, c = X.shape[:2]
    sizes = X.shape[2:]
    nd = len(sizes)
    out_sp = grid.shape[1:-1]
    if grid.shape[-1] != nd:
        raise ValueError(f"GridSample: grid's last axis ({grid.shape[-1]}) must equal the {nd} spatial axes")
    acc = _acc(X.dtype)
    g = grid.astype(acc, copy=False).reshape(n, -1, nd)
    p = g.shape[1]
    # per axis (in X's axis order; the grid lists x first): input coordinates (N, P)
    coords = []
    for i, size in enumerate(sizes):
        v = g[:, :, nd - 1 - i]
        if align_corners:
            x = (v + 1) / 2 * (size - 1)
            lo, hi = 0.0, size - 1.0
        else:
            x = ((v + 1) * size - 1) / 2
            lo, hi = -0.5, size - 0.5
        if mode == "nearest":
            x = xp.rint(x)
        coords.append((x, lo, hi))
    # Reflection folds coordinates past the borders back in; border padding moves no
    # coordinate but clamps the pixel indices the taps read (as onnxruntime does: for
    # linear and nearest that equals clamping the coordinate, for cubic it does not).
    if padding_mode == "reflection":
        coords = [(_reflect(xp, x, lo, hi), lo, hi) for x, lo, hi in coords]

    def resolve(idx, i):
        """Index along axis i after the padding rule, and whether it reads real data."""
        size = sizes[i]
        if padding_mode == "zeros":
            ok = (idx >= 0) & (idx < size)
            return xp.clip(idx, 0, size - 1), ok
        if padding_mode == "border":
            return xp.clip(idx, 0, size - 1), None
        _, lo, hi = coords[i]
        r = xp.trunc(_reflect(xp, idx.astype(acc), lo, hi)).astype(np.int64)
        return xp.clip(r, 0, size - 1), None

    # per axis: list of (index, valid mask or None, weight or None) taps
    axis_taps = []
    for i, (x, _, _) in enumerate(coords):
        if mode == "nearest":
            taps = [(x.astype(np.int64), None)]
        elif mode == "linear":
            x0 = xp.floor(x)
            t = x - x0
            x0 = x0.astype(np.int64)
            taps = [(x0, 1 - t), (x0 + 1, t)]
        else:
            x0 = xp.floor(x)
            t = x - x0
            x0 = x0.astype(np.int64)
            taps = [(x0 + k - 1, w) for k, w in enumerate(_cubic_weights(t))]
        axis_taps.append([resolve(idx, i) + (w,) for idx, w in taps])

    strides = [int(np.prod(sizes[i + 1:], dtype=np.int64)) for i in range(nd)]
    flat = X.astype(acc, copy=False).reshape(n, c, -1).transpose(0, 2, 1)  # (N, S, C)
    bidx = xp.arange(n).reshape(n, 1)
    out = xp.zeros((n, p, c), dtype=acc)
    for combo in itertools.product(*axis_taps):
        index = 0
        weight = None
        valid = None
        for i, (idx, ok, w) in enumerate(combo):
            index = index + idx * strides[i]
            if w is not None:
                weight = w if weight is None else weight * w
            if ok is not None:
                valid = ok if valid is None else valid & ok
        if valid is not None:
            weight = valid.astype(acc) if weight is None else xp.where(valid, weight, 0)
        vals = flat[bidx, index]  # (N, P, C)
        if weight is not None:
            vals = vals * weight[:, :, None]
        out += vals
    y = out.transpose(0, 2, 1).reshape((n, c) + tuple(out_sp))
    if np.dtype(X.dtype).kind in "iu":
        y = xp.rint(y)
    return y.astype(X.dtype)


@kernel("GridSample", since=16)
def grid_sample16(xp, X, grid, *, align_corners=0, mode="bilinear", padding_mode="zeros"):
    """GridSample-16: 4-D input only; modes bilinear / nearest / bicubic."""
    names = {"bilinear": "linear", "bicubic": "cubic", "nearest": "nearest"}
    if mode not in names:
        raise OrtNotImplemented(f"GridSample-16: mode={mode!r} is not supported (bilinear, nearest, bicubic)")
    if X.ndim != 4:
        raise ValueError(f"GridSample-16: X must be 4-D, got rank {X.ndim}")
    return _grid_sample(xp, X, grid, names[mode], padding_mode, bool(align_corners))


@kernel("GridSample", since=20)
def grid_sample20(xp, X, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    """GridSample-20 / 22: N-d input; modes renamed linear / nearest / cubic (22 added bfloat16)."""
    return _grid_sample(xp, X, grid, mode, padding_mode, bool(align_corners))


@kernel("AffineGrid", since=20, host_inputs=(1,))
def affine_grid(xp, theta, size, *, align_corners=0):
    """Sampling grid (N, *spatial, nd) = theta @ (x, y[, z], 1) over the normalized output grid."""
    size = [int(v) for v in np.asarray(size).reshape(-1)]
    n = size[0]
    spatial = size[2:]
    nd = len(spatial)
    if theta.shape[1:] != (nd, nd + 1):
        raise ValueError(f"AffineGrid: theta {theta.shape} does not fit a {nd}-D size {size}")
    acc = _acc(theta.dtype)

    def axis(length):
        if align_corners:
            return xp.linspace(-1, 1, length, dtype=acc) if length > 1 else xp.zeros(length, dtype=acc)
        return ((2 * xp.arange(length, dtype=acc) + 1) / length - 1).astype(acc)

    # base grid columns: x (last axis), y, [z], 1
    mesh = xp.meshgrid(*[axis(s) for s in spatial], indexing="ij")
    base = xp.stack([m.reshape(-1) for m in reversed(mesh)] + [xp.ones(int(np.prod(spatial)), dtype=acc)], axis=1)
    out = xp.matmul(base[None], theta.astype(acc, copy=False).transpose(0, 2, 1))  # (N, P, nd)
    return out.reshape((n, *spatial, nd)).astype(theta.dtype, copy=False)


# ----------------------------------------------------------------------------------------
# RoiAlign


def _roi_axis_weights(start, bin_size, grid, pooled, length, dtype):
    """Bilinear sample weights along one axis of one ROI: (pooled, grid, length) matrix.

    Samples sit at start + p*bin + (i + .5)*bin/grid; a sample farther than one
    pixel outside the map contributes nothing; others clamp to the edge.
    """
    p = np.arange(pooled)[:, None]
    i = np.arange(grid)[None, :]
    pos = start + p * bin_size + (i + 0.5) * bin_size / grid  # (pooled, grid)
    valid = (pos >= -1.0) & (pos <= length)
    pos = np.maximum(pos, 0.0)
    low = pos.astype(np.int64)
    at_end = low >= length - 1
    low = np.where(at_end, length - 1, low)
    high = np.where(at_end, length - 1, low + 1)
    pos = np.where(at_end, low, pos)
    frac = pos - low
    w_low = np.where(valid, 1.0 - frac, 0.0)
    w_high = np.where(valid, frac, 0.0)
    return low, high, w_low.astype(dtype), w_high.astype(dtype)


class _RoiAlign:
    def __init__(self, ctx, mode, output_height, output_width, sampling_ratio, spatial_scale, half_pixel):
        if mode not in ("avg", "max"):
            raise OrtNotImplemented(f"RoiAlign: mode={mode!r} is not supported (avg, max)")
        self.mode = mode
        self.out_h, self.out_w = int(output_height), int(output_width)
        self.sampling_ratio = int(sampling_ratio)
        self.scale = float(spatial_scale)
        self.half_pixel = half_pixel

    def __call__(self, X, rois, batch_indices):
        n, c, h, w = X.shape
        acc = _acc(X.dtype)
        x = np.asarray(X).astype(acc, copy=False)
        boxes = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
        batch = np.asarray(batch_indices).reshape(-1).astype(np.int64)
        oh, ow = self.out_h, self.out_w
        y = np.zeros((boxes.shape[0], c, oh, ow), dtype=acc)
        offset = 0.5 if self.half_pixel else 0.0
        for r, (x1, y1, x2, y2) in enumerate(boxes):  # a loop over boxes; each is whole-array work
            sw, sh = x1 * self.scale - offset, y1 * self.scale - offset
            rw, rh = x2 * self.scale - offset - sw, y2 * self.scale - offset - sh
            if not self.half_pixel:  # legacy: boxes are at least one pixel
                rw, rh = max(rw, 1.0), max(rh, 1.0)
            gh = self.sampling_ratio if self.sampling_ratio > 0 else int(np.ceil(rh / oh))
            gw = self.sampling_ratio if self.sampling_ratio > 0 else int(np.ceil(rw / ow))
            if gh <= 0 or gw <= 0:
                continue
            ylo, yhi, wylo, wyhi = _roi_axis_weights(sh, rh / oh, gh, oh, h, acc)
            xlo, xhi, wxlo, wxhi = _roi_axis_weights(sw, rw / ow, gw, ow, w, acc)
            img = x[batch[r]]
            if self.mode == "avg":
                # separable: y = Wy @ img @ Wx^T, the weights summed over each bin's samples
                wy = np.zeros((oh, h), dtype=acc)
                rows = np.repeat(np.arange(oh), gh)
                np.add.at(wy, (rows, ylo.reshape(-1)), wylo.reshape(-1))
                np.add.at(wy, (rows, yhi.reshape(-1)), wyhi.reshape(-1))
                wx = np.zeros((ow, w), dtype=acc)
                cols = np.repeat(np.arange(ow), gw)
                np.add.at(wx, (cols, xlo.reshape(-1)), wxlo.reshape(-1))
                np.add.at(wx, (cols, xhi.reshape(-1)), wxhi.reshape(-1))
                y[r] = (wy @ img @ wx.T) / acc.type(max(gh * gw, 1))
            else:
                # onnxruntime's max: the largest weighted corner over every sample of a bin
                best = None
                for yi, wyv in ((ylo, wylo), (yhi, wyhi)):
                    for xi, wxv in ((xlo, wxlo), (xhi, wxhi)):
                        v = img[:, yi.reshape(-1)[:, None], xi.reshape(-1)[None, :]]  # (C, oh*gh, ow*gw)
                        v = v * (wyv.reshape(-1)[:, None] * wxv.reshape(-1)[None, :])
                        best = v if best is None else np.maximum(best, v)
                y[r] = best.reshape(c, oh, gh, ow, gw).max(axis=(2, 4))
        return y.astype(X.dtype, copy=False)


@kernel("RoiAlign", since=10, families=("cpu",))
class RoiAlign10(_RoiAlign):
    """RoiAlign-10: no half-pixel shift of the boxes ('output_half_pixel')."""

    def __init__(self, ctx, *, mode="avg", output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
        super().__init__(ctx, mode, output_height, output_width, sampling_ratio, spatial_scale, False)


@kernel("RoiAlign", since=16, families=("cpu",))
class RoiAlign16(_RoiAlign):
    """RoiAlign-16 / 22: coordinate_transformation_mode, default half_pixel (22 added bfloat16)."""

    def __init__(self, ctx, *, coordinate_transformation_mode="half_pixel", mode="avg", output_height=1,
                 output_width=1, sampling_ratio=0, spatial_scale=1.0):
        if coordinate_transformation_mode not in ("half_pixel", "output_half_pixel"):
            raise OrtNotImplemented(
                f"RoiAlign: coordinate_transformation_mode={coordinate_transformation_mode!r} is not supported"
            )
        super().__init__(ctx, mode, output_height, output_width, sampling_ratio, spatial_scale,
                         coordinate_transformation_mode == "half_pixel")


# ----------------------------------------------------------------------------------------
# Col2Im


@kernel("Col2Im", since=18, host_inputs=(1, 2))
def col2im(xp, input, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """Sum sliding blocks (N, C*prod(block), L) back into images (N, C, *image_shape):
    one strided add per block tap."""
    image = [int(v) for v in np.asarray(image_shape).reshape(-1)]
    block = [int(v) for v in np.asarray(block_shape).reshape(-1)]
    nd = len(image)
    dil = list(dilations or [1] * nd)
    st = list(strides or [1] * nd)
    pd = list(pads or [0] * (2 * nd))
    n = input.shape[0]
    k = int(np.prod(block))
    c = input.shape[1] // k
    counts = [(image[i] + pd[i] + pd[i + nd] - (block[i] - 1) * dil[i] - 1) // st[i] + 1 for i in range(nd)]
    if int(np.prod(counts)) != input.shape[2]:
        raise ValueError(f"Col2Im: {input.shape[2]} blocks do not match image {image} and block {block}")
    cols = input.reshape(n, c, *block, *counts)
    padded = [image[i] + pd[i] + pd[i + nd] for i in range(nd)]
    buf = xp.zeros((n, c, *padded), dtype=input.dtype)
    lead = (slice(None), slice(None))
    for tap in itertools.product(*(range(b) for b in block)):
        dst = tuple(slice(tap[i] * dil[i], tap[i] * dil[i] + st[i] * (counts[i] - 1) + 1, st[i]) for i in range(nd))
        buf[lead + dst] += cols[lead + tap]
    crop = tuple(slice(pd[i], pd[i] + image[i]) for i in range(nd))
    return xp.ascontiguousarray(buf[lead + crop])


# ----------------------------------------------------------------------------------------
# DepthToSpace / SpaceToDepth / CenterCropPad


def _block_check(op, x, b):
    if x.ndim != 4:
        raise InvalidArgument(f"{op}: input must have rank 4, got shape {tuple(x.shape)}")
    if b <= 0:
        raise InvalidArgument(f"{op}: blocksize must be positive, got {b}")


def _depth_to_space(xp, x, b, mode):
    _block_check("DepthToSpace", x, b)
    n, c, h, w = x.shape
    if c % (b * b):
        raise InvalidArgument(f"DepthToSpace: {c} channels are not divisible by blocksize^2 = {b * b}")
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise OrtNotImplemented(f"DepthToSpace: mode={mode!r} is not supported (DCR, CRD)")
    return xp.ascontiguousarray(t).reshape(n, c // (b * b), h * b, w * b)


@kernel("DepthToSpace", since=1)
def depth_to_space1(xp, input, *, blocksize=None):
    """DepthToSpace-1: DCR order only."""
    return _depth_to_space(xp, input, int(blocksize), "DCR")


@kernel("DepthToSpace", since=11)
def depth_to_space11(xp, input, *, blocksize=None, mode="DCR"):
    """DepthToSpace-11 .. 28: mode DCR (default) or CRD (13 and 28 only added types)."""
    return _depth_to_space(xp, input, int(blocksize), mode)


def _space_to_depth(xp, x, b, mode):
    _block_check("SpaceToDepth", x, b)
    n, c, h, w = x.shape
    if h % b or w % b:
        raise InvalidArgument(f"SpaceToDepth: spatial shape {(h, w)} is not divisible by blocksize {b}")
    t = x.reshape(n, c, h // b, b, w // b, b)
    if mode == "DCR":
        t = t.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        t = t.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise OrtNotImplemented(f"SpaceToDepth: mode={mode!r} is not supported (DCR, CRD)")
    return xp.ascontiguousarray(t).reshape(n, c * b * b, h // b, w // b)


@kernel("SpaceToDepth", since=1)
def space_to_depth1(xp, input, *, blocksize=None):
    """SpaceToDepth-1 / 13: blocks move to depth in DCR order."""
    return _space_to_depth(xp, input, int(blocksize), "DCR")


@kernel("SpaceToDepth", since=28)
def space_to_depth28(xp, input, *, blocksize=None, mode="DCR"):
    """SpaceToDepth-28: mode attribute (DCR default, or CRD)."""
    return _space_to_depth(xp, input, int(blocksize), mode)


@kernel("CenterCropPad", since=18, host_inputs=(1,))
def center_crop_pad(xp, input_data, shape, *, axes=None):
    """Crop (centered window) or zero-pad (centered input) each listed axis to ``shape``."""
    target = [int(v) for v in np.asarray(shape).reshape(-1)]
    rank = input_data.ndim
    axes = list(range(rank)) if axes is None else [norm_axis(int(a), rank) for a in axes]
    if len(axes) != len(target):
        raise ValueError(f"CenterCropPad: {len(target)} sizes for {len(axes)} axes")
    src = [slice(None)] * rank
    dst = [slice(None)] * rank
    out_shape = list(input_data.shape)
    for a, t in zip(axes, target):
        size = input_data.shape[a]
        out_shape[a] = t
        if t < size:
            start = (size - t) // 2
            src[a] = slice(start, start + t)
        elif t > size:
            start = (t - size) // 2
            dst[a] = slice(start, start + size)
    out = xp.zeros(out_shape, dtype=input_data.dtype)
    out[tuple(dst)] = input_data[tuple(src)]
    return out
