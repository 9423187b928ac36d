"""Real scikit-learn models converted with skl2onnx: ortlite against onnxruntime.

Labels must be equal and probabilities/predictions close (float32 tolerance). Datasets are small
so the module stays fast; anything model-sized is marked slow.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ortlite

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")

from skl2onnx import convert_sklearn, to_onnx  # noqa: E402
from skl2onnx.common.data_types import (DictionaryType, FloatTensorType, Int64TensorType,  # noqa: E402
                                        StringTensorType)
from sklearn.datasets import make_classification, make_regression  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def _sessions(onx):
    data = onx.SerializeToString()
    return (ortlite.InferenceSession(data, providers=["CPUExecutionProvider"]),
            ort.InferenceSession(data, providers=["CPUExecutionProvider"]))


def compare(onx, feeds, rtol=RTOL, atol=ATOL):
    got_s, want_s = _sessions(onx)
    got, want = got_s.run(None, feeds), want_s.run(None, feeds)
    assert [o.name for o in got_s.get_outputs()] == [o.name for o in want_s.get_outputs()]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, list):  # ZipMap output: one dict per row
            assert isinstance(g, list) and len(g) == len(w)
            for gd, wd in zip(g, w):
                assert list(gd) == list(wd)
                np.testing.assert_allclose(list(gd.values()), list(wd.values()), rtol=rtol, atol=atol)
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        if g.dtype == object or g.dtype.kind in "iub":
            assert g.tolist() == w.tolist()
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got, want


def classification(n=200, features=6, classes=2, seed=0):
    X, y = make_classification(n_samples=n, n_features=features, n_informative=4, n_redundant=1,
                               n_classes=classes, n_clusters_per_class=1, random_state=seed)
    return X.astype(np.float32), y


def regression(n=200, features=5, seed=0):
    X, y = make_regression(n_samples=n, n_features=features, noise=0.5, random_state=seed)
    return X.astype(np.float32), y


def convert(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_onnx(model, X[:1], target_opset={"": 17, "ai.onnx.ml": 3}, **kw)


def convert_or_skip(model, X, **kw):
    """For converters that this skl2onnx / scikit-learn pair breaks (not an ortlite matter).

    skl2onnx 1.20 passes numpy bools for HistGradientBoosting's nodes_missing_value_tracks_true,
    which onnx.helper refuses; a retry turns them into ints."""
    try:
        return convert(model, X, **kw)
    except (TypeError, ValueError):
        pass
    import onnx.helper

    make_attribute = onnx.helper.make_attribute

    def ints_for_bools(key, value, *args, **kwargs):
        if key == "nodes_missing_value_tracks_true":
            value = [int(v) for v in value]
        return make_attribute(key, value, *args, **kwargs)

    onnx.helper.make_attribute = ints_for_bools
    try:
        return convert(model, X, **kw)
    except (TypeError, ValueError) as e:
        pytest.skip(f"skl2onnx {skl2onnx.__version__} cannot convert {type(model).__name__}: {str(e)[:120]}")
    finally:
        onnx.helper.make_attribute = make_attribute


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("zipmap", [True, False])
def test_logistic_regression(classes, zipmap):
    from sklearn.linear_model import LogisticRegression

    X, y = classification(classes=classes)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    options = None if zipmap else {id(clf): {"zipmap": False}}
    got, _ = compare(convert(clf, X, options=options), {"X": X})
    np.testing.assert_array_equal(got[0], clf.predict(X))


def test_logistic_regression_string_labels():
    from sklearn.linear_model import LogisticRegression

    X, y = classification(classes=3)
    names = np.array(["cat", "dog", "emu"])[y]
    clf = LogisticRegression(max_iter=500).fit(X, names)
    got, _ = compare(convert(clf, X), {"X": X})
    assert got[0].dtype == object and got[0].tolist() == clf.predict(X).tolist()


@pytest.mark.parametrize("classes", [2, 4])
def test_random_forest_classifier(classes):
    from sklearn.ensemble import RandomForestClassifier

    X, y = classification(classes=classes)
    clf = RandomForestClassifier(n_estimators=15, max_depth=8, random_state=0).fit(X, y)
    got, _ = compare(convert(clf, X, options={id(clf): {"zipmap": False}}), {"X": X})
    np.testing.assert_array_equal(got[0], clf.predict(X))
    compare(convert(clf, X), {"X": X})  # with ZipMap


def test_random_forest_regressor():
    from sklearn.ensemble import RandomForestRegressor

    X, y = regression()
    reg = RandomForestRegressor(n_estimators=15, max_depth=8, random_state=0).fit(X, y)
    got, _ = compare(convert(reg, X), {"X": X}, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[0][:, 0], reg.predict(X), rtol=1e-4, atol=1e-3)


def test_extra_trees_multi_output_regressor():
    from sklearn.ensemble import ExtraTreesRegressor

    X, y = regression()
    Y = np.stack([y, -2 * y + 1], axis=1)
    reg = ExtraTreesRegressor(n_estimators=10, max_depth=6, random_state=0).fit(X, Y)
    compare(convert(reg, X), {"X": X}, atol=1e-4)


@pytest.mark.parametrize("classes", [2, 3])
def test_gradient_boosting_classifier(classes):
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = classification(classes=classes)
    clf = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    got, _ = compare(convert(clf, X, options={id(clf): {"zipmap": False}}), {"X": X})
    np.testing.assert_array_equal(got[0], clf.predict(X))
    np.testing.assert_allclose(got[1], clf.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_gradient_boosting_regressor():
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = regression()
    reg = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    compare(convert(reg, X), {"X": X}, atol=1e-4)


@pytest.mark.parametrize("classes", [2, 3])
def test_hist_gradient_boosting_classifier(classes):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = classification(classes=classes)
    X[::7, 1] = np.nan  # missing values go down the learned side
    clf = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(X, y)
    got, _ = compare(convert_or_skip(clf, X, options={id(clf): {"zipmap": False}}), {"X": X})
    np.testing.assert_array_equal(got[0], clf.predict(X))


def test_hist_gradient_boosting_regressor():
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = regression()
    X[::5, 0] = np.nan
    reg = HistGradientBoostingRegressor(max_iter=15, random_state=0).fit(X, y)
    compare(convert_or_skip(reg, X), {"X": X}, atol=1e-4)


def test_decision_tree_classifier_strings():
    from sklearn.tree import DecisionTreeClassifier

    X, y = classification(classes=3)
    clf = DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, np.array(["a", "b", "c"])[y])
    got, _ = compare(convert(clf, X), {"X": X})
    assert got[0].tolist() == clf.predict(X).tolist()


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")
@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly"])
def test_svc_probability(classes, kernel):
    from sklearn.svm import SVC

    X, y = classification(n=120, classes=classes)
    clf = SVC(probability=True, kernel=kernel, random_state=0).fit(X, y)
    got, _ = compare(convert(clf, X, options={id(clf): {"zipmap": False}}), {"X": X}, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[0], clf.predict(X))


@pytest.mark.parametrize("classes", [2, 3])
def test_svc_decision_function(classes):
    from sklearn.svm import SVC

    X, y = classification(n=120, classes=classes)
    clf = SVC(kernel="rbf").fit(X, y)
    got, _ = compare(convert(clf, X, options={id(clf): {"zipmap": False}}), {"X": X}, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[0], clf.predict(X))


def test_linear_svc():
    from sklearn.svm import LinearSVC

    X, y = classification(classes=3)
    clf = LinearSVC(random_state=0).fit(X, y)
    got, _ = compare(convert(clf, X), {"X": X})
    np.testing.assert_array_equal(got[0], clf.predict(X))


@pytest.mark.parametrize("kernel", ["rbf", "linear", "sigmoid"])
def test_svr(kernel):
    from sklearn.svm import SVR

    X, y = regression(n=120)
    reg = SVR(kernel=kernel, C=10.0).fit(X, y / 50)
    got, _ = compare(convert(reg, X), {"X": X}, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[0][:, 0], reg.predict(X), rtol=1e-3, atol=1e-3)


def test_one_class_svm():
    from sklearn.svm import OneClassSVM

    X, _ = regression(n=120)
    m = OneClassSVM(gamma=0.1).fit(X)
    compare(convert(m, X), {"X": X}, rtol=1e-4, atol=1e-4)


def test_linear_regression_and_ridge():
    from sklearn.linear_model import LinearRegression, Ridge

    X, y = regression()
    for reg in (LinearRegression().fit(X, y), Ridge().fit(X, np.stack([y, 2 * y], 1))):
        got, _ = compare(convert(reg, X), {"X": X}, atol=1e-4)
        np.testing.assert_allclose(got[0].reshape(reg.predict(X).shape), reg.predict(X), rtol=1e-4, atol=1e-3)


def test_column_transformer_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 200
    num = rng.standard_normal((n, 2)).astype(np.float32)
    cat = rng.choice(["red", "green", "blue"], n).astype(object)
    X = np.empty((n, 3), dtype=object)
    X[:, 0], X[:, 1], X[:, 2] = num[:, 0], num[:, 1], cat
    y = (num[:, 0] + (cat == "red") > 0.3).astype(int) + (num[:, 1] > 1)
    pipe = Pipeline([
        ("ct", ColumnTransformer([("num", StandardScaler(), [0, 1]),
                                  ("cat", OneHotEncoder(handle_unknown="ignore"), [2])])),
        ("lr", LogisticRegression(max_iter=500)),
    ]).fit(X, y)
    onx = convert_sklearn(pipe, initial_types=[("x0", FloatTensorType([None, 1])),
                                               ("x1", FloatTensorType([None, 1])),
                                               ("c", StringTensorType([None, 1]))],
                          target_opset={"": 17, "ai.onnx.ml": 3})
    test_cat = cat.copy()
    test_cat[:5] = "purple"  # unknown category: all zeros
    feeds = {"x0": num[:, :1], "x1": num[:, 1:], "c": test_cat.reshape(-1, 1)}
    got, _ = compare(onx, feeds)
    X[:5, 2] = "purple"
    np.testing.assert_array_equal(got[0], pipe.predict(X))


def test_knn_classifier_and_regressor():
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    X, y = classification(n=100)
    clf = KNeighborsClassifier(n_neighbors=5).fit(X, y)
    got, _ = compare(convert(clf, X, options={id(clf): {"zipmap": False}}), {"X": X[:40]}, atol=1e-5)
    np.testing.assert_array_equal(got[0], clf.predict(X[:40]))
    reg = KNeighborsRegressor(n_neighbors=3).fit(X, y.astype(np.float32))
    compare(convert(reg, X), {"X": X[:40]}, atol=1e-5)


def test_dict_vectorizer_pipeline():
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(0)
    keys = ["a", "b", "c", "d"]
    rows = [{k: float(rng.standard_normal()) for k in rng.choice(keys, 2, replace=False)} for _ in range(100)]
    y = np.array([int(r.get("a", 0) + r.get("b", 0) > 0) for r in rows])
    pipe = Pipeline([("dv", DictVectorizer(sparse=False)), ("lr", LogisticRegression())]).fit(rows, y)
    onx = convert_sklearn(pipe, initial_types=[("X", DictionaryType(StringTensorType([1]), FloatTensorType([1])))],
                          target_opset={"": 17, "ai.onnx.ml": 3})
    for r in rows[:10]:  # onnxruntime takes one map per run
        got, _ = compare(onx, {"X": r})
        assert got[0].tolist() == pipe.predict([r]).tolist()


def test_label_encoder_string_to_int_and_back():
    from sklearn.preprocessing import LabelEncoder

    enc = LabelEncoder().fit(["paris", "tokyo", "amsterdam", "tokyo"])
    onx = convert_sklearn(enc, initial_types=[("X", StringTensorType([None]))], target_opset={"": 17, "ai.onnx.ml": 2})
    x = np.array(["tokyo", "paris", "amsterdam", "rome"], dtype=object)
    compare(onx, {"X": x})


def test_onehot_and_scaler_int_input():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler, Normalizer, OneHotEncoder

    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, (50, 3)).astype(np.int64)
    enc = OneHotEncoder(handle_unknown="ignore").fit(X)
    compare(convert_sklearn(enc, initial_types=[("X", Int64TensorType([None, 3]))],
                            target_opset={"": 17, "ai.onnx.ml": 3}), {"X": X})
    Xf = rng.standard_normal((50, 4)).astype(np.float32)
    pipe = Pipeline([("s", MaxAbsScaler()), ("n", Normalizer(norm="l1"))]).fit(Xf)
    compare(convert(pipe, Xf), {"X": Xf})


def test_imputer_binarizer_pipeline():
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Binarizer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    X[::4, 1] = np.nan
    pipe = Pipeline([("imp", SimpleImputer(strategy="mean")), ("bin", Binarizer(threshold=0.1))]).fit(X)
    compare(convert(pipe, X), {"X": X})


@pytest.mark.slow
def test_large_gradient_boosting_multiclass():
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = classification(n=1500, features=10, classes=4)
    clf = GradientBoostingClassifier(n_estimators=150, max_depth=4, random_state=0).fit(X, y)
    got, _ = compare(convert(clf, X, options={id(clf): {"zipmap": False}}), {"X": X}, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[0], clf.predict(X))
