"""kernels/cuda_fused.CudnnConv: a configuration cuDNN fails on falls back alone (not every
convolution of the process), and handles are per device and thread - with a fake cudnn module."""
import sys
import types

import numpy as np
import pytest

from cuda_provider.strict_backend import FAKE_CUPY, SArr
from ortlite.kernels import cuda_fused


@pytest.fixture
def fake_cudnn(monkeypatch):
    calls = {"graphs": [], "handles": 0}

    class Graph:
        def __init__(self, **kw):
            calls["graphs"].append(kw)

        def tensor(self, name, dim, stride, data_type):
            if dim[1] == 3 and name == "X":  # cuDNN "fails" on 3 input channels
                raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")
            raise NotImplementedError("stop after the first tensor: the fallback path is what is tested")

    def create_handle():
        calls["handles"] += 1
        return object()

    mod = types.SimpleNamespace(create_handle=create_handle, set_stream=lambda **kw: None, pygraph=Graph,
                                data_type=types.SimpleNamespace(HALF=1, FLOAT=2))
    monkeypatch.setitem(sys.modules, "cudnn", mod)
    monkeypatch.setitem(cuda_fused.CudnnConv._state, "failed", None)
    monkeypatch.setattr(cuda_fused.CudnnConv, "_handles", __import__("threading").local())
    return calls


def _conv(conv, c):
    x = SArr(np.ones((1, c, 8, 8), np.float32))
    w = SArr(np.ones((4, c, 3, 3), np.float32))
    return conv.run(FAKE_CUPY, x, w, None, [1, 1], [1, 1], [1, 1], [1, 1], 1)


def test_a_failing_configuration_falls_back_alone(fake_cudnn, caplog):
    conv = cuda_fused.CudnnConv("HEURISTIC")
    assert _conv(conv, 3) is None  # cuDNN refused this one: the caller runs im2col + cuBLAS
    assert "this configuration uses im2col" in caplog.text
    tried = len(fake_cudnn["graphs"])
    assert _conv(conv, 3) is None and len(fake_cudnn["graphs"]) == tried  # not retried
    assert _conv(conv, 5) is None and len(fake_cudnn["graphs"]) == tried + 1  # another one still tries cuDNN
    assert cuda_fused.CudnnConv._state["failed"] is None
    assert fake_cudnn["handles"] == 1  # one handle for this thread and device
