"""Bad attributes and shapes of the shape / indexing / resize ops (issue 16, items 8 and 9), side by side
with onnxruntime.

Each case is one node built with onnx.helper. Where onnxruntime refuses the model or the run, ortlite must
refuse it with an ortlite error whose message names the node and the attribute or input at fault, and no
raw Python / numpy exception (IndexError, ValueError that is not an ortlite error, ...) may sit in the
cause chain; where onnxruntime runs it, ortlite must run it and agree. ``ALLOC`` holds output sizes that
come from an input's values and exceed the documented bound (``kernels/_common.py: MAX_OUTPUT_ELEMENTS``):
they are refused quickly, before allocating (onnxruntime is not run on those: it may try to allocate).

``python tests/reliability/test_attr_validation.py`` prints each case's outcome on both runtimes.
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper as h
from onnx import numpy_helper

import ortlite
from ortlite.errors import OrtliteError

NODE = "the_node"
_RAW = (IndexError, AttributeError, KeyError, TypeError, ZeroDivisionError, MemoryError, UnboundLocalError,
        ValueError, RuntimeError, OverflowError, NotImplementedError, AssertionError)


def _x(*shape, dtype=np.float32):
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float64).reshape(shape) * 0.5 - 1).astype(dtype)


def _i(*values):
    return np.array(values, dtype=np.int64)


def _f(*values):
    return np.array(values, dtype=np.float32)


class C:
    """One case: ``op`` with ``inputs`` (name -> array, '' for an absent optional input; names in
    ``feeds`` are graph inputs, the others initializers), ``attrs``, at ``opset``; ``word`` must appear in
    ortlite's message when it refuses (the attribute or input at fault)."""

    def __init__(self, op, inputs, attrs=None, *, word, opset=18, feeds=("x",), outputs=1, domain=""):
        self.op, self.inputs, self.attrs, self.word = op, inputs, dict(attrs or {}), word
        self.opset, self.feeds, self.outputs, self.domain = opset, feeds, outputs, domain

    def model(self) -> bytes:
        names = list(self.inputs)
        node = h.make_node(self.op, [n if self.inputs[n] is not None else "" for n in names],
                           [f"y{k}" for k in range(self.outputs)], name=NODE, domain=self.domain, **self.attrs)
        ins, inits = [], []
        for n, v in self.inputs.items():
            if v is None:
                continue
            if n in self.feeds:
                ins.append(h.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape))
            else:
                inits.append(numpy_helper.from_array(v, n))
        outs = [onnx.ValueInfoProto(name=f"y{k}") for k in range(self.outputs)]
        g = h.make_graph([node], "g", ins, outs, inits)
        return h.make_model(g, opset_imports=[h.make_opsetid("", self.opset)], ir_version=8).SerializeToString()

    def feed_values(self):
        return {n: v for n, v in self.inputs.items() if n in self.feeds and v is not None}


def _rs(opset=18, **kw):
    """Resize inputs: X (1, 1, 2, 3) fed, roi / scales / sizes initializers."""
    d = {"x": _x(1, 1, 2, 3), "roi": kw.pop("roi", None), "scales": kw.pop("scales", None), "sizes": kw.pop("sizes", None)}
    while list(d.values())[-1] is None:
        d.popitem()
    return d


S2 = _f(1, 1, 2, 2)
X23 = _x(2, 3)
X34 = _x(3, 4)

