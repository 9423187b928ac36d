"""The onnx package's light CNN models reproduce their shipped expected outputs.

The light models carry their weights as ConstantOfShape nodes and ship one
expected output computed from the input ``arange(n) / n``, as onnx's own
backend runner feeds them.
"""
import glob
import os

import numpy as np
import onnx
import pytest

import ortlite as ort

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = sorted(glob.glob(os.path.join(LIGHT, "light_*.onnx")))


def _feeds(model):
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for x in model.graph.input:
        if x.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds[x.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


def test_light_models_are_shipped():
    assert len(MODELS) >= 9, f"expected the onnx package's light models under {LIGHT}"


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(p)[6:-5] for p in MODELS])
def test_light_model(path):
    model = onnx.load(path)
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(path[:-5] + "_output_0.pb"))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, _feeds(model))
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
