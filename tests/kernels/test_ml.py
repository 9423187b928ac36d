"""Differential tests of the ai.onnx.ml kernels (kernels/ml.py, kernels/ml_tree.py) against onnxruntime.

Every op gets one-node models built with onnx.helper and random data; outputs are compared
exactly for labels/strings/ints and within float32 tolerance for scores, ZipMap's list of dicts
included. Tree ensembles are random trees over a small value grid, so EQ/NEQ/LEQ boundaries and
NaN (missing-value tracking) are exercised, with every aggregate, post-transform and the
classifier's binary special cases.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ortlite
from ortlite.types import onnx_elem_type

ort = pytest.importorskip("onnxruntime")

ML = "ai.onnx.ml"


def _vi(name, value):
    if isinstance(value, onnx.TypeProto):
        return helper.make_value_info(name, value)
    return helper.make_tensor_value_info(name, onnx_elem_type(value.dtype), list(value.shape))


def ml_model(node, feeds, ml_opset=3, input_types=None, out_types=None):
    input_types = input_types or {}
    inputs = [_vi(n, input_types.get(n, v)) for n, v in feeds.items()]
    outputs = []
    for i, n in enumerate(o for o in node.output if o):
        t = (out_types or {}).get(i)
        outputs.append(helper.make_value_info(n, t if t is not None else onnx.TypeProto()))
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(ML, ml_opset)])
    model.ir_version = 10
    return model.SerializeToString()


def run_both(node, feeds, ml_opset=3, **kw):
    """(ortlite outputs, onnxruntime outputs). Where onnxruntime has no kernel for an input type
    (e.g. Binarizer on double), it runs on the input cast to float32 and its outputs are cast back
    to ortlite's dtypes, so the values are still compared."""
    model = ml_model(node, feeds, ml_opset, **kw)
    got = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    try:
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        f32 = {n: v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind in "fi" else v
               for n, v in feeds.items()}
        sess = ort.InferenceSession(ml_model(node, f32, ml_opset, **kw), providers=["CPUExecutionProvider"])
        want = sess.run(None, f32)
        return got, [w.astype(g.dtype) if isinstance(w, np.ndarray) else w for g, w in zip(got, want)]
    return got, sess.run(None, feeds)


def assert_same(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, list):  # ZipMap: a list of dicts
            assert isinstance(g, list) and len(g) == len(w)
            for gd, wd in zip(g, w):
                assert list(gd) == list(wd)
                assert all(type(a) is type(b) for a, b in zip(gd, wd))
                np.testing.assert_allclose(list(gd.values()), list(wd.values()), rtol=rtol, atol=atol)
            continue
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        if g.dtype == object or g.dtype.kind in "iub":
            assert g.tolist() == w.tolist()
        else:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol)


def check(node, feeds, ml_opset=3, rtol=1e-5, atol=1e-6, **kw):
    got, want = run_both(node, feeds, ml_opset, **kw)
    assert_same(got, want, rtol, atol)
    return got


def mk(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, domain=ML, **attrs)


def strs(values):
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


rng = np.random.default_rng(0)

# ---------------------------------------------------------------------------
# Simple transforms


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_array_feature_extractor(dtype):
    x = (rng.standard_normal((4, 6)) * 10).astype(dtype)
    check(mk("ArrayFeatureExtractor", ["X", "I"], ["Z"]), {"X": x, "I": np.array([4, 0, 4], np.int64)})
    check(mk("ArrayFeatureExtractor", ["X", "I"], ["Z"]), {"X": x[0], "I": np.array([1, 2], np.int64)})
    x3 = (rng.standard_normal((2, 3, 5)) * 10).astype(dtype)
    check(mk("ArrayFeatureExtractor", ["X", "I"], ["Z"]), {"X": x3, "I": np.array([3], np.int64)})


