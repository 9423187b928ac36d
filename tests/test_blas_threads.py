"""intra_op_num_threads sets the BLAS thread count for the run only (the libraries' own calls), on the
checked-feeds fast path and the general one, and puts back what it found."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_counts():
    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


@pytest.mark.parametrize("threads", [1, 3])
def test_run_uses_and_restores_intra_op_threads(threads):
    w = numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ortlite.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ortlite.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    limiter = sess._thread_limiter
    assert limiter is not None
    seen = []
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = _blas_counts()
        for _ in range(3):  # first run: checked path; later runs: the fast path
            with limiter():
                seen.append(_blas_counts())
            out = sess.run(None, {"x": np.ones((2, 8), np.float32)})[0]
            assert _blas_counts() == before
    assert all(s == {threads} for s in seen)
    np.testing.assert_array_equal(out, np.ones((2, 8), np.float32))
