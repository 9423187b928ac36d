"""Porting traps (issue 18): onnxruntime names ported code uses, compared with onnxruntime where installed."""
import inspect
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortlite as ort
from ortlite import compat
from helpers import make_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = {"x": np.zeros((2, 2), np.float32)}


def _add_model():
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "W")
    return make_model([helper.make_node("Add", ["x", "W"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w])


def _cpu(model, so=None):
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def test_capi_is_an_attribute_right_after_import():
    code = ("import ortlite as ort\n"
            "try:\n    ort.InferenceSession(b'')\n"
            "except ort.capi.onnxruntime_pybind11_state.InvalidProtobuf:\n    print('caught')\n"
            "from ortlite.capi._pybind_state import Fail; assert Fail is ort.Fail\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "caught", out.stderr


def test_set_providers_replans_and_keeps_the_session_on_failure(tmp_path):
    model = _add_model()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="w.bin", size_threshold=0)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    sess.disable_fallback()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ort.ProviderFallbackWarning)
        sess.set_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], [{}, {}])
    assert sess.get_providers()[-1] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in sess.get_provider_options()
    assert sess._enable_fallback is False  # kept across re-creation, as onnxruntime
    np.testing.assert_array_equal(sess.run(None, X)[0], np.ones((2, 2)))
    with pytest.raises(ValueError, match="not an execution provider"):
        sess.set_providers(["NoSuchExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, X)[0], np.ones((2, 2)))
    sess.enable_fallback()
    assert sess._enable_fallback is True


def test_add_initializer_unknown_name_is_ignored_and_mismatch_refused():
    so = ort.SessionOptions()
    so.add_initializer("not_in_model", ort.OrtValue.ortvalue_from_numpy(np.ones(3, np.float32)))
    so.add_initializer("W", ort.OrtValue.ortvalue_from_numpy(np.full((2, 2), 3, np.float32)))
    np.testing.assert_array_equal(_cpu(_add_model(), so).run(None, X)[0], np.full((2, 2), 3))
    so = ort.SessionOptions()
    so.add_initializer("W", np.ones((2, 2), np.float64))
    with pytest.raises(ort.InvalidArgument, match=r"'W' is float64\[2, 2\].*float32\[2, 2\]"):
        _cpu(_add_model(), so)


def test_add_external_initializers_supplies_missing_files(tmp_path):
    onnx.save(_add_model(), tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="w.bin", size_threshold=0)
    os.remove(tmp_path / "w.bin")
    with pytest.raises(ort.NoSuchFile):
        _cpu(str(tmp_path / "m.onnx"))
    so = ort.SessionOptions()
    so.add_external_initializers(["W"], [ort.OrtValue.ortvalue_from_numpy(np.full((2, 2), 5, np.float32))])
    sess = _cpu(str(tmp_path / "m.onnx"), so)
    np.testing.assert_array_equal(sess.run(None, X)[0], np.full((2, 2), 5))
    so = ort.SessionOptions()
    so.add_external_initializers(["zz"], [np.zeros(1, np.float32)])
    with pytest.raises(ort.Fail, match=r"\['zz'\] are not initializers"):
        _cpu(_add_model(), so)
    with pytest.raises(ort.InvalidArgument, match="equal length"):
        so.add_external_initializers(["a", "b"], [np.zeros(1)])


def test_session_options_porting_attributes():
    so = ort.SessionOptions()
    assert so.use_per_session_threads is True
    so.use_per_session_threads = False
    assert so.use_per_session_threads is False and ort.SessionOptions().use_per_session_threads is True


def _random_model():
    nodes = [helper.make_node("RandomUniform", [], ["a"], shape=[4]),
             helper.make_node("RandomNormal", [], ["b"], shape=[4])]
    return make_model(nodes, [], [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in "ab"])


def test_set_seed_makes_sessions_repeat(monkeypatch):
    monkeypatch.setattr(compat, "_seed", None)
    ort.set_seed(7)
    first = _cpu(_random_model())
    r1, r2 = first.run(None, {}), first.run(None, {})
    assert not np.array_equal(r1[0], r2[0])  # each run advances
    again = _cpu(_random_model()).run(None, {})
    for a, b in zip(r1, again):
        np.testing.assert_array_equal(a, b)
    ort.set_seed(8)
    assert not np.array_equal(_cpu(_random_model()).run(None, {})[0], r1[0])
    with pytest.raises(ort.InvalidArgument, match="integer seed"):
        ort.set_seed(1.5)


def test_logger_verbosity_and_no_op_names(monkeypatch):
    monkeypatch.setattr(compat, "_logger_verbosity", 0)
    ort.set_default_logger_verbosity(2)
    assert ort.get_default_logger_verbosity() == 2
    ort.disable_telemetry_events()
    ort.preload_dlls()
    assert ort.has_collective_ops() is False and ort.version == ort.__version__


def test_ort_memory_info_matches_onnxruntime():
    info = ort.OrtMemoryInfo("Cuda", ort.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, 1, ort.OrtMemType.DEFAULT)
    got = (info.name, info.device_id, int(info.mem_type), int(info.allocator_type), int(info.device_mem_type),
           info.device_vendor_id)
    with pytest.raises(ort.InvalidArgument, match="'CUDA' is not supported"):
        ort.OrtMemoryInfo("CUDA", ort.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    v2 = ort.OrtMemoryInfo.create_v2("x", ort.OrtMemoryInfoDeviceType.NPU, 7, 0, ort.OrtDeviceMemoryType.DEFAULT,
                                     0, ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR)
    assert (v2.name, v2.device_vendor_id, v2.allocator_type) == ("x", 7, ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR)
    ref = pytest.importorskip("onnxruntime")
    r = ref.OrtMemoryInfo("Cuda", ref.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, 1, ref.OrtMemType.DEFAULT)
    assert got == (r.name, r.device_id, int(r.mem_type), int(r.allocator_type), int(r.device_mem_type),
                   r.device_vendor_id)


def test_sparse_tensor_coo_and_csr():
    dev = ort.OrtDevice.make("cpu", 0)
    coo = ort.SparseTensor.sparse_coo_from_numpy([3, 4], np.array([1, 2], np.float32), np.array([1, 5]), dev)
    assert coo.format() is ort.OrtSparseFormat.ORT_SPARSE_COO and coo.data_type() == "sparse_tensor(float)"
    dense = np.zeros((3, 4), np.float32)
    dense.flat[[1, 5]] = [1, 2]
    np.testing.assert_array_equal(coo.to_dense(), dense)
    pairs = ort.SparseTensor.sparse_coo_from_numpy([3, 4], np.array([1, 2], np.float32),
                                                   np.array([[0, 1], [1, 1]]), dev)
    np.testing.assert_array_equal(pairs.to_dense(), dense)
    csr = ort.SparseTensor.sparse_csr_from_numpy([3, 4], np.array([1, 2], np.float32), np.array([1, 1]),
                                                 np.array([0, 1, 2, 2]), dev)
    np.testing.assert_array_equal(csr.as_csrc_view().outer(), [0, 1, 2, 2])
    np.testing.assert_array_equal(csr.to_dense(), dense)
    with pytest.raises(ort.Fail, match="does not contain CSR"):
        coo.as_csrc_view()
    with pytest.raises(ort.InvalidArgument, match="1 indices for 2 values"):
        ort.SparseTensor.sparse_coo_from_numpy([3, 4], np.array([1, 2], np.float32), np.array([1]), dev)
    with pytest.raises(ort.InvalidArgument, match="outside the dense shape"):
        ort.SparseTensor.sparse_coo_from_numpy([3, 4], np.array([1, 2], np.float32), np.array([1, 12]), dev)
    ref = pytest.importorskip("onnxruntime")
    r = ref.SparseTensor.sparse_coo_from_numpy(np.array([3, 4]), np.array([1, 2], np.float32), np.array([1, 5]),
                                               ref.OrtDevice.make("cpu", 0))
    np.testing.assert_array_equal(r.as_coo_view().indices(), coo.as_coo_view().indices())
    assert (r.data_type(), r.device_name(), list(r.dense_shape())) == (
        coo.data_type(), coo.device_name(), list(coo.dense_shape()))


def _table():
    """{name: status} of every row in docs/MIGRATION.md, per section ('' for module-level names)."""
    rows, section = {}, None
    for line in open(os.path.join(ROOT, "docs", "MIGRATION.md"), encoding="utf-8"):
        if line.startswith("## "):
            section = line[3:].strip()
        m = re.match(r"\| `(\w+)` \| (same|different|not supported) \|", line)
        if m:
            rows[(section, m.group(1))] = m.group(2)
    return rows


def test_migration_table_covers_onnxruntime_and_is_true():
    rows = _table()
    objects = {"Module-level names": ort, "InferenceSession": None, "SessionOptions": ort.SessionOptions(),
               "RunOptions": ort.RunOptions(), "IOBinding": ort.IOBinding, "OrtValue": ort.OrtValue,
               "OrtDevice": ort.OrtDevice}
    session = _cpu(_add_model())
    for (section, name), status in rows.items():
        obj = session if section == "InferenceSession" else objects[section]
        assert hasattr(obj, name) == (status != "not supported"), (section, name, status)
    ref = pytest.importorskip("onnxruntime")
    if not ref.__version__.startswith("1.32."):
        pytest.skip(f"the table mirrors onnxruntime 1.32, {ref.__version__} is installed")
    sections = {"Module-level names": ref, "InferenceSession": ref.InferenceSession, "SessionOptions":
                ref.SessionOptions, "RunOptions": ref.RunOptions, "IOBinding": ref.IOBinding,
                "OrtValue": ref.OrtValue, "OrtDevice": ref.OrtDevice}
    # submodules other tests imported (onnxruntime.quantization, .tools...) appear in dir() only then
    missing = [(s, n) for s, obj in sections.items() for n in dir(obj)
               if not n.startswith("_") and (s, n) not in rows
               and not (inspect.ismodule(getattr(obj, n, None)) and n != "capi")]
    assert not missing


def test_enable_fallback_keyword():
    """onnxruntime's InferenceSession(..., enable_fallback=0) keyword is accepted and recorded."""
    sess = ort.InferenceSession(_add_model(), providers=["CPUExecutionProvider"], enable_fallback=0)
    assert sess._enable_fallback is False
    sess.enable_fallback()
    assert sess._enable_fallback is True