def test_array_feature_extractor_strings():
    x = strs(["a", "b", "c", "d", "e", "f"]).reshape(2, 3)
    check(mk("ArrayFeatureExtractor", ["X", "I"], ["Z"]), {"X": x, "I": np.array([2, 0], np.int64)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_binarizer(dtype):
    x = (rng.standard_normal((3, 5)) * 3).astype(dtype)
    check(mk("Binarizer", ["X"], ["Y"], threshold=0.5), {"X": x})
    check(mk("Binarizer", ["X"], ["Y"]), {"X": x})


def test_binarizer_nan_is_an_error():
    # onnxruntime refuses NaN inputs ("Input data with index: 0 is NaN"); so does ortlite
    x = np.array([[1.0, np.nan, -1.0]], np.float32)
    model = ml_model(mk("Binarizer", ["X"], ["Y"]), {"X": x})
    with pytest.raises(Exception, match="NaN"):
        ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": x})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_scaler(dtype):
    x = (rng.standard_normal((4, 3)) * 5).astype(dtype)
    check(mk("Scaler", ["X"], ["Y"], offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, -1.5]), {"X": x})
    check(mk("Scaler", ["X"], ["Y"], offset=[0.25], scale=[3.0]), {"X": x})


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_normalizer(norm, dtype):
    x = (rng.standard_normal((4, 5)) * 5).astype(dtype)
    check(mk("Normalizer", ["X"], ["Y"], norm=norm), {"X": x})
    check(mk("Normalizer", ["X"], ["Y"], norm=norm), {"X": x[1]})
    z = np.array([[0, 0, 0], [0, -1, -2], [0, -1, 1]], dtype)  # zero norms leave the row as it is
    check(mk("Normalizer", ["X"], ["Y"], norm=norm), {"X": z})


def test_imputer():
    x = rng.standard_normal((5, 3)).astype(np.float32)
    x[1, 2] = x[3, 0] = np.nan
    check(mk("Imputer", ["X"], ["Y"], imputed_value_floats=[1.0, 2.0, 3.0], replaced_value_float=float("nan")),
          {"X": x})
    check(mk("Imputer", ["X"], ["Y"], imputed_value_floats=[-7.0], replaced_value_float=float("nan")), {"X": x})
    xi = rng.integers(-2, 3, (4, 3)).astype(np.int64)
    check(mk("Imputer", ["X"], ["Y"], imputed_value_int64s=[10, 20, 30], replaced_value_int64=0), {"X": xi})
    check(mk("Imputer", ["X"], ["Y"], imputed_value_floats=[1.0, 2.0], replaced_value_float=float("nan")),
          {"X": np.array([np.nan, 1, np.nan, 3], np.float32)})
    x[0, 0] = 5.0
    check(mk("Imputer", ["X"], ["Y"], imputed_value_floats=[9.0], replaced_value_float=5.0), {"X": x})


def test_feature_vectorizer():
    a = rng.standard_normal((3, 2)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    c = rng.standard_normal((3, 1)).astype(np.float32)
    node = mk("FeatureVectorizer", ["A", "B", "C"], ["Y"], inputdimensions=[2, 3, 2])
    check(node, {"A": a, "B": b, "C": c})
    for dt in (np.int64, np.int32, np.float64):
        check(node, {"A": (a * 10).astype(dt), "B": (b * 10).astype(dt), "C": (c * 10).astype(dt)})
    check(mk("FeatureVectorizer", ["A"], ["Y"], inputdimensions=[3]), {"A": a[0]})


# ---------------------------------------------------------------------------
# Encoders and mappers


def test_one_hot_encoder():
    x = rng.integers(0, 6, (3, 4)).astype(np.int64)
    check(mk("OneHotEncoder", ["X"], ["Y"], cats_int64s=[4, 1, 2, 0]), {"X": x})
    check(mk("OneHotEncoder", ["X"], ["Y"], cats_int64s=[3, 1, 5]), {"X": x.astype(np.float64)})
    check(mk("OneHotEncoder", ["X"], ["Y"], cats_int64s=[3, 1, 5]), {"X": x.astype(np.int32)})
    s = strs(["a", "b", "zz", "c", "a", "q"]).reshape(2, 3)
    check(mk("OneHotEncoder", ["X"], ["Y"], cats_strings=["c", "a", "b"], zeros=1), {"X": s})
    check(mk("OneHotEncoder", ["X"], ["Y"], cats_strings=["c", "a", "b"]), {"X": strs(["a", "c"])})


def test_one_hot_encoder_unknown_is_error_without_zeros():
    node = mk("OneHotEncoder", ["X"], ["Y"], cats_strings=["a"], zeros=0)
    model = ml_model(node, {"X": strs(["b"])})
    with pytest.raises(Exception):
        ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": strs(["b"])})


def test_category_mapper():
    node = mk("CategoryMapper", ["X"], ["Y"], cats_int64s=[1, 2, 3], cats_strings=["a", "b", "c"],
              default_int64=-5, default_string="??")
    check(node, {"X": strs(["a", "x", "c", "b"]).reshape(2, 2)})
    check(node, {"X": np.array([[3, 0, 1]], np.int64)})


def test_label_encoder_v1():
    node = mk("LabelEncoder", ["X"], ["Y"], classes_strings=["x", "y", "z"], default_int64=42)
    check(node, {"X": strs(["z", "q", "x"])}, ml_opset=1)
    node = mk("LabelEncoder", ["X"], ["Y"], classes_strings=["x", "y", "z"], default_string="none")
    check(node, {"X": np.array([2, 5, 0, -1], np.int64)}, ml_opset=1)


@pytest.mark.parametrize("keys,values,x", [
    (dict(keys_strings=["a", "b", "c"]), dict(values_int64s=[7, 8, 9]), strs(["c", "z", "a"])),
    (dict(keys_strings=["a", "b"]), dict(values_floats=[0.5, -1.5]), strs(["b", "a", "q"])),
    (dict(keys_int64s=[3, 1, 7]), dict(values_strings=["three", "one", "seven"]), np.array([7, 1, 2], np.int64)),
    (dict(keys_int64s=[3, 1, 7]), dict(values_floats=[0.5, 1.5, 2.5]), np.array([[7, 1], [2, 3]], np.int64)),
    (dict(keys_floats=[0.5, 1.5, -2.0]), dict(values_int64s=[1, 2, 3]), np.array([1.5, 0.25, -2.0], np.float32)),
    (dict(keys_floats=[0.5, 1.5]), dict(values_strings=["p", "q"]), np.array([1.5, 0.0], np.float32)),
])
def test_label_encoder_v2(keys, values, x):
    check(mk("LabelEncoder", ["X"], ["Y"], **keys, **values), {"X": x}, ml_opset=2)
    check(mk("LabelEncoder", ["X"], ["Y"], **keys, **values), {"X": x}, ml_opset=4)


def test_label_encoder_v2_defaults():
    node = mk("LabelEncoder", ["X"], ["Y"], keys_strings=["a"], values_int64s=[1], default_int64=-9)
    check(node, {"X": strs(["a", "b"])}, ml_opset=2)
    node = mk("LabelEncoder", ["X"], ["Y"], keys_int64s=[1], values_strings=["one"], default_string="n/a")
    check(node, {"X": np.array([1, 2], np.int64)}, ml_opset=2)
    node = mk("LabelEncoder", ["X"], ["Y"], keys_int64s=[1], values_floats=[2.5], default_float=-3.0)
    check(node, {"X": np.array([1, 2], np.int64)}, ml_opset=2)


def _le4(kdt, vdt):
    keys = np.array([4, 1, 9, 2], kdt)
    vals = np.array([10, 20, 30, 40], vdt)
    return mk("LabelEncoder", ["X"], ["Y"], keys_tensor=onnx.numpy_helper.from_array(keys),
              values_tensor=onnx.numpy_helper.from_array(vals),
              default_tensor=onnx.numpy_helper.from_array(np.array([-1], vdt)))


@pytest.mark.parametrize("kdt,vdt", [(np.int64, np.int64), (np.int64, np.float32), (np.int64, np.float64),
                                     (np.float32, np.int64), (np.float64, np.int64), (np.float64, np.float64)])
def test_label_encoder_v4_tensors(kdt, vdt):
    check(_le4(kdt, vdt), {"X": np.array([[9, 3], [1, 4]], kdt)}, ml_opset=4)


@pytest.mark.parametrize("kdt,vdt", [(np.int32, np.float64), (np.int16, np.int32), (np.float64, np.int16)])
def test_label_encoder_v4_types_onnxruntime_lacks(kdt, vdt):
    x = np.array([[9, 3], [1, 4]], kdt)
    model = ml_model(_le4(kdt, vdt), {"X": x}, 4)
    y, = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    assert y.dtype == vdt
    assert y.tolist() == [[30, -1], [20, 10]]


def test_label_encoder_v4_string_tensor_and_nan_key():
    keys = np.array([1.0, np.nan, 3.0], np.float32)
    node = mk("LabelEncoder", ["X"], ["Y"], keys_floats=keys.tolist(), values_strings=["one", "nan", "three"])
    check(node, {"X": np.array([np.nan, 3.0, 2.0, 1.0], np.float32)}, ml_opset=4)
    node = mk("LabelEncoder", ["X"], ["Y"], keys_strings=["x", "y"],
              values_tensor=helper.make_tensor("v", TP.STRING, [2], [b"X", b"Y"]),
              default_tensor=helper.make_tensor("d", TP.STRING, [1], [b"?"]))
    check(node, {"X": strs(["y", "z", "x"])}, ml_opset=4)


def _map_type(key, value):
    return helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, []))


