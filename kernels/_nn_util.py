"""Shared helpers of the nn kernel family (conv, pool): window geometry and padding.

Every function here works on Python ints and lists (shapes and attributes), so
the kernels can run them once per input shape and keep the result.
"""
from __future__ import annotations

import math

from ortlite.errors import NotImplemented as OrtNotImplemented

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def spatial_attrs(nd, kernel_shape, strides, dilations, pads):
    """Fill the ONNX defaults of the window attributes for ``nd`` spatial axes."""
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    pads = list(pads) if pads else [0] * (2 * nd)
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
        raise ValueError(
            f"window attributes do not match {nd} spatial axes: strides={strides}, "
            f"dilations={dilations}, pads={pads}"
        )
    return list(kernel_shape), strides, dilations, pads


def check_auto_pad(op, auto_pad):
    if auto_pad not in AUTO_PADS:
        raise OrtNotImplemented(f"{op}: auto_pad={auto_pad!r} is not supported (one of {AUTO_PADS})")


def same_pads(auto_pad, size, k, s, d):
    """(begin, end, out) of one axis under SAME_UPPER / SAME_LOWER: out = ceil(size / s)."""
    out = -(-size // s)
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
    small = total // 2
    if auto_pad == "SAME_UPPER":  # the odd extra pad goes at the end
        return small, total - small, out
    return total - small, small, out


def conv_geometry(auto_pad, in_sp, kernel, strides, dilations, pads):
    """Pads (begins, ends) and the output spatial shape of a convolution (floor rounding)."""
    nd = len(in_sp)
    begins, ends, out = [], [], []
    for i in range(nd):
        k, s, d, n = kernel[i], strides[i], dilations[i], in_sp[i]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            b, e, o = same_pads(auto_pad, n, k, s, d)
        elif auto_pad == "VALID":
            b, e = 0, 0
            o = (n - (k - 1) * d - 1) // s + 1
        else:
            b, e = pads[i], pads[i + nd]
            o = (n + b + e - (k - 1) * d - 1) // s + 1
        if o < 1:
            raise ValueError(f"window {kernel} (dilations {dilations}) does not fit input {list(in_sp)}")
        begins.append(b)
        ends.append(e)
        out.append(o)
    return begins, ends, out


def pool_geometry(auto_pad, in_sp, kernel, strides, dilations, pads, ceil_mode):
    """Pads (begins, ends), output shape of a pooling window (ceil_mode aware).

    With ceil_mode the last window may run past the padded input; it must still
    start inside the input or the begin pad (onnxruntime / PyTorch rule), and
    the part past the end counts as padding that is never included.
    """
    nd = len(in_sp)
    begins, ends, out = [], [], []
    for i in range(nd):
        k, s, d, n = kernel[i], strides[i], dilations[i], in_sp[i]
        span = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s) if ceil_mode else (n - 1) // s + 1
            total = max(0, (o - 1) * s + span - n)
            small = total // 2
            b, e = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        elif auto_pad == "VALID":
            b = e = 0
            o = (-(-(n - span + 1) // s)) if ceil_mode else (n - span) // s + 1
        else:
            b, e = pads[i], pads[i + nd]
            num = n + b + e - span
            if ceil_mode:
                o = -(-num // s) + 1
                if (o - 1) * s >= n + b:  # the last window would start in the end pad
                    o -= 1
            else:
                o = num // s + 1
        if o < 1:
            raise ValueError(f"pool window {kernel} does not fit input {list(in_sp)}")
        begins.append(b)
        ends.append(e)
        out.append(o)
    return begins, ends, out


def window_slices(tap, begins_in_buf, dilations, strides, out_sp):
    """Slices that pick, for one kernel tap, the input element of every output position."""
    return tuple(
        slice(b + t * d, b + t * d + s * (o - 1) + 1, s)
        for t, b, d, s, o in zip(tap, begins_in_buf, dilations, strides, out_sp)
    )


def prod(seq):
    return math.prod(int(v) for v in seq)