CASES = {
    # Resize (opset 18/19: axes, antialias, keep_aspect_ratio_policy)
    "resize_mode": C("Resize", _rs(scales=S2), {"mode": "bogus"}, word="mode"),
    "resize_ctm": C("Resize", _rs(scales=S2), {"coordinate_transformation_mode": "bogus"},
                    word="coordinate_transformation_mode"),
    "resize_nearest_mode": C("Resize", _rs(scales=S2), {"nearest_mode": "bogus"}, word="nearest_mode"),
    "resize_policy": C("Resize", _rs(sizes=_i(1, 1, 4, 4)), {"keep_aspect_ratio_policy": "bogus"},
                       word="keep_aspect_ratio_policy"),
    "resize_scales_len": C("Resize", _rs(scales=_f(1, 2, 2)), word="scales"),
    "resize_scales_zero": C("Resize", _rs(scales=_f(1, 1, 0, 2)), word="scales"),
    "resize_scales_negative": C("Resize", _rs(scales=_f(1, 1, -2, 2)), word="scales"),
    "resize_sizes_len": C("Resize", _rs(sizes=_i(1, 4, 4)), word="sizes"),
    "resize_sizes_negative": C("Resize", _rs(sizes=_i(1, 1, -4, 4)), word="sizes"),
    "resize_both": C("Resize", _rs(scales=S2, sizes=_i(1, 1, 4, 4)), word="sizes"),
    "resize_neither": C("Resize", {"x": _x(1, 1, 2, 3)}, word="scales"),
    "resize_axes_range": C("Resize", _rs(scales=_f(2, 2)), {"axes": [2, 4]}, word="axes"),
    "resize_axes_dup": C("Resize", _rs(scales=_f(2, 2)), {"axes": [2, 2]}, word="axes"),
    "resize_axes_ok": C("Resize", _rs(scales=_f(2, 2)), {"axes": [2, -1]}, word="axes"),
    "resize_antialias_nearest": C("Resize", _rs(scales=_f(1, 1, 0.5, 0.5)), {"antialias": 1}, word="antialias"),
    "resize_antialias_linear": C("Resize", _rs(scales=_f(1, 1, 0.5, 0.7)), {"antialias": 1, "mode": "linear"},
                                 word="antialias"),
    "resize_cubic_a": C("Resize", _rs(scales=S2), {"mode": "cubic", "cubic_coeff_a": -0.5}, word="cubic_coeff_a"),
    "resize_exclude_outside": C("Resize", _rs(scales=S2), {"mode": "cubic", "exclude_outside": 1}, word="exclude"),
    "resize_crop_no_roi": C("Resize", _rs(scales=S2), {"coordinate_transformation_mode": "tf_crop_and_resize"},
                            word="roi"),
    "resize_roi_len": C("Resize", _rs(roi=_f(0, 0, 1), scales=S2),
                        {"coordinate_transformation_mode": "tf_crop_and_resize"}, word="roi"),
    "resize11_mode": C("Resize", _rs(roi=_f(), scales=S2), {"mode": "bogus"}, word="mode", opset=11),
    "resize10_scales_len": C("Resize", {"x": _x(1, 1, 2, 3), "scales": _f(2, 2)}, word="scales", opset=10),
    "upsample_mode": C("Upsample", {"x": _x(1, 1, 2, 3), "scales": S2}, {"mode": "bogus"}, word="mode", opset=9),
    # Pad (opset 18: axes)
    "pad_mode": C("Pad", {"x": X23, "pads": _i(1, 1, 1, 1)}, {"mode": "bogus"}, word="mode"),
    "pad_len": C("Pad", {"x": X23, "pads": _i(1, 1, 1)}, word="pads"),
    "pad_axes_range": C("Pad", {"x": X23, "pads": _i(1, 1), "value": None, "axes": _i(2)}, word="axes"),
    "pad_axes_dup": C("Pad", {"x": X23, "pads": _i(1, 1, 1, 1), "value": None, "axes": _i(0, 0)}, word="axes"),
    "pad_axes_len": C("Pad", {"x": X23, "pads": _i(1, 1, 1, 1), "value": None, "axes": _i(0)}, word="pads"),
    "pad_crop_below_zero": C("Pad", {"x": X23, "pads": _i(-3, 0, 0, 0)}, word="pads"),
    "pad_crop_to_zero": C("Pad", {"x": X23, "pads": _i(-1, 0, -1, 0)}, word="pads"),
    "pad_reflect_too_wide": C("Pad", {"x": X23, "pads": _i(0, 3, 0, 3)}, {"mode": "reflect"}, word="pads"),
    "pad_value_len": C("Pad", {"x": X23, "pads": _i(1, 1, 1, 1), "value": _f(1, 2)}, word="constant_value"),
    "pad_feed_len": C("Pad", {"x": X23, "pads": _i(1, 1, 1)}, feeds=("x", "pads"), word="pads"),
    "pad2_attr_len": C("Pad", {"x": X23}, {"pads": [1, 1, 1]}, word="pads", opset=10),
    # Reshape
    "reshape_two_minus1": C("Reshape", {"x": X23, "shape": _i(-1, -1)}, word="shape"),
    "reshape_minus2": C("Reshape", {"x": X23, "shape": _i(-2, 3)}, word="shape"),
    "reshape_count": C("Reshape", {"x": X23, "shape": _i(4, 5)}, word="shape"),
    "reshape_count_feed": C("Reshape", {"x": X23, "shape": _i(4, 5)}, feeds=("x", "shape"), word="shape"),
    "reshape_allowzero_minus1": C("Reshape", {"x": X23, "shape": _i(0, -1)}, {"allowzero": 1}, word="shape"),
    "reshape_allowzero_zero": C("Reshape", {"x": X23, "shape": _i(0, 6)}, {"allowzero": 1}, word="shape"),
    "reshape_copy_past_rank": C("Reshape", {"x": X23, "shape": _i(0, 0, 0)}, word="shape"),
    "reshape_infer_from_zero": C("Reshape", {"x": X23, "shape": _i(0, -1)}, word="shape"),
    # Tile / Expand
    "tile_len": C("Tile", {"x": X23, "repeats": _i(2)}, word="repeats"),
    "tile_negative": C("Tile", {"x": X23, "repeats": _i(-1, 2)}, word="repeats"),
    "tile_zero": C("Tile", {"x": X23, "repeats": _i(0, 2)}, word="repeats"),
    "tile_feed_negative": C("Tile", {"x": X23, "repeats": _i(2, -1)}, feeds=("x", "repeats"), word="repeats"),
    "expand_incompatible": C("Expand", {"x": X23, "shape": _i(4, 3)}, word="shape"),
    "expand_incompatible_rank1": C("Expand", {"x": X23, "shape": _i(4)}, word="shape"),
    "expand_negative": C("Expand", {"x": X23, "shape": _i(-1, 3)}, word="shape"),
    "expand_feed": C("Expand", {"x": X23, "shape": _i(5, 3)}, feeds=("x", "shape"), word="shape"),
    "expand_ok": C("Expand", {"x": X23, "shape": _i(2, 1, 1)}, word="shape"),
    # Gather family
    "gather_axis": C("Gather", {"x": X34, "indices": _i(0)}, {"axis": 2}, word="axis"),
    "gather_axis_neg": C("Gather", {"x": X34, "indices": _i(0)}, {"axis": -3}, word="axis"),
    "gather_index": C("Gather", {"x": X34, "indices": _i(0, 3)}, word="indices"),
    "gather_index_neg": C("Gather", {"x": X34, "indices": _i(-4)}, word="indices"),
    "gather_index_feed": C("Gather", {"x": X34, "indices": _i(1, 7)}, {"axis": 1}, feeds=("x", "indices"),
                           word="indices"),
    "gather_scalar_data": C("Gather", {"x": np.float32(1.0).reshape(()), "indices": _i(0)}, word="axis"),
    "gather_elements_axis": C("GatherElements", {"x": X34, "indices": _i(0, 1).reshape(1, 2)}, {"axis": 2},
                              word="axis"),
    "gather_elements_index": C("GatherElements", {"x": X34, "indices": _i(0, 5).reshape(1, 2)}, {"axis": 1},
                               word="indices"),
    "gather_elements_rank": C("GatherElements", {"x": X34, "indices": _i(0, 1)}, word="indices"),
    "gather_elements_dim": C("GatherElements", {"x": X34, "indices": np.zeros((4, 2), np.int64)}, {"axis": 1},
                             word="indices"),
    "gather_nd_last_dim": C("GatherND", {"x": X34, "indices": _i(0, 1, 2).reshape(1, 3)}, word="indices"),
    "gather_nd_index": C("GatherND", {"x": X34, "indices": _i(3, 0).reshape(1, 2)}, word="indices"),
    "gather_nd_batch_dims": C("GatherND", {"x": X34, "indices": _i(0, 1).reshape(1, 2)}, {"batch_dims": 2},
                              word="batch_dims"),
    "gather_nd_batch_mismatch": C("GatherND", {"x": X34, "indices": np.zeros((2, 1), np.int64)},
                                  {"batch_dims": 1}, word="indices"),
    # Slice
    "slice_len": C("Slice", {"x": X34, "starts": _i(0, 0), "ends": _i(2)}, word="ends"),
    "slice_axes_len": C("Slice", {"x": X34, "starts": _i(0), "ends": _i(2), "axes": _i(0, 1)}, word="axes"),
    "slice_steps_len": C("Slice", {"x": X34, "starts": _i(0), "ends": _i(2), "axes": _i(0), "steps": _i(1, 1)},
                         word="steps"),
    "slice_step_zero": C("Slice", {"x": X34, "starts": _i(0), "ends": _i(2), "axes": _i(0), "steps": _i(0)},
                         word="steps"),
    "slice_axes_dup": C("Slice", {"x": X34, "starts": _i(0, 0), "ends": _i(2, 2), "axes": _i(1, 1)}, word="axes"),
    "slice_axes_range": C("Slice", {"x": X34, "starts": _i(0), "ends": _i(2), "axes": _i(2)}, word="axes"),
    "slice_feed_step_zero": C("Slice", {"x": X34, "starts": _i(0), "ends": _i(2), "axes": _i(0), "steps": _i(0)},
                              feeds=("x", "steps"), word="steps"),
    "slice1_len": C("Slice", {"x": X34}, {"starts": [0, 0], "ends": [2]}, word="ends", opset=9),
    # Concat
    "concat_axis": C("Concat", {"x": X23, "b": _x(2, 4)}, {"axis": 2}, word="axis"),
    "concat_axis_neg": C("Concat", {"x": X23, "b": _x(2, 4)}, {"axis": -3}, word="axis"),
    "concat_dims": C("Concat", {"x": X23, "b": _x(2, 4)}, {"axis": 0}, word="axis"),
    "concat_rank": C("Concat", {"x": X23, "b": _x(2, 3, 1)}, {"axis": 1}, word="rank"),
    "concat_dims_feed": C("Concat", {"x": X23, "b": _x(3, 4)}, {"axis": 1}, feeds=("x", "b"), word="axis"),
    # TopK
    "topk_negative": C("TopK", {"x": X34, "k": _i(-1)}, word="k", outputs=2),
    "topk_too_big": C("TopK", {"x": X34, "k": _i(5)}, word="k", outputs=2),
    "topk_axis": C("TopK", {"x": X34, "k": _i(1)}, {"axis": 2}, word="axis", outputs=2),
    "topk_k_shape": C("TopK", {"x": X34, "k": _i(1, 2)}, word="k", outputs=2),
    "topk_feed_too_big": C("TopK", {"x": X34, "k": _i(9)}, feeds=("x", "k"), word="k", outputs=2),
    "topk1_attr": C("TopK", {"x": X34}, {"k": 7}, word="k", outputs=2, opset=9),
    # others the swapped-op and fuzz runs reach
    "flatten_axis": C("Flatten", {"x": X23}, {"axis": 3}, word="axis"),
    "transpose_perm_dup": C("Transpose", {"x": X23}, {"perm": [0, 0]}, word="perm"),
    "transpose_perm_len": C("Transpose", {"x": X23}, {"perm": [1, 0, 2]}, word="perm"),
    "transpose_perm_range": C("Transpose", {"x": X23}, {"perm": [0, 2]}, word="perm"),
    "onehot_depth": C("OneHot", {"x": _i(0, 1), "depth": _i(-3), "values": _f(0, 1)}, word="depth"),
    "onehot_axis": C("OneHot", {"x": _i(0, 1), "depth": _i(3), "values": _f(0, 1)}, {"axis": 3}, word="axis"),
    "onehot_values_len": C("OneHot", {"x": _i(0, 1), "depth": _i(3), "values": _f(0, 1, 2)}, word="values"),
    "constant_of_shape_negative": C("ConstantOfShape", {"x": _i(2, -1)}, word="shape", feeds=()),
    "range_delta_zero": C("Range", {"x": np.array(0, np.int64), "limit": np.array(5, np.int64),
                                    "delta": np.array(0, np.int64)}, word="delta"),
    "cumsum_axis": C("CumSum", {"x": X23, "axis": np.array(2, np.int64)}, word="axis"),
    "softmax_axis": C("Softmax", {"x": X23}, {"axis": 2}, word="axis"),
    "argmax_axis": C("ArgMax", {"x": X23}, {"axis": -3}, word="axis"),
    "eyelike_rank": C("EyeLike", {"x": _x(2, 3, 4)}, word="input"),
    "trilu_rank": C("Trilu", {"x": _x(3)}, word="input"),
    "split_sizes": C("Split", {"x": X23, "split": _i(1, 1)}, {"axis": 1}, word="split", outputs=2),
    "split_axis": C("Split", {"x": X23}, {"axis": 2}, word="axis", outputs=2),
    "depth_to_space_blocksize": C("DepthToSpace", {"x": _x(1, 4, 2, 2)}, {"blocksize": 3}, word="blocksize"),
    "space_to_depth_blocksize": C("SpaceToDepth", {"x": _x(1, 1, 4, 4)}, {"blocksize": 3}, word="blocksize"),
    "compress_axis": C("Compress", {"x": X23, "condition": np.array([True, False])}, {"axis": 2}, word="axis"),
    "scatter_nd_index": C("ScatterND", {"x": X23, "indices": _i(5).reshape(1, 1), "updates": _x(1, 3)},
                          word="indices"),
    "scatter_elements_index": C("ScatterElements", {"x": X23, "indices": _i(0, 9).reshape(1, 2),
                                                    "updates": _x(1, 2)}, {"axis": 1}, word="indices"),
    "mvn_axes": C("MeanVarianceNormalization", {"x": X23}, {"axes": [0, 3]}, word="axes"),
    "mvn_default_axes_rank2": C("MeanVarianceNormalization", {"x": X23}, word="axes", opset=17),
    "mvn_no_valid_axes": C("MeanVarianceNormalization", {"x": X23}, {"axes": [4]}, word="axes"),
    "lp_pool_p0": C("LpPool", {"x": _x(1, 2, 4, 4)}, {"kernel_shape": [2, 2], "p": 0, "pads": [1, 1, 1, 1]}, word="p"),
    "lp_pool_p_negative": C("LpPool", {"x": _x(1, 2, 4, 4)}, {"kernel_shape": [3, 3], "p": -1, "pads": [1, 1, 1, 1]},
                            word="p"),
    "global_lp_pool_p0": C("GlobalLpPool", {"x": _x(1, 2, 3, 3)}, {"p": 0}, word="p"),
    "lp_norm_p": C("LpNormalization", {"x": X23}, {"p": 3}, word="p"),
    "reverse_sequence_lens": C("ReverseSequence", {"x": X23, "lens": _i(1, 5, 2)}, {"batch_axis": 1,
                                                                                   "time_axis": 0}, word="lens"),
}

