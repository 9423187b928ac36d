"""LinearAttention (opset 27): linear, gated, delta and gated-delta recurrences.

The operator is defined as a token-by-token recurrence over a state S of shape
(d_k, d_v) per kv head:

    gated:  S <- exp(g_t) * S                       (g_t per head or per key dim)
    delta:  u_t = beta_t * (v_t - S^T k_t)  else  u_t = v_t
    write:  S <- S + k_t u_t^T
    read:   o_t = scale * q_t^T S

This kernel runs it chunk-parallel instead (the WY / UT form used by GLA and
Gated DeltaNet): inside a chunk of C tokens every state is "start state plus a
sum of decayed outer products", so with Gam_t = exp(cumsum g) (the decay from
the chunk start to token t)

    U   = V                                             (linear, gated)
    U   = (I + diag(beta) A_kk)^-1 diag(beta) (V - (K*Gam) S0)   (delta rules)
    O   = (Q*Gam) S0 + A_qk U
    S_C = Gam_C S0 + (K * Gam_C/Gam)^T U

where A_qk[t,s] = sum_d q_t[d] k_s[d] Gam_t[d]/Gam_s[d] for s <= t and A_kk the
same with k_t for s < t. The Python loop is over chunks, not tokens; batch and
heads are batch dimensions of the GEMMs, and grouped query heads share their
kv head's state through a broadcast group axis (query head h reads kv head
h // (q_num_heads / kv_num_heads)). Decay ratios Gam_t/Gam_s: for a per-head
decay, exp of the masked difference of log-space cumsums (C x C per head); for a
per-key-dim decay, factored as (q_t*Gam_t).(k_s/Gam_s) so A_qk and A_kk stay
GEMMs, and a chunk whose log-decay sum would take Gam or 1/Gam out of float32's
range is split in halves (the chunked form is exact for any split).

float16 / bfloat16 compute in float32 and are cast back, like the reference.
"""
from __future__ import annotations

import math

import numpy as np

from ortlite.registry import kernel

_RULES = ("linear", "gated", "delta", "gated_delta")
# Largest |log decay| summed over a chunk for which exp(+-sum) stays a normal float32
# (about e^+-87); per-key-dim decay factors its ratios through these, see _chunk.
_SAFE_LOG = 80.0


