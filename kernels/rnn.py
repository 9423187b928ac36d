"""Recurrent layers: RNN, GRU, LSTM (https://onnx.ai/onnx/operators/onnx__LSTM.html).

The input projection ``X @ W^T + Wb (+ Rb)`` of every time step and every direction is one
matmul before the loop. The time loop then runs, direction after direction, one recurrent
matmul per step into a preallocated gate buffer (``matmul(h, R^T, out=...)``) and the gate math
in place on preallocated buffers: no array is allocated per step (with ``sequence_lens`` shorter
than the sequence, the masking allocates). Gates whose activation is Sigmoid have their columns
of W, R, the biases and the peepholes pre-multiplied by 0.5 (exact) when the weights are packed,
so each sigmoid is ``0.5 + 0.5 tanh(x)``: three in-place calls. The reverse direction walks time
backwards (entries past their ``sequence_lens`` keep their state and output zeros), so no
reversed copy of the input is made. The same code runs on numpy and CuPy (``xp``).

Versions: v1 had ``output_sequence`` (accepted; Y is produced when asked for),
GRU v3 added ``linear_before_reset``, v14 added ``layout``, v22 added bfloat16.
float16 / bfloat16 inputs are computed in float32 and cast back.
"""
from __future__ import annotations

import numpy as np

from ortlite import blas
from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel

from . import _jit

def _single_threaded_blas():
    """One BLAS thread for a block (ortlite.blas), for loops of small dependent products such as a
    recurrence's per-step gemv: waking BLAS worker threads for ~20 us of work each step costs more than
    it saves, and on a busy machine far more (a bidirectional LSTM of 32 steps measured 15 ms with two
    OpenBLAS threads, 2 ms with one)."""
    return blas.Threads(1)


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


def _inplace_act(xp, name, f, a, b, halved):
    """fn(x, out): activation ``name`` of x written into out (out may be x), on preallocated buffers.
    ``halved``: x is already x / 2 (the sigmoid gates' weights were pre-halved)."""
    mul, tanh = xp.multiply, xp.tanh
    if name == "tanh":
        return lambda x, out: tanh(x, out=out)
    if name == "sigmoid":
        if halved:
            def sig_h(x, out):
                tanh(x, out=out)
                out *= 0.5
                out += 0.5
            return sig_h

        def sig(x, out):
            mul(x, 0.5, out=out)
            tanh(out, out=out)
            out *= 0.5
            out += 0.5
        return sig
    if name == "relu":
        return lambda x, out: xp.maximum(x, 0, out=out)
    if name == "affine":
        def affine(x, out):
            mul(x, a, out=out)
            out += b
        return affine

    def generic(x, out):
        out[...] = f(xp, x, a, b)
    return generic


def _matmul_into(xp, batch):
    """fn(a [B, K], b [K, N], out [B, N] contiguous): a @ b into out, the fastest way for this batch.
    numpy: np.dot (less call overhead than np.matmul); for 2-3 rows one gemv per row (OpenBLAS's
    sgemm is 2-3x slower than that on so few rows). CuPy: matmul."""
    if xp is not np:
        return lambda a, b, out: xp.matmul(a, b, out=out)
    dot = np.dot
    if batch in (2, 3):
        def rows(a, b, out):
            for i in range(batch):
                dot(a[i], b, out=out[i])
        return rows
    return lambda a, b, out: dot(a, b, out=out)


# Input projections up to this many multiply-adds run on one BLAS thread with the loop after them.
_SMALL_PROJECTION = 1 << 24
# The compiled recurrence (kernels._jit.rnn_loop) runs up to this hidden size; above it the
# per-step product is large enough for BLAS to win.
_JIT_MAX_HIDDEN = 256


class _Packed:
    """Weights in the loop's layout, with the sigmoid gates' columns pre-halved."""

    __slots__ = ("H", "dtype", "w_t", "in_b", "r", "rec_b", "peep", "acts", "clips", "names", "jit", "rt",
                 "jit_peep", "jit_rbh", "jit_clips", "ones")