# Output sizes from input values over the bound: refused quickly, before allocating.
ALLOC = {
    "expand_huge": C("Expand", {"x": X23[:1, :1], "shape": _i(2**20, 2**20)}, word="shape"),
    "tile_huge": C("Tile", {"x": X23, "repeats": _i(2**40, 1)}, word="repeats"),
    "constant_of_shape_huge": C("ConstantOfShape", {"x": _i(2**40)}, word="shape", feeds=("x",)),
    "resize_scales_huge": C("Resize", _rs(scales=_f(1, 1, 1e9, 1)), word="scales"),
    "resize_sizes_huge": C("Resize", _rs(sizes=_i(1, 1, 2**20, 2**20)), word="sizes"),
    "range_huge": C("Range", {"x": np.array(0, np.int64), "limit": np.array(2**40, np.int64),
                              "delta": np.array(1, np.int64)}, word="Range", feeds=("x",)),
    "pad_huge": C("Pad", {"x": X23, "pads": _i(2**20, 2**20, 0, 0)}, word="pads", feeds=("x", "pads")),
    "onehot_huge": C("OneHot", {"x": _i(0, 1), "depth": _i(2**40), "values": _f(0, 1)}, word="depth"),
}


def _chain(e):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _run_ort(case):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        return ort.InferenceSession(case.model(), so, providers=["CPUExecutionProvider"]).run(
            None, case.feed_values()), None
    except Exception as e:  # noqa: BLE001 - onnxruntime refused
        return None, e


