"""The CPU stand-in ``trt.fake_tensorrt`` must not invent TensorRT API.

Checked against lists extracted from the real bindings wheels
(``tests/trt/data/trt_api_<version>.txt``, made by ``extract_trt_api.py``):

* every public class / function / method / property / enum member / constant
  the stand-in personality defines exists in the real list of that version,
  with a compatible kind (property vs method, read-only properties stay
  read-only);
* method parameter names match a real overload (order and names; the stand-in
  may leave out trailing parameters only where the real ones have defaults;
  pybind's auto-named ``argN`` parameters are positional-only, so any name is
  accepted there);
* enum integer values equal the real ones (they shift between 10.x and 11.x);
* members removed in 11.x raise ``AttributeError`` on the 11.x personality.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections import namedtuple
from pathlib import Path

import pytest

from trt.extract_trt_api import _split_params

DATA = Path(__file__).parent / "data"
LIST_FILES = sorted(DATA.glob("trt_api_*.txt"))

# Dunders that are checked; every other dunder (and every _private name) is skipped.
CHECKED_DUNDERS = {"__init__", "__len__", "__getitem__", "__str__", "__bool__"}

# Removed between 10.x and 11.x (tensorrt-notes.md §1.12 and §5), each confirmed
# below against both lists: present in 10.16.1.11, absent from 11.4.0.106.
ABSENT_IN_11 = [
    "BuilderFlag.FP16",
    "BuilderFlag.BF16",
    "BuilderFlag.INT8",
    "BuilderFlag.FP8",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    "OnnxParser.supports_model",
    "Builder.platform_has_fast_fp16",
    "Builder.platform_has_fast_int8",
    "Builder.platform_has_tf32",
    "IBuilderConfig.int8_calibrator",
    "IBuilderConfig.algorithm_selector",
    "CalibrationAlgoType",
    "IInt8Calibrator",
    "IInt8EntropyCalibrator2",
    "IAlgorithmSelector",
    "IStreamReader",
    "TacticSource.CUBLAS",
    "TacticSource.CUBLAS_LT",
    "TacticSource.CUDNN",
    "ICudaEngine.create_execution_context_without_device_memory",
    "ICudaEngine.device_memory_size",
    "ICudaEngine.weight_streaming_budget",
    "ILayer.precision",
    "ILayer.set_output_type",
    "IExecutionContext.all_shape_inputs_specified",
]
# The subset the 10.x personality is expected to provide (notes §5).
PRESENT_IN_10 = [
    "BuilderFlag.FP16",
    "BuilderFlag.INT8",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    "OnnxParser.supports_model",
    "Builder.platform_has_fast_fp16",
]

KNOWN_IN_BOTH = [
    ("class", "Builder"),
    ("method", "Builder.build_serialized_network"),
    ("method", "Builder.create_network"),
    ("method", "IExecutionContext.execute_async_v3"),
    ("method", "IExecutionContext.set_input_shape"),
    ("method", "OnnxParser.supports_model_v2"),
    ("method", "OnnxParser.get_subgraph_nodes"),
    ("property", "OnnxParser.num_subgraphs"),
    ("enum", "NetworkDefinitionCreationFlag.STRONGLY_TYPED"),
    ("enum", "BuilderFlag.TF32"),
    ("enum", "MemoryPoolType.WORKSPACE"),
    ("function", "nptype"),
    ("function", "volume"),
    ("function", "init_libnvinfer_plugins"),
    ("attr", "float16"),
]

Entry = namedtuple("Entry", "kind path detail")
Param = namedtuple("Param", "name has_default var")


# --------------------------------------------------------------------------- list files

def load_api(path):
    """{dotted path: [Entry, ...]} (several entries = pybind overloads)."""
    api = {}
    for line in Path(path).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, rest = line.split(" ", 1)
        m = re.match(r"[^(: ]+", rest)
        p = m.group(0)
        api.setdefault(p, []).append(Entry(kind, p, rest[len(p):]))
    return api


def file_version(path):
    return Path(path).stem[len("trt_api_"):]


def personality_version(version):
    """'10.16.1.11' -> '10.16.1', '11.4.0.106' -> '11.4.0'."""
    return ".".join(version.split(".")[:3])


_API_CACHE = {}


def api_for(path):
    if path not in _API_CACHE:
        _API_CACHE[path] = load_api(path)
    return _API_CACHE[path]


def real_params(detail):
    """Parameters of '(a: T, b: U = 0) -> R' (self already omitted by the extractor)."""
    assert detail.startswith("("), detail
    depth = 0
    for i, ch in enumerate(detail):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            inner = detail[1:i]
            break
    out = []
    for p in _split_params(inner):
        if p in ("/", "*"):
            continue
        name = re.split(r"[:=]", p, 1)[0].strip()
        out.append(Param(name.lstrip("*"), "=" in p, name.startswith("*")))
    return out


@pytest.fixture(params=LIST_FILES, ids=[file_version(p) for p in LIST_FILES])
def api_file(request):
    return request.param


def test_list_files_present():
    majors = sorted({file_version(p).split(".")[0] for p in LIST_FILES})
    assert majors == ["10", "11"], LIST_FILES


def test_list_file_contents(api_file):
    text = api_file.read_text()
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert any("pip download --no-deps tensorrt-cu12-bindings==" in ln for ln in header)
    assert any(re.search(r"wheel sha256: [0-9a-f]{64}$", ln) for ln in header)
    assert any("extract_trt_api.py" in ln for ln in header)
    api = api_for(api_file)
    n = sum(len(v) for v in api.values())
    assert n > 2000, n
    declared = int(re.search(r"^# (\d+) entries$", text, re.M).group(1))
    assert declared == n
    for kind, p in KNOWN_IN_BOTH:
        assert p in api, p
        assert kind in {e.kind for e in api[p]}, (p, api[p])
    assert api["__version__"][0].detail == f": str = '{file_version(api_file)}'"
    # every method signature parses
    for entries in api.values():
        for e in entries:
            if e.kind in ("method", "staticmethod", "classmethod", "function"):
                real_params(e.detail)
    sig = {e.detail for e in api["Builder.build_serialized_network"]}
    assert "(network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory" in sig


def test_known_11_absences_confirmed_by_lists():
    by_major = {file_version(p).split(".")[0]: api_for(p) for p in LIST_FILES}
    for p in ABSENT_IN_11:
        assert p in by_major["10"], f"{p} not in the 10.x list"
        assert p not in by_major["11"], f"{p} unexpectedly in the 11.x list"
    # facts from the notes that the lists also show
    ten, eleven = by_major["10"], by_major["11"]
    assert ten["NetworkDefinitionCreationFlag.STRONGLY_TYPED"][0].detail == " = 1"
    assert eleven["NetworkDefinitionCreationFlag.STRONGLY_TYPED"][0].detail == " = 0"
    assert ten["ITensor.dtype"][0].detail.endswith("[rw]")
    assert eleven["ITensor.dtype"][0].detail.endswith("[ro]")
    assert "IBuilderConfig.build_route" in eleven and "IBuilderConfig.build_route" not in ten


# --------------------------------------------------------------------------- the stand-in

def _stand_in(version):
    try:
        mod = importlib.import_module("trt.fake_tensorrt")
    except ModuleNotFoundError as e:
        if e.name in ("trt.fake_tensorrt", "trt"):
            pytest.skip(f"stand-in not written yet: trt.fake_tensorrt cannot be imported ({e})")
        raise
    if not hasattr(mod, "personality"):
        pytest.skip("trt.fake_tensorrt has no personality(version) yet")
    return mod.personality(version)


_STDLIB_OWNERS = {"builtins", "enum", "abc", "typing", "types", "collections.abc", "_collections_abc"}


def _public(name):
    return not name.startswith("_") or name in CHECKED_DUNDERS


def _class_members(cls):
    """{name: (raw value, owning class)} over the stand-in's own MRO (not object/int/Enum)."""
    members = {}
    for base in reversed(cls.__mro__):
        if base.__module__ in _STDLIB_OWNERS:
            continue
        for k, v in vars(base).items():
            members[k] = (v, base)
    return members


