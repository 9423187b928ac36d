"""Recurrent layers: RNN, GRU, LSTM (https://onnx.ai/onnx/operators/onnx__LSTM.html).

One implementation serves the three ops. The input projection ``X @ W^T + Wb``
of every time step and every direction is one matmul; the time loop then only
does the recurrent ``H @ R^T`` (batched over directions) and the gate math.
The reverse direction runs forward over a time-reversed copy of the input
(reversed per batch entry within its ``sequence_lens``), so both directions
share one loop.

Versions: v1 had ``output_sequence`` (accepted; Y is produced when asked for),
GRU v3 added ``linear_before_reset``, v14 added ``layout``, v22 added bfloat16.
float16 / bfloat16 inputs are computed in float32 and cast back.
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

_BLAS = None  # threadpoolctl's controller of numpy's BLAS, looked up once (False: none)


def _blas_controller():
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            libs = ThreadpoolController().select(user_api="blas").lib_controllers
            _BLAS = libs[0] if len(libs) == 1 else False
        except Exception:  # noqa: BLE001 - no threadpoolctl, or it cannot see the BLAS
            _BLAS = False
    return _BLAS or None


class _SingleThreadedBlas:
    """Run a block with one BLAS thread (restoring the count after). For loops of small
    dependent products, such as a recurrence's per-step gemv: waking BLAS worker threads for
    ~20 us of work each step costs more than it saves, and on a busy machine far more (a
    bidirectional LSTM of 32 steps measured 15 ms with two OpenBLAS threads, 2 ms with one).
    The thread count is process-wide state: a concurrent run only sees its speed change."""

    __slots__ = ("ctl", "n")

    def __enter__(self):
        self.ctl = _blas_controller()
        self.n = self.ctl.get_num_threads() if self.ctl is not None else 1
        if self.n > 1:
            self.ctl.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.n > 1:
            self.ctl.set_num_threads(self.n)
        return False


def _sigmoid(xp, x):
    # 0.5 * (1 + tanh(x / 2)) is sigmoid without overflow in exp; in place on one temporary.
    y = x * 0.5
    xp.tanh(y, out=y)
    y += 1
    y *= 0.5
    return y


# name -> (function(xp, x, alpha, beta), default alpha, default beta); None = no parameter.
_ACTIVATIONS = {
    "relu": (lambda xp, x, a, b: xp.maximum(x, 0), None, None),
    "tanh": (lambda xp, x, a, b: xp.tanh(x), None, None),
    "sigmoid": (lambda xp, x, a, b: _sigmoid(xp, x), None, None),
    "affine": (lambda xp, x, a, b: x * a + b, 1.0, 0.0),
    "leakyrelu": (lambda xp, x, a, b: xp.where(x >= 0, x, x * a), 0.01, None),
    "thresholdedrelu": (lambda xp, x, a, b: xp.where(x > a, x, 0).astype(x.dtype), 1.0, None),
    "scaledtanh": (lambda xp, x, a, b: xp.tanh(x * b) * a, 1.0, 1.0),
    "hardsigmoid": (lambda xp, x, a, b: xp.clip(x * a + b, 0, 1), 0.2, 0.5),
    "elu": (lambda xp, x, a, b: xp.where(x >= 0, x, (xp.exp(xp.minimum(x, 0)) - 1) * a), 1.0, None),
    "softsign": (lambda xp, x, a, b: x / (1 + xp.abs(x)), None, None),
    "softplus": (lambda xp, x, a, b: xp.logaddexp(0, x).astype(x.dtype), None, None),
}

_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _parse_activations(op, names, alphas, betas, num_dirs):
    """Activation callables per direction: list (per direction) of list (f, g, h) of fn(xp, x).

    alpha/beta values are consumed in order by the activations that take them (onnxruntime's rule);
    a list naming one direction's activations is reused for the second direction.
    """
    per_dir = len(_DEFAULT_ACTS[op])
    names = list(names) if names else _DEFAULT_ACTS[op] * num_dirs
    if len(names) == per_dir and num_dirs == 2:
        names = names * 2
    if len(names) != per_dir * num_dirs:
        raise ValueError(f"{op}: expected {per_dir * num_dirs} activations, got {names}")
    alphas = list(alphas or [])
    betas = list(betas or [])
    fns = []
    for name in names:
        entry = _ACTIVATIONS.get(name.lower())
        if entry is None:
            raise OrtNotImplemented(
                f"{op}: activation '{name}' not supported; supported: {sorted(_ACTIVATIONS)}"
            )
        f, da, db = entry
        a = (alphas.pop(0) if alphas else da) if da is not None else None
        b = (betas.pop(0) if betas else db) if db is not None else None
        fns.append((f, a, b, name.lower()))
    return [fns[d * per_dir:(d + 1) * per_dir] for d in range(num_dirs)]


class _Recurrent:
    """Shared prepare/run logic; subclasses define ``op`` and ``_step``."""

    op = ""

    def __init__(self, ctx, *, activation_alpha=None, activation_beta=None, activations=None, clip=None,
                 direction="forward", hidden_size=None, layout=0, output_sequence=0):
        self.xp = ctx.xp
        if direction not in ("forward", "reverse", "bidirectional"):
            raise OrtNotImplemented(f"{self.op}: direction '{direction}' not supported "
                                    "(forward, reverse, bidirectional)")
        self.direction = direction
        self.num_dirs = 2 if direction == "bidirectional" else 1
        self.layout = layout
        self.clip = clip
        self.acts = _parse_activations(self.op, activations, activation_alpha, activation_beta, self.num_dirs)
        # Same activations in both directions: apply them to the stacked state in one go.
        keys = [[(a[3], a[1], a[2]) for a in d] for d in self.acts]
        self.shared_acts = all(k == keys[0] for k in keys)
        self.want_y = ctx.has_output(0)  # Y is the big one: skip storing it when unused
        self.G = _GATES[self.op]
        w, r, b = ctx.const(1), ctx.const(2), ctx.const(3)
        self.w_t = self._pack_w(w) if w is not None else None
        self.r_t = self._pack_r(r) if r is not None else None
        # Biases are folded once when B is constant (or absent) and R gives the hidden size.
        self.bias = None
        if r is not None and (b is not None or not ctx.has_input(3)):
            self.bias = self._pack_b(b, r.shape[-1])

    # -- weight packing (prepare step when constant, else per call) ---------------------------------------
    def _ctype(self, dtype):
        return np.float64 if dtype == np.float64 else np.float32

    def _pack_w(self, w):
        """W [D, G*H, I] -> [I, D*G*H]: one matmul projects the input for every direction."""
        xp = self.xp
        w = xp.asarray(w)
        d, gh, i = w.shape
        return xp.ascontiguousarray(w.astype(self._ctype(w.dtype), copy=False).transpose(2, 0, 1).reshape(i, d * gh))

    def _pack_r(self, r):
        """R [D, G*H, H] -> R^T [D, H, G*H] for the batched recurrent matmul."""
        xp = self.xp
        r = xp.asarray(r)
        return xp.ascontiguousarray(r.astype(self._ctype(r.dtype), copy=False).transpose(0, 2, 1))

    def _pack_b(self, b, hidden):
        """B [D, 2*G*H] -> (input bias [D*G*H], bias kept inside the recurrence or None)."""
        xp = self.xp
        g = self.G
        if b is None:
            return None, None
        b = xp.asarray(b)
        b = b.astype(self._ctype(b.dtype), copy=False)
        wb, rb = b[:, : g * hidden], b[:, g * hidden:]
        return self._split_bias(wb, rb, hidden)

    def _split_bias(self, wb, rb, hidden):
        # RNN / LSTM: both biases simply add; fold them into the input projection.
        return (wb + rb).reshape(-1), None

    # -- run ------------------------------------------------------------------------------------------------
    def _act(self, k, x):
        """Apply activation ``k`` (0=f, 1=g, 2=h) to x [D, B, ...] (per direction when they differ)."""
        xp = self.xp
        if self.shared_acts or x.shape[0] == 1:
            f, a, b, _ = self.acts[0][k]
            return f(xp, x, a, b)
        return xp.stack([self.acts[d][k][0](xp, x[d], self.acts[d][k][1], self.acts[d][k][2])
                         for d in range(x.shape[0])])

    def _clip(self, x):
        if self.clip is not None:
            self.xp.clip(x, -self.clip, self.clip, out=x)
        return x

    def __call__(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
        xp = self.xp
        out_dtype = X.dtype
        ct = self._ctype(X.dtype)
        if self.layout == 1:
            X = X.transpose(1, 0, 2)
        T, Bn, _ = X.shape
        D = self.num_dirs
        H = R.shape[-1]
        G = self.G
        w_t = self.w_t if self.w_t is not None else self._pack_w(W)
        r_t = self.r_t if self.r_t is not None else self._pack_r(R)
        if self.bias is not None:
            in_bias, rec_bias = self.bias
        else:
            in_bias, rec_bias = self._pack_b(B, H)

        # Input projection for all steps and directions: [T, B, D*G*H] -> [D, T, B, G*H].
        xw = X.reshape(T * Bn, -1).astype(ct, copy=False) @ w_t
        if in_bias is not None:
            xw += in_bias
        xw = xw.reshape(T, Bn, D, G * H).transpose(2, 0, 1, 3)

        lens = None
        if sequence_lens is not None:
            lens = xp.asarray(sequence_lens).astype(np.int64).reshape(-1)
            if xp is np and bool(xp.all(lens == T)):  # the shortcut reads lens back: host only
                lens = None
        rev_idx = None
        if self.direction != "forward":
            rd = D - 1  # the reverse direction is the last one
            if lens is None:
                xw_rev = xw[rd, ::-1]
            else:
                # Within each batch entry's length, time t reads step len-1-t; padding steps stay put.
                t = xp.arange(T)[:, None]
                rev_idx = xp.where(t < lens[None, :], lens[None, :] - 1 - t, t)
                xw_rev = xp.take_along_axis(xw[rd], rev_idx[:, :, None], axis=0)
            xw = xp.concatenate([xw[:rd], xw_rev[None]], axis=0) if D == 2 else xw_rev[None]

        def init_state(v):
            if v is None:
                return xp.zeros((D, Bn, H), dtype=ct)
            v = xp.asarray(v).astype(ct)
            return xp.ascontiguousarray(v.transpose(1, 0, 2)) if self.layout == 1 else v.copy()

        h = init_state(initial_h)
        c = init_state(initial_c) if self.op == "LSTM" else None
        peep = None
        if self.op == "LSTM" and P is not None:
            peep = xp.asarray(P).astype(ct).reshape(D, 1, 3 * H)
        masks = None if lens is None else (xp.arange(T)[:, None] < lens[None, :])[:, None, :, None]  # [T,1,B,1]

        Y = xp.zeros((T, D, Bn, H), dtype=ct) if self.want_y else None
        for t in range(T):
            h_new, c_new = self._step(xw[:, t], h, c, r_t, rec_bias, peep, H)
            if masks is not None:
                m = masks[t]
                h_new = xp.where(m, h_new, h)
                if c is not None:
                    c_new = xp.where(m, c_new, c)
                if Y is not None:
                    Y[t] = xp.where(m, h_new, 0)
            elif Y is not None:
                Y[t] = h_new
            h, c = h_new, c_new

        outs = []
        if Y is not None:
            if self.direction != "forward":
                # Put the reverse direction's outputs back in input time order.
                rd = D - 1
                if rev_idx is None:
                    Y[:, rd] = Y[::-1, rd].copy()
                else:
                    Y[:, rd] = xp.take_along_axis(Y[:, rd], rev_idx[:, :, None], axis=0)
            outs.append(Y.transpose(2, 0, 1, 3) if self.layout == 1 else Y)
        else:
            outs.append(None)
        outs.append(h.transpose(1, 0, 2) if self.layout == 1 else h)
        if self.op == "LSTM":
            outs.append(c.transpose(1, 0, 2) if self.layout == 1 else c)
        outs = [None if o is None else xp.ascontiguousarray(o.astype(out_dtype, copy=False)) for o in outs]
        return tuple(outs)


# RNN v1 (output_sequence), v7, v14 (layout), v22 (bfloat16): one kernel, the meaning did not change.
@kernel("RNN", since=1)
class RNN(_Recurrent):
    op = "RNN"

    def _step(self, xw_t, h, c, r_t, rec_bias, peep, H):
        # Ht = f(Xt*Wi + Ht-1*Ri + Wbi + Rbi)
        g = xw_t + self.xp.matmul(h, r_t)
        return self._act(0, self._clip(g)), None


# GRU v1, v3 (linear_before_reset), v7, v14 (layout), v22 (bfloat16).
@kernel("GRU", since=1)
class GRU(_Recurrent):
    op = "GRU"

    def __init__(self, ctx, *, activation_alpha=None, activation_beta=None, activations=None, clip=None,
                 direction="forward", hidden_size=None, layout=0, linear_before_reset=0, output_sequence=0):
        self.linear_before_reset = linear_before_reset
        super().__init__(ctx, activation_alpha=activation_alpha, activation_beta=activation_beta,
                         activations=activations, clip=clip, direction=direction, hidden_size=hidden_size,
                         layout=layout, output_sequence=output_sequence)

    def _split_bias(self, wb, rb, hidden):
        # z and r: both biases add; h: Rbh sits inside the reset product when linear_before_reset.
        d = wb.shape[0]
        if self.linear_before_reset:
            in_b = wb.copy()
            in_b[:, : 2 * hidden] += rb[:, : 2 * hidden]
            return in_b.reshape(-1), rb[:, 2 * hidden:].reshape(d, 1, hidden)
        return (wb + rb).reshape(-1), None

    def _step(self, xw_t, h, c, r_t, rec_bias, peep, H):
        xp = self.xp
        if self.linear_before_reset:
            hr = xp.matmul(h, r_t)
            zr = xw_t[..., : 2 * H] + hr[..., : 2 * H]
            zr = self._act(0, self._clip(zr))
            z, r = zr[..., :H], zr[..., H:]
            rh = hr[..., 2 * H:]
            if rec_bias is not None:  # Rbh sits inside the reset product
                rh = rh + rec_bias
            hh = xw_t[..., 2 * H:] + r * rh
        else:
            zr = xw_t[..., : 2 * H] + xp.matmul(h, r_t[..., : 2 * H])
            zr = self._act(0, self._clip(zr))
            z, r = zr[..., :H], zr[..., H:]
            hh = xw_t[..., 2 * H:] + xp.matmul(r * h, r_t[..., 2 * H:])
        hh = self._act(1, self._clip(hh))
        # Ht = (1 - zt) * ht + zt * Ht-1  ==  ht + zt * (Ht-1 - ht)
        return hh + z * (h - hh), None


# LSTM v1 (output_sequence), v7, v14 (layout), v22 (bfloat16).
@kernel("LSTM", since=1)
class LSTM(_Recurrent):
    op = "LSTM"

    def __init__(self, ctx, *, activation_alpha=None, activation_beta=None, activations=None, clip=None,
                 direction="forward", hidden_size=None, input_forget=0, layout=0, output_sequence=0):
        self.input_forget = input_forget
        super().__init__(ctx, activation_alpha=activation_alpha, activation_beta=activation_beta,
                         activations=activations, clip=clip, direction=direction, hidden_size=hidden_size,
                         layout=layout, output_sequence=output_sequence)
        # numpy fast path for the common LSTM (default activations, no clip / peepholes /
        # input_forget, constant weights): sigmoid(x) = 0.5 + 0.5 tanh(x / 2), so with the i, o, f
        # columns of W, R and the bias pre-multiplied by 0.5 (exact) one tanh over all four
        # gates serves them all; each step then runs a handful of in-place numpy calls on
        # preallocated buffers.
        self.fast = None
        acts = [[a[3] for a in d] for d in self.acts]
        if (self.xp is np and self.w_t is not None and self.r_t is not None and self.bias is not None
                and clip is None and not input_forget and not ctx.has_input(7)
                and all(a == ["sigmoid", "tanh", "tanh"] for a in acts)):
            self.fast = self._halve_sig_gates()

    def _halve_sig_gates(self):
        """(w_t, r_t, input bias) with the i, o, f gate columns multiplied by 0.5."""
        d = self.num_dirs
        r_t = self.r_t.copy()  # [D, H, 4H]
        h = r_t.shape[1]
        r_t[:, :, : 3 * h] *= r_t.dtype.type(0.5)
        w_t = self.w_t.copy().reshape(self.w_t.shape[0], d, 4 * h)  # [I, D*4H]
        w_t[:, :, : 3 * h] *= w_t.dtype.type(0.5)
        in_bias = self.bias[0]
        if in_bias is not None:
            in_bias = in_bias.copy().reshape(d, 4 * h)
            in_bias[:, : 3 * h] *= in_bias.dtype.type(0.5)
            in_bias = in_bias.reshape(-1)
        return w_t.reshape(self.w_t.shape), r_t, in_bias

    def __call__(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
        if self.fast is not None and P is None and X.dtype in (np.float32, np.float64) and X.ndim == 3:
            lens = None if sequence_lens is None else np.asarray(sequence_lens).reshape(-1)
            if lens is None or bool(np.all(lens == (X.shape[1] if self.layout == 1 else X.shape[0]))):
                return self._run_fast(X, initial_h, initial_c)
        return super().__call__(X, W, R, B, sequence_lens, initial_h, initial_c, P)

    def _run_fast(self, X, initial_h, initial_c):
        w_t, r_t, in_bias = self.fast
        out_dtype = X.dtype
        if self.layout == 1:
            X = X.transpose(1, 0, 2)
        T, Bn, _ = X.shape
        D = self.num_dirs
        H = r_t.shape[1]
        G4 = 4 * H
        xw = np.matmul(X.reshape(T * Bn, -1).astype(w_t.dtype, copy=False), w_t)
        if in_bias is not None:
            xw += in_bias
        xw = xw.reshape(T, Bn, D, G4)
        if self.direction == "reverse":
            xw = xw[::-1]
        elif D == 2:
            xw = xw.copy()
            xw[:, :, 1] = xw[::-1, :, 1]  # the reverse direction reads time backwards

        def init_state(v):
            if v is None:
                return np.zeros((D, Bn, H), dtype=w_t.dtype)
            v = np.asarray(v).astype(w_t.dtype)
            return np.ascontiguousarray(v.transpose(1, 0, 2)) if self.layout == 1 else v.copy()

        h = init_state(initial_h)
        c = init_state(initial_c)
        Y = np.empty((T, D, Bn, H), dtype=w_t.dtype) if self.want_y else None
        # One direction after the other (not interleaved step by step): each one's recurrent
        # weight (4H x H) then stays in cache for all its steps (interleaved, the two together
        # overflow L2 and every step's gemv streams them from L3: ~3x slower for H = 256).
        # (Running the two directions on two Python threads measured no faster: the per-step
        # numpy calls are too short to overlap.)
        with _SingleThreadedBlas():
            for d in range(D):
                self._recur(xw, h, c, Y, r_t, d)
        outs = []
        if Y is not None:
            if self.direction != "forward":
                rd = D - 1
                Y[:, rd] = Y[::-1, rd].copy()
            outs.append(Y.transpose(2, 0, 1, 3) if self.layout == 1 else Y)
        else:
            outs.append(None)
        outs.append(h.transpose(1, 0, 2) if self.layout == 1 else h)
        outs.append(c.transpose(1, 0, 2) if self.layout == 1 else c)
        return tuple(None if o is None else np.ascontiguousarray(o.astype(out_dtype, copy=False)) for o in outs)

    @staticmethod
    def _recur(xw, h, c, Y, r_t, d):
        """The time loop of direction d of the fast path, in place on h[d], c[d] ([D, B, H]) and
        Y[:, d] ([T, D, B, H] or None); xw [T, B, D, 4H] holds the input projections with the
        sigmoid gates pre-halved."""
        T, Bn = xw.shape[:2]
        H = h.shape[2]
        dt = r_t.dtype
        g = np.empty((Bn, 4 * H), dtype=dt)
        tmp = np.empty((Bn, H), dtype=dt)
        sig = g[:, : 3 * H]
        i_g, o_g, f_g, c_g = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        half = dt.type(0.5)
        mul, tanh, matmul = np.multiply, np.tanh, np.matmul
        r_d = r_t[d]
        c_d = c[d]
        h_d = h[d]
        # h of step t goes straight into Y[t, d] (or one of two buffers), which step t + 1's
        # matmul reads
        hs = [Y[t, d] for t in range(T)] if Y is not None else [np.empty((Bn, H), dtype=dt) for _ in range(2)]
        nh = len(hs)
        steps = xw[:, :, d]  # [T, B, 4H]
        for t in range(T):
            matmul(h_d, r_d, out=g)
            g += steps[t]
            tanh(g, out=g)
            sig *= half
            sig += half
            c_d *= f_g
            mul(i_g, c_g, out=tmp)
            c_d += tmp
            tanh(c_d, out=tmp)
            h_d = hs[t % nh]
            mul(o_g, tmp, out=h_d)
        h[d] = h_d

    def _step(self, xw_t, h, c, r_t, rec_bias, peep, H):
        # Gate order in W/R/B is i, o, f, c; peepholes P are i, o, f.
        g = xw_t + self.xp.matmul(h, r_t)
        if peep is None and not self.input_forget:
            # No peepholes: the three sigmoid gates are one contiguous block, one activation call.
            iof = self._act(0, self._clip(g[..., :3 * H]))
            i, o, f = iof[..., :H], iof[..., H:2 * H], iof[..., 2 * H:]
            c_new = f * c + i * self._act(1, self._clip(g[..., 3 * H:]))
            return o * self._act(2, c_new), c_new
        i, o, f, cc = g[..., :H], g[..., H:2 * H], g[..., 2 * H:3 * H], g[..., 3 * H:]
        if peep is not None:
            i = i + peep[..., :H] * c
            f = f + peep[..., 2 * H:] * c
        i = self._act(0, self._clip(i))
        f = 1 - i if self.input_forget else self._act(0, self._clip(f))
        cc = self._act(1, self._clip(cc))
        c_new = f * c + i * cc
        if peep is not None:
            o = o + peep[..., H:2 * H] * c_new
        o = self._act(0, self._clip(o))
        h_new = o * self._act(2, c_new)
        return h_new, c_new
