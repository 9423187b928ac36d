"""Python custom ops: ortlite.register_custom_op makes models with a custom domain's nodes run."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import ortlite as ort
from helpers import make_model

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def _model(op="Scale", outputs=1, **attrs):
    outs = [f"y{k}" for k in range(outputs)]
    node = helper.make_node(op, ["x"], outs, domain="my.ops", **attrs)
    return make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                      [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                      extra_opsets=[("my.ops", 1)])


def _run(model):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": X})


@pytest.fixture
def scoped():
    """Unregisters what a test registered."""
    names = []
    yield names
    for op in names:
        ort.unregister_custom_op("my.ops", op)


def test_function_with_attribute(scoped):
    ort.register_custom_op("my.ops", "Scale", lambda x, *, alpha=1.0: x * alpha)
    scoped.append("Scale")
    np.testing.assert_array_equal(_run(_model(alpha=3.0))[0], X * 3)
    np.testing.assert_array_equal(_run(_model())[0], X)


def test_class_as_decorator_with_two_outputs(scoped):
    @ort.register_custom_op("my.ops", "Split2")
    class Split2:
        made = 0

        def __init__(self, *, shift):
            Split2.made += 1
            self.shift = shift

        def __call__(self, x):
            return x + self.shift, x - self.shift

    scoped.append("Split2")
    sess = ort.InferenceSession(_model("Split2", outputs=2, shift=1.0), providers=["CPUExecutionProvider"])
    for _ in range(2):
        a, b = sess.run(None, {"x": X})
        np.testing.assert_array_equal(a, X + 1)
        np.testing.assert_array_equal(b, X - 1)
    assert Split2.made == 1  # prepared once per node, at session creation


def test_unknown_attribute_names_it(scoped):
    ort.register_custom_op("my.ops", "Scale", lambda x: x)
    scoped.append("Scale")
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.NotImplemented, match=r"\['alpha'\]"):
        _run(_model(alpha=2.0))


def test_errors(scoped):
    ort.register_custom_op("my.ops", "Scale", lambda x: x)
    scoped.append("Scale")
    with pytest.raises(ort.InvalidArgument, match="already registered.*unregister_custom_op"):
        ort.register_custom_op("my.ops", "Scale", lambda x: x)
    with pytest.raises(ort.InvalidArgument, match="expected a function or a class, got int"):
        ort.register_custom_op("my.ops", "Other", 3)
    with pytest.raises(ort.InvalidArgument, match="built-in kernels.*domain of its own"):
        ort.register_custom_op("", "Relu", lambda x: x)
    with pytest.raises(ort.InvalidArgument, match="no custom op Nope"):
        ort.unregister_custom_op("my.ops", "Nope")


def test_unregister_keeps_existing_sessions():
    ort.register_custom_op("my.ops", "Scale", lambda x, *, alpha=1.0: x * alpha)
    sess = ort.InferenceSession(_model(alpha=2.0), providers=["CPUExecutionProvider"])
    ort.unregister_custom_op("my.ops", "Scale")
    np.testing.assert_array_equal(sess.run(None, {"x": X})[0], X * 2)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.NotImplemented, match="no kernel for op Scale"):
        _run(_model(alpha=2.0))


def test_register_custom_ops_library_points_to_python_ops():
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.NotImplemented, match="register_custom_op"):
        ort.SessionOptions().register_custom_ops_library("libcustom_ops.so")
