"""TensorrtExecutionProvider with the real TensorRT on a real GPU (marker ``cuda``; ci/gpu_check.sh runs
it). Skipped, with the reason, where TensorRT or a CUDA device is missing."""
import warnings

import numpy as np
import pytest

import ortlite
from ortlite import zoo

pytestmark = pytest.mark.cuda

TRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"


@pytest.fixture
def real_trt():
    import sys

    mod = sys.modules.get("tensorrt")
    if mod is not None and getattr(mod, "__ortlite_stand_in__", False):
        pytest.skip("the tensorrt module is the tests' stand-in")
    from ortlite.providers import _availability_cache, availability

    _availability_cache.pop(TRT, None)
    ok, why = availability(TRT)
    if not ok:
        pytest.skip(f"TensorrtExecutionProvider unavailable: {why}")


@pytest.mark.parametrize("build", [lambda: zoo.demo(batch=2), lambda: zoo.bert_tiny(batch=2, seq=16)],
                         ids=["cnn", "bert_tiny"])
def test_whole_model_on_tensorrt(real_trt, build, tmp_path):
    model = build()
    feeds = zoo.example_inputs(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess = ortlite.InferenceSession(model.SerializeToString(), providers=[
            (TRT, {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(tmp_path)}), CPU])
    got = sess.run(None, feeds)
    want = ortlite.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-3)
    assert sess.engine_builds, sess.get_placement().summary()
    again = ortlite.InferenceSession(model.SerializeToString(), providers=[
        (TRT, {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(tmp_path)}), CPU])
    assert all(b.cache == "hit" for b in again.engine_builds if b.cache != "off")


def test_fp16_engine(real_trt):
    model = zoo.demo(batch=1)
    feeds = zoo.example_inputs(model)
    sess = ortlite.InferenceSession(model.SerializeToString(), providers=[(TRT, {"trt_fp16_enable": "1"}), CPU])
    got = sess.run(None, feeds)[0]
    want = ortlite.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=3e-2, atol=3e-2)
