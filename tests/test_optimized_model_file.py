"""SessionOptions.optimized_model_filepath writes a valid ONNX file that onnxruntime runs."""
import numpy as np
import onnx
import onnxruntime
import pytest

import ortlite as ort
from ortlite import zoo

# These tests are about the API and the CPU provider: OpenVINO, when installed, would come first by default.
CPU_ONLY = ["CPUExecutionProvider"]


@pytest.mark.parametrize("level", [ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL])
def test_saved_model_runs_on_onnxruntime(tmp_path, level):
    model = zoo.bert_base(layers=2, hidden=64, heads=4, seq=16, vocab=100)
    feeds = zoo.example_inputs(model)
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    path = tmp_path / "opt.onnx"
    so.optimized_model_filepath = str(path)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=CPU_ONLY)
    ours = sess.run(None, feeds)
    saved = onnx.load(path)
    onnx.checker.check_model(saved)
    # a ShapeChain (ortlite's own op) is saved as the nodes it holds
    expected = sum(len(n.attrs["program"].nodes) if (n.domain, n.op_type) == ("ortlite", "ShapeChain") else 1
                   for n in sess._graph.nodes)
    assert len(saved.graph.node) == expected
    theirs = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # and ortlite reads its own output back
    again = ort.InferenceSession(str(path), providers=CPU_ONLY).run(None, feeds)
    for a, b in zip(ours, again):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_large_weights_go_to_external_data(tmp_path, monkeypatch):
    from ortlite.optimizer import export

    monkeypatch.setattr(export, "_EXTERNAL_TOTAL", 1 << 10)
    monkeypatch.setattr(export, "_EXTERNAL_MIN", 1 << 10)
    model = zoo.demo()
    so = ort.SessionOptions()
    path = tmp_path / "demo_opt.onnx"
    so.optimized_model_filepath = str(path)
    ort.InferenceSession(model.SerializeToString(), so, providers=CPU_ONLY)
    assert (tmp_path / "demo_opt.onnx.data").exists()
    feeds = zoo.example_inputs(model)
    a = ort.InferenceSession(model.SerializeToString(), providers=CPU_ONLY).run(None, feeds)[0]
    b = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
