"""com.microsoft fused ops from onnxruntime's graph optimizer: FusedConv, FusedGemm,
FusedMatMul, and the com.microsoft Trilu (the ONNX Trilu-14 kernel under another domain).

The quantization contrib ops live in contrib_quant.py, the transformer ones in
contrib_transformer.py. FusedConv and FusedGemm are the ONNX Conv / Gemm kernels
(kernels.conv.Conv, kernels.math.Gemm, constant weights pre-packed the same way) followed
by the fused activation, applied in place on the fresh result.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from . import _direct
from .conv import Conv as _Conv
from .math import Gemm as _Gemm
from .math import _Weight
from .tensor import trilu as _trilu

MS = "com.microsoft"


def _sigmoid(xp, y):
    """1 / (1 + exp(-y)), in place on y."""
    xp.negative(y, out=y)
    with np.errstate(over="ignore"):
        xp.exp(y, out=y)
    y += 1
    return xp.reciprocal(y, out=y)


def _softplus(xp, y):
    return xp.logaddexp(y, y.dtype.type(0))


_ZERO_BLOCK = 1 << 16
_ZEROS = {}


def _zeros(dtype):
    z = _ZEROS.get(dtype)
    if z is None:
        z = np.zeros(_ZERO_BLOCK, dtype=dtype)
        z.flags.writeable = False
        _ZEROS[dtype] = z
    return z


_F32_F64 = (np.dtype(np.float32), np.dtype(np.float64))


def _relu(xp, y):
    """max(y, 0) in place. On numpy, against blocks of a zeros array: numpy's maximum runs its
    vector loop for two arrays but not for an array and a scalar (about 3x slower)."""
    if xp is not np or y.size < 4096 or y.dtype not in _F32_F64:  # dtype == dtype: cheap; dtype == type: not
        return xp.maximum(y, y.dtype.type(0), out=y)
    pieces = [y]
    while pieces and not pieces[0].flags.c_contiguous:
        if pieces[0].ndim < 2 or pieces[0].size // pieces[0].shape[0] < 4096:  # small pieces: not worth it
            return xp.maximum(y, y.dtype.type(0), out=y)
        pieces = [p for q in pieces for p in q]
    zeros = _zeros(y.dtype)
    for piece in pieces:
        flat = piece.reshape(-1)
        for i in range(0, flat.size, _ZERO_BLOCK):
            blk = flat[i:i + _ZERO_BLOCK]
            np.maximum(blk, zeros[:blk.size], out=blk)
    return y


def _clip(xp, y, lo, hi):
    return xp.clip(y, y.dtype.type(lo), y.dtype.type(hi), out=y)


def _hard_sigmoid(xp, y, a, b):
    y *= y.dtype.type(a)
    y += y.dtype.type(b)
    return _clip(xp, y, 0, 1)


# name -> (fn(xp, y, alpha, beta, gamma), default alpha, default beta, default gamma).
# The parameters are those of the ONNX op of the same name (onnxruntime builds the fused
# activation from that op's functor). Each takes a fresh float array y, may overwrite it,
# and returns the result (y itself where it works in place).
_ACTS = {
    "Relu": (lambda xp, y, a, b, g: _relu(xp, y), None, None, None),
    "Tanh": (lambda xp, y, a, b, g: xp.tanh(y, out=y), None, None, None),
    "Sigmoid": (lambda xp, y, a, b, g: _sigmoid(xp, y), None, None, None),
    "LeakyRelu": (lambda xp, y, a, b, g: xp.where(y >= 0, y, y * y.dtype.type(a)), 0.01, None, None),
    "HardSigmoid": (lambda xp, y, a, b, g: _hard_sigmoid(xp, y, a, b), 0.2, 0.5, None),
    "Clip": (lambda xp, y, a, b, g: _clip(xp, y, a, b),
             float(np.finfo(np.float32).min), float(np.finfo(np.float32).max), None),
    "Elu": (lambda xp, y, a, b, g: xp.where(y >= 0, y, (xp.exp(xp.minimum(y, 0)) - 1) * y.dtype.type(a)),
            1.0, None, None),
    "Selu": (lambda xp, y, a, b, g: y.dtype.type(g) * xp.where(y > 0, y, (xp.exp(xp.minimum(y, 0)) - 1)
                                                              * y.dtype.type(a)),
             1.67326319217681884765625, None, 1.05070102214813232421875),
    "Softplus": (lambda xp, y, a, b, g: _softplus(xp, y), None, None, None),
    "Softsign": (lambda xp, y, a, b, g: y / (1 + xp.abs(y)), None, None, None),
    "ThresholdedRelu": (lambda xp, y, a, b, g: xp.where(y > a, y, y.dtype.type(0)), 1.0, None, None),
    "ScaledTanh": (lambda xp, y, a, b, g: y.dtype.type(a) * xp.tanh(y * y.dtype.type(b)), 1.0, 1.0, None),
    "ParametricSoftplus": (lambda xp, y, a, b, g: y.dtype.type(a) * _softplus(xp, y * y.dtype.type(b)),
                           1.0, 1.0, None),
}


def _activation(op, name, alpha=None, beta=None, gamma=None):
    """A callable (xp, y) -> act(y) on a fresh array y (which it may overwrite), or None."""
    if not name:
        return None
    entry = _ACTS.get(name)
    if entry is None:
        raise OrtNotImplemented(f"{op}: activation '{name}' not supported; supported: {sorted(_ACTS)}")
    fn, da, db, dg = entry
    a = da if alpha is None else alpha
    b = db if beta is None else beta
    g = dg if gamma is None else gamma
    act = lambda xp, y: fn(xp, y, a, b, g)  # noqa: E731
    act.kind, act.params = name, (a, b)  # read by the compiled conv epilogue (kernels._jit)
    return act


def _in_place(act):
    """act as an in-place callable (xp, y) -> None, for the conv epilogue's blocks."""
    if act is None:
        return None

    def run(xp, y):
        r = act(xp, y)
        if r is not y:
            y[...] = r

    run.kind, run.params = act.kind, act.params
    return run