@pytest.mark.parametrize("key,value,vocab,feed", [
    (TP.STRING, TP.FLOAT, dict(string_vocabulary=["a", "b", "c"]), {"a": 1.5, "c": -2.0, "zz": 9.0}),
    (TP.INT64, TP.FLOAT, dict(int64_vocabulary=[5, 2, 9]), {9: 1.0, 2: 0.5, 4: 8.0}),
])
def test_dict_vectorizer(key, value, vocab, feed):
    node = mk("DictVectorizer", ["X"], ["Y"], **vocab)
    check(node, {"X": feed}, ml_opset=1, input_types={"X": _map_type(key, value)})


@pytest.mark.parametrize("key,value,vocab,feed,want", [
    (TP.STRING, TP.DOUBLE, dict(string_vocabulary=["a", "b", "c"]), {"b": 3.25}, np.array([[0, 3.25, 0]])),
    (TP.STRING, TP.INT64, dict(string_vocabulary=["b", "a"]), {"a": 4, "b": 7}, np.array([[7, 4]], np.int64)),
    (TP.INT64, TP.STRING, dict(int64_vocabulary=[5, 2]), {5: "five", 3: "three"}, strs(["five", ""]).reshape(1, 2)),
])
def test_dict_vectorizer_types_onnxruntime_python_cannot_feed(key, value, vocab, feed, want):
    node = mk("DictVectorizer", ["X"], ["Y"], **vocab)
    model = ml_model(node, {"X": {}}, ml_opset=1, input_types={"X": _map_type(key, value)})
    y, = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": feed})
    assert y.dtype == want.dtype and y.tolist() == want.tolist()


