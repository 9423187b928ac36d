"""Negative dims (Paddle2ONNX's ``dim_value: -1``) are dynamic, as onnxruntime reads them (issue 11, item 3)."""
import numpy as np
import onnx
import onnxruntime
import pytest
from helpers import make_model
from onnx import TensorProto, helper, numpy_helper

import ortlite as ort
from ortlite.cli import main

FLOAT = TensorProto.FLOAT


def paddle_style():
    """x [-1, 3, -1, -1] -> Conv (stride 2) -> Relu -> Reshape [0, 8, -1] -> ReduceMean -> Gemm -> y [-1, -1],
    with -1 dims in value_info too, as Paddle2ONNX writes them."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("W", rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
        ("B", rng.standard_normal(8).astype(np.float32)),
        ("shape", np.array([0, 8, -1], np.int64)),
        ("axes", np.array([2], np.int64)),
        ("G", rng.standard_normal((8, 5)).astype(np.float32)),
    )]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["f"], name="reshape"),
        helper.make_node("ReduceMean", ["f", "axes"], ["m"], name="mean", keepdims=0),
        helper.make_node("Gemm", ["m", "G"], ["y"], name="gemm"),
    ]
    m = make_model(nodes, [helper.make_tensor_value_info("x", FLOAT, [-1, 3, -1, -1])],
                   [helper.make_tensor_value_info("y", FLOAT, [-1, -1])], inits, opset=18)
    m.graph.value_info.append(helper.make_tensor_value_info("c", FLOAT, [-1, 8, -1, -1]))
    return m


def ort_session(m):
    return onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_negative_dims_take_any_size_and_match_onnxruntime():
    m = paddle_style()
    before = m.SerializeToString()
    sess, ref = ort.InferenceSession(before), ort_session(m)
    assert m.SerializeToString() == before  # the caller's model keeps its -1 dims
    for shape in [(1, 3, 8, 8), (2, 3, 5, 7), (3, 3, 16, 9)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        got, = sess.run(None, {"x": x})
        want, = ref.run(None, {"x": x})
        assert got.shape == want.shape == (shape[0], 5)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # NodeArgs as onnxruntime reports them: None for -1 (and for dims inference made up)
    assert [a.shape for a in sess.get_inputs()] == [a.shape for a in ref.get_inputs()] == [[None, 3, None, None]]
    assert [a.shape for a in sess.get_outputs()] == [a.shape for a in ref.get_outputs()]
    # shape inference computed nothing from the -1s (a stride-2 Conv of -1 gave a fixed 0 before)
    for name in ("c", "r", "f", "m", "y"):
        dims = sess._graph.value_info[name].shape or []
        assert not any(isinstance(d, int) and d <= 0 for d in dims), (name, dims)
    # the fixed dim is still checked
    with pytest.raises(ort.InvalidArgument, match=r"index: 1 Got: 4 Expected: 3 \(expected shape \[\?, 3, \?, \?\]"):
        sess.run(None, {"x": np.ones((1, 4, 8, 8), np.float32)})


@pytest.mark.parametrize("inp, out", [([0, -1], [0, -1]), (["n", -1], [-1, None]), ([-2, 4], None)])
def test_nodearg_shapes_match_onnxruntime(inp, out):
    """0 is a real 0-sized dim; any negative value is unknown; declared names stay."""
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", FLOAT, inp)],
                   [helper.make_tensor_value_info("y", FLOAT, out)])
    sess, ref = ort.InferenceSession(m.SerializeToString()), ort_session(m)
    for f in ("get_inputs", "get_outputs"):
        assert [a.shape for a in getattr(sess, f)()] == [a.shape for a in getattr(ref, f)()]


def test_negative_dims_in_a_subgraph():
    """An If branch whose output is declared [-1, -1]."""
    def branch(op):
        return helper.make_graph([helper.make_node(op, ["x"], ["o"])], op,
                                 [], [helper.make_tensor_value_info("o", FLOAT, [-1, -1])])
    m = make_model([helper.make_node("If", ["cond"], ["y"], then_branch=branch("Relu"), else_branch=branch("Neg"))],
                   [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                    helper.make_tensor_value_info("x", FLOAT, [-1, -1])],
                   [helper.make_tensor_value_info("y", FLOAT, None)])
    x = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    sess = ort.InferenceSession(m.SerializeToString())
    for c in (True, False):
        np.testing.assert_array_equal(sess.run(None, {"cond": np.array(c), "x": x})[0],
                                      ort_session(m).run(None, {"cond": np.array(c), "x": x})[0])


def test_cli_run_bench_and_compare_on_negative_dims(tmp_path, capsys):
    path = str(tmp_path / "paddle.onnx")
    onnx.save(paddle_style(), path)
    assert main(["run", path]) == 0
    out = capsys.readouterr().out.splitlines()
    # an image-like input ([?, 3, ?, ?] float): batch 1, 224 x 224
    assert out[0] == "inputs (defaults chosen for symbolic dims; --shape to override): x [1, 3, 224, 224] float32"
    assert "output y: tensor(float) [1, 5]" in out[-1]
    assert main(["run", path, "--shape", "x:2x3x32x48"]) == 0
    out = capsys.readouterr().out
    assert "defaults chosen" not in out and "input  x: tensor(float) [2, 3, 32, 48]" in out
    assert main(["bench", path, "--no-onnxruntime", "--iterations", "2", "--warmup", "0", "--batch", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("x [2, 3, 224, 224] float32") and "inputs: x [2, 3, 224, 224] float32; batch 2" in out
    assert main(["compare", path, "--providers", "cpu", "--onnxruntime", "--shape", "x:1x3x16x16"]) == 0
    # a size the model fixes is refused, naming the dim
    assert main(["run", path, "--shape", "x:1x4x8x8"]) == 2
    assert "input 'x': dimension 1 is fixed at 3 by the model [?, 3, ?, ?], 4 was given" in capsys.readouterr().err
