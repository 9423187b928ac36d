"""Whole models on the CUDA provider over the strict CuPy stand-in: each runs with every node it
claims on "CUDA" (kernels with xp = the strict namespace), outputs match the CPU provider's, and the
stand-in itself refuses what CuPy would refuse (so a green run here means something)."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import ortlite
from ortlite import zoo
from ortlite.registry import kernel
from cuda_provider.strict_report import zoo_models

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"

MODELS = zoo_models()


@pytest.mark.parametrize("name", list(MODELS))
def test_model_on_strict_cuda_matches_cpu(name, strict_cuda):
    m = MODELS[name]().SerializeToString()
    feeds = zoo.example_inputs(MODELS[name]())
    want = ortlite.InferenceSession(m, providers=[CPU]).run(None, feeds)
    sess = ortlite.InferenceSession(m, providers=[CUDA, CPU])
    got = sess.run(None, feeds)
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    counts = sess.get_placement().counts()
    assert counts.get(CUDA, 0) > 0, counts


def _one_node(op, domain="com.example.strict"):
    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]).SerializeToString()


@pytest.mark.parametrize("body,words", [
    (lambda xp, x: xp.asarray(np.asarray(x) + 1), "IMPLICIT_CONV"),       # numpy reads a device array
    (lambda xp, x: x + np.ones(3, np.float32), "MIX_HOST"),             # a host array in device math
    (lambda xp, x: xp.mean(x, where=x > 0) * x, "KWARG"),               # CuPy's mean has no where=
])
def test_the_stand_in_refuses_what_cupy_refuses(body, words, strict_cuda):
    op = f"StrictProbe{words.title().replace('_', '')}"
    kernel(op, since=1, domain="com.example.strict", families=("cuda",))(body)
    with pytest.raises(Exception, match=words):
        ortlite.InferenceSession(_one_node(op), providers=[CUDA]).run(None, {"x": np.ones(3, np.float32)})


@pytest.mark.parametrize("name", ["bert_tiny", "gpt2_2_layers"])
def test_shape_math_stays_on_the_host_end_to_end(name, strict_cuda):
    """Shape -> Gather -> Unsqueeze -> Slice/Range chains run on the CPU whole: no value is copied
    back from the device in the middle of a run (each such copy is a sync)."""
    m = MODELS[name]()
    sess = ortlite.InferenceSession(m.SerializeToString(), providers=[CUDA, CPU])
    back = [c for c in sess.get_placement().copies if c.src != "cpu"]
    assert not back, back
    moved = [n for n in sess.get_placement().nodes if n.provider == CPU]
    assert moved and all(n.op_type in {"Shape", "Gather", "Unsqueeze", "Concat", "Cast", "Squeeze"} for n in moved), moved