@kernel("FusedConv", since=1, domain=MS)
class FusedConv:
    """act(Conv(X, W, B) + Z): activation Relu, Tanh, Sigmoid, LeakyRelu (activation_params =
    [alpha]), Clip ([min, max]) or HardSigmoid ([alpha, beta]). Z and the activation run in the
    convolution's epilogue (on cache-sized blocks of the fresh output)."""

    def __init__(self, ctx, *, activation="", activation_params=None, auto_pad="NOTSET", dilations=None, group=1,
                 kernel_shape=None, pads=None, strides=None):
        params = list(activation_params or [])
        if activation and activation not in ("Relu", "Tanh", "Sigmoid", "LeakyRelu", "Clip", "HardSigmoid"):
            raise OrtNotImplemented(f"FusedConv: activation '{activation}' not supported "
                                    "(Relu, Tanh, Sigmoid, LeakyRelu, Clip, HardSigmoid)")
        self.xp = ctx.xp
        self.act = _in_place(_activation("FusedConv", activation, *(params + [None, None])[:2]))
        self.conv = _Conv(ctx, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                          pads=pads, strides=strides, act=self.act, has_z=ctx.has_input(3))

    def __call__(self, X, W, B=None, Z=None):
        y = self.conv.core.run(X, W, B, z=Z, act=self.act)  # compute dtype (float32/64), a fresh array
        return y.astype(X.dtype, copy=False)