def walk_stand_in(mod):
    """Yield (path, category, obj, extra) for everything public the stand-in defines.

    category: class, routine (extra = drop_first), property (extra = writable),
    enum (extra = int value), value.
    """
    seen = set()

    def walk_class(cls, path):
        yield path, "class", cls, None
        if id(cls) in seen and path.count(".") > 3:
            return
        seen.add(id(cls))
        # enum.Enum subclasses and pybind-style enum classes (a ``__members__`` dict)
        enum_members = getattr(cls, "__members__", None)
        enum_members = dict(enum_members) if isinstance(enum_members, (dict, type(vars(type)))) else {}
        for name, member in enum_members.items():
            yield f"{path}.{name}", "enum", member, int(member)
        for name, (v, _owner) in sorted(_class_members(cls).items()):
            if not _public(name) or name in enum_members:
                continue
            mpath = f"{path}.{name}"
            if isinstance(v, type):
                yield from walk_class(v, mpath)
            elif isinstance(v, staticmethod):
                yield mpath, "routine", v.__func__, False
            elif isinstance(v, classmethod):
                yield mpath, "routine", v.__func__, True
            elif isinstance(v, property):
                yield mpath, "property", v, v.fset is not None
            elif callable(v):
                yield mpath, "routine", v, True
            elif isinstance(v, cls) and hasattr(v, "__int__"):
                yield mpath, "enum", v, int(v)  # enum member not listed in __members__
            else:
                yield mpath, "value", v, None

    for name in sorted(vars(mod)):
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or not _public(name) or name == "__init__":
            continue
        if isinstance(obj, type):
            yield from walk_class(obj, name)
        elif callable(obj):
            yield name, "routine", obj, False
        else:
            yield name, "value", obj, None


_COMPATIBLE = {
    "class": {"class"},
    "routine": {"method", "staticmethod", "classmethod", "function", "class"},
    "property": {"property", "attr"},
    "enum": {"enum", "attr"},
    "value": {"attr", "enum", "property"},
}


