"""docs/SUPPORTED_OPS.md is generated from the kernel registry: it must match what the registry holds now."""
import importlib.util
import re
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "docs", "gen_ops_table.py")


def _gen():
    spec = importlib.util.spec_from_file_location("ortlite_docs_gen_ops_table", GEN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_supported_ops_doc_is_current():
    gen = _gen()
    expected = gen.render()
    with open(gen.OUT, encoding="utf-8") as f:
        current = f.read()
    # the onnx version the table was made with is informative: another onnx must not fail CI
    current, expected = (re.sub(r" onnx [0-9][^ ]*\.$", " onnx X.", t, count=1, flags=re.M) for t in (current, expected))
    assert current == expected, (
        f"docs/SUPPORTED_OPS.md is out of date with the kernel registry: run `{gen.COMMAND}` and commit the result")


def test_supported_ops_doc_is_deterministic_and_complete():
    from ortlite import registry

    gen = _gen()
    assert gen.render() == gen.render()
    text = gen.render()
    builtin = {(d or "ai.onnx", op) for d, op in registry.registered_ops()
               if any(k.impl.__module__.startswith("ortlite.kernels.") for k in registry._KERNELS[(d, op)])}
    for domain, op in builtin:
        assert f"\n| {op} |" in text.split(f"## {domain}\n", 1)[1], (domain, op)
