"""Install paths (issue 18, item 4): the extras the hints name exist, the hints say how to install
from a checkout or a git URL, and the CUDA provider's reason reads 'no NVIDIA driver/GPU found'
when there is no driver or device (CuPy's probe faked: these machines have no GPU)."""
import re
import sys
import types
from pathlib import Path

import pytest

from ortlite import providers
from ortlite.providers import cuda as cuda_mod

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _extras():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


# ------------------------------------------------------------------------------ extras

def test_gpu_extras_bring_the_cuda_libraries_and_matching_tensorrt():
    ex = _extras()
    assert ex["cuda12"] == ["cupy-cuda12x[ctk]>=14"]  # CuPy's ctk extra: runtime, NVRTC, cuBLAS... wheels
    assert ex["cuda13"] == ["cupy-cuda13x[ctk]>=14"]
    for major in ("12", "13"):
        assert f"cupy-cuda{major}x[ctk]>=14" in ex[f"cudnn{major}"]
        assert f"nvidia-cudnn-cu{major}>=9" in ex[f"cudnn{major}"]
        trt = ex[f"tensorrt{major}"]
        assert f"tensorrt-cu{major}>=10" in trt and f"cupy-cuda{major}x[ctk]>=14" in trt
        other = "13" if major == "12" else "12"
        assert not any(f"cu{other}" in d or f"cuda{other}" in d for d in trt), trt
    assert "tensorrt" not in ex  # the meta-package resolves to the CUDA 13 build: ambiguous


def test_install_hint_says_checkout_and_git_url():
    h = providers.install_hint("cuda12", "cuda13")
    assert "pip install -e '.[cuda12]'" in h and "'.[cuda13]'" in h
    assert f"pip install 'ortlite[cuda12] @ git+{providers.REPO_URL}'" in h
    assert providers.install_hint("jit") == (
        f"pip install -e '.[jit]' in an ortlite checkout, or pip install 'ortlite[jit] @ git+{providers.REPO_URL}'")


# Hints in files this change does not own, still naming the old form; each entry is (file, extra).
# The test below fails when one is fixed (remove it here) or when a new stale hint appears.
_PENDING = set()


def test_every_install_hint_names_an_existing_extra():
    """Every `ortlite[X]` / `.[X]` printed by ortlite, providers or kernels names an extra of pyproject."""
    extras = set(_extras())
    bad = set()
    for d in ("ortlite", "providers", "kernels"):
        for f in sorted((ROOT / d).rglob("*.py")):
            for m in re.finditer(r"(?:ortlite|\.)\[([a-z0-9_,]+)\]", f.read_text()):
                for x in m.group(1).split(","):
                    if x not in extras:
                        bad.add((str(f.relative_to(ROOT)), x))
    assert bad - _PENDING == set(), f"install hints naming extras pyproject lacks: {sorted(bad - _PENDING)}"
    assert _PENDING <= bad, f"fixed, remove from _PENDING: {sorted(_PENDING - bad)}"


def test_cupy_missing_hint_names_the_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    ok, why = cuda_mod._probe_cupy()
    assert not ok
    assert why.startswith("CuPy is not installed (pip install -e '.[cuda12]' (or '.[cuda13]')")
    assert "git+" in why


# ------------------------------------------------------------------------------ the CUDA reason

class CUDARuntimeError(RuntimeError):
    pass


def _fake_cupy(count=None, error=None, nvrtc_error=None):
    def get_count():
        if error is not None:
            raise error
        return count

    def nvrtc_version():
        if nvrtc_error is not None:
            raise nvrtc_error
        return (12, 9)

    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count),
                                 nvrtc=types.SimpleNamespace(getVersion=nvrtc_version))
    return types.SimpleNamespace(cuda=cuda)


INSUFFICIENT = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")
NO_DEVICE = CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")


@pytest.mark.parametrize("error", [INSUFFICIENT, NO_DEVICE, OSError("libcuda.so.1: cannot open shared object file")])
def test_no_driver_reads_no_nvidia_driver_found(monkeypatch, error):
    monkeypatch.setattr(cuda_mod, "_driver_loadable", lambda: False)
    ok, why = cuda_mod._probe_device(_fake_cupy(error=error))
    assert not ok
    assert why.startswith("no NVIDIA driver/GPU found (CuPy: ")
    assert " ".join(str(error).split()) in why  # the raw reason in parentheses
    assert "insufficient" not in why.split("(")[0]


def test_no_device_counted_reads_no_nvidia_driver_found():
    ok, why = cuda_mod._probe_device(_fake_cupy(count=0))
    assert (ok, why) == (False, "no NVIDIA driver/GPU found (CuPy sees no CUDA device)")


def test_an_old_driver_is_called_old(monkeypatch):
    monkeypatch.setattr(cuda_mod, "_driver_loadable", lambda: True)  # libcuda loads: a driver is there
    ok, why = cuda_mod._probe_device(_fake_cupy(error=INSUFFICIENT))
    assert not ok and why.startswith("the NVIDIA driver is older than CuPy's CUDA runtime needs")
    assert "cudaErrorInsufficientDriver" in why and "'.[cuda12]'" in why


def test_no_device_wins_over_an_old_driver(monkeypatch):
    monkeypatch.setattr(cuda_mod, "_driver_loadable", lambda: True)
    ok, why = cuda_mod._probe_device(_fake_cupy(error=NO_DEVICE))
    assert why.startswith("no NVIDIA driver/GPU found (CuPy: ")


def test_missing_nvrtc_names_the_ctk_install(monkeypatch):
    err = type("DynamicLibNotFoundError", (Exception,), {})(
        'Failure finding "libnvrtc.so.12": No such file: libnvrtc.so.12')
    ok, why = cuda_mod._probe_device(_fake_cupy(count=1, nvrtc_error=err))
    assert not ok
    assert why.startswith("CuPy cannot load the CUDA libraries (NVRTC: DynamicLibNotFoundError: ")
    assert "pip install -e '.[cuda12]'" in why


def test_a_usable_device():
    assert cuda_mod._probe_device(_fake_cupy(count=2)) == (True, "")


def test_the_installed_cupy_on_this_machine():
    """The real probe here (CuPy installed by the test extra, no GPU): the reason says so plainly."""
    ok, why = cuda_mod._probe_cupy()
    if ok:
        pytest.skip("a GPU is usable here")
    assert "CuPy" in why
    if "cudaErrorInsufficientDriver" in why and not cuda_mod._driver_loadable():
        assert why.startswith("no NVIDIA driver/GPU found (CuPy: ")