def _heads(x, heads, name):
    """(B, T, H*D) -> (B, H, T, D) float32."""
    b, t, hd = x.shape
    if hd % heads:
        raise ValueError(f"LinearAttention: {name} last dim {hd} is not a multiple of {heads} heads")
    return x.reshape(b, t, heads, hd // heads).transpose(0, 2, 1, 3).astype(np.float32)


@kernel("LinearAttention", since=27)
class LinearAttention:
    def __init__(self, ctx, *, chunk_size=64, kv_num_heads=None, q_num_heads=None, scale=0.0,
                 update_rule="gated_delta"):
        self.xp = ctx.xp
        if update_rule not in _RULES:
            raise ValueError(f"LinearAttention: update_rule must be one of {_RULES}, got {update_rule!r}")
        if not q_num_heads or not kv_num_heads or q_num_heads <= 0 or kv_num_heads <= 0 \
                or q_num_heads % kv_num_heads:
            raise ValueError(f"LinearAttention: q_num_heads ({q_num_heads}) must be a positive multiple of "
                             f"kv_num_heads ({kv_num_heads})")
        self.hq, self.hkv = int(q_num_heads), int(kv_num_heads)
        self.group = self.hq // self.hkv
        self.gated = update_rule in ("gated", "gated_delta")
        self.delta = update_rule in ("delta", "gated_delta")
        self.rule = update_rule
        self.scale = float(scale or 0.0)
        self.chunk = max(1, int(chunk_size or 64))
        self.state_dtype = ctx.output_dtype(1)  # used when past_state is absent
        self._masks = {}

    def _tril(self, c):
        """(inclusive, strict) lower-triangular boolean masks of size c, cached."""
        m = self._masks.get(c)
        if m is None:
            xp = self.xp
            incl = xp.tril(xp.ones((c, c), dtype=bool))
            m = self._masks[c] = (incl, incl & ~xp.eye(c, dtype=bool))
        return m

    def __call__(self, query, key, value, past_state=None, decay=None, beta=None):
        xp = self.xp
        for name, arr in (("query", query), ("key", key), ("value", value)):
            if arr.ndim != 3:
                raise ValueError(f"LinearAttention: {name} must be rank 3 (B, T, H*D), got {arr.shape}")
        if self.gated != (decay is not None):
            raise ValueError(f"LinearAttention: update_rule '{self.rule}' "
                             f"{'requires' if self.gated else 'does not take'} the decay input")
        if self.delta != (beta is not None):
            raise ValueError(f"LinearAttention: update_rule '{self.rule}' "
                             f"{'requires' if self.delta else 'does not take'} the beta input")
        b, t, _ = query.shape
        hkv, grp = self.hkv, self.group
        q = _heads(query, self.hq, "query")                          # (B, Hq, T, dk)
        k = _heads(key, hkv, "key")                                  # (B, Hkv, T, dk)
        v = _heads(value, hkv, "value")                              # (B, Hkv, T, dv)
        dk, dv = q.shape[-1], v.shape[-1]
        if k.shape[-1] != dk:
            raise ValueError(f"LinearAttention: key head size {k.shape[-1]} != query head size {dk}")
        scale = self.scale if self.scale != 0.0 else 1.0 / math.sqrt(dk)
        q = (q * np.float32(scale)).reshape(b, hkv, grp, t, dk)       # group axis: heads sharing a kv head

        g = None
        if decay is not None:
            last = decay.shape[-1]
            if decay.ndim != 3 or last not in (hkv, hkv * dk):
                raise ValueError(f"LinearAttention: decay must be (B, T, {hkv}) or (B, T, {hkv * dk}), "
                                 f"got {decay.shape}")
            g = _heads(decay, hkv, "decay")                          # (B, Hkv, T, 1 or dk)
        bt = None
        if beta is not None:
            if beta.ndim != 3 or beta.shape[-1] not in (hkv, 1):
                raise ValueError(f"LinearAttention: beta must be (B, T, {hkv}) or (B, T, 1), got {beta.shape}")
            bt = _heads(beta, beta.shape[-1], "beta")                # (B, Hkv or 1, T, 1)

        if past_state is not None:
            if tuple(past_state.shape) != (b, hkv, dk, dv):
                raise ValueError(f"LinearAttention: past_state shape {tuple(past_state.shape)} != "
                                 f"{(b, hkv, dk, dv)}")
            state = past_state.astype(np.float32, copy=False)
            state_dtype = past_state.dtype
        else:
            state = xp.zeros((b, hkv, dk, dv), dtype=np.float32)
            state_dtype = self.state_dtype or query.dtype

        out = xp.empty((b, hkv, grp, t, dv), dtype=np.float32)
        for c0 in range(0, t, self.chunk):
            c1 = min(t, c0 + self.chunk)
            state, out[:, :, :, c0:c1] = self._chunk(
                state, q[:, :, :, c0:c1], k[:, :, c0:c1], v[:, :, c0:c1],
                None if g is None else g[:, :, c0:c1], None if bt is None else bt[:, :, c0:c1])
        # (B, Hkv, G, T, dv) -> (B, T, Hq*dv): query head index is kv_head * G + group
        output = out.transpose(0, 3, 1, 2, 4).reshape(b, t, self.hq * dv).astype(query.dtype, copy=False)
        return output, state.astype(state_dtype, copy=(t == 0))  # T=0: never alias past_state

    def _chunk(self, s0, q, k, v, g, beta):
        """One chunk: s0 (B,H,dk,dv), q (B,H,G,C,dk), k (B,H,C,dk), v (B,H,C,dv),
        g (B,H,C,1|dk) or None, beta (B,H|1,C,1) or None -> (state, output (B,H,G,C,dv))."""
        xp = self.xp
        c = k.shape[2]
        incl, strict = self._tril(c)
        kt = xp.swapaxes(k, -1, -2)
        zero = np.float32(0)
        if g is None:
            a_qk = xp.where(incl, q @ kt[:, :, None], zero)
            a_kk = xp.where(strict, k @ kt, zero) if self.delta else None
            q_dec, k_dec, k_end, end_decay = q, k, k, None
        else:
            cum = xp.cumsum(g, axis=2)                               # log Gam_t, (B,H,C,1|dk)
            gam = xp.exp(cum)
            if cum.shape[-1] == 1:                                   # per-head scalar decay: exact ratios
                lg = cum[..., 0]
                ratio = xp.exp(xp.where(incl, lg[..., :, None] - lg[..., None, :], np.float32(-np.inf)))
                a_qk = (q @ kt[:, :, None]) * ratio[:, :, None]
                a_kk = xp.where(strict, (k @ kt) * ratio, zero) if self.delta else None
            elif c == 1:                                             # the only ratio is Gam_t/Gam_t = 1
                a_qk = q @ kt[:, :, None]
                a_kk = xp.zeros((*k.shape[:2], 1, 1), dtype=np.float32) if self.delta else None
            elif float(xp.abs(cum).max()) >= _SAFE_LOG:
                # Gam or 1/Gam would leave float32's range: split the chunk (exact for any split).
                h = c // 2
                part = lambda x, sl: None if x is None else x[..., sl, :]  # noqa: E731
                s, o1 = self._chunk(s0, *(part(x, slice(0, h)) for x in (q, k, v, g, beta)))
                s, o2 = self._chunk(s, *(part(x, slice(h, c)) for x in (q, k, v, g, beta)))
                return s, xp.concatenate([o1, o2], axis=3)
            else:                                                    # per-key-dim decay, factored:
                k_inv = xp.swapaxes(k * xp.exp(-cum), -1, -2)        # q_t Gam_t . k_s / Gam_s as GEMMs
                a_qk = xp.where(incl, (q * gam[:, :, None]) @ k_inv[:, :, None], zero)
                a_kk = xp.where(strict, (k * gam) @ k_inv, zero) if self.delta else None
            q_dec = q * gam[:, :, None]
            k_dec = k * gam
            k_end = k * xp.exp(cum[:, :, -1:] - cum)
            end_decay = xp.exp(cum[:, :, -1])[..., None]              # (B,H,1|dk,1)

        if self.delta:
            rhs = beta * (v - k_dec @ s0)
            if c == 1:
                u = rhs
            else:
                m = beta * a_kk + xp.eye(c, dtype=np.float32)
                u = xp.linalg.solve(m, rhs)
        else:
            u = v
        out = q_dec @ s0[:, :, None] + a_qk @ u[:, :, None]
        s = s0 if end_decay is None else s0 * end_decay
        s = s + xp.swapaxes(k_end, -1, -2) @ u
        return s, out