def _run_lite(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ortlite.InferenceSession(case.model(), providers=["CPUExecutionProvider"]).run(
                None, case.feed_values()), None
        except Exception as e:  # noqa: BLE001 - judged by the caller
            return None, e


def _check_refusal(name, case, e):
    assert isinstance(e, OrtliteError), f"{name}: {type(e).__name__}: {e}"
    msg = str(e)
    assert NODE in msg, f"{name}: the node is not named: {msg}"
    assert case.word.lower() in msg.lower(), f"{name}: {case.word!r} is not named: {msg}"
    raw = [f"{type(c).__name__}: {c}" for c in list(_chain(e))[1:] if isinstance(c, _RAW) and not isinstance(c, OrtliteError)]
    assert not raw, f"{name}: raw exception in the cause chain: {raw} under {msg}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_like_onnxruntime(name):
    pytest.importorskip("onnxruntime")
    case = CASES[name]
    ref, ref_err = _run_ort(case)
    got, err = _run_lite(case)
    if ref_err is not None:
        assert err is not None, f"{name}: onnxruntime refuses ({ref_err}), ortlite runs it"
        _check_refusal(name, case, err)
        return
    assert err is None, f"{name}: onnxruntime runs it, ortlite: {type(err).__name__}: {err}"
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape and g.dtype == r.dtype, f"{name}: {g.dtype}{g.shape} vs {r.dtype}{r.shape}"
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALLOC))
def test_output_size_bound(name):
    case = ALLOC[name]
    t0 = time.perf_counter()
    got, err = _run_lite(case)
    assert err is not None, f"{name}: ran ({[np.asarray(g).shape for g in got]})"
    _check_refusal(name, case, err)
    assert "elements" in str(err) or "GiB" in str(err), str(err)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (2, 1, 4, 1), (1, 1, 3, 3)])
