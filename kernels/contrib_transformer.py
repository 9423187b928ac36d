"""com.microsoft transformer ops (what onnxruntime's transformer optimizer emits).

Gelu family (Gelu, FastGelu, BiasGelu, QuickGelu, BiasSplitGelu), BiasAdd, BiasSoftmax,
the fused normalizations (SkipLayerNormalization, SimplifiedLayerNormalization - which
onnxruntime registers in the default ONNX domain, onnx.defs has no op of that name -,
SkipSimplifiedLayerNormalization, EmbedLayerNormalization) and the attention family
(Attention, MultiHeadAttention, GroupQueryAttention, RotaryEmbedding).

Semantics are onnxruntime's CPU kernels (docs/ContribOperators.md, checked against
onnxruntime 1.32). The numerics reuse the ONNX-domain kernels: erf/Gelu from
kernels.elementwise, layer-norm statistics from kernels.norm, rotary from kernels.attention.
Attention masks follow onnxruntime's PrepareMask: masked keys get ``mask_filter_value``
(replacing, not adding), causal-masked keys get float32's lowest, and the mask is added
to scale * Q @ K^T before an ordinary softmax - so a fully masked row is uniform, as in
onnxruntime, not zero.
"""
from __future__ import annotations

import math

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from . import _transformer_jit as _tj
from ._common import norm_axis
from ._nn_util import run_split, worker_count
from .attention import rotary_embedding as _onnx_rotary
from .elementwise import gelu as _onnx_gelu
from .math import _static_rows, _Weight
from .elementwise import gelu_f32 as _gelu_f32
from .elementwise import gelu_tanh_into as _gelu_tanh_into
from .norm import LayerNormalization as _LayerNormalization17
from .norm import _normalize, _normalize_rows

MS = "com.microsoft"
_LOWEST = float(np.finfo(np.float32).min)


def _wd(dt):
    """Compute dtype: float32 for half types, float64 stays."""
    dt = np.dtype(dt)
    return dt if dt == np.float64 else np.dtype(np.float32)


def _sigmoid(xp, x):
    with np.errstate(over="ignore"):
        e = xp.exp(-x)
    e += 1
    return xp.reciprocal(e, out=e)


# --------------------------------------------------------------------------- Gelu family

_F32, _F16 = np.dtype(np.float32), np.dtype(np.float16)


def _compiled_gelu(ctx, mode):
    """At session start: the compiled Gelu loop (kernels._transformer_jit) for a numpy node whose
    input is float32 / float16 (or of a dtype not known yet); None otherwise or without numba."""
    if ctx.xp is not np or ctx.input_dtype(0) not in (None, _F32, _F16):
        return None
    return _tj.gelu(mode)


def _gelu_rows(fn, X, bias):
    """Gelu of X (+ bias, a vector over the last axis) through the compiled loop ``fn``, or None
    where it does not apply (other dtypes or bias shapes, small tensors): the numpy path runs."""
    if X.dtype not in (_F32, _F16) or X.size < _tj.MIN_SIZE:
        return None
    h = X.shape[-1]
    if bias is not None:
        if bias.shape != (h,) or bias.dtype != X.dtype:
            return None
        bias = np.ascontiguousarray(bias, dtype=np.float32)
    elif h < _tj.MIN_SIZE:
        h = X.size  # short rows: one row (the loop's per-row work is for the bias)
    y = _tj.run_gelu(fn, np.ascontiguousarray(X, dtype=np.float32).reshape(-1, h), bias).reshape(X.shape)
    return y if X.dtype == _F32 else y.astype(X.dtype)


def bias_gelu(xp, A, B):
    """Gelu(A + B) on numpy or a device (also cuda_fused's fallback)."""
    if _f32_bias_fast(xp, A, B):
        return _gelu_f32(xp, A, bias=B)
    return _onnx_gelu(xp, A + B)


def fast_gelu(xp, X, bias=None):
    """0.5x(1 + tanh(0.7978845608 (x + 0.044715 x^3))) of X (+ bias): ONNX Gelu's tanh
    approximation, on numpy or a device (also cuda_fused's fallback)."""
    if _f32_bias_fast(xp, X, bias):
        y = np.empty(X.shape, np.float32)
        h = X.shape[-1]
        _gelu_tanh_into(X.reshape(-1, h), y.reshape(-1, h), bias)
        return y
    return _onnx_gelu(xp, X if bias is None else X + bias, approximate="tanh")


def _f32_bias_fast(xp, X, bias):
    """Whether the numpy float32 fast paths apply: they add a bias vector over the last axis
    block by block (in cache) instead of materializing X + bias first."""
    return (xp is np and bias is not None and X.dtype == np.float32 and bias.dtype == np.float32 and X.ndim >= 1
            and bias.ndim == 1 and bias.shape[0] == X.shape[-1] and X.flags.c_contiguous)


@kernel("Gelu", since=1, domain=MS)
class Gelu:
    """Exact (erf) Gelu, as ONNX Gelu-20 approximate='none'."""

    def __init__(self, ctx):
        self.xp = ctx.xp
        self.jit = _compiled_gelu(ctx, _tj.GELU_ERF)

    def __call__(self, X):
        y = None if self.jit is None else _gelu_rows(self.jit, X, None)
        return _onnx_gelu(self.xp, X) if y is None else y


