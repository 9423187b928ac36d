"""`ortlite compare`: layer-wise comparison finds the node whose kernel is wrong, and nothing when none is."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from helpers import make_model
from ortlite import providers, zoo
from ortlite.cli import main
from ortlite.compare import compare, expose_intermediates, tensor_diff
from partition.pretend_device import PretendDeviceExecutionProvider, to_device_array

OFF_BY = np.float32(1e-3)


class BrokenDeviceExecutionProvider(PretendDeviceExecutionProvider):
    """The pretend device with a Relu kernel that is off by 1e-3 everywhere."""

    name = "BrokenDeviceExecutionProvider"
    device_type = "broken"

    def wrap_kernel(self, fn, node, kdef):
        run = super().wrap_kernel(fn, node, kdef)
        if node.op_type != "Relu":
            return run
        return lambda *args: to_device_array(run(*args).view(np.ndarray) + OFF_BY)


@pytest.fixture
def device_providers():
    for cls in (PretendDeviceExecutionProvider, BrokenDeviceExecutionProvider):
        providers.register_provider(cls, priority=0)
    yield
    for cls in (PretendDeviceExecutionProvider, BrokenDeviceExecutionProvider):
        providers.unregister_provider(cls.name)
    from ortlite import ortvalue

    ortvalue._device_providers.clear()


def chain_model():
    """x -> MatMul -> Add -> Tanh -> Relu -> Mul -> Sigmoid -> Softmax -> y; Relu sits in the middle."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((8, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    c = np.full(6, 3.0, np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h1"], name="matmul"),
        helper.make_node("Add", ["h1", "b"], ["h2"], name="add"),
        helper.make_node("Tanh", ["h2"], ["h3"], name="tanh"),
        helper.make_node("Relu", ["h3"], ["h4"], name="relu"),
        helper.make_node("Mul", ["h4", "c"], ["h5"], name="mul"),
        helper.make_node("Sigmoid", ["h5"], ["h6"], name="sigmoid"),
        helper.make_node("Softmax", ["h6"], ["y"], name="softmax", axis=-1),
    ]
    inits = [onnx.numpy_helper.from_array(W, "W"), onnx.numpy_helper.from_array(b, "b"),
             onnx.numpy_helper.from_array(c, "c")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])], inits)


def test_expose_intermediates_adds_every_node_output():
    m = chain_model()
    exposed, order = expose_intermediates(m)
    assert [n.name for _, n in order] == [n.name for n in m.graph.node]
    assert [o.name for o in exposed.graph.output] == ["y", "h1", "h2", "h3", "h4", "h5", "h6"]
    assert len(m.graph.output) == 1  # the original is untouched


def test_compare_names_the_broken_node_first(device_providers):
    res = compare(chain_model(), ["BrokenDeviceExecutionProvider", "CPUExecutionProvider"])
    assert not res.ok and res.level == "disable"
    (run,) = res.runs
    assert run.label == "ortlite BrokenDeviceExecutionProvider" and res.reference == "ortlite CPUExecutionProvider"
    assert [n.name for n in run.nodes] == ["matmul", "add", "tanh", "relu", "mul", "sigmoid", "softmax"]
    assert all(n.ok for n in run.nodes[:3])  # everything before the Relu agrees
    first = res.first_mismatch
    assert (first.name, first.op_type, first.provider, first.origin) == ("relu", "Relu", "BrokenDevice", True)
    assert first.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert first.reference_provider == "CPU"
    # later nodes differ only because their inputs did
    assert all(not n.origin for n in run.mismatches[1:])
    assert "first: Relu 'relu' on BrokenDevice" in res.summary()
    json.dumps(res.to_dict())


def test_compare_cli_exit_codes(device_providers, tmp_path, capsys):
    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(), str(path))
    js = tmp_path / "c.json"
    assert main(["compare", str(path), "--providers", "brokendevice,cpu", "--json", str(js)]) == 1
    out = capsys.readouterr().out
    table = out[out.index("mismatching node(s)"):]
    assert table.splitlines()[2].split()[:3] == ["3", "relu", "Relu"]  # the first row names the Relu
    assert "node(s) differ" in out.splitlines()[-1]  # the summary line
    d = json.loads(js.read_text())
    assert d["ok"] is False and d["runs"][0]["nodes"][3]["name"] == "relu" and not d["runs"][0]["nodes"][3]["pass"]
    # the correct pretend device agrees everywhere
    assert main(["compare", str(path), "--providers", "pretenddevice,cpu"]) == 0
    out = capsys.readouterr().out
    assert "all match" in out.splitlines()[-1]
    # a tolerance looser than the error: no mismatch
    assert main(["compare", str(path), "--providers", "brokendevice,cpu", "--atol", "1e-2", "--rtol", "0"]) == 0
    capsys.readouterr()


def test_compare_cpu_with_onnxruntime(capsys):
    assert main(["compare", "--providers", "cpu", "--onnxruntime"]) == 0  # the demo model
    out = capsys.readouterr().out
    assert "ortlite CPUExecutionProvider vs onnxruntime" in out and "11 values of 11 nodes" in out
    res = compare(chain_model(), ["CPUExecutionProvider"], onnxruntime=True, level="all")
    assert res.ok and res.compared_nodes == 7 and res.reference.startswith("onnxruntime")


def test_compare_errors(capsys):
    ok, why = providers.availability("CUDAExecutionProvider")
    if not ok:
        assert main(["compare", "--providers", "cuda,cpu"]) == 2
        assert why in capsys.readouterr().err
    assert main(["compare", "--providers", "nope"]) == 2
    assert "not an execution provider" in capsys.readouterr().err


def test_tensor_diff():
    a = np.array([1.0, 2.0, np.nan, np.inf], np.float32)
    d = tensor_diff(a, a.copy(), 0, 0)
    assert d.ok and d.max_abs == 0 and d.max_rel == 0  # NaN = NaN, inf = inf
    d = tensor_diff(np.array([1.0, 0.5]), np.array([1.1, 0.0]), 1e-3, 1e-3)
    assert not d.ok and d.max_abs == pytest.approx(0.5) and d.max_rel == pytest.approx(0.1 / 1.1)
    assert not tensor_diff(np.zeros(3), np.zeros(4), 1, 1).ok
    assert tensor_diff(np.array([1, 2], np.int64), np.array([1, 2], np.int64), 0, 0).ok
    assert not tensor_diff(np.array([np.nan]), np.array([1.0]), 1, 1).ok
    m = zoo.demo()
    exposed, _ = expose_intermediates(m)
    assert len(exposed.graph.output) == len(m.graph.node)
