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


def _syncs(strict):
    return [k for k in strict.EVENTS if k[0] == "SYNC" and not k[2].startswith("(")]


def test_no_per_run_sync_in_embeddings_rotary_and_dynamic_quantize(strict_cuda):
    """EmbedLayerNormalization / RotaryEmbedding check their indices without reading them back
    (out-of-range rows become NaN on a device; the CPU raises), DynamicQuantizeLinear picks its
    all-zero scale on the device."""
    F, I = TensorProto.FLOAT, TensorProto.INT32
    rng = np.random.default_rng(0)
    ids = np.array([[1, 2, 3], [4, 9, 0]], np.int32)  # 9: outside the 8-row vocabulary
    inits = [helper.make_tensor(n, F, s, rng.standard_normal(s).ravel().tolist())
             for n, s in (("w", [8, 4]), ("p", [6, 4]), ("g", [4]), ("b", [4]))]
    node = helper.make_node("EmbedLayerNormalization", ["ids", "", "w", "p", "", "g", "b"], ["y", ""],
                            domain="com.microsoft")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", I, [2, 3])],
                          [helper.make_tensor_value_info("y", F, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    y = ortlite.InferenceSession(m.SerializeToString(), providers=[CUDA, CPU]).run(None, {"ids": ids})[0]
    assert np.isnan(y[1, 1]).all() and np.isfinite(np.delete(y.reshape(6, 4), 4, axis=0)).all()
    with pytest.raises(Exception, match="input_ids out of range"):
        ortlite.InferenceSession(m.SerializeToString(), providers=[CPU]).run(None, {"ids": ids})
    rot = helper.make_graph([helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain="com.microsoft")],
                            "r", [helper.make_tensor_value_info("x", F, [1, 2, 8]),
                                  helper.make_tensor_value_info("pos", TensorProto.INT64, [1, 2])],
                            [helper.make_tensor_value_info("y", F, None)],
                            [helper.make_tensor(n, F, [4, 2], rng.standard_normal(8).tolist()) for n in ("cos", "sin")])
    rm = helper.make_model(rot, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    y = ortlite.InferenceSession(rm.SerializeToString(), providers=[CUDA, CPU]).run(
        None, {"x": np.ones((1, 2, 8), np.float32), "pos": np.array([[1, 7]], np.int64)})[0]
    assert np.isfinite(y[0, 0]).all() and np.isnan(y[0, 1]).all()  # position 7 is past the 4-row caches
    dq = helper.make_graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])], "d",
                           [helper.make_tensor_value_info("x", F, [4])],
                           [helper.make_tensor_value_info(n, t, None) for n, t in
                            (("q", TensorProto.UINT8), ("s", F), ("z", TensorProto.UINT8))])
    sess = ortlite.InferenceSession(helper.make_model(dq, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                    providers=[CUDA, CPU])
    q, s, z = sess.run(None, {"x": np.zeros(4, np.float32)})
    assert q.tolist() == [0, 0, 0, 0] and float(s) == 1.0 and int(z) == 0
    assert not _syncs(strict_cuda), _syncs(strict_cuda)


@pytest.mark.parametrize("score_threshold", [None, 0.3])
def test_nms_on_the_device_reads_back_per_class_not_per_box(score_threshold, strict_cuda):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 50, (2, 300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(2, 15, (2, 300, 2)).astype(np.float32)], axis=-1)
    scores = rng.random((2, 3, 300)).astype(np.float32)
    scores[0, 0, :10] = 0.5  # ties keep the lower box index first
    ins = ["b", "s", "m", "iou"] + (["st"] if score_threshold is not None else [])
    inits = [helper.make_tensor("m", TensorProto.INT64, [1], [40]), helper.make_tensor("iou", TensorProto.FLOAT, [1], [0.4])]
    if score_threshold is not None:
        inits.append(helper.make_tensor("st", TensorProto.FLOAT, [1], [score_threshold]))
    g = helper.make_graph([helper.make_node("NonMaxSuppression", ins, ["y"])], "n",
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 300, 4]),
                           helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 3, 300])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    want = ortlite.InferenceSession(m, providers=[CPU]).run(None, {"b": boxes, "s": scores})[0]
    sess = ortlite.InferenceSession(m, providers=[CUDA, CPU])
    strict_cuda.reset()
    got = sess.run(None, {"b": boxes, "s": scores})[0]
    assert len(want) > 100
    np.testing.assert_array_equal(got, want)
    reads = sum(n for k, n in strict_cuda.EVENTS.items() if k[0] == "SYNC" and k[2] == "NonMaxSuppression")
    assert reads <= 3 * 2 * 3, reads  # order, mask and the suppression matrix per batch and class
