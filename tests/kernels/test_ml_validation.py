"""ai.onnx.ml attributes that do not fit each other or the input's feature count.

onnxruntime reads a prefix of such lists (or past their end); ortlite refuses them. An
inconsistent model fails at session creation with ``Fail`` naming the node and the numbers;
against the input's feature count it fails there too when the width is a fixed dim, and
otherwise on a feed that does not fit, with ``InvalidArgument`` (also a ``RuntimeException``,
worded as onnxruntime words a node's failure).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import ortlite

ML = "ai.onnx.ml"
CPU = ["CPUExecutionProvider"]


def ml_node(op, inputs=("X",), outputs=("Y",), name="n", **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name, domain=ML, **attrs)


def model(node, inputs=None, ml_opset=3, initializers=()):
    """One-node model; ``inputs``: name -> (elem type, shape); outputs untyped."""
    inputs = inputs or {"X": (TP.FLOAT, [3, 2])}
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_value_info(o, onnx.TypeProto()) for o in node.output], list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(ML, ml_opset)])
    m.ir_version = 10
    return m.SerializeToString()


def session(node, inputs=None, ml_opset=3, initializers=()):
    return ortlite.InferenceSession(model(node, inputs, ml_opset, initializers), providers=CPU)


def creation_error(node, inputs=None, ml_opset=3, initializers=()):
    """The Fail session creation raises; its message names the node."""
    with pytest.raises(ortlite.Fail) as e:
        session(node, inputs, ml_opset, initializers)
    assert not isinstance(e.value, ortlite.RuntimeException)
    msg = str(e.value)
    assert f"{node.op_type} node '{node.name}'" in msg, msg
    return msg


def feed_error(node, feeds, inputs, ml_opset=3):
    """The error a run raises for feeds that do not fit: InvalidArgument naming the node."""
    sess = session(node, inputs, ml_opset)  # the widths are symbolic: creation succeeds
    with pytest.raises(ortlite.InvalidArgument) as e:
        sess.run(None, feeds)
    assert isinstance(e.value, ortlite.RuntimeException)  # as every failure of a node
    msg = str(e.value)
    assert f"running {node.op_type} node. Name:'{node.name}'" in msg, msg
    return msg


def has(msg, *parts):
    for p in parts:
        assert p in msg, (p, msg)


SYMBOLIC = {"X": (TP.FLOAT, ["N", "F"])}


def x(rows, cols):
    return np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) / 10


# ---------------------------------------------------------------------------
# LinearClassifier / LinearRegressor


def linear_classifier(**over):
    attrs = dict(coefficients=[float(i) for i in range(12)], intercepts=[0.0, 0.0, 0.0], classlabels_ints=[0, 1, 2])
    attrs.update(over)
    return ml_node("LinearClassifier", outputs=("Y", "Z"), name="lc", **attrs)


def test_linear_classifier_coefficients_do_not_fit_fixed_input():
    # the tracker's reproducer: input [3, 2], 3 classes, 12 coefficients (4 features)
    msg = creation_error(linear_classifier(), {"X": (TP.FLOAT, [3, 2])})
    assert msg == ("LinearClassifier node 'lc': 12 coefficients for 3 classes means 4 features per class, "
                   "but input X has 2 features (shape [3, 2])")


def test_linear_classifier_coefficients_do_not_fit_feed():
    msg = feed_error(linear_classifier(), {"X": x(3, 2)}, SYMBOLIC)
    has(msg, "12 coefficients for 3 classes means 4 features per class", "input X has 2 features (shape [3, 2])")
    # a feed that fits runs: argmax of x @ W.T
    lab, z = session(linear_classifier(), SYMBOLIC).run(None, {"X": x(3, 4)})
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(z, x(3, 4) @ w.T, rtol=1e-6)
    assert lab.tolist() == [2, 2, 2]


def test_linear_classifier_attributes_disagree():
    has(creation_error(linear_classifier(coefficients=[1.0] * 10)), "10 coefficients do not split into 3 classes")
    has(creation_error(linear_classifier(classlabels_ints=[0, 1])), "3 intercepts (classes) but 2 class labels")
    has(creation_error(linear_classifier(intercepts=[0.0], classlabels_ints=[0, 1, 2], coefficients=[1.0, 2.0])),
        "1 intercept (classes) but 3 class labels")
    # sklearn's binary export stays valid: one coefficient row and intercept, two class labels
    node = linear_classifier(coefficients=[0.5, -1.0], intercepts=[0.1], classlabels_ints=[4, 9])
    lab, z = session(node, {"X": (TP.FLOAT, [3, 2])}).run(None, {"X": x(3, 2)})
    assert lab.shape == (3,) and z.shape == (3, 2)


def linear_regressor(**over):
    attrs = dict(coefficients=[1.0] * 6, intercepts=[0.0, 1.0], targets=2)
    attrs.update(over)
    return ml_node("LinearRegressor", name="lr", **attrs)


def test_linear_regressor():
    has(creation_error(linear_regressor(), {"X": (TP.FLOAT, [5, 4])}),
        "6 coefficients for 2 targets means 3 features per target, but input X has 4 features (shape [5, 4])")
    has(feed_error(linear_regressor(), {"X": x(5, 4)}, SYMBOLIC), "6 coefficients for 2 targets", "4 features")
    has(creation_error(linear_regressor(coefficients=[1.0] * 7)), "7 coefficients do not split into 2 targets")
    has(creation_error(linear_regressor(intercepts=[0.0, 1.0, 2.0])), "3 intercepts for 2 targets")
    y = session(linear_regressor(), {"X": (TP.FLOAT, ["N", 3])}).run(None, {"X": x(2, 3)})[0]
    np.testing.assert_allclose(y, x(2, 3).sum(1, keepdims=True) + [[0.0, 1.0]], rtol=1e-6)


# ---------------------------------------------------------------------------
# SVMs


def svc(**over):
    # 3 classes, 2 + 1 + 1 support vectors of 3 features
    attrs = dict(classlabels_ints=[0, 1, 2], vectors_per_class=[2, 1, 1], support_vectors=[0.1] * 12,
                 coefficients=[0.5] * 8, rho=[0.1, 0.2, 0.3], kernel_type="RBF", kernel_params=[0.5, 0.0, 3.0])
    attrs.update(over)
    return ml_node("SVMClassifier", outputs=("Y", "Z"), name="svc", **attrs)


def test_svm_classifier_support_vectors_do_not_fit_input():
    has(creation_error(svc(), {"X": (TP.FLOAT, [2, 4])}),
        "12 support_vectors values for 4 support vectors means 3 features per vector",
        "but input X has 4 features (shape [2, 4])")
    has(feed_error(svc(), {"X": x(2, 4)}, SYMBOLIC), "means 3 features per vector", "input X has 4 features")
    lab, z = session(svc(), SYMBOLIC).run(None, {"X": x(2, 3)})
    assert lab.shape == (2,) and z.shape == (2, 3)


@pytest.mark.parametrize("over,words", [
    (dict(vectors_per_class=[2, 2]), "vectors_per_class [2, 2] does not count the vectors of 3 classes"),
    (dict(support_vectors=[0.1] * 10), "10 support_vectors values do not split into 4 support vectors"),
    (dict(coefficients=[0.5] * 4), "4 coefficients for 3 classes and 4 support vectors: expected (classes - 1) x "
                                   "vectors = 8"),
    (dict(rho=[0.1]), "rho has 1 values for 3 class pairs (3 classes)"),
    (dict(prob_a=[1.0, 1.0, 1.0], prob_b=[0.0]), "prob_a has 3 values but prob_b 1"),
    (dict(prob_a=[1.0] * 2, prob_b=[0.0] * 2), "prob_a has 2 values for 3 class pairs"),
    (dict(kernel_params=[0.5, 0.0]), "kernel_params has 2 values, not 3 (gamma, coef0, degree)"),
])
def test_svm_classifier_attributes_disagree(over, words):
    has(creation_error(svc(**over), {"X": (TP.FLOAT, [2, 3])}), words)


def test_svm_classifier_linear_mode():
    node = ml_node("SVMClassifier", outputs=("Y", "Z"), name="lin", classlabels_ints=[0, 1, 2],
                   coefficients=[0.5] * 9, rho=[0.1], kernel_type="LINEAR")
    has(creation_error(node, {"X": (TP.FLOAT, [2, 4])}),
        "9 coefficients for 3 classes means 3 features per class, but input X has 4 features")
    has(feed_error(node, {"X": x(2, 2)}, SYMBOLIC), "means 3 features per class", "input X has 2 features")
    bad = ml_node("SVMClassifier", outputs=("Y", "Z"), name="lin", classlabels_ints=[0, 1, 2],
                  coefficients=[0.5] * 8, rho=[0.1])
    has(creation_error(bad), "8 coefficients do not split into 3 classes")
    lab, z = session(node, SYMBOLIC).run(None, {"X": x(2, 3)})
    assert z.shape == (2, 3)


def svr(**over):
    attrs = dict(n_supports=2, support_vectors=[0.1] * 6, coefficients=[1.0, -1.0], rho=[0.5], kernel_type="RBF",
                 kernel_params=[0.5, 0.0, 2.0])
    attrs.update(over)
    return ml_node("SVMRegressor", name="svr", **attrs)


def test_svm_regressor():
    has(creation_error(svr(), {"X": (TP.FLOAT, [2, 4])}),
        "6 support_vectors values for n_supports=2 vectors means 3 features per vector",
        "but input X has 4 features")
    has(feed_error(svr(), {"X": x(2, 2)}, SYMBOLIC), "means 3 features per vector", "input X has 2 features")
    has(creation_error(svr(coefficients=[1.0, 2.0, 3.0])), "3 coefficients for n_supports=2 support vectors")
    has(creation_error(svr(support_vectors=[0.1] * 5)), "5 support_vectors values do not split into n_supports=2")
    has(creation_error(svr(kernel_params=[0.5])), "kernel_params has 1 values, not 3")
    linear = ml_node("SVMRegressor", name="svr", coefficients=[1.0, 2.0, 3.0], rho=[0.5])
    has(creation_error(linear, {"X": (TP.FLOAT, [2, 2])}),
        "3 coefficients (linear, n_supports=0) means 3 features, but input X has 2 features")
    y = session(linear, SYMBOLIC).run(None, {"X": x(2, 3)})[0]
    np.testing.assert_allclose(y[:, 0], x(2, 3) @ [1.0, 2.0, 3.0] + 0.5, rtol=1e-6)
    assert session(svr(), SYMBOLIC).run(None, {"X": x(2, 3)})[0].shape == (2, 1)


# ---------------------------------------------------------------------------
# Tree ensembles: one tree, a split on feature ``f`` and two leaves


def tree_nodes(f=3):
    return dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[f, 0, 0],
                nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0.0, 0.0],
                nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0])


def tree_regressor(**over):
    attrs = dict(tree_nodes(), target_ids=[0, 0], target_nodeids=[1, 2], target_treeids=[0, 0],
                 target_weights=[1.0, 2.0], n_targets=1)
    attrs.update(over)
    return ml_node("TreeEnsembleRegressor", name="tr", **attrs)


def tree_classifier(**over):
    attrs = dict(tree_nodes(), class_ids=[0, 1, 2], class_nodeids=[1, 2, 2], class_treeids=[0, 0, 0],
                 class_weights=[1.0, 1.0, 0.5], classlabels_int64s=[0, 1, 2])
    attrs.update(over)
    return ml_node("TreeEnsembleClassifier", outputs=("Y", "Z"), name="tc", **attrs)


def test_tree_feature_ids_beyond_the_input():
    for node in (tree_regressor(), tree_classifier()):
        has(creation_error(node, {"X": (TP.FLOAT, [5, 3])}),
            "nodes_featureids reads feature 3, so the input needs at least 4 features, "
            "but input X has 3 features (shape [5, 3])")
        has(feed_error(node, {"X": x(5, 2)}, SYMBOLIC), "reads feature 3", "input X has 2 features")
        session(node, {"X": (TP.FLOAT, ["N", 4])}).run(None, {"X": x(5, 4)})  # wider inputs are fine


@pytest.mark.parametrize("over,words", [
    (dict(nodes_values=[0.5, 0.0]), "nodes_values has 2 entries but nodes_treeids has 3"),
    (dict(nodes_featureids=[3, 0]), "nodes_featureids has 2 entries but nodes_treeids has 3"),
    (dict(target_weights=[1.0]), "target_weights has 1 entries but target_ids has 2"),
    (dict(target_nodeids=[1, 2, 2]), "target_nodeids has 3 entries but target_ids has 2"),
    (dict(target_treeids=[0]), "target_treeids has 1 entries but target_ids has 2"),
])
def test_tree_regressor_lists_disagree(over, words):
    has(creation_error(tree_regressor(**over), {"X": (TP.FLOAT, [5, 4])}), words)


@pytest.mark.parametrize("over", [dict(nodes_missing_value_tracks_true=[1]), dict(nodes_hitrates=[1.0] * 4)])
def test_tree_regressor_optional_lists_any_length(over):
    """onnxruntime 1.32 runs trees whose missing-value flags or hit rates are short or long (it reads
    what is there): so does ortlite."""
    session(tree_regressor(**over), {"X": (TP.FLOAT, [2, 4])}).run(None, {"X": x(2, 4)})


@pytest.mark.parametrize("over,words", [
    (dict(class_weights=[1.0, 1.0]), "class_weights has 2 entries but class_ids has 3"),
    (dict(class_nodeids=[1, 2]), "class_nodeids has 2 entries but class_ids has 3"),
    (dict(nodes_modes=["BRANCH_LEQ", "LEAF"]), "nodes_modes has 2 entries but nodes_treeids has 3"),
])
def test_tree_classifier_lists_disagree(over, words):
    has(creation_error(tree_classifier(**over), {"X": (TP.FLOAT, [5, 4])}), words)


def test_tree_base_values():
    has(creation_error(tree_regressor(n_targets=2, target_ids=[0, 1], base_values=[0.5]), {"X": (TP.FLOAT, [5, 4])}),
        "base_values has 1 values for 2 targets (expected 0 or 2)")
    has(creation_error(tree_classifier(base_values=[0.1, 0.2]), {"X": (TP.FLOAT, [5, 4])}),
        "base_values has 2 values for 3 classes (expected 0 or 3)")
    # a value per class, or one for the scored class of a binary classifier, stay valid
    z = session(tree_classifier(base_values=[0.1, 0.2, 0.3]), {"X": (TP.FLOAT, [2, 4])}).run(None, {"X": x(2, 4)})[1]
    assert z.shape == (2, 3)
    binary = tree_classifier(class_ids=[0, 0, 0], classlabels_int64s=[0, 1], base_values=[0.25])
    assert session(binary, {"X": (TP.FLOAT, [2, 4])}).run(None, {"X": x(2, 4)})[1].shape == (2, 2)
    y = session(tree_regressor(base_values=[10.0]), {"X": (TP.FLOAT, [2, 4])}).run(None, {"X": x(2, 4)})[0]
    assert y.ravel().tolist() == [11.0, 12.0]  # x[:, 3] = 0.3 <= 0.5 then 0.7 > 0.5


def tree_v5(**over):
    attrs = dict(nodes_modes=numpy_helper.from_array(np.array([0], np.uint8)), nodes_featureids=[3],
                 nodes_splits=numpy_helper.from_array(np.array([0.5], np.float32)), nodes_truenodeids=[0],
                 nodes_trueleafs=[1], nodes_falsenodeids=[1], nodes_falseleafs=[1], leaf_targetids=[0, 0],
                 leaf_weights=numpy_helper.from_array(np.array([1.0, 2.0], np.float32)), tree_roots=[0], n_targets=1)
    attrs.update(over)
    return ml_node("TreeEnsemble", name="te", **attrs)


def test_tree_ensemble_v5():
    has(creation_error(tree_v5(), {"X": (TP.FLOAT, [2, 3])}, ml_opset=5),
        "nodes_featureids reads feature 3, so the input needs at least 4 features, but input X has 3 features")
    has(feed_error(tree_v5(), {"X": x(2, 3)}, SYMBOLIC, ml_opset=5), "reads feature 3", "input X has 3 features")
    y = session(tree_v5(), SYMBOLIC, ml_opset=5).run(None, {"X": x(2, 4)})[0]
    assert y.ravel().tolist() == [1.0, 2.0]
    for over, words in [
        (dict(leaf_targetids=[0]), "leaf_targetids has 1 entries but leaf_weights has 2"),
        (dict(nodes_splits=numpy_helper.from_array(np.array([0.5, 1.0], np.float32))),
         "nodes_splits has 2 entries but nodes_modes has 1"),
        (dict(nodes_featureids=[3, 1]), "nodes_featureids has 2 entries but nodes_modes has 1"),
        (dict(nodes_falsenodeids=[2]), "nodes_falsenodeids[0] points to leaf 2 of 2"),
        (dict(nodes_trueleafs=[0], nodes_truenodeids=[1]), "nodes_truenodeids[0] points to interior node 1 of 1"),
        (dict(tree_roots=[1]), "tree_roots [1] points outside the 1 interior nodes"),
    ]:
        has(creation_error(tree_v5(**over), {"X": (TP.FLOAT, [2, 4])}, ml_opset=5), words)


# ---------------------------------------------------------------------------
# Lists sized by the feature count: Scaler, Imputer, ZipMap; ArrayFeatureExtractor, FeatureVectorizer


def test_scaler():
    node = ml_node("Scaler", name="sc", offset=[0.0, 1.0, 2.0], scale=[1.0, 2.0, 3.0])
    has(creation_error(node, {"X": (TP.FLOAT, [2, 4])}),
        "offset has 3 values, one per feature, but input X has 4 features (shape [2, 4])")
    has(feed_error(node, {"X": x(2, 2)}, SYMBOLIC), "offset has 3 values, one per feature", "input X has 2 features")
    has(creation_error(ml_node("Scaler", name="sc", offset=[0.0, 1.0], scale=[1.0, 2.0, 3.0])),
        "offset has 2 values and scale 3: each needs 1 value or one per feature")
    one = ml_node("Scaler", name="sc", offset=[1.0], scale=[2.0, 2.0, 2.0])
    np.testing.assert_allclose(session(one, SYMBOLIC).run(None, {"X": x(2, 3)})[0], (x(2, 3) - 1) * 2)


def test_imputer():
    node = ml_node("Imputer", name="imp", imputed_value_floats=[1.0, 2.0, 3.0], replaced_value_float=0.0)
    has(creation_error(node, {"X": (TP.FLOAT, [2, 4])}),
        "imputed_value_floats has 3 values, one per feature, but input X has 4 features")
    has(feed_error(node, {"X": x(2, 4)}, SYMBOLIC), "imputed_value_floats has 3 values", "input X has 4 features")
    has(creation_error(node, {"X": (TP.INT64, [2, 3])}), "input X is int64 but imputed_value_int64s is empty")
    got = session(node, SYMBOLIC).run(None, {"X": x(2, 3)})[0]
    assert got[0].tolist() == pytest.approx([1.0, 0.1, 0.2])
    # a 1-D input cycles through the values (onnxruntime): no feature count to check
    assert session(node, {"X": (TP.FLOAT, [4])}).run(None, {"X": np.zeros(4, np.float32)})[0].tolist() == \
        [1.0, 2.0, 3.0, 1.0]


def test_zipmap():
    node = ml_node("ZipMap", name="zm", outputs=("Y",), classlabels_int64s=[1, 2, 3])
    has(creation_error(node, {"X": (TP.FLOAT, [2, 4])}),
        "3 class labels means 3 score columns, but input X has 4 features")
    has(feed_error(node, {"X": x(2, 2)}, SYMBOLIC), "3 class labels", "input X has 2 features")


def test_array_feature_extractor():
    node = ml_node("ArrayFeatureExtractor", inputs=("X", "I"), name="afe")
    const = [numpy_helper.from_array(np.array([0, 5], np.int64), "I")]
    has(creation_error(node, {"X": (TP.FLOAT, [2, 3])}, initializers=const),
        "I selects column 5, so the input needs at least 6 features, but input X has 3 features")
    neg = [numpy_helper.from_array(np.array([-1], np.int64), "I")]
    has(creation_error(node, {"X": (TP.FLOAT, [2, 3])}, initializers=neg), "index -1 in I is negative")
    fed = {"X": (TP.FLOAT, [2, 3]), "I": (TP.INT64, [None])}
    has(feed_error(node, {"X": x(2, 3), "I": np.array([1, 3], np.int64)}, fed),
        "index 3 in I is out of range [0, 3) for input X (shape [2, 3])")


def test_feature_vectorizer_counts_its_inputs():
    node = ml_node("FeatureVectorizer", inputs=("A", "B", "C"), name="fv", inputdimensions=[2, 3])
    inputs = {n: (TP.FLOAT, [1, 2]) for n in "ABC"}
    has(creation_error(node, inputs), "inputdimensions has 2 entries for 3 inputs")


def test_label_encoder_and_category_mapper_lengths():
    le = ml_node("LabelEncoder", name="le", keys_int64s=[1, 2, 3], values_strings=["a", "b"])
    has(creation_error(le, {"X": (TP.INT64, [2])}, ml_opset=2), "keys_int64s has 3 keys but values_strings 2 values")
    cm = ml_node("CategoryMapper", name="cm", cats_int64s=[1, 2, 3], cats_strings=["a", "b"])
    has(creation_error(cm, {"X": (TP.INT64, [2])}), "cats_int64s has 3 values but cats_strings 2")