def test_dict_vectorizer_list_of_maps():
    # onnxruntime only takes one map; ortlite also takes a list of them, one row each.
    node = mk("DictVectorizer", ["X"], ["Y"], string_vocabulary=["a", "b"])
    mt = _map_type(TP.STRING, TP.FLOAT)
    model = ml_model(node, {"X": {}}, ml_opset=1, input_types={"X": mt})
    sess = ortlite.InferenceSession(model, providers=["CPUExecutionProvider"])
    y, = sess.run(None, {"X": [{"a": 1.0}, {"b": 2.0, "q": 3.0}]})
    np.testing.assert_array_equal(y, np.array([[1, 0], [0, 2]], np.float32))


@pytest.mark.parametrize("cast_to", ["TO_FLOAT", "TO_INT64", "TO_STRING"])
@pytest.mark.parametrize("form", ["DENSE", "SPARSE"])
def test_cast_map(cast_to, form):
    node = mk("CastMap", ["X"], ["Y"], cast_to=cast_to, map_form=form, max_map=6)
    feed = {3: 1.5, 0: -2.0, 5: 7.0, 1: 1e-7, 2: 123456789.0, 9: 4.0}
    check(node, {"X": feed}, ml_opset=1, input_types={"X": _map_type(TP.INT64, TP.FLOAT)})


def _zipmap_type(key):
    return helper.make_sequence_type_proto(helper.make_map_type_proto(key, helper.make_tensor_type_proto(TP.FLOAT, [])))


def test_zipmap():
    x = rng.random((4, 3)).astype(np.float32)
    check(mk("ZipMap", ["X"], ["Z"], classlabels_int64s=[10, 3, 7]), {"X": x}, out_types={0: _zipmap_type(TP.INT64)})
    check(mk("ZipMap", ["X"], ["Z"], classlabels_strings=["b", "c", "a"]), {"X": x},
          out_types={0: _zipmap_type(TP.STRING)})


# ---------------------------------------------------------------------------
# Linear models

POSTS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("labels", [dict(classlabels_ints=[3, 1, 2]), dict(classlabels_strings=["x", "y", "z"])])
def test_linear_classifier_multiclass(post, labels):
    x = rng.standard_normal((6, 4)).astype(np.float32)
    coef = (rng.standard_normal(12) * (0.1 if post == "PROBIT" else 1)).tolist()
    inter = ([0.5, 0.4, 0.3] if post == "PROBIT" else rng.standard_normal(3).tolist())
    if post == "PROBIT":
        x = np.abs(x) * 0.1
    check(mk("LinearClassifier", ["X"], ["Y", "Z"], coefficients=coef, intercepts=inter, post_transform=post,
             **labels), {"X": x})


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
@pytest.mark.parametrize("labels", [dict(classlabels_ints=[4, 9]), dict(classlabels_strings=["neg", "pos"])])
def test_linear_classifier_one_weight_row(post, labels):
    # one coefficient row: labels from the sign; two labels -> a second score column (1 - s, s)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    check(mk("LinearClassifier", ["X"], ["Y", "Z"], coefficients=[0.5, -1.0, 0.25], intercepts=[0.1],
             post_transform=post, **labels), {"X": x})


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_linear_classifier_input_types(dtype):
    x = (rng.standard_normal((5, 2)) * 4).astype(dtype)
    check(mk("LinearClassifier", ["X"], ["Y", "Z"], coefficients=[1.0, -1.0, 0.5, 0.5], intercepts=[0.0, 0.1],
             classlabels_ints=[0, 1], post_transform="LOGISTIC"), {"X": x})


