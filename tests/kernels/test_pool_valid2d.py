"""MaxPool over windows wholly inside the image (no pads, no dilation) takes strided views
(kernels/pool._valid_max_2d); it must equal the separable path and onnxruntime, NaN included."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from onnx import helper as h

import ortlite
from ortlite.kernels import pool

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(7)


def _model(kernel, strides, ceil_mode=0):
    node = h.make_node("MaxPool", ["x"], ["y"], kernel_shape=kernel, strides=strides, ceil_mode=ceil_mode)
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("kernel, strides", [([2, 2], [2, 2]), ([3, 3], [2, 2]), ([3, 3], [1, 1]), ([1, 1], [2, 2]),
                                             ([2, 3], [1, 2]), ([1, 3], [1, 1]), ([3, 1], [3, 1]), ([5, 5], [5, 5])])
@pytest.mark.parametrize("shape", [(1, 4, 9, 10), (2, 3, 16, 16), (1, 1, 5, 5)])
def test_valid_windows_equal_separable_and_onnxruntime(kernel, strides, shape, monkeypatch):
    x = RNG.standard_normal(shape).astype(np.float32)
    x[0, 0, 1, 1] = np.nan  # NaN propagates into every window that reads it
    mb = _model(kernel, strides)
    taken = []
    orig = pool._valid_max_2d
    monkeypatch.setattr(pool, "_valid_max_2d", lambda *a: taken.append(1) or orig(*a))
    got = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert taken, "the strided-view path was not taken"
    win = pool._Window("MaxPool", "NOTSET", shape, kernel, strides, None, None, 0)
    want = pool._separable(np, x, win, np.maximum, pool._lowest(x.dtype))
    np.testing.assert_array_equal(got, want)
    ref = ort.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": np.nan_to_num(x)})[0]
    mine = ortlite.InferenceSession(mb, providers=["CPUExecutionProvider"]).run(None, {"x": np.nan_to_num(x)})[0]
    np.testing.assert_array_equal(mine, ref)


def test_padded_or_ceil_windows_keep_the_separable_path():
    for kernel, strides, ceil in (([3, 3], [2, 2], 1),):
        win = pool._Window("MaxPool", "NOTSET", (1, 1, 8, 8), kernel, strides, None, None, ceil)
        assert not win.valid2d
    win = pool._Window("MaxPool", "NOTSET", (1, 1, 8, 8), [3, 3], [1, 1], None, [1, 1, 1, 1], 0)
    assert not win.valid2d