@kernel("BiasGelu", since=1, domain=MS)
class BiasGelu:
    """Gelu(A + B), B a vector over A's last axis (or broadcasting as numpy's add)."""

    def __init__(self, ctx):
        self.xp = ctx.xp
        self.jit = _compiled_gelu(ctx, _tj.GELU_ERF)

    def __call__(self, A, B):
        y = None if self.jit is None else _gelu_rows(self.jit, A, B)
        return bias_gelu(self.xp, A, B) if y is None else y


@kernel("FastGelu", since=1, domain=MS)
class FastGelu:
    """The tanh approximation of Gelu of X (+ bias), computed as x / (1 + exp(-2u)) (no
    cancellation for x << 0)."""

    def __init__(self, ctx):
        self.xp = ctx.xp
        self.jit = _compiled_gelu(ctx, _tj.GELU_TANH)

    def __call__(self, X, bias=None):
        y = None if self.jit is None else _gelu_rows(self.jit, X, bias)
        return fast_gelu(self.xp, X, bias) if y is None else y


_QG_BLOCK = 1 << 14  # elements per block: the block and its temporary stay in L1/L2


def _quick_gelu_blocks(x, alpha):
    """x / (1 + exp(-alpha x)) for a contiguous float32/float64 array: four in-place passes per
    cache-sized block, the blocks split over the intra-op threads."""
    y = np.empty_like(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    n = xf.size
    na = x.dtype.type(-alpha)

    def part(lo, hi):
        with np.errstate(over="ignore"):
            for i in range(lo * _QG_BLOCK, min(hi * _QG_BLOCK, n), _QG_BLOCK):
                xb, yb = xf[i:i + _QG_BLOCK], yf[i:i + _QG_BLOCK]
                np.multiply(xb, na, out=yb)
                np.exp(yb, out=yb)  # inf for alpha x << 0: x / inf = 0, the right limit
                yb += 1
                np.divide(xb, yb, out=yb)

    run_split(part, -(-n // _QG_BLOCK), worker_count(n))
    return y


@kernel("QuickGelu", since=1, domain=MS)
def quick_gelu(xp, X, *, alpha=1.702):
    """x * sigmoid(alpha x); SiLU / Swish at alpha = 1 (QuickGeluFusion makes it from Mul + Sigmoid)."""
    if xp is np and X.dtype in (np.float32, np.float64) and X.flags.c_contiguous and X.size:
        return _quick_gelu_blocks(X, alpha)
    x = X.astype(_wd(X.dtype), copy=False)
    return (x * _sigmoid(xp, x * x.dtype.type(alpha))).astype(X.dtype, copy=False)


@kernel("BiasSplitGelu", since=1, domain=MS)
def bias_split_gelu(xp, X, bias):
    # (X + bias) split in halves on the last axis: left * Gelu(right)
    x = X + bias
    half = x.shape[-1] // 2
    return x[..., :half] * _onnx_gelu(xp, xp.ascontiguousarray(x[..., half:]))


@kernel("BiasAdd", since=1, domain=MS)
def bias_add(xp, X, bias, skip):
    return X + bias + skip


@kernel("BiasSoftmax", since=1, domain=MS)
def bias_softmax(xp, data, bias, *, axis=1, is_inner_broadcast=None):
    # softmax over the dims from `axis` on (flattened) of data + bias; the bias broadcasts
    # numpy-style (is_inner_broadcast only says which of its leading dims are 1).
    wd = _wd(data.dtype)
    x = data.astype(wd) + bias.astype(wd, copy=False)
    a = norm_axis(axis, data.ndim)
    flat = x.reshape(x.shape[:a] + (-1,))
    flat -= flat.max(axis=-1, keepdims=True)
    xp.exp(flat, out=flat)
    flat /= flat.sum(axis=-1, keepdims=True)
    return flat.reshape(data.shape).astype(data.dtype, copy=False)


# --------------------------------------------------------------------------- normalizations

def _layer_norm(xp, x, gamma, beta, epsilon, inplace=False):
    """LayerNorm over the last axis in x's dtype (float32/64); returns (y, mean, inv_std).
    ``inplace``: x is a fresh array of the caller's and may become y."""
    if xp is np and x.size and x.flags.c_contiguous:
        h = x.shape[-1]
        y, mean, inv = _normalize_rows(xp, x.reshape(-1, h), epsilon, inplace=inplace)
        stat = x.shape[:-1] + (1,)
        y, mean, inv = y.reshape(x.shape), mean.reshape(stat), inv.reshape(stat)
    else:
        y, mean, inv = _normalize(xp, x, (x.ndim - 1,), epsilon)
    y *= gamma.astype(x.dtype, copy=False)
    if beta is not None:
        y += beta.astype(x.dtype, copy=False)
    return y, mean, inv


def _rms_norm(xp, x, gamma, epsilon, axis=-1):
    """x / sqrt(mean(x^2) + eps) * gamma over the axes from `axis` on; returns (y, inv_std)."""
    a = norm_axis(axis, x.ndim)
    flat = x.reshape(x.shape[:a] + (-1,))
    if xp is np and x.dtype in (np.float32, np.float64):
        ms = np.vecdot(flat, flat)[..., None]
        ms /= x.dtype.type(max(flat.shape[-1], 1))
    else:
        sq = np.einsum("...i,...i->...", flat, flat) if xp is np else (flat * flat).sum(axis=-1)  # no cuBLAS
        ms = sq[..., None] / x.dtype.type(max(flat.shape[-1], 1))
    inv = 1 / xp.sqrt(ms + x.dtype.type(epsilon))
    y = (flat * inv).reshape(x.shape)
    y *= gamma.astype(x.dtype, copy=False)
    return y, inv.reshape(x.shape[:a] + (1,) * (x.ndim - a))


def _skip_rows(input, skip, h):
    """skip as [Rs, H] rows repeating over input's rows (input's trailing shape, leading 1s
    allowed: (1, S, H) or (S, H) against (B, S, H)), or None when it broadcasts otherwise."""
    lead = 0
    while lead < skip.ndim - 1 and skip.shape[lead] == 1:
        lead += 1
    core = skip.shape[lead:]
    if len(core) > input.ndim or input.shape[input.ndim - len(core):] != core or core[-1] != h:
        return None
    return skip.reshape(-1, h)


class _SkipNormBase:
    simplified = False

    def __init__(self, ctx, epsilon):
        self.xp = ctx.xp
        self.epsilon = float(epsilon)
        self.num_outputs = ctx.num_outputs
        dt = ctx.input_dtype(0)
        # the compiled rows loop (kernels._transformer_jit) for the compute dtype, compiled now
        self.jit_dtype = _wd(dt or _F32)
        self.jit = _tj.norm_rows(self.jit_dtype) if ctx.xp is np and dt in (None, _F32, _F16, np.float64) else None

    def run(self, input, skip, gamma, beta, bias):
        if self.jit is not None:
            outs = self._compiled(input, skip, gamma, beta, bias)
            if outs is not None:
                return outs[0] if self.num_outputs == 1 else outs[: self.num_outputs]
        xp = self.xp
        wd = _wd(input.dtype)
        if input.dtype == wd and skip.dtype == wd:
            s = xp.add(input, skip)  # fresh; skip may be (1, S, H) or (S, H)
        else:
            s = input.astype(wd) + skip.astype(wd, copy=False)
        if bias is not None:
            s += bias.astype(wd, copy=False)
        if self.simplified:
            y, inv = _rms_norm(xp, s, gamma, self.epsilon)
            mean = xp.zeros_like(inv)  # onnxruntime leaves the mean output at 0 for the RMS form
        else:
            # the sum is an output only as the 4th one: otherwise normalize it in place
            y, mean, inv = _layer_norm(xp, s, gamma, beta, self.epsilon, inplace=self.num_outputs < 4)
        outs = (y.astype(input.dtype, copy=False), mean.astype(np.float32, copy=False),
                inv.astype(np.float32, copy=False), s.astype(input.dtype, copy=False))
        return outs[0] if self.num_outputs == 1 else outs[: self.num_outputs]

    def _compiled(self, input, skip, gamma, beta, bias):
        """The outputs through the compiled rows loop, or None where it does not apply (dtypes,
        broadcasts or sizes it does not take, or a dtype other than the one compiled)."""
        dt = input.dtype
        wd = _wd(dt)
        if (dt not in (_F32, _F16, np.float64) or skip.dtype != dt or input.ndim < 1 or input.size < _tj.MIN_SIZE
                or wd != self.jit_dtype):
            return None
        h = input.shape[-1]
        sk = _skip_rows(input, skip, h)
        vecs = [_tj.norm_vector(v, (h,), wd) for v in (gamma, beta, bias)]
        if sk is None or sk.shape[0] == 0 or (input.size // h) % sk.shape[0] or vecs[0] is None or any(v is False for v in vecs):
            return None
        x2 = np.ascontiguousarray(input, dtype=wd).reshape(-1, h)
        y, s, mean, inv = _tj.run_norm(self.jit, x2, np.ascontiguousarray(sk, dtype=wd), vecs[2], vecs[0],
                                       vecs[1], self.epsilon, rms=self.simplified, want_sum=self.num_outputs > 3)
        stat = input.shape[:-1] + (1,)
        return (y.reshape(input.shape).astype(dt, copy=False), mean.reshape(stat).astype(np.float32, copy=False),
                inv.reshape(stat).astype(np.float32, copy=False),
                None if s is None else s.reshape(input.shape).astype(dt, copy=False))


@kernel("SkipLayerNormalization", since=1, domain=MS)
class SkipLayerNormalization(_SkipNormBase):
    """LayerNorm(input + skip + bias) * gamma + beta; optional outputs mean, inv_std_var
    (shape [..., 1], float32) and the pre-norm sum input_skip_bias_sum."""

    def __init__(self, ctx, *, epsilon=1e-12):
        super().__init__(ctx, epsilon)

    def __call__(self, input, skip, gamma, beta=None, bias=None):
        return self.run(input, skip, gamma, beta, bias)


@kernel("SkipSimplifiedLayerNormalization", since=1, domain=MS)
class SkipSimplifiedLayerNormalization(_SkipNormBase):
    """RMSNorm(input + skip + bias) * gamma; same outputs as SkipLayerNormalization."""

    simplified = True

    def __init__(self, ctx, *, epsilon=1e-12):
        super().__init__(ctx, epsilon)

    def __call__(self, input, skip, gamma, bias=None):
        return self.run(input, skip, gamma, None, bias)


# onnxruntime registers this contrib op in the default ONNX domain; onnx.defs has no schema of
# that name (checked: onnx.defs.has("SimplifiedLayerNormalization") is False), so the lookup
# falls back to the model's opset and this since=1 kernel serves every opset.
@kernel("SimplifiedLayerNormalization", since=1)
class SimplifiedLayerNormalization:
    def __init__(self, ctx, *, axis=-1, epsilon=1e-5, stash_type=1):
        self.xp = ctx.xp
        self.axis, self.epsilon = int(axis), float(epsilon)
        self.num_outputs = ctx.num_outputs
        self.inv_dtype = ctx.output_dtype(1) if ctx.num_outputs > 1 else None
        dt = ctx.input_dtype(0)
        # the compiled rows loop (kernels._transformer_jit) for the compute dtype, compiled now
        self.jit_dtype = _wd(dt or _F32)
        self.jit = _tj.norm_rows(self.jit_dtype) if ctx.xp is np and dt in (None, _F32, _F16, np.float64) else None

    def __call__(self, X, scale):
        wd = _wd(X.dtype)
        done = None
        if self.jit is not None and wd == self.jit_dtype and X.dtype in (_F32, _F16, np.float64) and X.ndim:
            done = _tj.norm_axes(self.jit, X, norm_axis(self.axis, X.ndim), scale, None, self.epsilon, wd, rms=True)
        if done is not None:
            y, _, inv = done
        else:
            y, inv = _rms_norm(self.xp, X.astype(wd, copy=False), scale, self.epsilon, self.axis)
        y = y.astype(scale.dtype, copy=False)  # Y has the scale's type (V)
        if self.num_outputs == 1:
            return y
        return y, inv.astype(self.inv_dtype or wd, copy=False)


# onnxruntime also registers LayerNormalization in the default domain from opset 1 (its fusions
# emit it into models older than opset 17, where ONNX added it with the same meaning). Below 17
# onnx.defs has no schema, so the lookup uses the model's opset and finds this kernel; from 17 on
# the schema's since_version picks kernels.norm's.
@kernel("LayerNormalization", since=1)
class LayerNormalizationContrib(_LayerNormalization17):
    pass


@kernel("EmbedLayerNormalization", since=1, domain=MS)
class EmbedLayerNormalization:
    """LayerNorm(word[ids] + position[pos] + segment[seg]); mask_index = number of 1s per row of
    mask (0 without a mask); embedding_sum = the sum before the norm."""

    def __init__(self, ctx, *, epsilon=1e-12, mask_index_type=1):
        self.xp = ctx.xp
        self.epsilon = float(epsilon)
        self.num_outputs = ctx.num_outputs

    def __call__(self, input_ids, segment_ids, word_embedding, position_embedding, segment_embedding=None,
                 gamma=None, beta=None, mask=None, position_ids=None):
        xp = self.xp
        b, s = input_ids.shape
        bad = None  # on a device: rows whose ids are out of range (their outputs become NaN)
        for name, ids, table in (("input_ids", input_ids, word_embedding),
                                 ("segment_ids", segment_ids, segment_embedding),
                                 ("position_ids", position_ids, position_embedding)):
            if ids is not None and table is not None and ids.size:
                bad = _ids_out_of_range(xp, "EmbedLayerNormalization", name, ids, table.shape[0], bad)
        wd = _wd(word_embedding.dtype)
        emb = xp.take(word_embedding, _rows(xp, input_ids, word_embedding), axis=0).astype(wd)
        if position_ids is None:
            if s > position_embedding.shape[0]:
                raise ValueError("EmbedLayerNormalization: sequence longer than the position table")
            emb += position_embedding[:s].astype(wd, copy=False)
        else:
            emb += xp.take(position_embedding, _rows(xp, position_ids, position_embedding), axis=0).astype(wd, copy=False)
        if segment_ids is not None and segment_embedding is not None:
            emb += xp.take(segment_embedding, _rows(xp, segment_ids, segment_embedding), axis=0).astype(wd, copy=False)
        y, _, _ = _layer_norm(xp, emb, gamma, beta, self.epsilon)  # emb is left as is
        if bad is not None:
            y = xp.where(bad.reshape(b, s, 1), y.dtype.type(np.nan), y)
            emb = xp.where(bad.reshape(b, s, 1), emb.dtype.type(np.nan), emb)
        if mask is not None:
            mask_index = xp.sum(mask == 1, axis=1).astype(np.int32)
        else:
            mask_index = xp.zeros((b,), dtype=np.int32)
        outs = (y.astype(word_embedding.dtype, copy=False), mask_index,
                emb.astype(word_embedding.dtype, copy=False))
        return outs[0] if self.num_outputs == 1 else outs[: self.num_outputs]


# --------------------------------------------------------------------------- attention core

def _heads(x, n):
    """[B, S, N*D] -> [B, N, S, D] (a view)."""
    b, s, h = x.shape
    if h % n:
        raise ValueError(f"attention: hidden size {h} is not a multiple of num_heads {n}")
    return x.reshape(b, s, n, h // n).transpose(0, 2, 1, 3)


def _mask_bias(xp, mask, batch, sq, total, past, causal, filter_value, op):
    """onnxruntime's PrepareMask: an additive float32 bias [B, 1, Sq, T] (or None)."""
    bias = None
    if mask is not None:
        m = xp.asarray(mask)
        fv = np.float32(filter_value)
        j = xp.arange(total).reshape(1, total)
        if m.ndim == 1:
            # right padding: keys at or after end[b] are masked; a (2B) index adds start positions
            keep = j < m[:batch].astype(np.int64).reshape(batch, 1)
            if m.shape[0] == 2 * batch:
                keep &= j >= xp.minimum(m[batch:].astype(np.int64), total).reshape(batch, 1)
            keep = keep.reshape(batch, 1, 1, total)
        elif m.ndim == 2:  # raw mask [B, T]
            keep = (m > 0).reshape(batch, 1, 1, total)
        elif m.ndim == 3:  # [B, Sq, T]
            keep = (m > 0).reshape(batch, 1, sq, total)
        elif m.ndim == 4:  # Megatron [B, 1, max_S, max_S]: the rows of this step's queries
            keep = m[:, :, past:past + sq, :total] > 0
        else:
            raise ValueError(f"{op}: mask of rank {m.ndim} not supported")
        bias = xp.where(keep, np.float32(0), fv).astype(np.float32)
        bias = xp.broadcast_to(bias, (batch, 1, sq, total))
    if causal:
        i = xp.arange(sq).reshape(sq, 1)
        j = xp.arange(total).reshape(1, total)
        future = (j > i + past).reshape(1, 1, sq, total)
        if bias is None:
            bias = xp.where(future, np.float32(_LOWEST), np.float32(0)).astype(np.float32)
        else:
            bias = xp.where(future, np.float32(_LOWEST), bias)
    return bias


def _attend(xp, q, k, v, scale, bias=None, attention_bias=None, want_scores=False, softcap=0.0):
    """softmax(scale * q @ k^T + bias) @ v with q [B, N, S, D], k/v [B, N(kv), T, D].

    Grouped heads (N a multiple of the kv heads) share their kv head. Returns (out [B, N, S, Dv],
    the pre-softmax scores or None)."""
    b, n, s, d = q.shape
    nkv, t = k.shape[1], k.shape[2]
    rep = n // nkv
    wd = np.dtype(np.float32) if q.dtype != np.float64 else q.dtype
    qw = q.astype(wd, copy=False).reshape(b, nkv, rep * s, d)
    sc = xp.matmul(qw, k.astype(wd, copy=False).transpose(0, 1, 3, 2)).reshape(b, n, s, t)
    sc *= wd.type(scale)
    if softcap > 0:
        c = wd.type(softcap)
        sc /= c
        xp.tanh(sc, out=sc)
        sc *= c
    if bias is not None:
        sc += bias
    if attention_bias is not None:
        sc += attention_bias.astype(wd, copy=False)
    scores = sc.copy() if want_scores else None
    sc -= sc.max(axis=-1, keepdims=True)
    xp.exp(sc, out=sc)
    sc /= sc.sum(axis=-1, keepdims=True)
    out = xp.matmul(sc.reshape(b, nkv, rep * s, t), v.astype(wd, copy=False))
    return out.reshape(b, n, s, v.shape[-1]), scores


def _merge(out, dtype):
    """[B, N, S, D] -> [B, S, N*D] in dtype."""
    b, n, s, d = out.shape
    return out.transpose(0, 2, 1, 3).reshape(b, s, n * d).astype(dtype, copy=False)


# --------------------------------------------------------------------------- Attention

@kernel("Attention", since=1, domain=MS)
class Attention:
    """BERT/GPT-2 attention with the merged QKV projection, optional past/present
    ([2, B, N, P, D]), mask_index in every form PrepareMask knows (1-D end / end+start
    positions, 2-D raw, 3-D, and 4-D Megatron, which onnxruntime's CPU kernel rejects)."""

    def __init__(self, ctx, *, num_heads, qkv_hidden_sizes=None, unidirectional=0, scale=0.0,
                 mask_filter_value=-10000.0, do_rotary=0, past_present_share_buffer=0, rotary_embedding_dim=0):
        if do_rotary:
            raise OrtNotImplemented("Attention (com.microsoft): do_rotary=1 is not supported on CPU "
                                    "(as in onnxruntime: fuse to MultiHeadAttention + RotaryEmbedding)")
        if past_present_share_buffer:
            raise OrtNotImplemented("Attention (com.microsoft): past_present_share_buffer=1 is not supported")
        self.xp = ctx.xp
        self.n = int(num_heads)
        self.sizes = list(qkv_hidden_sizes) if qkv_hidden_sizes else None
        self.causal = bool(unidirectional)
        self.scale = float(scale or 0.0)
        self.filter_value = float(mask_filter_value)
        self.want_present = ctx.has_output(1)
        w = ctx.const(1)
        self.W = None if w is None else self.xp.asarray(np.ascontiguousarray(w.astype(_wd(w.dtype))))
        # numpy fast path (float32, equal Q/K/V sizes, no past / attention_bias / present): the
        # packed weight (one GEMM for Q, K and V, laid out by kernels.math._Weight) with Q's
        # columns - and bias - pre-multiplied by the softmax scale when that is a power of two
        # (exact, so the scores are bit-identical to scaling them afterwards).
        self.fast = None
        b = ctx.const(2)
        if self.xp is np and w is not None and w.ndim == 2 and w.dtype == np.float32 and not self.sizes \
                and w.shape[1] % (3 * self.n) == 0 and (b is None or (b.dtype == np.float32 and b.shape == (w.shape[1],))):
            hq = w.shape[1] // 3
            scale = self.scale or 1.0 / np.sqrt(hq // self.n)
            exact = math.frexp(scale)[0] == 0.5
            wf = np.array(w, dtype=np.float32, order="C")
            bf = None if b is None else np.array(b, dtype=np.float32)
            if exact:
                wf[:, :hq] *= np.float32(scale)
                if bf is not None:
                    bf[:hq] *= np.float32(scale)
            t = ctx.input_types[0] if ctx.input_types else None
            self.fast = (_Weight(np, wf, _static_rows(t)), bf, None if exact else np.float32(scale))
            self.W = None  # the general path (past, present, ...) reads the weights input as is
        self._causal = {}  # sequence length -> transposed additive causal bias [T, S]

    def __call__(self, input, weights, bias=None, mask_index=None, past=None, attention_bias=None,
                 past_sequence_length=None):
        if self.fast is not None:
            if (past is None and attention_bias is None and not self.want_present and input.dtype == np.float32
                    and input.ndim == 3 and (mask_index is None or mask_index.ndim <= 3)):
                return self._fast(input, bias, mask_index)
        xp = self.xp
        b, s, _ = input.shape
        wd = _wd(input.dtype)
        w = self.W
        if w is None:
            w = weights.astype(wd, copy=False)
        qkv = xp.matmul(input.astype(wd, copy=False).reshape(b * s, -1), w)
        if bias is not None:
            qkv += bias.astype(wd, copy=False)
        total = qkv.shape[-1]
        hq, hk, hv = self.sizes if self.sizes else (total // 3,) * 3
        if hq + hk + hv != total:
            raise ValueError(f"Attention: qkv_hidden_sizes {[hq, hk, hv]} do not add up to weights dim {total}")
        qkv = qkv.reshape(b, s, total)
        q = _heads(qkv[..., :hq], self.n)
        k = _heads(qkv[..., hq:hq + hk], self.n)
        v = _heads(qkv[..., hq + hk:], self.n)
        p = 0
        if past is not None:
            p = past.shape[3]
            k = xp.concatenate([past[0].astype(wd, copy=False), k], axis=2)
            v = xp.concatenate([past[1].astype(wd, copy=False), v], axis=2)
        t = k.shape[2]
        mbias = _mask_bias(xp, mask_index, b, s, t, p, self.causal, self.filter_value, "Attention")
        scale = self.scale or 1.0 / np.sqrt(q.shape[-1])
        out, _ = _attend(xp, q, k, v, scale, mbias, attention_bias)
        y = _merge(out, input.dtype)
        if not self.want_present:
            return y
        return y, xp.stack([k, v]).astype(input.dtype, copy=False)

    def _fast(self, input, bias, mask_index):
        """Self-attention without past in float32 (numpy), batched over heads with no copies.

        The scores are computed transposed, S^T = K Q^T [B, N, T, S]: the softmax then reduces
        over the middle axis (numpy vectorizes that across the query columns - several times
        faster than reducing short rows) and P^T feeds the second matmul as a transposed
        operand at no cost. The normalization divides the [S, D] output rows instead of the
        [T, S] probabilities."""
        wf, bf, scale = self.fast
        b, s, hin = input.shape
        n = self.n
        total = wf.n
        hq = total // 3
        d = hq // n
        qkv = wf.matmul(np.ascontiguousarray(input).reshape(b * s, hin))
        if bf is not None:
            qkv += bf
        elif bias is not None:  # bias fed at run time: scale its Q part like the weight's
            bb = bias.astype(np.float32)  # a copy
            if scale is None:
                bb[:hq] *= np.float32(self.scale or 1.0 / np.sqrt(d))
            qkv += bb
        qkv = qkv.reshape(b, s, 3, n, d)
        q_t = qkv[:, :, 0].transpose(0, 2, 3, 1)  # [B, N, D, S]
        k = qkv[:, :, 1].transpose(0, 2, 1, 3)  # [B, N, T, D]
        v = qkv[:, :, 2].transpose(0, 2, 1, 3)
        sc = np.matmul(k, q_t)  # [B, N, T, S], fresh
        if scale is not None:
            sc *= scale
        if mask_index is None and self.causal:
            sc += self._causal_bias_t(s)
        else:
            mb = _mask_bias(np, mask_index, b, s, s, 0, self.causal, self.filter_value, "Attention")
            if mb is not None:  # [B, 1, S, T] -> [B, 1, T, S]
                sc += mb.transpose(0, 1, 3, 2)
        sc -= sc.max(axis=2, keepdims=True)
        np.exp(sc, out=sc)
        den = sc.sum(axis=2, keepdims=True)  # [B, N, 1, S]
        y = np.empty((b, s, n, d), np.float32)
        np.matmul(sc.transpose(0, 1, 3, 2), v, out=y.transpose(0, 2, 1, 3))
        y /= den.transpose(0, 3, 1, 2)  # [B, S, N, 1]
        return y.reshape(b, s, n * d)

    def _causal_bias_t(self, s):
        cb = self._causal.get(s)
        if cb is None:
            j = np.arange(s).reshape(s, 1)  # key (row of S^T)
            i = np.arange(s).reshape(1, s)  # query
            cb = np.where(j > i, np.float32(_LOWEST), np.float32(0)).astype(np.float32)
            if len(self._causal) > 16:
                self._causal.clear()
            self._causal[s] = cb
        return cb


# --------------------------------------------------------------------------- MultiHeadAttention

@kernel("MultiHeadAttention", since=1, domain=MS)
class MultiHeadAttention:
    """Self/cross attention on projected Q, K, V: separate [B, S, H] inputs, packed QKV
    [B, S, N, 3, D] / KV [B, L, N, 2, D] (onnxruntime's CPU kernel rejects both packed forms),
    or K/V already in BNSH [B, N, L, D] (then the bias applies to Q only)."""

    def __init__(self, ctx, *, num_heads, scale=0.0, mask_filter_value=-10000.0, unidirectional=0):
        self.xp = ctx.xp
        self.n = int(num_heads)
        self.scale = float(scale or 0.0)
        self.filter_value = float(mask_filter_value)
        self.causal = bool(unidirectional)
        self.num_outputs = ctx.num_outputs
        self.want_qk = ctx.has_output(3)

    def __call__(self, query, key=None, value=None, bias=None, key_padding_mask=None, attention_bias=None,
                 past_key=None, past_value=None, past_sequence_length=None, cache_indirection=None):
        xp = self.xp
        n = self.n
        wd = _wd(query.dtype)
        b, s = query.shape[:2]
        kv_bnsh = False
        if query.ndim == 5:  # packed QKV [B, S, N, 3, D]
            qkv = query.astype(wd, copy=False)
            q, k, v = (qkv[:, :, :, i, :].reshape(b, s, -1) for i in range(3))
        else:
            q = query.astype(wd, copy=False)
            if key is None:
                raise ValueError("MultiHeadAttention: key is required unless query is packed QKV")
            if key.ndim == 5:  # packed KV [B, L, N, 2, D]
                kw = key.astype(wd, copy=False)
                k, v = (kw[:, :, :, i, :].reshape(b, key.shape[1], -1) for i in range(2))
            elif key.ndim == 4:  # BNSH, already projected
                kv_bnsh = True
                k, v = key.astype(wd, copy=False), value.astype(wd, copy=False)
            else:
                k, v = key.astype(wd, copy=False), value.astype(wd, copy=False)
        hq = q.shape[-1]
        if bias is not None:
            bw = bias.astype(wd, copy=False)
            q = q + bw[:hq]
            if not kv_bnsh:
                hk = k.shape[-1]
                k = k + bw[hq:hq + hk]
                v = v + bw[hq + hk:]
        q = _heads(q, n)
        if not kv_bnsh:
            k, v = _heads(k, n), _heads(v, n)
        p = 0
        if past_key is not None and not kv_bnsh:
            p = past_key.shape[2]
            k = xp.concatenate([past_key.astype(wd, copy=False), k], axis=2)
            v = xp.concatenate([past_value.astype(wd, copy=False), v], axis=2)
        t = k.shape[2]
        mbias = _mask_bias(xp, key_padding_mask, b, s, t, p, self.causal, self.filter_value, "MultiHeadAttention")
        scale = self.scale or 1.0 / np.sqrt(q.shape[-1])
        out, scores = _attend(xp, q, k, v, scale, mbias, attention_bias, self.want_qk)
        dt = query.dtype
        outs = (_merge(out, dt), k.astype(dt, copy=False), v.astype(dt, copy=False),
                None if scores is None else scores.astype(dt, copy=False))
        return outs[0] if self.num_outputs == 1 else outs[: self.num_outputs]


# --------------------------------------------------------------------------- RotaryEmbedding

def _ids_out_of_range(xp, op, name, ids, n, bad=None):
    """Indices outside [0, n): on the host an error naming them; on a device (where reading them
    back would be a sync every run) the mask of bad entries, or'ed into ``bad``, which the kernel
    turns into NaN outputs - a visible wrong answer, never a plausible one."""
    if xp is np:
        if int(ids.min()) < 0 or int(ids.max()) >= n:
            raise ValueError(f"{op}: {name} out of range [0, {n})")
        return None
    mask = ((ids < 0) | (ids >= n)).reshape(ids.shape[0], -1)
    return mask if bad is None else bad | mask


def _rows(xp, ids, table):
    """Row indices into ``table``: as given on the host (checked), clipped on a device (the rows
    of bad ids are NaN-ed by the caller)."""
    ids = ids.astype(np.int64)
    return ids if xp is np else xp.clip(ids, 0, table.shape[0] - 1)


def _positions(xp, position_ids, b, s):
    """position_ids of shape (1) mean 'offset + arange(S)' for every batch entry; else [B, S]."""
    pid = position_ids.astype(np.int64)
    if pid.size == 1:
        return xp.broadcast_to(pid.reshape(1, 1) + xp.arange(s).reshape(1, s), (b, s))
    return pid.reshape(b, s)


@kernel("RotaryEmbedding", since=1, domain=MS)
def rotary_embedding(xp, input, position_ids, cos_cache, sin_cache, *, interleaved=0, num_heads=0,
                     rotary_embedding_dim=0, scale=1.0, is_packed_batching=0):
    # Input [B, S, N*D] or [B, N, S, D]; the caches are [max_pos, rotary_dim/2]. Without
    # rotary_embedding_dim the head size is twice the cache width (onnxruntime's rule).
    if is_packed_batching:
        raise OrtNotImplemented("RotaryEmbedding (com.microsoft): is_packed_batching=1 is not supported")
    if input.ndim == 4:
        b, _, s, _ = input.shape
        heads = input.shape[1]
    elif input.ndim == 3:
        b, s, hidden = input.shape
        heads = num_heads or hidden // (rotary_embedding_dim or 2 * cos_cache.shape[1])
    else:
        raise ValueError(f"RotaryEmbedding: input must be 3-D or 4-D, got shape {input.shape}")
    pos = _positions(xp, position_ids, b, s)
    bad = _ids_out_of_range(xp, "RotaryEmbedding", "position_ids", pos, cos_cache.shape[0])
    y = _onnx_rotary(xp, input, cos_cache, sin_cache, xp.clip(pos, 0, cos_cache.shape[0] - 1), interleaved=interleaved,
                     num_heads=heads, rotary_embedding_dim=rotary_embedding_dim)
    if bad is None:
        return y
    bad = bad.reshape((b, 1, s, 1) if input.ndim == 4 else (b, s, 1))
    return xp.where(bad, y.dtype.type(np.nan), y)


# --------------------------------------------------------------------------- GroupQueryAttention

@kernel("GroupQueryAttention", since=1, domain=MS)
class GroupQueryAttention:
    """Grouped-query attention with a BNSH KV cache (float caches only).

    Per batch entry: T = seqlens_k[b] + 1 keys after this step, of which the last S are new
    (past P = T - S); new K/V are written after the P cached ones; queries sit at absolute
    positions P..T-1 (causal, local window of local_window_size keys ending at the query, rotary).
    Rows past T in the present cache are 0."""

    def __init__(self, ctx, *, num_heads, kv_num_heads, scale=0.0, softcap=0.0, local_window_size=-1,
                 do_rotary=0, rotary_interleaved=0, smooth_softmax=-1, causal=1, qk_output=0,
                 k_quant_type="NONE", v_quant_type="NONE", kv_cache_bit_width=0, sliding_window_cache=0,
                 qk_norm_epsilon=1e-6, q_norm_epsilon=None, k_norm_epsilon=None):
        if k_quant_type != "NONE" or v_quant_type != "NONE":
            raise OrtNotImplemented("GroupQueryAttention: quantized KV cache is not supported")
        if sliding_window_cache:
            raise OrtNotImplemented("GroupQueryAttention: sliding_window_cache=1 is not supported")
        if smooth_softmax not in (-1, 0) or qk_output:
            raise OrtNotImplemented("GroupQueryAttention: smooth_softmax / qk_output are not supported")
        self.xp = ctx.xp
        self.n, self.nkv = int(num_heads), int(kv_num_heads)
        self.scale = float(scale or 0.0)
        self.softcap = float(softcap or 0.0)
        self.window = int(local_window_size)
        self.rotary = bool(do_rotary)
        self.interleaved = int(rotary_interleaved)
        self.causal = bool(causal)
        self.num_outputs = ctx.num_outputs

    def __call__(self, query, key=None, value=None, past_key=None, past_value=None, seqlens_k=None,
                 total_sequence_length=None, cos_cache=None, sin_cache=None, position_ids=None,
                 attention_bias=None, head_sink=None, k_scale=None, v_scale=None, q_norm_weight=None,
                 k_norm_weight=None, query_seqlens=None):
        xp = self.xp
        if head_sink is not None or q_norm_weight is not None or query_seqlens is not None:
            raise OrtNotImplemented("GroupQueryAttention: head_sink / q_norm_weight / query_seqlens not supported")
        wd = _wd(query.dtype)
        b, s = query.shape[:2]
        if key is None:  # packed QKV [B, S, (N + 2 Nkv) D]
            d = query.shape[-1] // (self.n + 2 * self.nkv)
            hq, hk = self.n * d, self.nkv * d
            q, k, v = query[..., :hq], query[..., hq:hq + hk], query[..., hq + hk:]
        else:
            q, k, v = query, key, value
        d = q.shape[-1] // self.n
        q = _heads(q.astype(wd, copy=False), self.n)
        k = _heads(k.astype(wd, copy=False), self.nkv)
        v = _heads(v.astype(wd, copy=False), self.nkv)
        tot = (seqlens_k.astype(np.int64).reshape(-1) + 1)  # keys per batch entry after this step
        past = tot - s
        if self.rotary:
            if position_ids is not None:
                pos = position_ids.astype(np.int64).reshape(b, s)
            else:
                pos = past.reshape(b, 1) + xp.arange(s).reshape(1, s)
            kw = dict(interleaved=self.interleaved, num_heads=0, rotary_embedding_dim=0)
            q = _onnx_rotary(xp, q, cos_cache.astype(wd), sin_cache.astype(wd), pos, **kw)
            k = _onnx_rotary(xp, k, cos_cache.astype(wd), sin_cache.astype(wd), pos, **kw)
        cap = max(int(total_sequence_length.reshape(-1)[0]) if total_sequence_length is not None else 0,
                  int(tot.max()), past_key.shape[2] if past_key is not None else 0)
        present_k = xp.zeros((b, self.nkv, cap, d), dtype=wd)
        present_v = xp.zeros((b, self.nkv, cap, v.shape[-1]), dtype=wd)
        for i in range(b):  # small loop over the batch: each entry has its own past length
            pi = int(past[i])
            if pi > 0:
                present_k[i, :, :pi] = past_key[i, :, :pi]
                present_v[i, :, :pi] = past_value[i, :, :pi]
            present_k[i, :, pi:pi + s] = k[i]
            present_v[i, :, pi:pi + s] = v[i]
        # Additive mask per batch entry: key j visible to query row r (absolute P + r) when
        # j < T, and with causal j <= P + r, and inside the local window.
        j = xp.arange(cap).reshape(1, 1, cap)
        row = past.reshape(b, 1, 1) + xp.arange(s).reshape(1, s, 1)
        keep = (j < tot.reshape(b, 1, 1)) & (row >= 0)  # [B, S, cap]
        if self.causal:
            keep &= j <= row
        if self.window >= 0:  # the window counts the query's own position: W keys in all
            keep &= j > row - self.window
        bias = xp.where(keep, np.float32(0), np.float32(-np.inf)).astype(np.float32).reshape(b, 1, s, cap)
        ab = None
        if attention_bias is not None:
            ab = attention_bias.astype(np.float32)
            if ab.shape[-1] < cap:
                ab = xp.concatenate([ab, xp.zeros(ab.shape[:-1] + (cap - ab.shape[-1],), np.float32)], axis=-1)
        scale = self.scale or 1.0 / np.sqrt(d)
        out, _ = _attend(xp, q, present_k, present_v, scale, bias, ab, softcap=self.softcap)
        dt = query.dtype
        outs = (_merge(out, dt), present_k.astype(dt, copy=False), present_v.astype(dt, copy=False))
        return outs[0] if self.num_outputs == 1 else outs[: self.num_outputs]