@pytest.mark.parametrize("targets,post", [(1, "NONE"), (3, "NONE"), (3, "SOFTMAX"), (2, "LOGISTIC")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_linear_regressor(targets, post, dtype):
    x = (rng.standard_normal((5, 4)) * 3).astype(dtype)
    coef = rng.standard_normal(4 * targets).tolist()
    check(mk("LinearRegressor", ["X"], ["Y"], coefficients=coef, intercepts=rng.standard_normal(targets).tolist(),
             targets=targets, post_transform=post), {"X": x})
    check(mk("LinearRegressor", ["X"], ["Y"], coefficients=coef, targets=targets), {"X": x})


# ---------------------------------------------------------------------------
# SVMs


def _svc_attrs(k, n_features, vpc, kernel, proba, seed):
    r = np.random.default_rng(seed)
    nv = sum(vpc)
    npairs = k * (k - 1) // 2
    attrs = dict(kernel_type=kernel, kernel_params=[0.3, 0.5, 3.0], vectors_per_class=vpc,
                 support_vectors=r.standard_normal(nv * n_features).tolist(),
                 coefficients=r.standard_normal((k - 1) * nv).tolist(), rho=r.standard_normal(npairs).tolist())
    if proba:
        attrs["prob_a"] = (-np.abs(r.standard_normal(npairs)) - 0.5).tolist()
        attrs["prob_b"] = (r.standard_normal(npairs) * 0.1).tolist()
    return attrs


@pytest.mark.parametrize("kernel", ["LINEAR", "POLY", "RBF", "SIGMOID"])
@pytest.mark.parametrize("k,proba", [(2, False), (2, True), (3, False), (3, True), (4, True)])
def test_svm_classifier_svc(kernel, k, proba):
    vpc = [2, 3, 1, 2][:k]
    attrs = _svc_attrs(k, 3, vpc, kernel, proba, seed=k * 10 + proba)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    labels = dict(classlabels_ints=list(range(5, 5 + k))) if kernel != "RBF" else dict(
        classlabels_strings=[f"c{i}" for i in range(k)])
    check(mk("SVMClassifier", ["X"], ["Y", "Z"], **labels, **attrs), {"X": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_svm_classifier_post(post):
    attrs = _svc_attrs(2, 3, [2, 2], "RBF", False, seed=3)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    check(mk("SVMClassifier", ["X"], ["Y", "Z"], classlabels_ints=[0, 1], post_transform=post, **attrs), {"X": x})
    attrs = _svc_attrs(3, 3, [2, 2, 1], "RBF", False, seed=4)
    check(mk("SVMClassifier", ["X"], ["Y", "Z"], classlabels_ints=[0, 1, 2], post_transform=post, **attrs), {"X": x})


@pytest.mark.parametrize("k,positive", [(2, True), (2, False), (3, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_svm_classifier_linear(k, positive, dtype):
    coef = rng.standard_normal(k * 3)
    if positive:
        coef = np.abs(coef) * 0.2
    x = rng.standard_normal((7, 3)).astype(dtype)
    check(mk("SVMClassifier", ["X"], ["Y", "Z"], classlabels_ints=list(range(k)), coefficients=coef.tolist(),
             rho=[0.1], kernel_type="LINEAR", kernel_params=[0.0, 0.0, 0.0]), {"X": x})


@pytest.mark.parametrize("kernel", ["LINEAR", "POLY", "RBF", "SIGMOID"])
@pytest.mark.parametrize("one_class", [0, 1])
def test_svm_regressor(kernel, one_class):
    x = rng.standard_normal((6, 3)).astype(np.float32)
    check(mk("SVMRegressor", ["X"], ["Y"], kernel_type=kernel, kernel_params=[0.2, 0.1, 2.0], n_supports=4,
             support_vectors=rng.standard_normal(12).tolist(), coefficients=rng.standard_normal(4).tolist(),
             rho=[0.3], one_class=one_class), {"X": x}, rtol=1e-4, atol=1e-5)
    check(mk("SVMRegressor", ["X"], ["Y"], coefficients=[0.5, -1.0, 2.0], rho=[0.25], kernel_params=[0.0] * 3),
          {"X": x})


# ---------------------------------------------------------------------------
# Tree ensembles

GRID = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32)


def random_trees(seed, n_trees, n_features, n_targets, modes=("BRANCH_LEQ",), depth=4, weights_per_leaf=1,
                 missing=False, one_target_per_tree=False, positive=False):
    """Opset-1/3 node and weight lists for random trees whose thresholds come from GRID."""
    r = np.random.default_rng(seed)
    nodes = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids",
                             "falsenodeids", "missing_value_tracks_true")}
    w = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    for t in range(n_trees):
        counter = [0]
        tree_target = int(r.integers(n_targets))

        def build(d):
            nid = counter[0]
            counter[0] += 1
            leaf = d >= depth or (d > 0 and r.random() < 0.25)
            row = dict(treeids=t, nodeids=nid, featureids=0 if leaf else int(r.integers(n_features)),
                       modes="LEAF" if leaf else str(r.choice(modes)), values=0.0 if leaf else float(r.choice(GRID)),
                       truenodeids=0, falsenodeids=0, missing_value_tracks_true=int(missing and r.random() < 0.5))
            pos = len(nodes["treeids"])
            for k, v in row.items():
                nodes[k].append(v)
            if leaf:
                targets = [tree_target] if one_target_per_tree else r.choice(
                    n_targets, size=min(weights_per_leaf, n_targets), replace=False)
                for tg in targets:
                    val = float(r.random() * 0.4) if positive else float(r.standard_normal())
                    for k, v in zip(("treeids", "nodeids", "ids", "weights"), (t, nid, int(tg), val)):
                        w[k].append(v)
            else:
                nodes["truenodeids"][pos] = build(d + 1)
                nodes["falsenodeids"][pos] = build(d + 1)
            return nid

        build(0)
    return nodes, w


def tree_x(n, n_features, dtype=np.float32, nan=False, seed=1):
    r = np.random.default_rng(seed)
    x = np.where(r.random((n, n_features)) < 0.5, r.choice(GRID, (n, n_features)),
                 r.standard_normal((n, n_features)))
    if nan:
        x[r.random(x.shape) < 0.15] = np.nan
    return x.astype(dtype)


def regressor_node(nodes, w, **attrs):
    a = {f"nodes_{k}": v for k, v in nodes.items()}
    a.update({f"target_{k}": v for k, v in w.items()})
    return mk("TreeEnsembleRegressor", ["X"], ["Y"], **a, **attrs)


def classifier_node(nodes, w, **attrs):
    a = {f"nodes_{k}": v for k, v in nodes.items()}
    a.update({f"class_{k}": v for k, v in w.items()})
    return mk("TreeEnsembleClassifier", ["X"], ["Y", "Z"], **a, **attrs)


ALL_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


@pytest.mark.parametrize("mode", ALL_MODES + ("mixed",))
@pytest.mark.parametrize("missing", [False, True])
def test_tree_regressor_modes(mode, missing):
    modes = ALL_MODES if mode == "mixed" else (mode,)
    nodes, w = random_trees(hash((mode, missing)) % 1000, 6, 4, 1, modes, missing=missing)
    check(regressor_node(nodes, w, n_targets=1), {"X": tree_x(40, 4, nan=missing)})


@pytest.mark.parametrize("agg", ["SUM", "AVERAGE", "MIN", "MAX"])
@pytest.mark.parametrize("targets,base", [(1, []), (1, [0.5]), (3, []), (3, [0.1, -0.2, 0.3])])
def test_tree_regressor_aggregates(agg, targets, base):
    nodes, w = random_trees(7, 5, 3, targets, ("BRANCH_LEQ", "BRANCH_GT"), weights_per_leaf=2)
    extra = dict(base_values=base) if base else {}
    check(regressor_node(nodes, w, n_targets=targets, aggregate_function=agg, **extra),
          {"X": tree_x(30, 3)})


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("targets", [1, 3])
def test_tree_regressor_post_transform(post, targets):
    nodes, w = random_trees(11, 4, 3, targets, positive=True, weights_per_leaf=targets)
    check(regressor_node(nodes, w, n_targets=targets, post_transform=post, aggregate_function="AVERAGE"),
          {"X": tree_x(25, 3)})


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_tree_regressor_input_types(dtype):
    nodes, w = random_trees(5, 5, 3, 2, ("BRANCH_LEQ", "BRANCH_EQ"), weights_per_leaf=2)
    x = tree_x(20, 3, np.float64) if dtype == np.float64 else np.random.default_rng(0).integers(-1, 2, (20, 3))
    check(regressor_node(nodes, w, n_targets=2), {"X": x.astype(dtype)})


def test_tree_regressor_as_tensor_double():
    nodes, w = random_trees(8, 4, 3, 1)
    a = {f"nodes_{k}": v for k, v in nodes.items() if k != "values"}
    a.update({f"target_{k}": v for k, v in w.items() if k != "weights"})
    node = mk("TreeEnsembleRegressor", ["X"], ["Y"], n_targets=1, **a,
              nodes_values_as_tensor=onnx.numpy_helper.from_array(np.array(nodes["values"], np.float64)),
              target_weights_as_tensor=onnx.numpy_helper.from_array(np.array(w["weights"], np.float64)),
              base_values_as_tensor=onnx.numpy_helper.from_array(np.array([0.125], np.float64)))
    check(node, {"X": tree_x(20, 3, np.float64)})


def test_tree_regressor_one_row():
    nodes, w = random_trees(9, 3, 3, 1)
    check(regressor_node(nodes, w, n_targets=1), {"X": tree_x(1, 3)})


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("labels", [dict(classlabels_int64s=[5, 6, 7, 8]),
                                    dict(classlabels_strings=["a", "b", "c", "d"])])
def test_tree_classifier_multiclass(post, labels):
    nodes, w = random_trees(21, 8, 4, 4, ("BRANCH_LEQ", "BRANCH_LT"), positive=(post == "PROBIT"),
                            one_target_per_tree=True)
    check(classifier_node(nodes, w, post_transform=post, **labels), {"X": tree_x(40, 4)})
    base = [0.1, 0.2, -0.1, 0.0] if post != "PROBIT" else [0.05, 0.1, 0.02, 0.0]
    check(classifier_node(nodes, w, post_transform=post, base_values=base, **labels), {"X": tree_x(40, 4)})


def test_tree_classifier_multiclass_several_weights_per_leaf():
    # random forest style: every leaf votes for every class
    nodes, w = random_trees(22, 6, 3, 3, weights_per_leaf=3, positive=True)
    check(classifier_node(nodes, w, classlabels_int64s=[0, 1, 2]), {"X": tree_x(40, 3)})
    nodes, w = random_trees(23, 6, 3, 3, weights_per_leaf=2)
    check(classifier_node(nodes, w, classlabels_int64s=[0, 1, 2], post_transform="SOFTMAX"), {"X": tree_x(40, 3)})


@pytest.mark.parametrize("class_id", [0, 1])
@pytest.mark.parametrize("positive", [True, False])
@pytest.mark.parametrize("base", [[], [0.3], [-0.2, 0.4]])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_tree_classifier_binary(class_id, positive, base, post):
    # binary case: the weights name one class only (gradient boosting's shape)
    nodes, w = random_trees(31 + class_id, 5, 3, 1, positive=positive)
    w["ids"] = [class_id] * len(w["ids"])
    extra = dict(base_values=base) if base else {}
    for labels in (dict(classlabels_int64s=[3, 8]), dict(classlabels_strings=["no", "yes"])):
        check(classifier_node(nodes, w, post_transform=post, **labels, **extra), {"X": tree_x(30, 3)})


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX_ZERO"])
def test_tree_classifier_binary_both_classes(post):
    nodes, w = random_trees(41, 5, 3, 2, weights_per_leaf=2, positive=True)
    check(classifier_node(nodes, w, classlabels_int64s=[0, 1], post_transform=post), {"X": tree_x(30, 3)})
    check(classifier_node(nodes, w, classlabels_int64s=[0, 1], post_transform=post, base_values=[0.1, 0.2]),
          {"X": tree_x(30, 3)})


def test_tree_classifier_missing_and_double_input():
    nodes, w = random_trees(51, 6, 4, 3, ALL_MODES, missing=True, one_target_per_tree=True)
    check(classifier_node(nodes, w, classlabels_int64s=[0, 1, 2], post_transform="SOFTMAX"),
          {"X": tree_x(50, 4, np.float64, nan=True)})


def _v5_from_v3(nodes, w, n_targets, member_nodes=()):
    """Opset-1/3 random trees -> TreeEnsemble (opset 5) attributes (leaves with one weight)."""
    ids = list(zip(nodes["treeids"], nodes["nodeids"]))
    is_leaf = [m == "LEAF" for m in nodes["modes"]]
    inner = [i for i, leaf in enumerate(is_leaf) if not leaf]
    leaves = [i for i, leaf in enumerate(is_leaf) if leaf]
    inner_pos = {ids[i]: p for p, i in enumerate(inner)}
    leaf_pos = {ids[i]: p for p, i in enumerate(leaves)}
    wmap = {(t, n): (tg, v) for t, n, tg, v in zip(w["treeids"], w["nodeids"], w["ids"], w["weights"])}
    code = {m: i for i, m in enumerate(ALL_MODES)}
    attrs = dict(nodes_featureids=[], nodes_truenodeids=[], nodes_falsenodeids=[], nodes_trueleafs=[],
                 nodes_falseleafs=[], nodes_missing_value_tracks_true=[])
    modes, splits, members = [], [], []
    for p, i in enumerate(inner):
        t = nodes["treeids"][i]
        attrs["nodes_featureids"].append(nodes["featureids"][i])
        for side in ("true", "false"):
            child = (t, nodes[f"{side}nodeids"][i])
            attrs[f"nodes_{side}leafs"].append(int(child in leaf_pos))
            attrs[f"nodes_{side}nodeids"].append(leaf_pos[child] if child in leaf_pos else inner_pos[child])
        attrs["nodes_missing_value_tracks_true"].append(nodes["missing_value_tracks_true"][i])
        if p in member_nodes:
            modes.append(6)
            members += [float(np.round(nodes["values"][i])), 1.0, np.nan]
        else:
            modes.append(code[nodes["modes"][i]])
        splits.append(nodes["values"][i])
    roots = [inner_pos[ids[i]] for i in range(len(ids)) if nodes["nodeids"][i] == 0 and ids[i] in inner_pos]
    attrs.update(
        nodes_modes=onnx.numpy_helper.from_array(np.array(modes, np.uint8)),
        nodes_splits=onnx.numpy_helper.from_array(np.array(splits, np.float32)),
        tree_roots=roots, n_targets=n_targets,
        leaf_targetids=[wmap[ids[i]][0] for i in leaves],
        leaf_weights=onnx.numpy_helper.from_array(np.array([wmap[ids[i]][1] for i in leaves], np.float32)))
    if members:
        attrs["membership_values"] = onnx.numpy_helper.from_array(np.array(members, np.float32))
    return attrs


@pytest.mark.parametrize("agg", [0, 1, 2, 3])
@pytest.mark.parametrize("post", [0, 1, 2, 3])
@pytest.mark.parametrize("targets", [1, 2])
def test_tree_ensemble_v5(agg, post, targets):
    nodes, w = random_trees(61 + targets, 5, 3, targets, ALL_MODES, missing=True, depth=3)
    attrs = _v5_from_v3(nodes, w, targets, member_nodes=(1, 4))
    node = mk("TreeEnsemble", ["X"], ["Y"], aggregate_function=agg, post_transform=post, **attrs)
    check(node, {"X": tree_x(40, 3, nan=True)}, ml_opset=5)


def test_tree_ensemble_v5_double():
    nodes, w = random_trees(71, 5, 3, 1, ("BRANCH_LEQ", "BRANCH_NEQ"), depth=3)
    attrs = _v5_from_v3(nodes, w, 1, member_nodes=(0,))
    attrs["nodes_splits"] = onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(attrs["nodes_splits"]).astype(np.float64))
    attrs["leaf_weights"] = onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(attrs["leaf_weights"]).astype(np.float64))
    attrs["membership_values"] = onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(attrs["membership_values"]).astype(np.float64))
    check(mk("TreeEnsemble", ["X"], ["Y"], **attrs), {"X": tree_x(30, 3, np.float64)}, ml_opset=5)


def test_tree_classifier_opset5_deprecated_still_runs():
    nodes, w = random_trees(81, 4, 3, 3, one_target_per_tree=True)
    node = classifier_node(nodes, w, classlabels_int64s=[0, 1, 2], post_transform="SOFTMAX")
    got = ortlite.InferenceSession(ml_model(node, {"X": tree_x(5, 3)}, 3),
                                   providers=["CPUExecutionProvider"]).run(None, {"X": tree_x(5, 3)})
    assert got[0].dtype == np.int64 and got[1].shape == (5, 3)
