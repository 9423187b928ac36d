"""Cold start (issue 18, item 5): what `import ortlite` and a first session load.

Each check runs in a fresh interpreter (subprocess) with its own kernel-index directory.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest


def _run(code, tmp_path, **env):
    e = dict(os.environ, ORTLITE_CACHE_DIR=str(tmp_path), **env)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


HEAVY = ["numba", "llvmlite", "scipy", "sklearn", "tqdm", "matplotlib", "threadpoolctl", "onnx.reference",
         "cupy", "openvino", "tensorrt", "onnxruntime", "PIL"]


def test_import_loads_no_optional_package_and_no_kernel(tmp_path):
    out = json.loads(_run(f"""
        import sys, json, ortlite
        print(json.dumps([m for m in sys.modules if m in {HEAVY!r} or m.startswith("ortlite.kernels.")]))
    """, tmp_path))
    assert out == []


_DUMP = """
    import json, sys, ortlite
    from ortlite import registry
    registry.load_all_kernels()
    lazy = registry._index is not None
    keys = {keys}
    if keys is None:
        registry._import_all_kernel_modules()
        keys = sorted(dict.keys(registry._KERNELS))
    out = {{}}
    for d, op in keys:
        out[d + "|" + op] = [[k.where, k.since, list(k.families)] for k in (registry._KERNELS.get((d, op)) or [])]
    print(json.dumps({{"lazy": lazy, "kernels": out, "index": {{d + "|" + op: v for (d, op), v in
                      registry.kernel_index().items()}},
                      "modules": sorted(m for m in sys.modules if m.startswith("ortlite.kernels."))}}))
"""


def _lazy(code, tmp_path):
    """A run that found the index (a kernel file edited between two runs makes a new one: run again)."""
    for _ in range(3):
        out = json.loads(_run(code, tmp_path))
        if out["lazy"]:
            return out
    return out


def test_lazy_kernel_table_equals_eager_registration(tmp_path):
    """The first process imports every kernel module and writes the index; a second one imports the
    modules per op as it looks the op up: every op gets exactly the kernels eager registration gives."""
    eager = json.loads(_run(_DUMP.format(keys=None), tmp_path))
    assert not eager["lazy"] and eager["kernels"]
    assert set(eager["index"]) == set(eager["kernels"])  # every registration recorded its module
    assert any(f.startswith("kernel-index-") for f in os.listdir(tmp_path))
    keys = [k.split("|", 1) for k in eager["kernels"]]
    lazy = _lazy(_DUMP.format(keys=keys), tmp_path)
    assert lazy["lazy"]
    assert lazy["kernels"] == eager["kernels"]
    # op by op in a fresh process: the index alone brings each op's kernels (not modules loaded for others)
    for k in ("|Conv", "|Gelu", "com.microsoft|FusedConv", "ai.onnx.ml|TreeEnsembleClassifier", "|LayerNormalization"):
        if k in eager["kernels"]:
            one = _lazy(_DUMP.format(keys=[k.split("|", 1)]), tmp_path)
            assert one["kernels"][k] == eager["kernels"][k], k


def test_index_is_rebuilt_when_off_or_missing(tmp_path):
    first = json.loads(_run(_DUMP.format(keys=[["", "Relu"]]), tmp_path))
    assert not first["lazy"]
    off = json.loads(_run(_DUMP.format(keys=[["", "Relu"]]), tmp_path, ORTLITE_LAZY_KERNELS="0"))
    assert not off["lazy"] and off["kernels"] == first["kernels"]
    for f in os.listdir(tmp_path):  # a corrupt index: everything is imported again, and rewritten
        (tmp_path / f).write_text("{not json")
    bad = json.loads(_run(_DUMP.format(keys=[["", "Relu"]]), tmp_path))
    assert not bad["lazy"] and bad["kernels"] == first["kernels"]
    again = _lazy(_DUMP.format(keys=[["", "Relu"]]), tmp_path)
    assert again["lazy"] and again["kernels"] == first["kernels"]


def test_demo_session_imports_only_its_kernel_modules(tmp_path):
    code = """
        import sys, json, numpy as np, ortlite
        from ortlite import zoo
        s = ortlite.InferenceSession(zoo.demo().SerializeToString(), providers=["CPUExecutionProvider"])
        i = s.get_inputs()[0]
        y = s.run(None, {i.name: np.ones([d if isinstance(d, int) else 1 for d in i.shape], np.float32)})
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("ortlite.kernels."))))
    """
    _run(code, tmp_path, ORTLITE_JIT="0")  # writes the index
    mods = json.loads(_run(code, tmp_path, ORTLITE_JIT="0"))
    assert "ortlite.kernels.conv" in mods
    for m in ("ortlite.kernels.ml", "ortlite.kernels.ml_tree", "ortlite.kernels.rnn", "ortlite.kernels.text"):
        assert m not in mods


def test_unknown_op_error_still_lists_registrations(tmp_path):
    out = _run("""
        from ortlite import registry
        registry.load_all_kernels()
        print(registry.describe("Conv", ""))
    """, tmp_path)
    assert "cpu since 1" in out


def test_background_compile_then_switch(tmp_path):
    pytest.importorskip("numba")
    out = json.loads(_run("""
        import json, sys, numpy as np
        from ortlite.kernels import _jit
        first = _jit.bias_act(np.float32, _jit.ACT_RELU, False)   # numba not loaded: queued, numpy path now
        loaded_then = "numba" in sys.modules
        ok = _jit.wait_background(240)
        fn = _jit.bias_act(np.float32, _jit.ACT_RELU, False)
        y = np.array([[[-1.0, 2.0]]], np.float32)
        fn(y, np.zeros(1, np.float32), y, _jit.act_params((_jit.ACT_RELU, 0.0, 0.0), np.float32), 0, 1)
        print(json.dumps({"first": first is None, "ok": ok, "fn": fn is not None, "y": y.ravel().tolist(),
                          "enabled": _jit.enabled()}))
    """, tmp_path))
    assert out == {"first": True, "ok": True, "fn": True, "y": [0.0, 2.0], "enabled": True}


def test_background_off_compiles_in_the_caller(tmp_path):
    pytest.importorskip("numba")
    out = _run("""
        import numpy as np
        from ortlite.kernels import _jit
        print(_jit.bias_act(np.float32, _jit.ACT_RELU, False) is not None and not _jit._pending)
    """, tmp_path, ORTLITE_JIT_BACKGROUND="0")
    assert out == "True"


def test_jit_off_is_never_queued(tmp_path):
    out = _run("""
        import sys, numpy as np
        from ortlite.kernels import _jit
        print(_jit.bias_act(np.float32, 1, False) is None and not _jit._pending and not _jit.enabled()
              and "numba" not in sys.modules)
    """, tmp_path, ORTLITE_JIT="0")
    assert out == "True"
