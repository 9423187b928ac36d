"""Compiled conv loops (numba, optional) that vectorize over channels instead of pixels.

kernels._jit's depthwise loop vectorizes along an image row, which suits wide planes; on the small
planes of a network's later stages (14x14, 7x7) and at stride 2 most of its time goes to per-plane
setup, short rows and strided copies. onnxruntime runs depthwise convs in a channel-blocked layout
(NCHWc), where every tap is one vector multiply-add over a block of channels whatever the plane
size or stride. The loop here does the same inside the kernel: each block of CB channels is copied
into a zero-padded (rows, cols, CB) tile, the taps are summed as CB-wide vectors, and the block is
written back to NCHW with the bias, residual and activation fused - the output stays NCHW.

Same conventions as kernels._jit: numba imported lazily (``ORTLITE_JIT=0`` or no numba: the numpy
paths run), compiled at session creation with the window and activation as compile-time constants,
cached on disk (``cache=True``), GIL released so the conv kernel splits blocks over the intra-op
threads.
"""
from __future__ import annotations

import numpy as np

from . import _jit

# Channels per block: one AVX2 float32 vector (two for float64); the weights are packed to it.
CB = 8


def _make_depthwise_cb(nb, kh, kw, sh, sw, dh, dw, act, has_z):
    KH, KW, SH, SW, DH, DW, ACT, HAS_Z = kh, kw, sh, sw, dh, dw, act, has_z
    activate = nb.njit(inline="always", cache=True)(_jit._activate_py)

    @nb.njit(nogil=True, cache=True, fastmath={"contract"}, boundscheck=False, error_model="numpy")
    def depthwise_cb(x, w, bias, z, prm, y, hw, pt, pl, b0, b1):
        """y[n, c] = act(sum_ij w[c, i, j] * xpad[n, c, oh*SH + i*DH, ow*SW + j*DW] + bias[c]
        (+ z[n, c])) for channel blocks b0 <= b < b1 (b = n * blocks + c // CB), on flat planes:
        x (N, C, H*W), z and y (N, C, Ho*Wo), hw = (H, W, Ho, Wo); xpad is x (H, W) with pt rows /
        pl columns of zeros in front and zeros behind. w (blocks, KH*KW, Wo*CB) and bias
        (blocks, Wo*CB) hold each channel's value repeated along an output row, zero past the
        last channel.

        A block is copied into a tile split by stride phase, T[a, b][rq, cq, ci] = xpad[c0 + ci,
        rq*SH + a, cq*SW + b], so that for one output row every tap reads Wo*CB contiguous values
        at a fixed offset: the loop over (ow, ci) vectorizes with the taps unrolled and summed in
        registers. Indices are unsigned (numba's negative-index wraparound blocks vectorizing)."""
        chans = x.shape[1]
        blocks = w.shape[0]
        h, wd, ho, wo = hw[0], hw[1], hw[2], hw[3]
        hq = ho + ((KH - 1) * DH) // SH
        wq = wo + ((KW - 1) * DW) // SW
        phase = hq * wq * CB
        row = np.uint64(wq * CB)
        span = wo * CB
        t = np.zeros(SH * SW * phase, x.dtype)  # borders stay zero: only the image part is rewritten
        o = np.empty(ho * span, x.dtype)
        rend = min(h, hq * SH - pt)
        kend = min(wd, wq * SW - pl)
        lo, hi, one, zero = prm[0], prm[1], prm[2], prm[3]
        for blk in range(b0, b1):
            img = blk // blocks
            cb = blk % blocks
            c0 = cb * CB
            cn = min(CB, chans - c0)
            for ci in range(cn):
                src = x[img, c0 + ci]
                for r in range(rend):
                    rp = r + pt
                    s0 = r * wd
                    for b in range(SW):  # the input columns k with (k + pl) % SW == b
                        k0 = (b - pl) % SW
                        d = np.uint64(((rp % SH) * SW + b) * phase + ((rp // SH) * wq + (k0 + pl) // SW) * CB + ci)
                        cnt = (kend - k0 + SW - 1) // SW if kend > k0 else 0
                        for u in range(cnt):
                            t[d + np.uint64(u * CB)] = src[np.uint64(s0 + k0 + u * SW)]
            wb = w[cb]
            bb = bias[cb]
            for oh in range(ho):
                ob = np.uint64(oh * span)
                rb = np.uint64(oh) * row
                for q in range(span):
                    uq = np.uint64(q)
                    acc = bb[uq]
                    for i in range(KH):
                        for j in range(KW):
                            off = np.uint64(((i * DH) % SH * SW + (j * DW) % SW) * phase
                                            + ((i * DH) // SH * wq + (j * DW) // SW) * CB)
                            acc += wb[i * KW + j, uq] * t[rb + off + uq]
                    o[ob + uq] = acc
            for ci in range(cn):
                dst = y[img, c0 + ci]
                zz = z[img, c0 + ci]
                for p in range(ho * wo):
                    v = o[np.uint64(p * CB + ci)]
                    if HAS_Z:
                        v += zz[np.uint64(p)]
                    dst[np.uint64(p)] = activate(v, ACT, lo, hi, one, zero)

    return depthwise_cb


def depthwise_cb(dtype, kernel, strides, dilations, act, has_z):
    """The compiled channel-blocked depthwise loop for one window / activation code / residual flag
    and dtype (float32 or float64), compiled now or loaded from numba's disk cache; None without
    numba or when compiling fails (logged once; the other paths run)."""
    consts = tuple(int(v) for v in (*kernel, *strides, *dilations)) + (int(act), bool(has_z))

    def args_of(nb, t):
        r3, r2, i = _jit._ro(nb, t, 3), _jit._ro(nb, t, 2), nb.int64
        return (r3, r3, r2, r3, _jit._ro(nb, t, 1), t[:, :, ::1], nb.types.UniTuple(i, 4), i, i, i, i)

    return _jit._compiled("depthwise_cb", dtype, _make_depthwise_cb, consts, args_of, defer=True)


def pack_depthwise(w, wo, dtype):
    """The loop's weights from depthwise weights (C, kh, kw): (blocks, kh*kw, wo*CB), each
    channel's value repeated over an output row of wo columns, zero past C (blocks = ceil(C / CB))."""
    c, kh, kw = w.shape
    blocks = -(-c // CB)
    wpad = np.zeros((blocks * CB, kh * kw), dtype=dtype)
    wpad[:c] = w.reshape(c, kh * kw)
    wt = wpad.reshape(blocks, CB, kh * kw).transpose(0, 2, 1)  # (blocks, taps, CB)
    return np.ascontiguousarray(np.broadcast_to(wt[:, :, None, :], (blocks, kh * kw, wo, CB))).reshape(
        blocks, kh * kw, wo * CB)


def pack_bias(b, c, wo, dtype):
    """The loop's bias from (C,) or None: (blocks, wo*CB), repeated like the weights."""
    blocks = -(-c // CB)
    bpad = np.zeros(blocks * CB, dtype=dtype)
    if b is not None:
        bpad[:c] = b.reshape(c)
    return np.ascontiguousarray(np.broadcast_to(bpad.reshape(blocks, 1, CB), (blocks, wo, CB))).reshape(blocks, wo * CB)