def _stand_params(func, drop_first):
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # builtin without a signature: cannot compare
    ps = list(sig.parameters.values())
    if drop_first and ps and ps[0].kind in (ps[0].POSITIONAL_ONLY, ps[0].POSITIONAL_OR_KEYWORD):
        ps = ps[1:]
    return [Param(p.name, p.default is not p.empty, p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)) for p in ps]


def signature_matches(stand, real):
    """True if the stand-in's parameters fit this real overload (see module docstring)."""
    if any(p.var for p in real):
        return True
    fixed = [p for p in stand if not p.var]
    has_var = len(fixed) != len(stand)
    if len(fixed) > len(real):
        return False
    for sp, rp in zip(fixed, real):
        if re.fullmatch(r"arg\d+", rp.name):
            continue
        if sp.name != rp.name:
            return False
    return has_var or all(rp.has_default for rp in real[len(fixed):])


def _fmt(params):
    return "(" + ", ".join(("*" if p.var else "") + p.name + ("=…" if p.has_default else "") for p in params) + ")"


def _resolve(mod, dotted):
    obj = mod
    for part in dotted.split("."):
        obj = getattr(obj, part)  # AttributeError if absent
    return obj


def test_stand_in_conforms(api_file):
    version = file_version(api_file)
    mod = _stand_in(personality_version(version))
    api = api_for(api_file)
    problems = []
    n_checked = 0
    for path, category, obj, extra in walk_stand_in(mod):
        n_checked += 1
        entries = api.get(path)
        if not entries:
            problems.append(f"{path}: not in TensorRT {version}")
            continue
        kinds = {e.kind for e in entries}
        if not kinds & _COMPATIBLE[category]:
            problems.append(f"{path}: stand-in {category}, real {sorted(kinds)}")
            continue
        if category == "property" and extra and all(e.detail.endswith("[ro]") or e.detail.endswith(
                "[ro static]") for e in entries if e.kind == "property"):
            problems.append(f"{path}: stand-in property is writable, real is read-only")
        if category == "routine" and not isinstance(obj, type):
            real_sigs = [e for e in entries if e.kind in ("method", "staticmethod", "classmethod", "function")]
            stand = _stand_params(obj, extra)
            if stand is not None and real_sigs and not any(
                    signature_matches(stand, real_params(e.detail)) for e in real_sigs):
                problems.append(f"{path}{_fmt(stand)}: no real overload matches: "
                                + " | ".join(e.detail for e in real_sigs))
    assert n_checked > 0
    assert not problems, f"stand-in personality {personality_version(version)} vs TensorRT {version}:\n" + \
        "\n".join(problems)


def test_stand_in_enum_values(api_file):
    version = file_version(api_file)
    mod = _stand_in(personality_version(version))
    api = api_for(api_file)
    problems = []
    for path, category, obj, extra in walk_stand_in(mod):
        if category != "enum":
            continue
        real = [e for e in api.get(path, []) if e.kind == "enum"]
        if not real:
            continue  # existence is test_stand_in_conforms' job
        want = int(real[0].detail.split("=")[1])
        if int(obj) != want:
            problems.append(f"{path} = {int(obj)}, real {want}")
    assert not problems, "\n".join(problems)


def test_stand_in_version_string(api_file):
    version = file_version(api_file)
    mod = _stand_in(personality_version(version))
    assert isinstance(mod.__version__, str)
    assert mod.__version__.split(".")[:2] == version.split(".")[:2]


def test_stand_in_11_absences():
    p11 = [p for p in LIST_FILES if file_version(p).startswith("11.")][0]
    mod = _stand_in(personality_version(file_version(p11)))
    present = []
    for dotted in ABSENT_IN_11:
        try:
            _resolve(mod, dotted)
        except AttributeError:
            continue
        present.append(dotted)
    assert not present, f"removed in 11.x but present in the 11.x stand-in: {present}"


def test_stand_in_10_has_removed_members():
    p10 = [p for p in LIST_FILES if file_version(p).startswith("10.")][0]
    mod = _stand_in(personality_version(file_version(p10)))
    missing = []
    for dotted in PRESENT_IN_10:
        try:
            _resolve(mod, dotted)
        except AttributeError:
            missing.append(dotted)
    assert not missing, f"10.x stand-in lacks: {missing}"


# --------------------------------------------------------------------------- the checker itself

def test_signature_matcher():
    real = real_params("(network: INetworkDefinition, config: IBuilderConfig, kernel_text: object = None) -> X")
    P = Param
    assert signature_matches([P("network", False, False), P("config", False, False)], real)
    assert not signature_matches([P("net", False, False), P("config", False, False)], real)
    assert not signature_matches([P("network", False, False)], real)  # omits required 'config'
    assert not signature_matches([P(n, False, False) for n in ("network", "config", "kernel_text", "x")], real)
    assert signature_matches([P("x", False, False)], real_params("(arg0: int) -> None"))
    assert real_params("(other: object, /) -> bool") == [P("other", False, False)]
    assert real_params("(flags: typing.SupportsInt = 0) -> INetworkDefinition") == [P("flags", True, False)]
