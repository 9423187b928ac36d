"""The small-convolution path (kernels/conv.py `_ConvCore._tiny`: one gather through a cached index
table, one grouped GEMM): equal to the general paths over 1-D/2-D/3-D geometries, pads (asymmetric,
auto_pad), strides, dilations, groups, batches, Z and activations, and taken where it should be."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ortlite.kernels import conv

RNG = np.random.default_rng(5)

CASES = [
    # (x shape, w shape, group, kernel, strides, dilations, pads)
    ((1, 1, 640), (65, 1, 128), 1, [128], [64], [1], [0, 0]),
    ((1, 65, 9), (64, 65, 3), 1, [3], [1], [1], [1, 1]),
    ((2, 64, 9), (64, 64, 3), 1, [3], [2], [1], [1, 0]),
    ((1, 16, 8, 8), (16, 16, 3, 3), 1, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
    ((3, 8, 7, 5), (12, 4, 3, 2), 2, [3, 2], [2, 1], [1, 2], [0, 1, 2, 0]),
    ((1, 32, 6, 6), (32, 8, 3, 3), 4, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
    ((2, 4, 5, 4, 3), (6, 4, 2, 3, 1), 1, [2, 3, 1], [1, 2, 1], [1, 1, 1], [1, 0, 0, 0, 1, 0]),
    ((1, 64, 1, 1), (10, 64, 1, 1), 1, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
]


def _relu(xp, y):
    xp.maximum(y, 0, out=y)


@pytest.mark.parametrize("case", CASES, ids=[f"x{c[0]}w{c[1]}g{c[2]}" for c in CASES])
@pytest.mark.parametrize("with_bias, with_z, act", list(itertools.product([False, True], [False, True], [None, _relu])))
def test_tiny_path_equals_general(case, with_bias, with_z, act, monkeypatch):
    xs, ws, g, k, s, d, p = case
    x = RNG.standard_normal(xs).astype(np.float32)
    w = RNG.standard_normal(ws).astype(np.float32)
    b = RNG.standard_normal(ws[0]).astype(np.float32) if with_bias else None
    core = conv._ConvCore("Conv", np, w, "NOTSET", d, g, k, p, s)
    out_sp = core.geometry(x.shape, w.shape)[5]
    z = RNG.standard_normal((xs[0], ws[0], *out_sp)).astype(np.float32) if with_z else None
    taken = []
    orig = core._tiny
    monkeypatch.setattr(core, "_tiny", lambda *a: taken.append(1) or orig(*a))
    got = core.run(x, w, b, z=None if z is None else z.copy(), act=act)
    assert taken, "the small path was not taken"
    monkeypatch.setattr(conv, "_TINY_COLUMN", 0)
    ref = core.run(x, w, b, z=None if z is None else z.copy(), act=act)
    assert len(taken) == 1
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_tiny_path_pads_with_the_pad_value():
    """ConvInteger pads with the input zero point: the appended element carries it."""
    x = np.full((1, 1, 4), 3.0, np.float32)
    w = np.ones((1, 1, 3), np.float32)
    core = conv._ConvCore("Conv", np, w, "NOTSET", [1], 1, [3], [1, 1], [1])
    y = core.run(x, w, pad_value=3.0)
    np.testing.assert_array_equal(y, np.full((1, 1, 4), 9.0, np.float32))


def test_tiny_path_keeps_nan():
    x = np.array([[[np.nan, -1.0, 1.0]]], np.float32)
    w = np.ones((1, 1, 1), np.float32)
    core = conv._ConvCore("Conv", np, w, "NOTSET", [1], 1, [1], [0, 0], [1])
    y = core.run(x, w, act=_relu)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 0 and y[0, 0, 2] == 1


@pytest.mark.parametrize("xs", [(1, 64, 2, 2), (3, 16, 3, 1)])
def test_plain_1x1_reads_the_image_as_its_columns(xs):
    """A 1x1, stride 1, unpadded, one-group conv takes the small path with no gather (the image is its
    own column matrix), on the first call and on the replay route (_tiny_fast) alike."""
    w = RNG.standard_normal((10, xs[1], 1, 1)).astype(np.float32)
    b = RNG.standard_normal(10).astype(np.float32)
    core = conv._ConvCore("Conv", np, w, "NOTSET", [1, 1], 1, [1, 1], [0, 0, 0, 0], [1, 1])
    core.packed = core.pack(w, np.float32)
    for _ in range(3):  # first call, then the replay route
        x = RNG.standard_normal(xs).astype(np.float32)
        want = np.einsum("mc,nchw->nmhw", w[:, :, 0, 0], x) + b.reshape(1, -1, 1, 1)
        got = core.run(x, w, b, act=_relu)
        np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-5, atol=1e-5)
    route = core._tiny_route.get(xs)
    assert route is not None and route[-1] is True
