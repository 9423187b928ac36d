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

OFF_BY = np.float32(1e-2)


class BrokenDeviceExecutionProvider(PretendDeviceExecutionProvider):
    """The pretend device with a Relu kernel that is off by 1e-2 everywhere."""

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
    assert first.max_abs == pytest.approx(OFF_BY, rel=1e-3)
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
    assert "first: Relu 'relu' on BrokenDevice" in out.splitlines()[-2]  # the summary names where it starts
    assert out.splitlines()[-1].startswith("FAIL: ")  # the verdict
    relu = next(line for line in out.splitlines() if " relu " in line)
    assert relu.split()[-1] == "FAIL" and "inputs differ" not in relu
    d = json.loads(js.read_text())
    assert d["ok"] is False and d["runs"][0]["nodes"][3]["name"] == "relu" and not d["runs"][0]["nodes"][3]["pass"]
    # the correct pretend device agrees everywhere
    assert main(["compare", str(path), "--providers", "pretenddevice,cpu"]) == 0
    out = capsys.readouterr().out
    assert "all match" in out.splitlines()[-2] and out.splitlines()[-1].startswith("PASS: ")
    # a tolerance looser than the error: no mismatch
    assert main(["compare", str(path), "--providers", "brokendevice,cpu", "--atol", "0.1", "--rtol", "0"]) == 0
    capsys.readouterr()


def test_compare_cpu_with_onnxruntime(capsys):
    assert main(["compare", "--providers", "cpu", "--onnxruntime"]) == 0  # the demo model
    out = capsys.readouterr().out
    assert "ortlite CPUExecutionProvider vs onnxruntime" in out and "11 values of 11 nodes" in out
    res = compare(chain_model(), ["CPUExecutionProvider"], onnxruntime=True, level="all")
    assert res.ok and res.compared_nodes == 7 and res.reference.startswith("onnxruntime")


def test_compare_without_providers_uses_onnxruntime(capsys):
    assert main(["compare"]) == 0  # its help: cpu alone is compared with onnxruntime
    out = capsys.readouterr().out
    assert "ortlite CPUExecutionProvider vs onnxruntime" in out and out.splitlines()[-1].startswith("PASS")
    assert main(["compare", "--no-onnxruntime"]) == 2
    assert "needs two runs" in capsys.readouterr().err


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
    assert not d.ok and d.max_abs == pytest.approx(0.5) and d.max_rel > 1e15  # 0.5 / (0 + eps)
    assert d.mean_abs == pytest.approx(0.3) and d.mag == pytest.approx(0.5 / 1.1)
    # elemwise: rtol is relative to the tensor's magnitude; max/mean/median: Polygraphy's rule
    ref = np.array([100.0, 0.0, -50.0, 1.0])
    a = ref + np.array([0.0, 4e-4, 0.0, 0.0])  # rounding noise on an element that cancelled to 0
    assert tensor_diff(a, ref, 1e-4, 1e-5).ok and tensor_diff(a, ref, 1e-4, 1e-5).score == pytest.approx(0.4)
    assert not tensor_diff(a, ref, 1e-4, 1e-5, "max").ok  # 4e-4 > atol and 4e-4 / eps > rtol
    assert tensor_diff(a, ref, 1e-4, 1e-5, "median").ok and tensor_diff(a, ref, 1e-4, 1e-5, "mean").ok
    assert not tensor_diff(ref * 1.01, ref, 1e-4, 1e-3, "median").ok  # 1% everywhere fails every statistic
    with pytest.raises(ValueError, match="one of elemwise, max, mean, median"):
        tensor_diff(a, ref, 0, 0, "p99")
    assert not tensor_diff(np.zeros(3), np.zeros(4), 1, 1).ok
    assert tensor_diff(np.array([1, 2], np.int64), np.array([1, 2], np.int64), 0, 0).ok
    assert not tensor_diff(np.array([np.nan]), np.array([1.0]), 1, 1).ok
    m = zoo.demo()
    exposed, _ = expose_intermediates(m)
    assert len(exposed.graph.output) == len(m.graph.node)


