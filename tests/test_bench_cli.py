"""`ortlite bench`: every figure in the JSON, the Markdown tables, the plot, IOBinding, provider errors.

Timings are never asserted (2 shared cores); only that each figure is there and consistent.
"""
import importlib.util
import json
import sys

import numpy as np
import onnx
import pytest

from ortlite import providers, zoo
from ortlite.bench import provider_name
from ortlite.cli import main
from partition.pretend_device import PretendDeviceExecutionProvider

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
LATENCY = ("min", "mean", "p50", "p90", "p99", "max")


@pytest.fixture(scope="module")
def yolo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "yolo160.onnx"
    onnx.save(zoo.yolo_style(size=160), str(path))
    return str(path)


@pytest.fixture
def pretend_device():
    providers.register_provider(PretendDeviceExecutionProvider, priority=0)
    yield PretendDeviceExecutionProvider
    providers.unregister_provider(PretendDeviceExecutionProvider.name)
    from ortlite import ortvalue

    ortvalue._device_providers.clear()


def bench(capsys, *args):
    rc = main(["bench", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "warm-up:" not in out.err and "timed runs:" not in out.err  # no progress bar off a terminal
    return out.out


def check_result(r, iterations, batch):
    assert r["create_ms"] > 0 and r["first_run_ms"] > 0
    assert "engine_build_ms" in r and r["engine_build_ms"] is None  # no compiling provider here
    lat = r["latency_ms"]
    assert all(isinstance(lat[k], float) and lat[k] > 0 for k in LATENCY)
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert r["iterations"] == len(r["latencies_ms"]) == iterations
    assert r["batch"] == batch
    assert r["throughput_per_s"] == pytest.approx(batch * 1e3 / lat["mean"])
    assert isinstance(r["peak_rss_mb"], float) and r["peak_rss_mb"] >= 0
    assert "device_memory_mb" in r  # None: no device
    ag = r["agreement"]
    assert ag["pass"] is True and ag["atol"] == 1e-4 and ag["rtol"] == 1e-3
    if not ag.get("reference"):
        assert ag["max_abs_err"] <= 1e-4 and ag["outputs"] and all(o["pass"] for o in ag["outputs"])


@pytest.mark.parametrize("which", ["demo", "yolo"])
def test_bench_writes_json_markdown_and_plot(which, yolo_path, tmp_path, capsys):
    js, md, png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    model = [] if which == "demo" else [yolo_path]
    plot = ["--plot", str(png)] if HAVE_MATPLOTLIB else []
    out = bench(capsys, *model, "--providers", "cpu", "--iterations", "5", "--warmup", "1",
                "--json", str(js), "--markdown", str(md), *plot)
    d = json.loads(js.read_text())
    # the model, the settings, the machine
    assert d["model"]["nodes"] == (11 if which == "demo" else 244) and d["model"]["batch"] == 1
    assert d["model"]["inputs"][0]["shape"] == ([1, 3, 64, 64] if which == "demo" else [1, 3, 160, 160])
    assert d["settings"]["iterations"] == 5 and d["settings"]["warmup"] == 1 and d["settings"]["level"] == "all"
    m = d["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["python"] and m["numpy"] == np.__version__
    assert m["onnxruntime"] and m["date"][:2] == "20"
    assert "VmHWM" in d["memory_method"]["host"] or "ru_maxrss" in d["memory_method"]["host"]
    # ortlite's CPU provider and onnxruntime's, every figure
    by = {(r["runtime"], r["provider"]): r for r in d["results"]}
    assert set(by) == {("ortlite", "CPUExecutionProvider"), ("onnxruntime", "CPUExecutionProvider")}
    for r in by.values():
        check_result(r, 5, 1)
    mine = by["ortlite", "CPUExecutionProvider"]
    assert mine["agreement"]["reference"] is True
    assert mine["placement"] == {"CPUExecutionProvider": mine["placement"]["CPUExecutionProvider"]}
    assert mine["placement"]["CPUExecutionProvider"] > 0 and mine["copies_per_run"] == 0
    assert by["onnxruntime", "CPUExecutionProvider"]["placement"] is None
    # the Markdown tables (and the same tables on stdout)
    text = md.read_text()
    for col in ("create ms", "engine build ms", "first run ms", "p50 ms", "p99 ms", "inferences/s",
                "peak RSS MB", "device MB", "nodes per provider", "copies / run", "max abs err", "max rel err"):
        assert col in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ortlite CPU") or ln.startswith("| onnxruntime")]
    assert len(rows) == 4  # two tables, two runtimes
    assert "| ortlite CPU |" in out and "pass |" in out
    # the plot
    if not HAVE_MATPLOTLIB:
        pytest.skip("matplotlib (the bench extra) is not installed: --plot not checked")
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["bench", "--iterations", "1", "--plot", str(tmp_path / "p.png")]) == 2
    assert "ortlite: error: --plot needs matplotlib" in capsys.readouterr().err


def test_bench_iobinding_batch_and_duration(tmp_path, capsys):
    js = tmp_path / "b.json"
    out = bench(capsys, "--providers", "cpu", "--iobinding", "--batch", "2", "--duration", "0.2", "--warmup", "1",
                "--json", str(js))
    assert "iobinding=on" in out
    d = json.loads(js.read_text())
    assert d["settings"]["iobinding"] is True and d["settings"]["duration_s"] == 0.2
    assert d["model"]["inputs"][0]["shape"] == [2, 3, 64, 64] and d["model"]["batch"] == 2
    for r in d["results"]:
        check_result(r, r["iterations"], 2)
        assert r["iterations"] >= 1


def test_unknown_provider_is_a_clear_error(capsys):
    assert main(["bench", "--providers", "cpu,nope", "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert "'nope' is not an execution provider" in err and "CPUExecutionProvider" in err and "cuda" in err


def test_unavailable_provider_is_reported_with_its_reason(tmp_path, capsys):
    ok, why = providers.availability("CUDAExecutionProvider")
    if ok:
        pytest.skip("CUDA is available here")
    js = tmp_path / "b.json"
    out = bench(capsys, "--providers", "cuda,cpu", "--iterations", "2", "--warmup", "0", "--json", str(js))
    assert f"not run: ortlite CUDAExecutionProvider: {why}" in out
    d = json.loads(js.read_text())
    assert {"runtime": "ortlite", "provider": "CUDAExecutionProvider", "reason": why} in d["unavailable"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert any(u["runtime"].startswith("onnxruntime") and u["provider"] == "CUDAExecutionProvider"
                   for u in d["unavailable"])
    # only CUDA asked for: nothing runs, and the error says why
    assert main(["bench", "--providers", "cuda", "--no-onnxruntime"]) == 2
    assert why in capsys.readouterr().err


@pytest.mark.parametrize("iobinding", [False, True])
def test_pretend_device_beside_the_cpu_provider(iobinding, pretend_device, tmp_path, capsys):
    assert provider_name("pretenddevice") == provider_name("PretendDevice") == pretend_device.name
    js = tmp_path / "b.json"
    out = bench(capsys, "--providers", "pretenddevice,cpu", "--no-onnxruntime", "--iterations", "3", "--warmup", "1",
                "--json", str(js), *(["--iobinding"] if iobinding else []))
    d = json.loads(js.read_text())
    by = {r["provider"]: r for r in d["results"]}
    assert list(by) == [pretend_device.name, "CPUExecutionProvider"]  # priority order
    dev = by[pretend_device.name]
    check_result(dev, 3, 1)
    assert dev["device"] == "pretend" and dev["session_providers"] == [pretend_device.name, "CPUExecutionProvider"]
    # the demo's Relu and Gemm run on the device, Conv / MaxPool / Flatten on the CPU: copies each way
    assert dev["placement"][pretend_device.name] > 0 and dev["placement"]["CPUExecutionProvider"] > 0
    assert dev["copies_per_run"] > 0 and dev["copy_bytes_per_run"] > 0
    assert by["CPUExecutionProvider"]["copies_per_run"] == 0
    assert dev["agreement"]["max_abs_err"] == 0.0
    assert "| ortlite PretendDevice |" in out and "PretendDevice: " in out


def test_provider_short_names():
    assert provider_name("cuda") == "CUDAExecutionProvider"
    assert provider_name("TRT") == "TensorrtExecutionProvider"
    assert provider_name("TensorRTExecutionProvider") == "TensorrtExecutionProvider"
    assert provider_name("cpu") == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="not an execution provider"):
        provider_name("gpu")