def test_pool_window_past_the_input_like_the_reference(op, shape):
    """A window one stride past the input: the spec's output dim floor((n - k) / s + 1) = 0, an empty
    output, as onnx.reference computes it (onnxruntime truncates the division and outputs 1: an accepted
    difference in test_swapped_ops.py and test_fuzz.py)."""
    from onnx.reference import ReferenceEvaluator

    case = C(op, {"x": _x(*shape)}, {"kernel_shape": [2, 2], "strides": [2, 2]}, word="kernel_shape")
    want = ReferenceEvaluator(onnx.load_from_string(case.model())).run(None, case.feed_values())[0]
    got, err = _run_lite(case)
    assert err is None, err
    assert got[0].shape == want.shape and got[0].dtype == want.dtype
    np.testing.assert_allclose(got[0], want, rtol=1e-5)


def test_pool_window_that_does_not_fit_is_refused():
    case = C("MaxPool", {"x": _x(1, 1, 1, 1)}, {"kernel_shape": [4, 4]}, word="window")
    got, err = _run_lite(case)
    _check_refusal("maxpool_window", case, err)


def test_enough_cases():
    assert len(CASES) + len(ALLOC) >= 50


if __name__ == "__main__":
    which = sys.argv[1:]
    for name, case in sorted(CASES.items()):
        if which and not any(w in name for w in which):
            continue
        ref, ref_err = _run_ort(case)
        got, err = _run_lite(case)
        r = "runs" if ref_err is None else f"refuses: {str(ref_err)[:110]}"
        if err is None:
            l = "runs"
            if ref is not None:
                same = all(np.asarray(a).shape == np.asarray(b).shape and np.allclose(np.asarray(a, np.float64),
                           np.asarray(b, np.float64)) for a, b in zip(got, ref))
                l += "" if same else " DIFFERENT"
        else:
            l = f"{type(err).__name__}: {str(err)[:200]} <- {[type(c).__name__ for c in list(_chain(err))[1:]]}"
        print(f"{name}\n  ort: {r}\n  lite: {l}")
