"""Attention (opset 23+), RotaryEmbedding, RMSNormalization, SwiGLU.

These ops have ONNX function bodies, but transformer models spend their time in
them, so they get direct kernels: attention is two batched GEMMs per (batch,
kv-head) with grouped-query heads folded into the GEMM's row dimension, one
additive bias built from the mask/causal/window/padding constraints, and an
in-place softmax. float16 computes in float32 and is cast back; bfloat16 runs op by
op in bfloat16 like the function body (see Attention.__call__).
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel
from ortlite.types import np_dtype

from ._common import norm_axis


def _work_dtype(dt):
    dt = np.dtype(dt)
    return dt if dt.kind == "f" and dt.itemsize >= 4 else np.dtype(np.float32)


# --------------------------------------------------------------------------- Attention

def _split_heads(xp, x, heads, name):
    """[B, S, H*D] -> [B, H, S, D] (a view)."""
    b, s, hidden = x.shape
    if not heads or hidden % heads:
        raise ValueError(f"Attention: {name} hidden size {hidden} is not a multiple of the head count {heads}")
    return x.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


@kernel("Attention", since=23)  # 24 adds input nonpad_kv_seqlen, 25 the window attributes and
class Attention:  # spells out bottom-right causal alignment; one kernel handles all three.
    def __init__(self, ctx, *, is_causal=0, kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0,
                 scale=None, softcap=0.0, softmax_precision=None, left_window_size=-1, right_window_size=-1):
        self.xp = ctx.xp
        self.is_causal = bool(is_causal)
        self.q_heads, self.kv_heads = q_num_heads, kv_num_heads
        self.mode = int(qk_matmul_output_mode)
        if self.mode not in (0, 1, 2, 3):
            raise ValueError(f"Attention: qk_matmul_output_mode must be 0..3, got {self.mode}")
        self.scale = scale
        self.softcap = float(softcap or 0.0)
        self.softmax_dtype = None if softmax_precision is None else np_dtype(int(softmax_precision))
        self.left, self.right = int(left_window_size), int(right_window_size)
        self.num_outputs = ctx.num_outputs
        self.want_qk = ctx.has_output(3)

    # The constraint mask (causal, sliding window, kv padding) as a boolean array
    # broadcastable to [B, H, Sq, Skv], or None when nothing is constrained.
    def _allowed(self, batch, sq, skv, past_len, nonpad):
        xp = self.xp
        window = self.left >= 0 or self.right >= 0
        allowed = None
        if self.is_causal or window:
            if nonpad is not None and past_len == 0:
                offset = (nonpad.astype(np.int64) - sq).reshape(-1, 1, 1, 1)  # external cache: per batch
            else:
                offset = past_len
            i = xp.arange(sq).reshape(sq, 1)
            j = xp.arange(skv).reshape(1, skv)
            diff = (i + offset) - j  # absolute query position minus key position
            if self.is_causal:
                allowed = diff >= 0
            if self.left >= 0:
                a = diff <= self.left
                allowed = a if allowed is None else allowed & a
            if self.right >= 0:
                a = -diff <= self.right
                allowed = a if allowed is None else allowed & a
        if nonpad is not None:
            pad = (xp.arange(skv).reshape(1, skv) < nonpad.astype(np.int64).reshape(-1, 1)).reshape(batch, 1, 1, skv)
            allowed = pad if allowed is None else allowed & pad
        return allowed

    def _bias(self, mask, batch, sq, skv, past_len, nonpad, wd):
        """Additive bias (0 / -inf plus the float mask) or None."""
        xp = self.xp
        neg_inf = wd.type(-np.inf)
        allowed = self._allowed(batch, sq, skv, past_len, nonpad)
        bias = None
        if mask is not None:
            short = skv - mask.shape[-1]
            if mask.dtype == np.bool_:
                if short > 0:  # a shorter mask is padded with 'not allowed'
                    mask = xp.concatenate([mask, xp.zeros(mask.shape[:-1] + (short,), dtype=bool)], axis=-1)
                allowed = mask if allowed is None else allowed & mask
            else:
                bias = mask.astype(wd)
                if short > 0:
                    bias = xp.concatenate([bias, xp.full(mask.shape[:-1] + (short,), neg_inf, dtype=wd)], axis=-1)
        if allowed is not None:
            b = xp.where(allowed, wd.type(0), neg_inf)
            bias = b if bias is None else bias + b
        return bias

    def _softmax(self, s, bias):
        """Softmax over the last axis, in place on `s`; fully-masked rows give zeros, not NaN."""
        xp = self.xp
        m = xp.max(s, axis=-1, keepdims=True)
        m = xp.where(m == -np.inf, s.dtype.type(0), m)
        s -= m
        xp.exp(s, out=s)
        tot = xp.sum(s, axis=-1, keepdims=True)
        tot = xp.where(tot == 0, s.dtype.type(1), tot)
        s /= tot
        if bias is not None:
            # A row whose bias is -inf everywhere has no attendable key: zero it, decided on
            # the bias so NaN logits (inf + -inf) cannot leak into the output.
            dead = xp.max(bias, axis=-1, keepdims=True) == -np.inf
            if xp is not np or bool(dead.any()):  # on a device: no read-back to decide
                s = xp.where(dead, s.dtype.type(0), s)
        return s

    def __call__(self, Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
        xp = self.xp
        out_dtype = Q.dtype
        is3d = Q.ndim == 3
        if is3d:
            Q = _split_heads(xp, Q, self.q_heads, "Q")
            K = _split_heads(xp, K, self.kv_heads, "K")
            V = _split_heads(xp, V, self.kv_heads, "V")
        elif Q.ndim != 4:
            raise ValueError(f"Attention: Q must be 3-D or 4-D, got shape {Q.shape}")
        if (past_key is None) != (past_value is None):
            raise ValueError("Attention: past_key and past_value must be given together")
        past_len = 0
        if past_key is not None:
            past_len = past_key.shape[2]
            K = xp.concatenate([past_key, K], axis=2)
            V = xp.concatenate([past_value, V], axis=2)
        present_key, present_value = K, V

        batch, hq, sq, d = Q.shape
        hkv, skv = K.shape[1], K.shape[2]
        if hq % hkv:
            raise ValueError(f"Attention: q heads {hq} not a multiple of kv heads {hkv}")
        rep = hq // hkv
        scale = self.scale if self.scale is not None else 1.0 / np.sqrt(d)
        # bfloat16 runs in bfloat16 (ml_dtypes rounds after every op) following the spec's
        # op order - Q and K each scaled by sqrt(scale) - so results match the function body.
        # float16 and float32 compute in float32.
        per_op = out_dtype.kind == "V"
        wd = out_dtype if per_op else _work_dtype(out_dtype)

        # Scores: grouped heads share a kv head, so [B, Hkv, rep*Sq, D] @ [B, Hkv, D, Skv].
        q = Q.astype(wd, order="C")  # fresh and contiguous (3-D inputs arrive as transposed views)
        if per_op:
            root = wd.type(np.sqrt(scale))
            q *= root
            k = K * root
        else:
            q *= wd.type(scale)
            k = K.astype(wd, copy=False)
        s = xp.matmul(q.reshape(batch, hkv, rep * sq, d), k.transpose(0, 1, 3, 2))
        s = s.reshape(batch, hq, sq, skv).astype(wd, copy=False)  # ml_dtypes matmul returns float32
        qk = s.copy() if self.want_qk and self.mode == 0 else None
        if self.softcap > 0:
            c = wd.type(self.softcap)
            s /= c
            xp.tanh(s, out=s)
            s *= c
        if self.want_qk and self.mode == 1:
            qk = s.copy()
        bias = self._bias(attn_mask, batch, sq, skv, past_len, nonpad_kv_seqlen, wd)
        if bias is not None:
            if np.broadcast_shapes(bias.shape, s.shape) == s.shape:
                s += bias
            else:
                s = s + bias
        if self.want_qk and self.mode == 2:
            qk = s.copy()

        sd = self.softmax_dtype
        if sd is not None and sd != s.dtype:
            p = self._softmax(s.astype(sd), bias).astype(wd)
        else:
            p = self._softmax(s, bias)
        if self.want_qk and self.mode == 3:
            qk = p

        v = V.astype(wd, copy=False)
        y = xp.matmul(p.reshape(batch, hkv, rep * sq, skv), v).astype(wd, copy=False)
        y = y.reshape(batch, hq, sq, v.shape[-1])
        if is3d:
            y = y.transpose(0, 2, 1, 3).reshape(batch, sq, -1)
        y = y.astype(out_dtype, copy=False)
        outs = (y, present_key, present_value, None if qk is None else qk.astype(out_dtype, copy=False))
        return outs[: self.num_outputs]


# --------------------------------------------------------------------------- RotaryEmbedding

@kernel("RotaryEmbedding", since=23)
def rotary_embedding(xp, X, cos_cache, sin_cache, position_ids=None, *, interleaved=0, num_heads=0,
                     rotary_embedding_dim=0):
    if X.ndim == 4:  # [B, H, S, D]: caches broadcast as [B, 1, S, D/2]
        x, head_axis = X, 1
    elif X.ndim == 3:  # [B, S, H*D] viewed as [B, S, H, D]: caches as [B, S, 1, D/2]
        if not num_heads:
            raise ValueError("RotaryEmbedding: num_heads is required for 3-D input")
        b, s, hidden = X.shape
        x, head_axis = X.reshape(b, s, num_heads, hidden // num_heads), 2
    else:
        raise ValueError(f"RotaryEmbedding: input must be 3-D or 4-D, got shape {X.shape}")
    rd = rotary_embedding_dim or x.shape[-1]
    half = rd // 2
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
    if cos_cache.shape[-1] != half or sin_cache.shape[-1] != half:
        raise ValueError(f"RotaryEmbedding: cache last dim {cos_cache.shape[-1]} != rotary_embedding_dim/2 = {half}")
    cos = xp.expand_dims(cos_cache, head_axis).astype(X.dtype, copy=False)
    sin = xp.expand_dims(sin_cache, head_axis).astype(X.dtype, copy=False)
    if interleaved:
        first, second = slice(0, rd, 2), slice(1, rd, 2)
    else:
        first, second = slice(0, half), slice(half, rd)
    out = xp.empty_like(x) if rd == x.shape[-1] else x.copy()  # the unrotated tail is copied as is
    x1, x2 = x[..., first], x[..., second]
    o1, o2 = out[..., first], out[..., second]
    xp.multiply(x1, cos, out=o1)
    o1 -= sin * x2
    xp.multiply(x1, sin, out=o2)
    o2 += cos * x2
    return out.reshape(X.shape)


# --------------------------------------------------------------------------- RMSNormalization

@kernel("RMSNormalization", since=23)
def rms_normalization(xp, X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    wd = _work_dtype(X.dtype)  # stash_type 1: float32 (float64 inputs keep float64)
    x = X.astype(wd, copy=False)
    a = norm_axis(axis, X.ndim)
    flat = x.reshape(x.shape[:a] + (-1,))  # normalized dims folded into one
    vecdot = getattr(xp, "vecdot", None)
    if vecdot is not None and wd.kind == "f":
        ms = vecdot(flat, flat)[..., None]  # sum of squares in one pass, no x*x temporary
    else:
        ms = xp.sum(flat * flat, axis=-1, keepdims=True)
    ms *= wd.type(1.0 / max(flat.shape[-1], 1))
    ms += wd.type(epsilon)
    xp.sqrt(ms, out=ms)
    y = (flat / ms).reshape(x.shape)
    y *= scale.astype(wd, copy=False)
    return y.astype(X.dtype, copy=False)


# --------------------------------------------------------------------------- SwiGLU

@kernel("SwiGLU", since=28)
def swiglu(xp, A, B, *, alpha=1.0):
    if A.shape != B.shape:
        raise ValueError(f"SwiGLU: A {A.shape} and B {B.shape} must have the same shape")
    wd = _work_dtype(A.dtype)
    a = A.astype(wd)  # fresh: reused in place
    with np.errstate(over="ignore"):
        g = xp.exp(a * wd.type(-alpha))  # sigmoid(alpha*a) = 1 / (1 + exp(-alpha*a))
    g += 1
    a /= g
    a *= B.astype(wd, copy=False)
    return a.astype(A.dtype, copy=False)