class NoisyConvExecutionProvider(PretendDeviceExecutionProvider):
    """The pretend device running Conv too; ``MODE`` perturbs the Conv outputs: 'noise' as a different
    summation order does (1e-7 of the tensor's magnitude, 4e-4 on one element), 'wrong' one channel by 5%."""

    name = "NoisyConvExecutionProvider"
    device_type = "noisy"
    MODE = "noise"

    def get_capability(self, node, lookup, graph=None):
        if node.op_type == "Conv":
            return super(PretendDeviceExecutionProvider, self).get_capability(node, lookup, graph)
        return super().get_capability(node, lookup, graph)

    def wrap_kernel(self, fn, node, kdef):
        run = super().wrap_kernel(fn, node, kdef)
        if node.op_type != "Conv":
            return run

        def perturbed(*args):
            y = np.array(run(*args).view(np.ndarray))
            if self.MODE == "noise":
                y += np.float32(1e-7 * np.abs(y).max()) * np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)
                y.flat[np.argmin(np.abs(y))] += np.float32(4e-4)
            else:
                y[:, 0] *= np.float32(1.05)
            return to_device_array(y)

        return perturbed


def conv_model():
    """x [1,8,16,16] -> Conv 3x3 (32) -> Relu -> Conv 3x3 (16) -> y: outputs of magnitude ~10."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    w2 = (0.3 * rng.standard_normal((16, 32, 3, 3))).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])],
                      [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")])


@pytest.fixture
def noisy_conv(monkeypatch):
    providers.register_provider(NoisyConvExecutionProvider, priority=0)
    yield NoisyConvExecutionProvider
    providers.unregister_provider(NoisyConvExecutionProvider.name)
    from ortlite import ortvalue

    ortvalue._device_providers.clear()


def test_conv_rounding_noise_passes_and_a_wrong_channel_fails(noisy_conv, monkeypatch, tmp_path, capsys):
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))
    args = ["compare", str(path), "--providers", "noisyconv,cpu"]
    assert main(args) == 0  # max abs 4e-4 on outputs of magnitude ~10: float32 noise, not a mismatch
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("PASS: every compared tensor is within the tolerance (elemwise error")
    header = next(line for line in out.splitlines() if line.strip().startswith("#"))
    assert header.split()[4:] == ["score", "abs", "max", "mean", "median", "rel", "max", "mean", "median",
                                  "/max|ref|", "result"]
    assert main([*args, "--check-error-stat", "median"]) == 0
    assert main([*args, "--check-error-stat", "max"]) == 1  # Polygraphy's strictest check: the 4e-4 element
    capsys.readouterr()
    monkeypatch.setattr(NoisyConvExecutionProvider, "MODE", "wrong")
    js = tmp_path / "c.json"
    for stat in ("median", "mean", "elemwise", "max"):
        assert main([*args, "--check-error-stat", stat, "--json", str(js)]) == 1, stat
        out = capsys.readouterr().out
        assert out.splitlines()[-1].startswith("FAIL: ") and f"({stat} error" in out.splitlines()[-1]
        # the median of conv1's error is 0 (one channel of 32 is wrong): it shows from conv2 on
        assert f"first: Conv '{'conv2' if stat == 'median' else 'conv1'}'" in out.splitlines()[-1]
    d = json.loads(js.read_text())
    conv1 = d["runs"][0]["nodes"][0]
    assert d["check_error_stat"] == "max" and not conv1["pass"] and conv1["score"] > 1
    assert {"max_abs_err", "mean_abs_err", "median_abs_err", "max_rel_err", "mean_rel_err", "median_rel_err",
            "max_abs_err_over_max_ref"} <= set(conv1["outputs"][0])