def _fused_gemm_specialize(ctx, **attrs):
    """FusedGemm with a constant B (and C) on float32/float64: a Direct call (kernels._direct.gemm_direct),
    the activation in place on the fresh product as the kernel does."""
    from .math import _lean_gemm_candidate

    if not _lean_gemm_candidate(ctx, attrs.get("transA", 0), 2):
        return None
    k = FusedGemm(ctx, **attrs)
    parts = _direct.gemm_parts(ctx, k.gemm)
    return None if parts is None else _direct.gemm_direct(parts, k, k.act)


@kernel("FusedGemm", since=1, domain=MS, specialize=_fused_gemm_specialize)
class FusedGemm:
    """act(alpha * A' @ B' + beta * C) with activation_alpha / _beta / _gamma as the activation
    op's alpha / beta / gamma."""

    def __init__(self, ctx, *, activation="", activation_alpha=None, activation_beta=None, activation_gamma=None,
                 alpha=1.0, beta=1.0, transA=0, transB=0):
        self.xp = ctx.xp
        self.act = _activation("FusedGemm", activation, activation_alpha, activation_beta, activation_gamma)
        self.gemm = _Gemm(ctx, alpha=alpha, beta=beta, transA=transA, transB=transB)

    def __call__(self, A, B, C=None):
        y = self.gemm(A, B, C)
        if self.act is None:
            return y
        if y.dtype.kind != "f":  # integer Gemm: the activation runs in float64
            return self.act(self.xp, y.astype(np.float64)).astype(y.dtype)
        wd = np.float64 if y.dtype == np.float64 else np.float32
        return self.act(self.xp, y.astype(wd, copy=False)).astype(A.dtype, copy=False)


@kernel("FusedMatMul", since=1, domain=MS)
class FusedMatMul:
    """alpha * A' @ B' (numpy matmul broadcasting). transBatchX moves X's first dim to just
    before the last one ([d0, d1.., dn-1] -> [d1.., d0, dn-1], both inputs of rank >= 3);
    transX then swaps the last two dims (onnxruntime's MatMulComputeHelper)."""

    def __init__(self, ctx, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
        self.xp = ctx.xp
        self.alpha = float(alpha)
        self.trans = (bool(transA), bool(transB))
        self.batch = (bool(transBatchA), bool(transBatchB))
        b = ctx.const(1)
        self.B = None if b is None else self.xp.asarray(self._prep(np, b, 1))
        # a constant 2-D B' is laid out for the GEMM that runs it (kernels.math._Weight)
        self.W = _Weight(self.xp, self.B) if self.B is not None and self.B.ndim == 2 else None

    def _prep(self, xp, x, which):
        if self.batch[which]:
            if x.ndim < 3:
                raise ValueError("FusedMatMul: transBatchA/transBatchB need inputs of rank >= 3")
            x = x.transpose(list(range(1, x.ndim - 1)) + [0, x.ndim - 1])
        if self.trans[which]:
            x = x.swapaxes(-1, -2) if x.ndim >= 2 else x
        wd = np.float64 if x.dtype == np.float64 else np.float32
        return x.astype(wd, copy=False)

    def __call__(self, A, B):
        xp = self.xp
        a = self._prep(xp, A, 0)
        if self.W is not None and a.ndim >= 1 and (a.ndim <= 2 or (xp is not np or a.flags.c_contiguous)):
            y = self.W.matmul(a if a.ndim <= 2 else a.reshape(-1, a.shape[-1]))
            if a.ndim > 2:
                y = y.reshape(a.shape[:-1] + (y.shape[-1],))
        else:
            b = self.B if self.B is not None else self._prep(xp, B, 1)
            y = xp.matmul(a, b)
        y = xp.asarray(y)
        if self.alpha != 1.0:
            if y.ndim:
                y *= y.dtype.type(self.alpha)  # a fresh result
            else:
                y = xp.asarray(y * y.dtype.type(self.alpha))
        return y.astype(A.dtype, copy=False)


@kernel("Trilu", since=1, domain=MS, host_inputs=(1,))
def trilu(xp, X, k=None, *, upper=1):
    return _trilu(xp, X, k, upper=upper)
