"""Optimizer update ops of the ai.onnx.preview.training domain (Adagrad, Momentum, Adam).

Inputs are the learning rate R and step count T, then the tensors to update
grouped by role (X..., G..., then the optimizer state); outputs the new
tensors then the new state, in the same grouping.
"""
from __future__ import annotations

from ortlite.registry import kernel

TRAINING = "ai.onnx.preview.training"


def _groups(args, n_groups):
    n = len(args) // n_groups
    return [args[k * n:(k + 1) * n] for k in range(n_groups)]


@kernel("Adagrad", since=1, domain=TRAINING)
def adagrad(xp, R, T, *args, decay_factor=0.0, epsilon=0.0, norm_coefficient=0.0):
    xs, gs, hs = _groups(args, 3)
    r = R / (1 + T * decay_factor)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g_reg = norm_coefficient * x + g
        h_new = h + g_reg * g_reg
        new_x.append((x - r * g_reg / (xp.sqrt(h_new) + epsilon)).astype(x.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_h)


@kernel("Momentum", since=1, domain=TRAINING)
def momentum(xp, R, T, *args, alpha, beta, mode, norm_coefficient):
    xs, gs, vs = _groups(args, 3)
    beta_t = beta if int(T) > 0 else 1.0
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g_reg = norm_coefficient * x + g
        v_new = alpha * v + beta_t * g_reg
        if mode == "nesterov":
            x_new = x - R * (g_reg + alpha * v_new)
        elif mode == "standard":
            x_new = x - R * v_new
        else:
            raise ValueError(f"Momentum: mode must be 'standard' or 'nesterov', got '{mode}'")
        new_x.append(x_new.astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
    return tuple(new_x + new_v)


@kernel("Adam", since=1, domain=TRAINING)
def adam(xp, R, T, *args, alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.0, norm_coefficient_post=0.0):
    xs, gs, vs, hs = _groups(args, 4)
    t = float(T)
    r = R * (1 - beta ** t) ** 0.5 / (1 - alpha ** t) if t > 0 else R
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g_reg = norm_coefficient * x + g
        v_new = alpha * v + (1 - alpha) * g_reg
        h_new = beta * h + (1 - beta) * g_reg * g_reg
        x_new = (1 - norm_coefficient_post) * (x - r * v_new / (xp.sqrt(h_new) + epsilon))
        new_x.append(x_new.astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_v + new_h)
