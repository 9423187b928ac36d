"""External data: read only from the model's directory (or the folder the session config names), every
bad location refused with an ortlite error naming the tensor; onnxruntime's behaviour side by side."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

import ortlite
from ortlite.errors import InvalidGraph, NoSuchFile, OrtliteError

KEY = "session.model_external_initializers_file_folder_path"
W = np.arange(4, dtype=np.float32)


def _model(location="weights.bin", offset=None, length=None, where="initializer"):
    """Y = X + W with W's data in ``location`` (W's bytes written there by the caller)."""
    w = numpy_helper.from_array(W, "W")
    set_external_data(w, location, offset=offset, length=length)
    w.ClearField("raw_data")
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])
    if where == "initializer":
        nodes, inits = [helper.make_node("Add", ["X", "W"], ["Y"], name="add")], [w]
    elif where == "constant":
        nodes = [helper.make_node("Constant", [], ["W"], name="const", value=w),
                 helper.make_node("Add", ["X", "W"], ["Y"], name="add")]
        inits = []
    else:  # inside an If branch
        branch = helper.make_graph([helper.make_node("Constant", [], ["Wb"], name="inner", value=w)], "then",
                                   [], [helper.make_tensor_value_info("Wb", TensorProto.FLOAT, [4])])
        nodes = [helper.make_node("Constant", [], ["c"], name="cond", value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
                 helper.make_node("If", ["c"], ["W"], name="if", then_branch=branch, else_branch=branch),
                 helper.make_node("Add", ["X", "W"], ["Y"], name="add")]
        inits = []
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def _save(tmp_path, model, data=W.tobytes(), name="weights.bin"):
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    if data is not None:
        (d / name).write_bytes(data)
    path = d / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def _run(sess):
    return sess.run(None, {"X": np.ones(4, np.float32)})[0]


@pytest.mark.parametrize("where", ["initializer", "constant", "subgraph"])
def test_beside_the_model_loads(tmp_path, where):
    path = _save(tmp_path, _model(where=where))
    np.testing.assert_array_equal(_run(ortlite.InferenceSession(path)), W + 1)


def test_offset_and_length(tmp_path):
    path = _save(tmp_path, _model(offset=8, length=16), data=b"\0" * 8 + W.tobytes() + b"tail")
    np.testing.assert_array_equal(_run(ortlite.InferenceSession(path)), W + 1)


@pytest.mark.parametrize("where", ["initializer", "constant", "subgraph"])
def test_bytes_refused_without_folder(tmp_path, monkeypatch, where):
    path = _save(tmp_path, _model(where=where))
    monkeypatch.chdir(os.path.dirname(path))  # the file is in the working directory: still refused
    data = open(path, "rb").read()
    with pytest.raises(InvalidGraph, match=f"keeps its data in an external file.*{KEY}") as e:
        ortlite.InferenceSession(data)
    assert ("initializer 'W'" if where == "initializer" else "attribute 'value'") in str(e.value)
    with pytest.raises(InvalidGraph, match="external file"):
        ortlite.InferenceSession(onnx.load_model_from_string(data))
    if where != "subgraph":  # onnxruntime 1.32 reads an If branch's Constant from the working directory
        import onnxruntime as ort

        with pytest.raises(Exception, match="model_path must not be empty|escapes working directory"):
            ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_bytes_with_folder_loads_like_onnxruntime(tmp_path):
    path = _save(tmp_path, _model())
    data = open(path, "rb").read()
    so = ortlite.SessionOptions()
    so.add_session_config_entry(KEY, os.path.dirname(path))
    np.testing.assert_array_equal(_run(ortlite.InferenceSession(data, so)), W + 1)
    proto = onnx.load_model_from_string(data)
    np.testing.assert_array_equal(_run(ortlite.InferenceSession(proto, so)), W + 1)
    assert proto.graph.initializer[0].data_location == TensorProto.EXTERNAL  # the caller's proto untouched
    import onnxruntime as ort

    oso = ort.SessionOptions()
    oso.add_session_config_entry(KEY, os.path.dirname(path))
    np.testing.assert_array_equal(_run(ort.InferenceSession(data, oso, providers=["CPUExecutionProvider"])), W + 1)


@pytest.mark.parametrize("location, error, message", [
    ("../weights.bin", InvalidGraph, r"leaves the model's directory \('\.\.'\)"),
    ("sub/../../weights.bin", InvalidGraph, r"leaves the model's directory"),
    ("/etc/passwd", InvalidGraph, "is an absolute path"),
    ("/proc/self/environ", InvalidGraph, "is an absolute path"),
    ("/dev/zero", InvalidGraph, "is an absolute path"),
    ("missing.bin", NoSuchFile, "external data file 'missing.bin' does not exist"),
])
def test_bad_locations_refused(tmp_path, location, error, message):
    (tmp_path / "weights.bin").write_bytes(W.tobytes())
    path = _save(tmp_path, _model(location=location))
    with pytest.raises(error, match=message) as e:
        ortlite.InferenceSession(path)
    assert "initializer 'W'" in str(e.value)


def test_symlink_out_of_the_directory(tmp_path):
    (tmp_path / "outside.bin").write_bytes(W.tobytes())
    path = _save(tmp_path, _model(location="link.bin"), data=None)
    os.symlink(tmp_path / "outside.bin", tmp_path / "m" / "link.bin")
    with pytest.raises(InvalidGraph, match="outside the model's directory.*symbolic link"):
        ortlite.InferenceSession(path)


def test_symlink_to_dev_and_proc(tmp_path):
    path = _save(tmp_path, _model(location="dev.bin"), data=None)
    os.symlink("/dev/zero", tmp_path / "m" / "dev.bin")
    with pytest.raises(InvalidGraph, match="outside the model's directory"):
        ortlite.InferenceSession(path)


def test_directory_refused(tmp_path):
    path = _save(tmp_path, _model(location="weights"), data=None)
    (tmp_path / "m" / "weights").mkdir()
    with pytest.raises(InvalidGraph, match="'weights' is not a regular file"):
        ortlite.InferenceSession(path)


@pytest.mark.parametrize("offset, length, message", [
    (0, 64, r"\[0, 64\) is outside 'weights.bin' \(16 bytes\)"),
    (32, None, r"\[32, 16\) is outside"),
    (-4, 16, "is negative"),
    (0, -1, "is negative"),
])
def test_range_refused(tmp_path, offset, length, message):
    path = _save(tmp_path, _model(offset=offset, length=length))
    with pytest.raises(InvalidGraph, match=message):
        ortlite.InferenceSession(path)


def test_length_that_does_not_match_the_tensor(tmp_path):
    path = _save(tmp_path, _model(length=8))
    with pytest.raises(OrtliteError) as e:
        ortlite.InferenceSession(path)
    assert e.value.__cause__ is not None


def test_tensor_to_array_never_reads_the_working_directory(tmp_path):
    from ortlite.ir import tensor_to_array

    w = numpy_helper.from_array(W, "W")
    set_external_data(w, "weights.bin")
    w.ClearField("raw_data")
    with pytest.raises(ValueError, match="external data the loader did not read in"):
        tensor_to_array(w)
