"""A Loop that runs zero times and a Scan over an empty sequence (issue 16, item 7): scan outputs
shaped (0, *body output shape) with the body's dtype, unknown dims 0, an unknown rank (0,); as onnxruntime."""
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortlite

CPU = ["CPUExecutionProvider"]


def _loop(scan_decl, elem=T.FLOAT, shape_input=(2,)):
    """Loop M times: x += 1, scan out Cast(Expand(x, shp)) (shp from the outer scope)."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["x_in", "one"], ["x_out"]),
         h.make_node("Expand", ["x_out", "shp"], ["e"]), h.make_node("Cast", ["e"], ["scan"], to=elem)],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("x_in", T.FLOAT, [])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("x_out", T.FLOAT, []),
         h.make_tensor_value_info("scan", elem, scan_decl)],
        [h.make_tensor("one", T.FLOAT, [], [1.0])])
    g = h.make_graph([h.make_node("Loop", ["M", "c", "x0"], ["x", "s"], body=body)], "g",
                     [h.make_tensor_value_info("M", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
                      h.make_tensor_value_info("x0", T.FLOAT, []),
                      h.make_tensor_value_info("shp", T.INT64, list(shape_input))],
                     [h.make_tensor_value_info("x", T.FLOAT, None), h.make_tensor_value_info("s", elem, None)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def _both(data, feed):
    ours = ortlite.InferenceSession(data, providers=CPU).run(None, feed)
    ref = onnxruntime.InferenceSession(data, providers=CPU).run(None, feed)
    return ours, ref


LOOP_CASES = [([2, 3], T.FLOAT, (2,)), (None, T.INT32, (2,)), (["a", 3], T.FLOAT, (2,)),
              ([None, None], T.DOUBLE, (2,)), (None, T.FLOAT, (None,))]


@pytest.mark.parametrize("decl,elem,shape_input", LOOP_CASES)
@pytest.mark.parametrize("trip,cond", [(0, True), (5, False)])
def test_zero_trip_loop_scan_output_shape(decl, elem, shape_input, trip, cond):
    feed = {"M": np.array(trip, np.int64), "c": np.array(cond), "x0": np.array(1, np.float32),
            "shp": np.array([2, 3], np.int64)}
    ours, ref = _both(_loop(decl, elem, shape_input), feed)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert ours[1].shape[0] == 0


def test_loop_with_iterations_unchanged():
    feed = {"M": np.array(3, np.int64), "c": np.array(True), "x0": np.array(1, np.float32),
            "shp": np.array([2, 3], np.int64)}
    ours, ref = _both(_loop([2, 3]), feed)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def _scan(out_axis=0):
    """Scan over axis 0 of x [N, 3]: state += row, scan out the row doubled [3] (as [N, 3] or moved)."""
    body = h.make_graph(
        [h.make_node("Add", ["s_in", "row"], ["s_out"]), h.make_node("Add", ["row", "row"], ["y"])], "body",
        [h.make_tensor_value_info("s_in", T.FLOAT, [3]), h.make_tensor_value_info("row", T.FLOAT, [3])],
        [h.make_tensor_value_info("s_out", T.FLOAT, [3]), h.make_tensor_value_info("y", T.FLOAT, [3])])
    g = h.make_graph([h.make_node("Scan", ["s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1,
                                  scan_output_axes=[out_axis])], "g",
                     [h.make_tensor_value_info("s0", T.FLOAT, [3]), h.make_tensor_value_info("x", T.FLOAT, ["N", 3])],
                     [h.make_tensor_value_info("s", T.FLOAT, None), h.make_tensor_value_info("ys", T.FLOAT, None)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("out_axis", [0, 1, -1])
def test_scan_over_an_empty_sequence(out_axis):
    """onnxruntime 1.32 fails on a zero-length scan axis (its tensor slicer); ortlite returns the state
    unchanged and an empty scan output with the body's shape, the sequence axis where asked."""
    data = _scan(out_axis)
    sess = ortlite.InferenceSession(data, providers=CPU)
    s, ys = sess.run(None, {"s0": np.ones(3, np.float32), "x": np.zeros((0, 3), np.float32)})
    np.testing.assert_array_equal(s, np.ones(3, np.float32))
    assert ys.dtype == np.float32 and ys.shape == ((0, 3) if out_axis == 0 else (3, 0))
    feed = {"s0": np.ones(3, np.float32), "x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    ref = onnxruntime.InferenceSession(data, providers=CPU).run(None, feed)
    for a, b in zip(sess.run(None, feed), ref):
        np.testing.assert_array_equal(a, b)
