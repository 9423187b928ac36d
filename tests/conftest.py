import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(__file__))

from helpers import make_model  # noqa: E402


@pytest.fixture
def mlp_model():
    """y = relu(x @ W + b), x: [batch, 4] float; the batch dimension is symbolic."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
        helper.make_node("Relu", ["hb"], ["y"], name="relu"),
    ]
    m = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [onnx.numpy_helper.from_array(W, "W"), onnx.numpy_helper.from_array(b, "b")],
    )
    m.producer_name = "ortlite-tests"
    return m, (W, b)


@pytest.fixture(params=["compiled", "numpy"])
def jit_path(request, monkeypatch):
    """Run a test on the compiled loops (kernels._jit, numba; skipped without them) and on the numpy
    paths (numba marked unavailable, as ORTLITE_JIT=0 does); the value names the path."""
    from ortlite.kernels import _jit

    if request.param == "compiled":
        if not _jit.available():
            pytest.skip(f"compiled kernels unavailable: {_jit.unavailable_reason()}")
    else:
        monkeypatch.setitem(_jit._state, "numba", None)
    return request.param
