"""Profiling: onnxruntime's Chrome-trace JSON, per-node events that account for the run."""
import json
import os

import numpy as np

import ortlite as ort
from ortlite import zoo
from ortlite.profiling import summarize

# These tests are about the API and the CPU provider: OpenVINO, when installed, would come first by default.
CPU_ONLY = ["CPUExecutionProvider"]


def test_profile_of_a_bert_model(tmp_path):
    model = zoo.bert_base(layers=2, hidden=128, heads=4, seq=64, vocab=500)
    feeds = zoo.example_inputs(model)
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "bert")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=CPU_ONLY)
    plain = ort.InferenceSession(model.SerializeToString(), providers=CPU_ONLY)
    for _ in range(3):
        out = sess.run(None, feeds)
    for a, b in zip(out, plain.run(None, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    name = sess.end_profiling()
    assert name.startswith(str(tmp_path / "bert")) and name.endswith(".json") and os.path.exists(name)
    with open(name) as f:
        events = json.load(f)  # valid JSON: a list of complete events
    assert all(e["ph"] == "X" and {"name", "ts", "dur", "pid", "tid", "cat"} <= set(e) for e in events)
    runs = [e for e in events if e["cat"] == "Session" and e["name"] == "model_run"]
    nodes = [e for e in events if e["cat"] == "Node"]
    assert len(runs) == 3
    assert any(e["name"] == "session_initialization" for e in events)
    assert len(nodes) == 3 * len(sess._plan.steps)
    ev = nodes[0]
    assert ev["name"].endswith("_kernel_time") and ev["args"]["provider"] == "CPUExecutionProvider"
    assert ev["args"]["op_name"] and isinstance(ev["args"]["input_type_shape"], list)
    # per-node events add up to the run time (within 10%) for each run
    for run in runs:
        inside = [e for e in nodes if run["ts"] <= e["ts"] and e["ts"] + e["dur"] <= run["ts"] + run["dur"] + 1]
        total = sum(e["dur"] for e in inside)
        assert 0.9 * run["dur"] <= total <= 1.1 * run["dur"] + 5, (total, run["dur"])
    text = summarize(name)
    assert "MatMul" in text and "run(s)" in text
    assert sess.end_profiling() is None  # profiling ended


def test_no_profile_unless_enabled():
    m = zoo.demo()
    assert ort.InferenceSession(m.SerializeToString(), providers=CPU_ONLY).end_profiling() is None
