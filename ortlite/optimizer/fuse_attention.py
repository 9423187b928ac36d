"""AttentionFusion (onnxruntime's): the eager self-attention block of BERT / GPT-2 exports
becomes one com.microsoft ``Attention`` node.

The block, as torch.onnx.export writes HF's eager attention (``ortlite.zoo.bert_base`` /
``gpt2``)::

    q = Transpose[0,2,1,3](Reshape(Q(x), [x.B, x.S, N, D]))       # Q(x) = x @ Wq + bq
    k = Transpose[0,2,3,1](Reshape(K(x), [x.B, x.S, N, D]))       # already K^T
    v = Transpose[0,2,1,3](Reshape(V(x), [x.B, x.S, N, D]))
    p = Softmax(mask(scale(MatMul(q, k))), axis=-1)
    y = Reshape(Transpose[0,2,1,3](MatMul(p, v)), [.B, .S, N*D])

Cases:

1. separate Q/K/V projections ``Add(bq, MatMul(x, Wq))`` (either Add order, or no bias)
   sharing ``x``: the weights are concatenated to [H_in, 3H], the biases to [3H];
2. one fused projection ``MatMul(x, W[H_in, 3H]) (+ b)`` split in three equal parts on the
   last axis (GPT-2's ``c_attn`` + ``Split``);
3. the scale as ``Div(qk, c)`` or ``Mul(qk, c)`` (``scale`` = 1/c or c), or none (scale 1);
4. BERT's padding mask ``Add(scores, Mul(Sub(1, Cast(Unsqueeze(Unsqueeze(m, 1), 2))), c))``
   (Unsqueeze / Cast in any order, axes as attribute or input): ``mask_index`` is the raw 2-D
   mask ``m`` cast to int32 (one Cast shared by all layers) and ``mask_filter_value`` = c;
5. GPT-2's causal mask ``Where(Slice(Slice(tril, S_k - S_q : S_k, axis 2), 0 : S_k, axis 3),
   scores, fill)`` with ``tril`` a constant lower-triangular [1, 1, P, P] and fill <= -1e4:
   ``unidirectional=1``;
6. no mask at all.

The ``Reshape`` targets may be constants (static shapes, folded) or the dynamic
``Shape -> Gather -> Unsqueeze -> Concat`` chains; they are evaluated symbolically and must
be exactly [B, S, N, D] of the Reshape's own input (0 copies a dim, one -1 is allowed) and
[B, S, N*D] for the output. Those shape chains (and the causal-mask slicing) go with the
block when nothing else reads them; the shared mask chain goes when the last layer using it
is fused. The output projection (MatMul + Add) stays.

Preconditions: ``x`` is float32 with rank 3 and a known hidden size; Q, K, V have the same
N and D; every intermediate is read only inside the block (or by its shape chains) and is no
graph output; all the block's nodes are on one provider that has an Attention kernel. The
mask fusion assumes a 0/1 ``attention_mask`` (as onnxruntime's fusion does): the raw-mask form
keeps keys whose mask is > 0.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ortlite.optimizer._match import (
    MS, View, absorb, axes_of, can_fuse, closed, replace, reshape_target, rewrite_each, shape_vector,
    term_is,
)

def _perm(node):
    p = node.attrs.get("perm")
    return None if p is None else [int(a) for a in p]


def _linear(view, name):
    """``name`` = MatMul(x, W) (+ bias, either order): (x, W, bias or None, nodes) or None."""
    p = view.producer(name, ("Add", "MatMul"))
    if p is None:
        return None
    nodes, bias = [p], None
    if p.op_type == "Add":
        found = None
        for mo, bo in (p.inputs, p.inputs[::-1]):
            mm = view.producer(mo, "MatMul")
            b = view.const(bo)
            if mm is not None and b is not None and b.ndim == 1:
                found = (mm, b)
                break
        if found is None:
            return None
        p, bias = found
        nodes.append(p)
    x, w = p.inputs
    wv = view.const(w)
    if wv is None or wv.ndim != 2 or view.const(x) is not None:
        return None
    if bias is not None and bias.shape[0] != wv.shape[1]:
        return None
    return x, wv, bias, nodes


def _split3(view, sp):
    """``sp`` splits a rank-3 value in three equal parts on the last axis."""
    src = sp.inputs[0]
    if len(sp.outputs) != 3 or view.rank(src) != 3 or int(sp.attrs.get("axis", 0)) not in (2, -1):
        return False
    total = view.static_dim(src, -1)
    if total is None or total % 3:
        return False
    if len(sp.inputs) > 1 and sp.inputs[1]:
        c = view.const(sp.inputs[1])
        sizes = None if c is None else [int(v) for v in c.reshape(-1)]
    elif "split" in sp.attrs:
        sizes = [int(v) for v in sp.attrs["split"]]
    else:
        sizes = [total // 3] * 3
    return sizes == [total // 3] * 3


def _heads(view, reshape):
    """(N, D) when Reshape ``reshape`` splits its [B, S, H] input into [B, S, N, D], else None."""
    xin = reshape.inputs[0]
    h = view.static_dim(xin, -1)
    if view.rank(xin) != 3 or h is None:
        return None
    vec = shape_vector(view, reshape.inputs[1])
    if vec is None or len(vec) != 4:
        return None
    n, d = vec[2], vec[3]
    if not isinstance(n, int) or not isinstance(d, int):
        return None
    if n == -1 and d > 0 and h % d == 0:
        n = h // d
    elif d == -1 and n > 0 and h % n == 0:
        d = h // n
    if n <= 0 or d <= 0 or n * d != h:
        return None
    if not reshape_target(view, reshape, [[(xin, 0)], [(xin, 1)], n, d]):
        return None
    return n, d


def _mask_chain(view, name):
    """BERT's extended mask ``(1 - float(m[:, None, None, :])) * c``: (m, c) or None."""
    mul = view.producer(name, "Mul")
    if mul is None or len(mul.inputs) != 2:
        return None
    for sub_out, c in (mul.inputs, mul.inputs[::-1]):
        cv = view.scalar_for(c, sub_out)
        sub = view.producer(sub_out, "Sub")
        if cv is None or sub is None or not view.is_value(sub.inputs[0], 1.0, sub.inputs[1]):
            continue
        cur = sub.inputs[1]
        steps = []
        while True:
            p = view.producer(cur, ("Cast", "Unsqueeze"))
            if p is None:
                break
            steps.append(p)
            cur = p.inputs[0]
        if not steps or view.rank(cur) != 2:
            continue
        dims = ["b", "s"]  # where m's two dims end up, followed forwards through the chain
        cast_float = False
        for p in reversed(steps):  # forwards from m
            if p.op_type == "Cast":
                to = int(p.attrs.get("to", 0))
                if to in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
                    cast_float = True
                elif cast_float:
                    dims = None
                    break
                continue
            axes = axes_of(view, p)
            if not axes:
                dims = None
                break
            r = len(dims) + len(axes)
            axes = sorted(a + r if a < 0 else a for a in axes)
            out, it = [], iter(dims)
            for i in range(r):
                out.append("1" if i in axes else next(it, None))
            dims = out
        dt = view.dtype(cur)
        if dims == ["b", "1", "1", "s"] and cast_float and dt is not None and np.dtype(dt).kind in "iub":
            return cur, cv
    return None