class _Recurrent:
    """Shared prepare/run logic; subclasses define ``op``, ``_loop`` (the fast time loop of one
    direction) and ``_step`` (the generic step, used by subclasses that override it)."""

    op = ""
    # gate block -> activation index (0 = f, 1 = g), in W/R/B order
    GATE_ACTS = ()

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
        # ``fast``: the fast loop's packed weights, once when W, R, B (and P) are constant.
        self.fast = None
        has_p = self.op == "LSTM" and ctx.has_input(7)
        p = ctx.const(7) if has_p else None
        if (w is not None and r is not None and (b is not None or not ctx.has_input(3))
                and (p is not None or not has_p)):
            self.fast = self._pack_fast(w, r, b, p)
        self.const_weights = self.fast is not None
        # A subclass that replaces the step (DynamicQuantizeLSTM) runs the generic loop.
        self.generic = type(self)._step is not _BASE_STEP.get(self.op)

    # -- weight packing (prepare step when constant, else per call) ---------------------------------------
    def _ctype(self, dtype):
        return np.float64 if dtype == np.float64 else np.float32

    def _pack_fast(self, w, r, b, p):
        xp = self.xp
        ct = self._ctype(np.dtype(w.dtype))
        w = xp.asarray(w).astype(ct)
        r = xp.asarray(r).astype(ct)
        D, GH, I = w.shape
        H = r.shape[-1]
        G = self.G
        pk = _Packed()
        pk.H, pk.dtype = H, ct
        # per direction and gate block: 0.5 where the block's activation is sigmoid
        halve = [[self.acts[d][k][3] == "sigmoid" for k in self.GATE_ACTS] for d in range(D)]
        scale = xp.ones((D, GH), dtype=ct)  # filled on the device: no host array copied per call
        for d in range(D):
            for gi in range(G):
                if halve[d][gi]:
                    scale[d, gi * H:(gi + 1) * H] = 0.5
        w = w * scale[:, :, None]
        r = r * scale[:, :, None]
        pk.w_t = xp.ascontiguousarray(w.transpose(2, 0, 1).reshape(I, D * GH))
        pk.in_b = pk.rec_b = None
        if b is not None:
            b = xp.asarray(b).astype(ct)
            wb, rb = b[:, :GH] * scale, b[:, GH:] * scale
            if self.op == "GRU" and getattr(self, "linear_before_reset", 0):
                in_b = wb.copy()
                in_b[:, : 2 * H] += rb[:, : 2 * H]
                pk.in_b = in_b.reshape(-1)
                pk.rec_b = [xp.ascontiguousarray(rb[d, 2 * H:]) for d in range(D)]
            else:
                pk.in_b = (wb + rb).reshape(-1)
        pk.r = self._pack_r_fast(r, H)
        pk.peep = None
        if p is not None:
            p = xp.asarray(p).astype(ct).reshape(D, 3 * H)
            p = p * scale[:, : 3 * H]  # i, o, f: the sigmoid gates' scale (LSTM blocks 0..2)
            pk.peep = [tuple(xp.ascontiguousarray(p[d, k * H:(k + 1) * H]) for k in range(3)) for d in range(D)]
        pk.acts, pk.clips = [], []
        pk.names = [tuple(a[3] for a in self.acts[d]) for d in range(D)]
        n_act = len(_DEFAULT_ACTS[self.op])
        for d in range(D):
            acts, clips = [], []
            for k in range(n_act):
                f, a, bb, name = self.acts[d][k]
                # f (k = 0) and g (k = 1) take gate pre-activations (halved for sigmoid); h does not
                halved = k < 2 and name == "sigmoid" and k in self.GATE_ACTS
                acts.append(_inplace_act(xp, name, f, a, bb, halved))
                clips.append(None if self.clip is None else float(self.clip) * (0.5 if halved else 1.0))
            pk.acts.append(acts)
            pk.clips.append(clips)
        self._pack_jit(pk, r, b, p)
        return pk

    def _pack_jit(self, pk, r, b, p):
        """The compiled recurrence and its operands (pk.jit None where it does not apply: not numpy,
        non-default activations, a large hidden size, no numba). r, p: scaled as the loop's."""
        pk.jit = pk.ones = None
        defaults = tuple(a.lower() for a in _DEFAULT_ACTS[self.op])
        if (self.xp is not np or pk.H > _JIT_MAX_HIDDEN or any(n != defaults for n in pk.names)):
            return
        pk.jit = _jit.rnn_loop(self.op, pk.dtype)
        if pk.jit is None:
            return
        D, H, ct = r.shape[0], pk.H, pk.dtype
        pk.rt = np.ascontiguousarray(r)  # [D, G*H, H]: the compiled loop's dot products read rows
        pk.jit_peep = np.zeros((D, 3 * H), ct) if p is None else np.stack([np.concatenate(q) for q in pk.peep])
        pk.jit_rbh = np.zeros((D, H), ct)
        if pk.rec_b is not None:
            pk.jit_rbh[...] = np.stack(pk.rec_b)
        clips = (pk.clips[0] + [None])[:2]  # f's and g's (RNN: f only)
        pk.jit_clips = tuple(ct(np.inf) if c is None else ct(c) for c in clips)

    def _pack_r_fast(self, r, H):
        """R (scaled) [D, G*H, H] -> per direction R^T [H, G*H], contiguous."""
        xp = self.xp
        return [xp.ascontiguousarray(r[d].T) for d in range(r.shape[0])]

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
    def __call__(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
        # (fast set to None after a constant-weight prepare: the generic loop, as tests compare)
        if self.generic or X.ndim != 3 or (self.const_weights and self.fast is None):
            return self._generic_call(X, W, R, B, sequence_lens, initial_h, initial_c, P)
        return self._fast_call(X, W, R, B, sequence_lens, initial_h, initial_c, P)

    def _fast_call(self, X, W, R, B, sequence_lens, initial_h, initial_c, P):
        xp = self.xp
        out_dtype = X.dtype
        pk = self.fast
        if pk is None or pk.dtype != self._ctype(X.dtype):
            Wc = W.astype(self._ctype(X.dtype), copy=False)
            pk = self._pack_fast(Wc, R, B, P if self.op == "LSTM" else None)
        if (pk.jit is not None and X.shape[0] == 1 and self.layout == 0 and sequence_lens is None
                and X.dtype == pk.dtype):
            return self._one_step(X, pk, initial_h, initial_c)
        if self.layout == 1:
            X = X.transpose(1, 0, 2)
        T, Bn, I = X.shape
        GH = self.G * pk.H
        # Small problems run on one BLAS thread from the input projection on: waking a worker for
        # tens of microseconds of work costs more than it saves (on a busy machine, milliseconds).
        # (Not for one or two steps in all: switching the thread count costs more than it saves.)
        blas = _single_threaded_blas() if xp is np and T * self.num_dirs > 2 else None
        if blas is not None and T * Bn * I * self.num_dirs * GH > _SMALL_PROJECTION:
            blas = None
        if blas is not None:
            blas.__enter__()
        try:
            return self._fast_run(X, pk, sequence_lens, initial_h, initial_c, out_dtype, blas)
        finally:
            if blas is not None:
                blas.__exit__(None, None, None)

    def _fast_run(self, X, pk, sequence_lens, initial_h, initial_c, out_dtype, blas):
        xp = self.xp
        ct = pk.dtype
        T, Bn, I = X.shape
        D = self.num_dirs
        H = pk.H
        GH = self.G * H
        xw = xp.matmul(X.reshape(T * Bn, I).astype(ct, copy=False), pk.w_t)
        if pk.in_b is not None:
            xw += pk.in_b
        xw = xw.reshape(T, Bn, D, GH)

        masks = lens = None
        if sequence_lens is not None:
            lens = xp.asarray(sequence_lens).astype(np.int64).reshape(-1)
            if not (xp is np and bool(np.all(lens == T))):  # the shortcut reads lens back: host only
                masks = (xp.arange(T)[:, None] < lens[None, :])[:, :, None]  # [T, B, 1]

        def init_state(v):  # a fresh C-contiguous copy: the loop updates it in place
            if v is None:
                return xp.zeros((D, Bn, H), dtype=ct)
            v = xp.asarray(v)
            return (v.transpose(1, 0, 2) if self.layout == 1 else v).astype(ct, order="C")

        h = init_state(initial_h)
        c = init_state(initial_c) if self.op == "LSTM" else None
        Y = None
        if self.want_y:
            Y = (xp.zeros if masks is not None and pk.jit is None else xp.empty)((T, D, Bn, H), dtype=ct)
        if pk.jit is not None:
            lens = np.full(Bn, T, np.int64) if masks is None else np.ascontiguousarray(lens)
            self._run_jit(pk, xw.reshape(T, Bn, D * GH), h, c, Y, lens)
            return self._outputs(Y, h, c, out_dtype)
        # One direction after the other: each one's recurrent weight stays in cache for all its steps.
        # The per-step products are small and dependent: one BLAS thread (see _single_threaded_blas).
        inner = _single_threaded_blas() if (xp is np and blas is None and T * D > 2) else None
        if inner is not None:
            inner.__enter__()
        try:
            for d in range(D):
                rev = self.direction == "reverse" or d == 1
                times = range(T - 1, -1, -1) if rev else range(T)
                self._loop(d, times, xw, h, c, Y, pk, masks)
        finally:
            if inner is not None:
                inner.__exit__(None, None, None)
        return self._outputs(Y, h, c, out_dtype)

    def _one_step(self, X, pk, initial_h, initial_c):
        """One time step (a decoder's step inside a Loop body, a streaming model's step): the compiled
        recurrence with no per-call set-up beyond the input projection and the fresh state arrays.
        X [1, B, I] of the compute dtype, layout 0, all lengths 1."""
        _, Bn, I = X.shape
        D, H, ct = self.num_dirs, pk.H, pk.dtype
        xw = np.matmul(X.reshape(Bn, I), pk.w_t)
        if pk.in_b is not None:
            xw += pk.in_b
        lens = pk.ones.get(Bn) if pk.ones is not None else None
        if lens is None:
            lens = np.ones(Bn, np.int64)
            lens.flags.writeable = False
            if pk.ones is None:
                pk.ones = {}
            pk.ones[Bn] = lens
        # fresh C-contiguous states: the loop updates them in place (and they are this call's outputs)
        h = np.zeros((D, Bn, H), ct) if initial_h is None else np.array(initial_h, dtype=ct, order="C")
        c = None
        if self.op == "LSTM":
            c = np.zeros((D, Bn, H), ct) if initial_c is None else np.array(initial_c, dtype=ct, order="C")
        Y = np.empty((1, D, Bn, H), ct) if self.want_y else None
        self._run_jit(pk, xw.reshape(1, Bn, D * self.G * H), h, c, Y, lens)
        return (Y, h, c) if self.op == "LSTM" else (Y, h)

    def _outputs(self, Y, h, c, out_dtype):
        xp = self.xp
        outs = [None]
        if Y is not None:
            outs[0] = Y.transpose(2, 0, 1, 3) if self.layout == 1 else Y
        outs.append(h.transpose(1, 0, 2) if self.layout == 1 else h)
        if self.op == "LSTM":
            outs.append(c.transpose(1, 0, 2) if self.layout == 1 else c)
        return tuple(None if o is None else xp.ascontiguousarray(o.astype(out_dtype, copy=False)) for o in outs)

    def _run_jit(self, pk, xw, h, c, Y, lens):
        """The compiled recurrence: xw [T, B, D*G*H] C-contiguous, h / c [D, B, H] updated in place,
        Y [T, D, B, H] written (entries past their length zeroed), lens [B] int64."""
        y = Y if Y is not None else np.empty((0, 0, 0, 0), pk.dtype)
        rev0 = int(self.direction == "reverse")
        flags = 4 if Y is not None else 0
        cf, cg = pk.jit_clips
        if self.op == "LSTM":
            flags |= (1 if pk.peep is not None else 0) | (2 if self.input_forget else 0)
            pk.jit(xw, pk.rt, pk.jit_peep, h, c, y, lens, rev0, cf, cg, flags)
        elif self.op == "GRU":
            flags |= 1 if self.linear_before_reset else 0
            pk.jit(xw, pk.rt, pk.jit_rbh, h, y, lens, rev0, cf, cg, flags)
        else:
            pk.jit(xw, pk.rt, h, y, lens, rev0, cf, flags)

    def _bufs(self, Y, masks, d, Bn, H, dt):
        """Where step t writes its h: Y[t, d] directly (the next step's matmul reads it there), else
        two alternating buffers."""
        if Y is not None and masks is None:
            return lambda t, k: Y[t, d]
        xp = self.xp
        two = [xp.empty((Bn, H), dtype=dt), xp.empty((Bn, H), dtype=dt)]
        return lambda t, k: two[k & 1]

    def _mask(self, t, d, h_new, h_old, Y, masks):
        """sequence_lens: entries past their length keep their state and output zeros."""
        xp = self.xp
        m = masks[t]
        h_new = xp.where(m, h_new, h_old)
        if Y is not None:
            Y[t, d] = xp.where(m, h_new, 0)
        return h_new

    # -- the generic path (subclasses replacing _step) -----------------------------------------------------
    def _act(self, k, x):
        """Apply activation ``k`` (0=f, 1=g, 2=h) to x [D, B, ...] (per direction when they differ)."""
        xp = self.xp
        if self.shared_acts or x.shape[0] == 1:
            f, a, b, _ = self.acts[0][k]
            return f(xp, x, a, b)
        return xp.stack([self.acts[d][k][0](xp, x[d], self.acts[d][k][1], self.acts[d][k][2])
                         for d in range(x.shape[0])])

    def _rec(self, h, r_t):
        """h [D, B, H] @ r_t [D, H, N] for the generic loop, through the fast loop's product so that
        the two give equal results."""
        xp = self.xp
        if xp is not np:
            return xp.matmul(h, r_t)
        D, Bn = h.shape[:2]
        out = np.empty((D, Bn, r_t.shape[-1]), dtype=np.result_type(h.dtype, r_t.dtype))
        mm = _matmul_into(np, Bn)
        for d in range(D):
            mm(np.ascontiguousarray(h[d], dtype=out.dtype), np.ascontiguousarray(r_t[d], dtype=out.dtype), out[d])
        return out

    def _clip(self, x):
        if self.clip is not None:
            self.xp.clip(x, -self.clip, self.clip, out=x)
        return x

    def _generic_call(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
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
        blas = _single_threaded_blas() if xp is np and T * D > 2 else None  # small dependent products
        if blas is not None:
            blas.__enter__()
        try:
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
        finally:
            if blas is not None:
                blas.__exit__(None, None, None)

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
    GATE_ACTS = (0,)

    def _loop(self, d, times, xw, h, c, Y, pk, masks):
        # Ht = f(Xt*Wi + Ht-1*Ri + Wbi + Rbi)
        xp = self.xp
        Bn, H = h.shape[1], h.shape[2]
        r = pk.r[d]
        fa = pk.acts[d][0]
        cf = pk.clips[d][0]
        g = xp.empty((Bn, H), dtype=h.dtype)
        out = self._bufs(Y, masks, d, Bn, H, h.dtype)
        matmul = _matmul_into(xp, Bn)
        h_d = h[d]
        for k, t in enumerate(times):
            matmul(h_d, r, out=g)
            g += xw[t, :, d]
            if cf is not None:
                xp.clip(g, -cf, cf, out=g)
            h_new = out(t, k)
            fa(g, h_new)
            if masks is not None:
                h_new = self._mask(t, d, h_new, h_d, Y, masks)
            h_d = h_new
        h[d] = h_d

    def _step(self, xw_t, h, c, r_t, rec_bias, peep, H):
        # Ht = f(Xt*Wi + Ht-1*Ri + Wbi + Rbi)
        g = xw_t + self._rec(h, r_t)
        return self._act(0, self._clip(g)), None


# GRU v1, v3 (linear_before_reset), v7, v14 (layout), v22 (bfloat16).
@kernel("GRU", since=1)
class GRU(_Recurrent):
    op = "GRU"
    GATE_ACTS = (0, 0, 1)

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

    def _pack_r_fast(self, r, H):
        xp = self.xp
        if self.linear_before_reset:  # one matmul for the three gates
            return [xp.ascontiguousarray(r[d].T) for d in range(r.shape[0])]
        # z, r from H; h from (r * H): two matmuls, each on a contiguous R^T
        return [(xp.ascontiguousarray(r[d, : 2 * H].T), xp.ascontiguousarray(r[d, 2 * H:].T))
                for d in range(r.shape[0])]

    def _loop(self, d, times, xw, h, c, Y, pk, masks):
        xp = self.xp
        Bn, H = h.shape[1], h.shape[2]
        dt = h.dtype
        fa, ga = pk.acts[d][0], pk.acts[d][1]
        cf, cg = pk.clips[d][0], pk.clips[d][1]
        lbr = self.linear_before_reset
        if lbr:
            r3 = pk.r[d]
            g = xp.empty((Bn, 3 * H), dtype=dt)
            gzr, gh = g[:, : 2 * H], g[:, 2 * H:]
            rbh = pk.rec_b[d] if pk.rec_b is not None else None
        else:
            rzr, rh = pk.r[d]
            gzr = xp.empty((Bn, 2 * H), dtype=dt)
            gh = xp.empty((Bn, H), dtype=dt)
        z, rg = gzr[:, :H], gzr[:, H:]
        tmp = xp.empty((Bn, H), dtype=dt)
        out = self._bufs(Y, masks, d, Bn, H, dt)
        matmul, mul, sub, add = _matmul_into(xp, Bn), xp.multiply, xp.subtract, xp.add
        h_d = h[d]
        for k, t in enumerate(times):
            xt = xw[t, :, d]
            if lbr:
                # ht = g(Xt*Wh + rt (.) (Ht-1*Rh + Rbh) + Wbh)
                matmul(h_d, r3, out=g)
                gzr += xt[:, : 2 * H]
                if cf is not None:
                    xp.clip(gzr, -cf, cf, out=gzr)
                fa(gzr, gzr)
                if rbh is not None:
                    gh += rbh
                gh *= rg
                gh += xt[:, 2 * H:]
            else:
                # ht = g(Xt*Wh + (rt (.) Ht-1)*Rh + Rbh + Wbh)
                matmul(h_d, rzr, out=gzr)
                gzr += xt[:, : 2 * H]
                if cf is not None:
                    xp.clip(gzr, -cf, cf, out=gzr)
                fa(gzr, gzr)
                mul(rg, h_d, out=tmp)
                matmul(tmp, rh, out=gh)
                gh += xt[:, 2 * H:]
            if cg is not None:
                xp.clip(gh, -cg, cg, out=gh)
            ga(gh, gh)
            # Ht = (1 - zt) (.) ht + zt (.) Ht-1  ==  ht + zt (.) (Ht-1 - ht)
            sub(h_d, gh, out=tmp)
            tmp *= z
            h_new = out(t, k)
            add(gh, tmp, out=h_new)
            if masks is not None:
                h_new = self._mask(t, d, h_new, h_d, Y, masks)
            h_d = h_new
        h[d] = h_d

    def _step(self, xw_t, h, c, r_t, rec_bias, peep, H):
        if self.linear_before_reset:
            hr = self._rec(h, r_t)
            zr = xw_t[..., : 2 * H] + hr[..., : 2 * H]
            zr = self._act(0, self._clip(zr))
            z, r = zr[..., :H], zr[..., H:]
            rh = hr[..., 2 * H:]
            if rec_bias is not None:  # Rbh sits inside the reset product
                rh = rh + rec_bias
            hh = xw_t[..., 2 * H:] + r * rh
        else:
            zr = xw_t[..., : 2 * H] + self._rec(h, r_t[..., : 2 * H])
            zr = self._act(0, self._clip(zr))
            z, r = zr[..., :H], zr[..., H:]
            hh = xw_t[..., 2 * H:] + self._rec(r * h, r_t[..., 2 * H:])
        hh = self._act(1, self._clip(hh))
        # Ht = (1 - zt) * ht + zt * Ht-1  ==  ht + zt * (Ht-1 - ht)
        return hh + z * (h - hh), None


# LSTM v1 (output_sequence), v7, v14 (layout), v22 (bfloat16).
@kernel("LSTM", since=1)
class LSTM(_Recurrent):
    op = "LSTM"
    GATE_ACTS = (0, 0, 0, 1)  # i, o, f: f; c: g

    def __init__(self, ctx, *, activation_alpha=None, activation_beta=None, activations=None, clip=None,
                 direction="forward", hidden_size=None, input_forget=0, layout=0, output_sequence=0):
        self.input_forget = input_forget
        super().__init__(ctx, activation_alpha=activation_alpha, activation_beta=activation_beta,
                         activations=activations, clip=clip, direction=direction, hidden_size=hidden_size,
                         layout=layout, output_sequence=output_sequence)

    def _loop(self, d, times, xw, h, c, Y, pk, masks):
        # Gate order in W/R/B is i, o, f, c; peepholes P are i, o, f.
        xp = self.xp
        Bn, H = h.shape[1], h.shape[2]
        dt = h.dtype
        r = pk.r[d]
        fa, ga, ha = pk.acts[d]
        cf, cg = pk.clips[d][0], pk.clips[d][1]
        peep = pk.peep[d] if pk.peep is not None else None
        ifg = self.input_forget
        g = xp.empty((Bn, 4 * H), dtype=dt)
        tmp = xp.empty((Bn, H), dtype=dt)
        i_g, o_g, f_g, c_g = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        iof = g[:, : 3 * H]
        simple = peep is None and not ifg  # i, o, f activated in one call
        # sigmoid (pre-halved) i, o, f and tanh c: one tanh over the four gates
        fused = simple and pk.names[d][:2] == ("sigmoid", "tanh")
        tanh = xp.tanh
        out = self._bufs(Y, masks, d, Bn, H, dt)
        matmul, mul, clip = _matmul_into(xp, Bn), xp.multiply, xp.clip
        h_d = h[d]
        c_d = c[d]
        c_old = xp.empty((Bn, H), dtype=dt) if masks is not None else None
        for k, t in enumerate(times):
            matmul(h_d, r, out=g)
            g += xw[t, :, d]
            if c_old is not None:
                c_old[...] = c_d
            if fused:
                if cf is not None:
                    clip(iof, -cf, cf, out=iof)
                    clip(c_g, -cg, cg, out=c_g)
                tanh(g, out=g)
                iof *= 0.5
                iof += 0.5
            elif simple:
                if cf is not None:
                    clip(iof, -cf, cf, out=iof)
                fa(iof, iof)
            else:
                if peep is not None:
                    mul(peep[0], c_d, out=tmp)
                    i_g += tmp
                if cf is not None:
                    clip(i_g, -cf, cf, out=i_g)
                fa(i_g, i_g)
                if ifg:
                    xp.subtract(1.0, i_g, out=f_g)
                else:
                    if peep is not None:
                        mul(peep[2], c_d, out=tmp)
                        f_g += tmp
                    if cf is not None:
                        clip(f_g, -cf, cf, out=f_g)
                    fa(f_g, f_g)
            if not fused:
                if cg is not None:
                    clip(c_g, -cg, cg, out=c_g)
                ga(c_g, c_g)
            # Ct = ft (.) Ct-1 + it (.) ct
            c_d *= f_g
            mul(i_g, c_g, out=tmp)
            c_d += tmp
            if not simple:
                if peep is not None:
                    mul(peep[1], c_d, out=tmp)
                    o_g += tmp
                if cf is not None:
                    clip(o_g, -cf, cf, out=o_g)
                fa(o_g, o_g)
            # Ht = ot (.) h(Ct)
            ha(c_d, tmp)
            h_new = out(t, k)
            mul(o_g, tmp, out=h_new)
            if masks is not None:
                c_d[...] = xp.where(masks[t], c_d, c_old)
                h_new = self._mask(t, d, h_new, h_d, Y, masks)
            h_d = h_new
        h[d] = h_d

    def _step(self, xw_t, h, c, r_t, rec_bias, peep, H):
        # Gate order in W/R/B is i, o, f, c; peepholes P are i, o, f.
        g = xw_t + self._rec(h, r_t)
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


_BASE_STEP = {"RNN": RNN._step, "GRU": GRU._step, "LSTM": LSTM._step}
