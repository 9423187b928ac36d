"""Shared helpers of the nn kernel family (conv, pool): window geometry and padding.

Every function here works on Python ints and lists (shapes and attributes), so
the kernels can run them once per input shape and keep the result.
"""
from __future__ import annotations

import math
import os
import threading

from ortlite import blas
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
        if o < 1:  # refused as onnxruntime refuses it ("Invalid input shape"), an empty spatial input included
            from ortlite.errors import InvalidArgument

            raise InvalidArgument(f"window {kernel} (dilations {dilations}) does not fit input {list(in_sp)} "
                                  f"with pads {list(pads) if pads else 'none'}")
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
        # a window one stride past the (padded) input: the spec's floor((n + pads - span) / s + 1) is 0, an
        # empty output, as onnx.reference computes it (onnxruntime's C++ integer division truncates to 1);
        # below that the window does not fit at all
        if o < 0:
            from ortlite.errors import InvalidArgument

            raise InvalidArgument(f"pool window {kernel} (dilations {dilations}) does not fit input {list(in_sp)} "
                                  f"with pads {list(pads) if pads else 'none'}")
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


def tap_ranges(k, d, begin, s, n_in, n_out):
    """Per kernel tap t of one axis: (first, lo, hi), where output position o reads input
    position o * s + first (first = t * d - begin) and exactly the outputs lo <= o < hi read
    inside the input (the others read padding)."""
    out = []
    for t in range(k):
        first = t * d - begin
        lo = -(first // s) if first < 0 else 0  # ceil(-first / s)
        hi = min(n_out, (n_in - 1 - first) // s + 1) if first <= n_in - 1 else 0
        lo = min(lo, n_out)
        out.append((first, lo, max(lo, hi)))
    return out


def prod(seq):
    return math.prod(int(v) for v in seq)


# ---------------------------------------------------------------------------------------------
# Splitting a kernel's elementwise work over the intra-op threads.
#
# numpy runs its ufuncs and copies on one thread (releasing the GIL meanwhile); BLAS runs on as
# many threads as the session allows (the session sets BLAS's limit to intra_op_num_threads for
# the run, through ortlite.blas). The nn kernels split their larger elementwise passes
# (depthwise taps, im2col copies, epilogues, pooling) over that same number of threads.

_SPLIT_MIN = 1 << 18  # elements below which a pass is not worth splitting
_blas_threads = blas.current  # the BLAS thread count in force (tests replace it)
_executor = None
_lock = threading.Lock()


def worker_count(size):
    """Threads to split a pass over ``size`` elements across: the BLAS thread limit in force
    (the session's intra_op_num_threads), at most the cores; 1 for small passes or when the
    limit cannot be read."""
    if size < 2 * _SPLIT_MIN:
        return 1
    return max(1, min(_blas_threads(), os.cpu_count() or 1, size // _SPLIT_MIN))


def run_split(fn, count, workers):
    """fn(lo, hi) over [0, count) in ``workers`` contiguous parts, the first on this thread;
    returns when every part is done (re-raising the first error)."""
    workers = max(1, min(workers, count))
    if workers == 1 or threading.current_thread().name.startswith("ortlite-nn"):
        fn(0, count)  # one part, or already inside a part (never wait on our own pool)
        return
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                from concurrent.futures import ThreadPoolExecutor

                _executor = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                               thread_name_prefix="ortlite-nn")
    bounds = [count * k // workers for k in range(workers + 1)]
    futures = [_executor.submit(fn, bounds[k], bounds[k + 1]) for k in range(1, workers)]
    err = None
    try:
        fn(bounds[0], bounds[1])
    except BaseException as e:  # noqa: BLE001 - wait for the other parts first
        err = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:  # noqa: BLE001
            err = err or e
    if err is not None:
        raise err
