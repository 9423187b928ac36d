"""Resize (opsets 10, 11/13, 18/19) and Upsample (opsets 1, 7, 9/10).

Resizing is separable: for each resized axis a small table gives, for every
output index, the input indices it reads and their weights (1 tap for nearest,
2 for linear, 4 for cubic, more with antialias). The tables are built with
numpy on the host from the shapes alone, then applied one axis at a time with
``take`` and a weighted sum: no per-pixel Python loop. Nearest mode gathers
every axis at once with one fancy index (exact for any dtype).

Coordinates are computed in float64 from the float32 scales, as onnx's
reference does; float16 / bfloat16 data interpolate in float32, integer data
are rounded back to their type.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import InvalidGraph
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from ._common import bad, check_output_size, prepare_check, where

_COORD_MODES = (
    "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
    "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn",
)
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _source_coords(ctm, in_len, out_len, scale, roi_start, roi_end):
    """Input coordinate of every output index along one axis (float64), and the
    out-of-range mask for tf_crop_and_resize (else None).

    ``length_resized`` in the spec's formulas is in_len * scale, fractional when the
    output size came from a scale (onnx's reference; equal to out_len for sizes).
    """
    i = np.arange(out_len, dtype=np.float64)
    length = in_len * scale
    outside = None
    if ctm == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif ctm == "half_pixel_symmetric":
        adjustment = out_len / length
        offset = in_len / 2 * (1 - adjustment)
        x = offset + (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if length > 1 else np.zeros(out_len)
    elif ctm == "align_corners":
        x = i * (in_len - 1) / (length - 1) if length != 1 else np.zeros(out_len)
    elif ctm == "asymmetric":
        x = i / scale
    elif ctm == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    elif ctm == "tf_crop_and_resize":
        if length != 1:
            x = roi_start * (in_len - 1) + i * (roi_end - roi_start) * (in_len - 1) / (length - 1)
        else:
            x = np.full(out_len, 0.5 * (roi_start + roi_end) * (in_len - 1))
        outside = (x < 0) | (x > in_len - 1)
    else:
        raise OrtNotImplemented(f"Resize: coordinate_transformation_mode={ctm!r} is not supported ({_COORD_MODES})")
    return x, outside


def _nearest_index(x, nearest_mode, in_len, downsample):
    if nearest_mode == "round_prefer_floor":
        idx = np.ceil(x - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.floor(x + 0.5)
    elif nearest_mode == "floor":
        idx = np.floor(x)
    elif nearest_mode == "ceil":
        idx = np.ceil(x)
    elif nearest_mode == "simple":  # opset < 11 (onnxruntime): ceil when shrinking, else truncate
        idx = np.ceil(x) if downsample else np.trunc(x)
    else:
        raise OrtNotImplemented(f"Resize: nearest_mode={nearest_mode!r} is not supported ({_NEAREST_MODES[:4]})")
    return np.clip(idx, 0, in_len - 1).astype(np.intp)


def _cubic(t, a):
    """Keys' cubic convolution kernel at distances t (any sign)."""
    t = np.abs(t)
    t2 = t * t
    t3 = t2 * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _filter_table(x, mode, in_len, scale, cubic_a, exclude_outside, antialias):
    """(indices, weights), both (out, taps), of linear / cubic interpolation at coordinates x.

    Taps are x0 + j with x0 = ceil(x) - 1 (so an integer x reads its own pixel with
    weight 1) and j over the filter's support; antialias stretches the support by
    1/scale when shrinking. Indices outside the input are clamped (edge pixels
    repeat) or, with exclude_outside, dropped and the weights renormalized.
    """
    x0 = np.ceil(x) - 1
    ratio = x - x0  # in (0, 1]
    s = min(scale, 1.0) if antialias else 1.0
    if mode == "linear":
        start = int(np.floor(-1 / s) + 1)
        taps = np.arange(start, 2 - start)
        w = np.clip(1 - np.abs((taps[None, :] - ratio[:, None]) * s), 0, 1)
    else:  # cubic
        start = int(np.floor(-2 / s) + 1)
        taps = np.arange(start, 2 - start)
        w = _cubic((taps[None, :] - ratio[:, None]) * s, cubic_a)
    idx = x0.astype(np.int64)[:, None] + taps[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
    if antialias or exclude_outside:
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_len - 1).astype(np.intp), w


class _ResizePlan:
    """Everything a Resize needs for one (input shape, scales/sizes) pair."""

    def __init__(self, axes_tables, out_shape, outside):
        self.tables = axes_tables  # [(axis, idx, weights or None)]
        self.out_shape = out_shape
        self.outside = outside  # [(axis, mask)] for tf_crop_and_resize


def _apply(xp, X, plan, extrapolation_value):
    if not plan.tables:
        return X.copy()
    nearest = all(w is None for _, _, w in plan.tables)
    if nearest:
        # one take per axis: a contiguous gather, faster than a broadcast fancy index
        y = X
        for axis, idx, _ in plan.tables:
            y = xp.take(y, xp.asarray(idx[:, 0]), axis=axis)
    else:
        dtype = np.dtype(X.dtype)
        acc = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
        y = X.astype(acc, copy=False)
        for axis, idx, w in plan.tables:
            if w is None:
                y = xp.take(y, xp.asarray(idx[:, 0]), axis=axis)
                continue
            bshape = [1] * y.ndim
            bshape[axis] = idx.shape[0]
            out = None
            for k in range(idx.shape[1]):
                wk = xp.asarray(w[:, k].astype(acc).reshape(bshape))
                term = xp.take(y, xp.asarray(idx[:, k]), axis=axis)
                term *= wk
                out = term if out is None else xp.add(out, term, out=out)
            y = out
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            y = xp.clip(xp.rint(y), info.min, info.max)
        y = y.astype(dtype, copy=False)
    for axis, mask in plan.outside:
        if mask.any():
            shape = [1] * y.ndim
            shape[axis] = mask.shape[0]
            y = xp.where(xp.asarray(mask.reshape(shape)), xp.asarray(extrapolation_value, dtype=y.dtype), y)
    return y


def _plan(x_shape, scales, sizes, roi, axes, *, mode, ctm, nearest_mode, cubic_a, exclude_outside,
          antialias, keep_aspect_ratio_policy):
    """Output shape and per-axis tables from the scales / sizes / roi inputs."""
    if mode not in ("nearest", "linear", "cubic"):
        raise OrtNotImplemented(f"Resize: mode={mode!r} is not supported (nearest, linear, cubic)")
    rank = len(x_shape)
    if axes is not None:
        if any(not -rank <= a < rank for a in axes):
            raise bad(f"Resize: 'axes' {list(axes)} out of range for an input of rank {rank}")
        axes = [a + rank if a < 0 else a for a in axes]
        if len(set(axes)) != len(axes):
            raise bad(f"Resize: 'axes' {list(axes)} name an axis twice")
    axes = list(range(rank)) if axes is None else axes
    full_scales = [1.0] * rank
    out_shape = list(x_shape)
    if sizes is not None:
        sizes = [int(v) for v in sizes]
        if len(sizes) != len(axes):
            raise bad(f"Resize: 'sizes' has {len(sizes)} values for {len(axes)} axes")
        if any(v < 0 for v in sizes):
            raise bad(f"Resize: 'sizes' {sizes} holds a negative size")
        if keep_aspect_ratio_policy == "stretch":
            for a, s in zip(axes, sizes):
                out_shape[a] = s
                full_scales[a] = s / x_shape[a]
        elif keep_aspect_ratio_policy in ("not_larger", "not_smaller"):
            ratios = [s / x_shape[a] for a, s in zip(axes, sizes)]
            scale = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
            for a in axes:
                full_scales[a] = scale
                out_shape[a] = int(np.floor(scale * x_shape[a] + 0.5))
        else:
            raise OrtNotImplemented(f"Resize: keep_aspect_ratio_policy={keep_aspect_ratio_policy!r} is not supported")
    elif scales is not None:
        scales = [float(v) for v in scales]
        if len(scales) != len(axes):
            raise bad(f"Resize: 'scales' has {len(scales)} values for {len(axes)} axes")
        for a, s in zip(axes, scales):
            if not (s > 0 and np.isfinite(s)):
                raise bad(f"Resize: 'scales' must be positive and finite, got {scales}")
            full_scales[a] = s
            out_shape[a] = int(np.floor(s * x_shape[a])) if s * x_shape[a] < 2.0 ** 62 else 2 ** 62
    else:
        raise bad("Resize: one of 'scales' and 'sizes' must be given")
    check_output_size(f"Resize: {'sizes' if sizes is not None else 'scales'}", out_shape)
    roi_full = None
    if ctm == "tf_crop_and_resize":
        if roi is None:  # onnxruntime reads a missing roi as the whole input
            roi = [0.0] * len(axes) + [1.0] * len(axes)
        if len(roi) != 2 * len(axes):
            raise bad(f"Resize: tf_crop_and_resize needs an 'roi' of {2 * len(axes)} values, got {len(roi)}")
        roi_full = [(0.0, 1.0)] * rank
        for k, a in enumerate(axes):
            roi_full[a] = (float(roi[k]), float(roi[k + len(axes)]))
    tables, outside = [], []
    for a in axes:
        n_in, n_out, s = x_shape[a], out_shape[a], full_scales[a]
        r0, r1 = roi_full[a] if roi_full is not None else (0.0, 1.0)
        if n_out == n_in and s == 1.0 and (r0, r1) == (0.0, 1.0):
            continue  # identity along this axis
        x, out_mask = _source_coords(ctm, n_in, n_out, s, r0, r1)
        if mode == "nearest":
            idx = _nearest_index(x, nearest_mode, n_in, s < 1)[:, None]
            w = None
        else:
            idx, w = _filter_table(x, mode, n_in, s, cubic_a, exclude_outside, antialias and s < 1)
        tables.append((a, idx, w))
        if out_mask is not None:
            outside.append((a, out_mask))
    return _ResizePlan(tables, tuple(out_shape), outside)


def _host_values(v):
    """A float/int host input as a list, or None when it is missing or empty."""
    if v is None:
        return None
    v = np.asarray(v).reshape(-1)
    return None if v.size == 0 else v.tolist()


class _Resize:
    """Resize-11 / 13: roi, scales, sizes inputs (13 made roi and scales optional)."""

    defaults = dict(antialias=0, axes=None, keep_aspect_ratio_policy="stretch")

    def __init__(self, ctx, **attrs):
        self.xp = ctx.xp
        self.attrs = attrs
        self._plans = {}
        _check_attrs(ctx, attrs, ctx.opset)

    def plan(self, x_shape, scales, sizes, roi):
        a = self.attrs
        key = (x_shape, None if scales is None else tuple(scales), None if sizes is None else tuple(sizes),
               None if roi is None else tuple(roi))
        got = self._plans.get(key)
        if got is None:
            got = _plan(
                x_shape, scales, sizes, roi, a["axes"], mode=a["mode"], ctm=a["coordinate_transformation_mode"],
                nearest_mode=a["nearest_mode"], cubic_a=a["cubic_coeff_a"], exclude_outside=a["exclude_outside"],
                antialias=bool(a["antialias"]), keep_aspect_ratio_policy=a["keep_aspect_ratio_policy"],
            )
            if len(self._plans) < 64:
                self._plans[key] = got
        return got

    def __call__(self, X, roi=None, scales=None, sizes=None):
        sizes = _host_values(sizes)
        if sizes is not None and _host_values(scales) is not None:
            raise bad("Resize: only one of 'scales' and 'sizes' may be given")
        scales = None if sizes is not None else _host_values(scales)
        plan = self.plan(tuple(X.shape), scales, sizes, _host_values(roi))
        return _apply(self.xp, X, plan, self.attrs["extrapolation_value"])


@kernel("Resize", since=11, host_inputs=(1, 2, 3))
class Resize11(_Resize):
    """Resize-11 / 13 (13 made roi and scales optional and dropped tf_half_pixel_for_nn)."""

    def __init__(self, ctx, *, coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
                 extrapolation_value=0.0, mode="nearest", nearest_mode="round_prefer_floor"):
        super().__init__(ctx, coordinate_transformation_mode=coordinate_transformation_mode,
                         cubic_coeff_a=float(cubic_coeff_a), exclude_outside=int(exclude_outside),
                         extrapolation_value=float(extrapolation_value), mode=mode, nearest_mode=nearest_mode,
                         **self.defaults)


@kernel("Resize", since=18, host_inputs=(1, 2, 3))
class Resize18(_Resize):
    """Resize-18 / 19: antialias, axes and keep_aspect_ratio_policy (19 added half_pixel_symmetric)."""

    def __init__(self, ctx, *, antialias=0, axes=None, coordinate_transformation_mode="half_pixel",
                 cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
                 keep_aspect_ratio_policy="stretch", mode="nearest", nearest_mode="round_prefer_floor"):
        super().__init__(ctx, coordinate_transformation_mode=coordinate_transformation_mode,
                         cubic_coeff_a=float(cubic_coeff_a), exclude_outside=int(exclude_outside),
                         extrapolation_value=float(extrapolation_value), mode=mode, nearest_mode=nearest_mode,
                         antialias=int(antialias), axes=axes, keep_aspect_ratio_policy=keep_aspect_ratio_policy)


def _check_attrs(ctx, a, opset):
    """Resize-11+'s attributes at the prepare step: InvalidGraph naming the node, the attribute, the
    value and what is accepted (onnxruntime refuses these models at session creation)."""
    def refuse(name, accepted):
        raise InvalidGraph(f"{where(ctx)}: attribute '{name}'={a[name]!r} is not one of {accepted}")

    if a["mode"] not in ("nearest", "linear", "cubic"):
        refuse("mode", "nearest, linear, cubic")
    ctms = [m for m in _COORD_MODES if not (m == "half_pixel_symmetric" and (opset or 99) < 19)]
    if a["coordinate_transformation_mode"] not in ctms:
        refuse("coordinate_transformation_mode", ", ".join(ctms))
    if a["nearest_mode"] not in _NEAREST_MODES[:4]:
        refuse("nearest_mode", ", ".join(_NEAREST_MODES[:4]))
    if a["keep_aspect_ratio_policy"] not in ("stretch", "not_larger", "not_smaller"):
        refuse("keep_aspect_ratio_policy", "stretch, not_larger, not_smaller")
    if a["antialias"] not in (0, 1):
        refuse("antialias", "0, 1")
    if a["antialias"] and a["mode"] == "nearest":
        raise InvalidGraph(f"{where(ctx)}: attribute 'antialias'=1 needs mode linear or cubic, got mode 'nearest'")
    if a["exclude_outside"] not in (0, 1):
        refuse("exclude_outside", "0, 1")
    if not np.isfinite(a["cubic_coeff_a"]):
        refuse("cubic_coeff_a", "finite values")
    axes = a["axes"]
    if axes is not None:
        axes = [int(v) for v in axes]
        rank = ctx.input_rank(0)
        if rank is not None and any(not -rank <= v < rank for v in axes):
            raise InvalidGraph(f"{where(ctx)}: attribute 'axes'={axes} out of range for an input of rank {rank}")
        if rank is not None and len({v % rank for v in axes}) != len(axes):
            raise InvalidGraph(f"{where(ctx)}: attribute 'axes'={axes} names an axis twice")
    # constant scales / sizes: their count against the axes, their signs (the output size waits for the run)
    rank = ctx.input_rank(0)
    n_axes = len(axes) if axes is not None else rank
    consts = {name: _host_values(ctx.const(i)) for i, name in ((2, "scales"), (3, "sizes"))}
    if consts["scales"] is not None and consts["sizes"] is not None:
        prepare_check(ctx, _refuse, "Resize: only one of 'scales' and 'sizes' may be given")
    for name, vals in consts.items():
        if vals is None:
            continue
        if n_axes is not None and len(vals) != n_axes:
            prepare_check(ctx, _refuse, f"Resize: '{name}' has {len(vals)} values for {n_axes} axes")
        if name == "scales" and not all(v > 0 and np.isfinite(v) for v in vals):
            prepare_check(ctx, _refuse, f"Resize: 'scales' must be positive and finite, got {vals}")
        if name == "sizes" and any(v < 0 for v in vals):
            prepare_check(ctx, _refuse, f"Resize: 'sizes' {vals} holds a negative size")


def _refuse(msg):
    raise bad(msg)


def _legacy_mode(op, mode):
    """Resize-10 / Upsample: 'nearest' or 'linear' ('bilinear' in Upsample-1)."""
    if mode in ("linear", "bilinear"):
        return "linear"
    if mode == "nearest":
        return "nearest"
    raise OrtNotImplemented(f"{op}: mode={mode!r} is not supported (nearest, linear)")


class _LegacyResize:
    """Resize-10 and Upsample: scales only, asymmetric coordinates, onnxruntime's 'simple'
    nearest rounding (ceil when shrinking, truncation when growing)."""

    def __init__(self, ctx, op, mode):
        self.xp = ctx.xp
        self.mode = _legacy_mode(op, mode)
        self._plans = {}

    def run(self, X, scales):
        key = (tuple(X.shape), tuple(scales))
        plan = self._plans.get(key)
        if plan is None:
            plan = _plan(
                tuple(X.shape), scales, None, None, None, mode=self.mode, ctm="asymmetric", nearest_mode="simple",
                cubic_a=-0.75, exclude_outside=0, antialias=False, keep_aspect_ratio_policy="stretch",
            )
            if len(self._plans) < 64:
                self._plans[key] = plan
        return _apply(self.xp, X, plan, 0.0)


@kernel("Resize", since=10, host_inputs=(1,))
class Resize10(_LegacyResize):
    """Resize-10: (X, scales), mode nearest / linear."""

    def __init__(self, ctx, *, mode="nearest"):
        super().__init__(ctx, "Resize", mode)

    def __call__(self, X, scales):
        return self.run(X, _host_values(scales))


@kernel("Upsample", since=1)
class Upsample1(_LegacyResize):
    """Upsample-1 (experimental): height_scale / width_scale scale the last two axes."""

    def __init__(self, ctx, *, height_scale=1.0, mode="nearest", width_scale=1.0):
        super().__init__(ctx, "Upsample", mode)
        self.hw = [float(height_scale), float(width_scale)]

    def __call__(self, X):
        return self.run(X, [1.0] * (X.ndim - 2) + self.hw)


@kernel("Upsample", since=7)
class Upsample7(_LegacyResize):
    """Upsample-7: the scales attribute (one per axis)."""

    def __init__(self, ctx, *, mode="nearest", scales=None):
        super().__init__(ctx, "Upsample", mode)
        if scales is None:
            raise ValueError("Upsample: the scales attribute is required")
        self.scales = [float(s) for s in scales]

    def __call__(self, X):
        return self.run(X, self.scales)


@kernel("Upsample", since=9, host_inputs=(1,))
class Upsample9(_LegacyResize):
    """Upsample-9 / 10: scales became an input."""

    def __init__(self, ctx, *, mode="nearest"):
        super().__init__(ctx, "Upsample", mode)

    def __call__(self, X, scales):
        return self.run(X, _host_values(scales))