def _is_tril(c):
    """A [1, 1, P, P] constant holding ones on and below the diagonal, zeros above."""
    if c.ndim != 4 or c.shape[:2] != (1, 1) or c.shape[2] != c.shape[3]:
        return False
    return bool(np.array_equal(c[0, 0] != 0, np.tri(c.shape[2], dtype=bool)))


def _slice_parts(view, sl):
    """(data, starts terms, ends terms, axes list, steps list) of an opset-10+ Slice, or None."""
    if "starts" in sl.attrs:
        return None
    ins = list(sl.inputs) + [""] * 5
    starts, ends = shape_vector(view, ins[1]), shape_vector(view, ins[2])
    axes = view.const(ins[3]) if ins[3] else None
    steps = view.const(ins[4]) if ins[4] else None
    if starts is None or ends is None or (ins[3] and axes is None) or (ins[4] and steps is None):
        return None
    axes = None if axes is None else [int(a) for a in axes.reshape(-1)]
    steps = None if steps is None else [int(a) for a in steps.reshape(-1)]
    return ins[0], starts, ends, axes, steps


def _causal(view, cond, seq):
    """``cond`` is tril[:, :, S_k - S_q : S_k, :S_k] (GPT-2's causal slice) with S_q = S_k = S."""
    s2 = view.producer(cond, "Slice")
    if s2 is None:
        return False
    p2 = _slice_parts(view, s2)
    if p2 is None:
        return False
    s1 = view.producer(p2[0], "Slice")
    if s1 is None:
        return False
    p1 = _slice_parts(view, s1)
    if p1 is None:
        return False
    c = view.const(p1[0])
    if c is None or not _is_tril(c):
        return False
    ok_steps = lambda st: st is None or st == [1]  # noqa: E731

    def is_seq(t):
        return term_is(view, t, seq)

    def zero(t):
        if t == 0:
            return True
        return isinstance(t, tuple) and t[0] == "sub" and is_seq(t[1]) and is_seq(t[2])

    _, st1, en1, ax1, sp1 = p1
    _, st2, en2, ax2, sp2 = p2
    return (ax1 in ([2], [-2]) and ok_steps(sp1) and len(st1) == 1 and zero(st1[0]) and len(en1) == 1
            and is_seq(en1[0]) and ax2 in ([3], [-1]) and ok_steps(sp2) and st2 == [0] and len(en2) == 1
            and is_seq(en2[0]))


def _fuse(ctx, view: View, sm):
    axis = int(sm.attrs.get("axis", -1 if sm.opset >= 13 else 1))
    # before opset 13 Softmax flattens from `axis` on: the same as the last axis only at rank-1
    if axis not in (-1, 3) or (sm.opset < 13 and view.rank(sm.inputs[0]) != 4):
        return False
    core = [sm]
    s_in = sm.inputs[0]
    pre = view.producer(s_in)
    mask = causal_cond = None
    scores = s_in
    if pre is not None and pre.op_type == "Add" and pre.domain == "" and len(pre.inputs) == 2:
        for sc, mv in (pre.inputs, pre.inputs[::-1]):
            m = _mask_chain(view, mv)
            if m is not None:
                mask, scores = m, sc
                break
        if mask is None:
            return False
        core.append(pre)
    elif pre is not None and pre.op_type == "Where" and pre.domain == "":
        causal_cond, scores, fill = pre.inputs
        fv = view.scalar_for(fill, scores)
        if fv is None or fv > -1e4:
            return False
        core.append(pre)
    # scale
    sp = view.producer(scores, ("Div", "Mul", "MatMul"))
    if sp is None:
        return False
    if sp.op_type == "MatMul":
        scale, mm1 = 1.0, sp
    else:
        qk, c = sp.inputs
        if sp.op_type == "Mul" and view.producer(qk, "MatMul") is None:
            qk, c = c, qk
        k = view.scalar_for(c, qk)
        mm1 = view.producer(qk, "MatMul")
        if k is None or mm1 is None or k == 0 or view.const(c).dtype.kind != "f":
            return False
        scale = 1.0 / k if sp.op_type == "Div" else k
        core.append(sp)
    core.append(mm1)
    q_t, kT = mm1.inputs
    # q, k, v heads
    tq = view.producer(q_t, "Transpose")
    tk = view.producer(kT, "Transpose")
    if tq is None or tk is None or _perm(tq) != [0, 2, 1, 3]:
        return False
    if _perm(tk) == [0, 2, 3, 1]:
        k_nodes = [tk]
    elif _perm(tk) == [0, 1, 3, 2]:
        tk0 = view.producer(tk.inputs[0], "Transpose")
        if tk0 is None or _perm(tk0) != [0, 2, 1, 3]:
            return False
        k_nodes = [tk, tk0]
    else:
        return False
    rq = view.producer(tq.inputs[0], "Reshape")
    rk = view.producer(k_nodes[-1].inputs[0], "Reshape")
    mm2s = [c for c in view.consumers(sm.outputs[0])]
    if len(mm2s) != 1 or mm2s[0].op_type != "MatMul" or mm2s[0].domain != "" or mm2s[0].inputs[0] != sm.outputs[0]:
        return False
    mm2 = mm2s[0]
    v_t = mm2.inputs[1]
    tv = view.producer(v_t, "Transpose")
    if tv is None or _perm(tv) != [0, 2, 1, 3]:
        return False
    rv = view.producer(tv.inputs[0], "Reshape")
    if rq is None or rk is None or rv is None:
        return False
    heads = {_heads(view, r) for r in (rq, rk, rv)}
    if len(heads) != 1 or None in heads:
        return False
    n, d = heads.pop()
    # merge heads back: Transpose[0,2,1,3] -> Reshape [B, S, N*D]
    to = [c for c in view.consumers(mm2.outputs[0])]
    if len(to) != 1 or to[0].op_type != "Transpose" or _perm(to[0]) != [0, 2, 1, 3]:
        return False
    to = to[0]
    t = to.outputs[0]
    ro = [c for c in view.consumers(t) if c.op_type == "Reshape" and c.inputs[0] == t and c.domain == ""]
    if len(ro) != 1:
        return False
    ro = ro[0]
    if not reshape_target(view, ro, [[(t, 0)], [(t, 1)], n * d]):
        return False
    out = ro.outputs[0]
    core += [tq, *k_nodes, rq, rk, tv, rv, mm2, to, ro]
    # projections
    qin, kin, vin = rq.inputs[0], rk.inputs[0], rv.inputs[0]
    sp_node = view.producer(qin, "Split")
    if sp_node is not None and list(sp_node.outputs) == [qin, kin, vin]:
        if not _split3(view, sp_node):
            return False
        lin = _linear(view, sp_node.inputs[0])
        if lin is None:
            return False
        x, w, b, lnodes = lin
        if w.shape[1] != 3 * n * d:
            return False
        bias = b if b is not None else np.zeros((w.shape[1],), dtype=w.dtype)
        core += [sp_node] + lnodes
    else:
        lins = [_linear(view, v) for v in (qin, kin, vin)]
        if None in lins or len({lin[0] for lin in lins}) != 1:
            return False
        x = lins[0][0]
        ws = [lin[1] for lin in lins]
        if len({wv.shape for wv in ws}) != 1 or ws[0].shape[1] != n * d:
            return False
        w = np.concatenate(ws, axis=1)
        bias = np.concatenate([lin[2] if lin[2] is not None else np.zeros((n * d,), dtype=ws[0].dtype)
                               for lin in lins])
        for lin in lins:
            core += lin[3]
    if view.rank(x) != 3 or view.static_dim(x, -1) != w.shape[0]:
        return False
    if view.dtype(x) is None or np.dtype(view.dtype(x)) != np.float32 or w.dtype != np.float32:
        return False
    if mask is not None:
        # the raw mask is [B, S]: a mask that would broadcast ([1, S] or [B, 1]) is not that form
        for i in (0, 1):
            md, xd = view.static_dim(mask[0], i), view.static_dim(x, i)
            if view.rank(mask[0]) != 2 or (md is not None and xd is not None and md != xd) or (md == 1 and xd != 1):
                return False
    seq = [(x, 1), (qin, 1), (kin, 1), (vin, 1), (rq.outputs[0], 1), (rk.outputs[0], 1), (rv.outputs[0], 1),
           (q_t, 2), (kT, 3), (v_t, 2), (mm1.outputs[0], 2), (mm1.outputs[0], 3), (scores, 2), (scores, 3)]
    if causal_cond is not None and not _causal(view, causal_cond, seq):
        return False
    roots = [r.inputs[1] for r in (rq, rk, rv, ro)] + ([causal_cond] if causal_cond else [])
    protect = {x} | ({mask[0]} if mask else set())
    nodes = absorb(view, core, roots, protect)
    if any(o in protect for nd in nodes for o in nd.outputs):
        return False
    if not closed(view, nodes, [out]):
        return False
    prov = can_fuse(ctx, core, "Attention", MS)
    if prov is None:
        return False
    new = []
    attrs = {"num_heads": int(n), "scale": float(scale)}
    mask_in = ""
    if mask is not None:
        m, fv = mask
        attrs["mask_filter_value"] = float(fv)
        if np.dtype(view.dtype(m)) == np.int32:
            mask_in = m
        else:
            for c in view.consumers(m):
                if (c.op_type == "Cast" and c.domain == "" and int(c.attrs.get("to", 0)) == TensorProto.INT32
                        and c.inputs == [m]):
                    mask_in = c.outputs[0]
                    break
            else:
                mask_in = ctx.new_name(f"{m}_int32")
                new.append(ctx.make_node("Cast", [m], [mask_in], name=ctx.new_name(f"{m}/Cast_int32"),
                                         provider=prov, to=TensorProto.INT32))
    if causal_cond is not None:
        attrs["unidirectional"] = 1
    name = ro.name.rsplit("/", 1)[0] + "/Attention" if "/" in ro.name else ctx.new_name("Attention")
    w_name = ctx.add_constant(f"{name}/qkv_weight", np.ascontiguousarray(w))
    b_name = ctx.add_constant(f"{name}/qkv_bias", np.ascontiguousarray(bias.astype(w.dtype)))
    ins = [x, w_name, b_name] + ([mask_in] if mask_in else [])
    new.append(ctx.make_node("Attention", ins, [out], domain=MS, name=ctx.new_name(name), provider=prov, **attrs))
    replace(ctx, nodes, new)
    return True


class AttentionFusion:
    """BERT / GPT-2 eager self-attention -> com.microsoft Attention (cases 1-6)."""

    name = "AttentionFusion"

    def apply(self, ctx) -> bool:
        return rewrite_each(ctx, ["Softmax"], lambda view, sm: _fuse(ctx, view, sm))


PASSES = [AttentionFusion]
