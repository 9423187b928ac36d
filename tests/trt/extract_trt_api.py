"""Extract the public Python API of a TensorRT bindings build into a text list.

Usage::

    python tests/trt/extract_trt_api.py [--wheel WHEEL] path/to/tensorrt_bindings/tensorrt.so > out.txt

Why this imports the extension instead of reading ``strings``: pybind11 does not
store finished signatures in the binary.  It stores per-overload templates such
as ``({%}, {%}) -> %`` and, separately, the ``py::arg`` names, and it renders
``build_serialized_network(self: tensorrt.tensorrt.Builder, network: ...)``
only at import time.  ``strings`` therefore cannot tell which argument names
and types belong to which method.  The extension itself, however, needs only
nine C functions from libnvinfer / libnvonnxparser / libnvinfer_plugin at
import time (object factories, plugin registries, the parser version), all of
which the module init does not call.  So this script:

1. copies the wheel's ``tensorrt_bindings`` package to a temporary ``tensorrt``
   package (the name the real ``tensorrt`` meta package gives it),
2. compiles stub ``libnv*.so.N`` libraries (every undefined, unversioned symbol
   that the running interpreter does not provide, each a ``return 0`` function)
   next to it -- the extension's RPATH is ``$ORIGIN``,
3. imports that package in a child interpreter (same Python ABI as the wheel's
   tag, e.g. cp311) and walks the module, the classes (including members
   inherited from other tensorrt classes), nested classes, enum members,
   properties and the pybind docstring signature of every overload,
4. cross-checks that every name coming from the extension also occurs in the
   ``strings`` of the .so (reported in the header).

Nothing from the stub libraries is ever called: methods are only introspected.
Requires a C compiler (``cc``), binutils (``readelf``, ``nm``) and a Python
whose ABI matches the wheel.

Output format, one entry per line, sorted by name (overloads keep pybind order)::

    class Builder
    method Builder.build_serialized_network(network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory
    staticmethod TimingCacheKey.parse(text: str) -> TimingCacheKey
    property Builder.num_DLA_cores: int [ro]
    enum BuilderFlag.TF32 = 6
    attr Dims.MAX_DIMS: int = 8
    function nptype(trt_type)
    attr float32: DataType = DataType.FLOAT

``self`` is dropped from method signatures, ``tensorrt.tensorrt.`` is dropped
from type names, memory addresses in default values become ``0x...``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------------------
# Part 1 -- runs in the child interpreter, which has the copied package first
# on sys.path.  Produces a list of dict records on stdout (JSON).
# ---------------------------------------------------------------------------

_SKIP_DUNDER = {
    "__doc__", "__module__", "__dict__", "__weakref__", "__qualname__",
    "__annotations__", "__entries", "__slotnames__",
}


def _norm(text):
    text = text.replace("tensorrt.tensorrt.", "")
    return re.sub(r" at 0x[0-9a-fA-F]+", " at 0x...", text)


def _split_params(text):
    """Split 'a: int, b: List[int] = [1, 2]' at top-level commas."""
    out, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def _parse_sig_line(name, line):
    """'name(params) -> ret' -> (params, ret or None); None if the line is not that."""
    if not line.startswith(name + "("):
        return None
    depth, quote = 0, None
    for i in range(len(name), len(line)):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                params, rest = line[len(name) + 1:i], line[i + 1:].strip()
                if rest and not rest.startswith("->"):
                    return None
                return params, (rest[2:].strip() if rest else None)
    return None


def _pybind_overloads(name, doc):
    """(params, ret) of every overload, from a pybind11 docstring (first lines)."""
    if not doc:
        return []
    lines = doc.splitlines()
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        cands = [re.sub(r"^\d+\. ", "", ln) for ln in lines if re.match(r"^\d+\. " + re.escape(name) + r"\(", ln)]
    else:
        cands = lines[:1]
    return [sig for sig in (_parse_sig_line(name, c.strip()) for c in cands) if sig is not None]


def _fmt_sig(params, ret, drop_first):
    ps = _split_params(params)
    if drop_first and ps:
        ps = ps[1:]
    s = "(" + ", ".join(ps) + ")"
    if ret is not None:
        s += " -> " + ret
    return _norm(s)


def _child_dump(pkg_root):
    sys.path.insert(0, pkg_root)
    import inspect
    import tensorrt as trt  # the copied package

    ext = trt.tensorrt
    records = []

    def add(kind, path, detail="", origin="ext"):
        records.append({"kind": kind, "path": path, "detail": detail, "origin": origin})

    def is_trt_class(obj):
        return isinstance(obj, type) and (obj.__module__ or "").split(".")[0] == "tensorrt"

    def is_enum(cls):
        return "__members__" in cls.__dict__ or any("__members__" in b.__dict__ for b in cls.__mro__[1:]
                                                     if is_trt_class(b))

    def routine_records(kind, path, name, obj, drop_first):
        if inspect.isbuiltin(obj) or type(obj).__name__ in ("instancemethod",):
            sigs = _pybind_overloads(name, getattr(obj, "__doc__", None))
            if not sigs:
                add(kind, path, "(...)")
            for params, ret in sigs:
                add(kind, path, _fmt_sig(params, ret, drop_first))
            return
        if inspect.isfunction(obj):  # Python-level (bindings __init__.py)
            try:
                sig = inspect.signature(obj)
            except (TypeError, ValueError):
                add(kind, path, "(...)", "py")
                return
            ps = list(sig.parameters.values())
            if drop_first and ps:
                ps = ps[1:]
            add(kind, path, _norm("(" + ", ".join(str(p) for p in ps) + ")"), "py")
            return
        add(kind, path, "(...)")

    def walk_class(cls, path):
        add("class", path, "", "ext" if cls.__module__ == "tensorrt.tensorrt" else "py")
        # an alias (Logger.Severity is ILogger.Severity) is listed again under its own path
        enum = is_enum(cls)
        members = {}
        for base in reversed(cls.__mro__):
            if not is_trt_class(base):
                continue
            for k, v in base.__dict__.items():
                members[k] = (v, base)
        # Attributes the bindings' __init__.py set on the class (e.g. __enter__, Logger.WARNING)
        for k in sorted(members):
            v, owner = members[k]
            if k in _SKIP_DUNDER or k.startswith("_pybind11") or k.startswith("__pybind11"):
                continue
            mpath = f"{path}.{k}"
            if isinstance(v, type):
                if is_trt_class(v) and mpath.count(".") < 4:
                    walk_class(v, mpath)
                continue
            if enum and isinstance(v, cls):
                add("enum", mpath, f"= {int(v)}")
                continue
            if isinstance(v, staticmethod):
                routine_records("staticmethod", mpath, k, v.__func__, False)
                continue
            if isinstance(v, classmethod):
                routine_records("classmethod", mpath, k, v.__func__, True)
                continue
            if isinstance(v, property) or type(v).__name__ == "pybind11_static_property":
                getter = v.fget
                typ = ""
                if getter is not None:
                    sigs = _pybind_overloads("", getattr(getter, "__doc__", None))
                    if sigs and sigs[0][1]:
                        typ = ": " + _norm(sigs[0][1])
                rw = {(True, True): "rw", (True, False): "ro", (False, True): "wo"}.get(
                    (getter is not None, v.fset is not None), "--")
                static = " static" if type(v).__name__ == "pybind11_static_property" else ""
                origin = "py" if inspect.isfunction(getter) else "ext"
                add("property", mpath, f"{typ} [{rw}{static}]", origin)
                continue
            if type(v).__name__ == "wrapper_descriptor":
                continue  # slot from pybind11_object (e.g. '__init__' = "No constructor defined!")
            if callable(v):
                routine_records("method", mpath, k, v, True)
                continue
            if type(v).__name__ == "PyCapsule":
                continue
            add("attr", mpath, f": {type(v).__name__} = {_norm(repr(v))}",
                "ext" if owner.__module__ == "tensorrt.tensorrt" else "py")

    for name in sorted(dir(trt)):
        obj = getattr(trt, name)
        if inspect.ismodule(obj):
            continue
        if name.startswith("_") and name != "__version__":
            continue
        if isinstance(obj, type):
            if is_trt_class(obj):
                walk_class(obj, name)
            continue
        if callable(obj):
            routine_records("function", name, name, obj, False)
            continue
        origin = "ext" if name in ext.__dict__ else "py"
        add("attr", name, f": {type(obj).__name__} = {_norm(repr(obj))}", origin)

    json.dump({"version": trt.__version__, "records": records}, sys.stdout)


# ---------------------------------------------------------------------------
# Part 2 -- parent: stub libraries, child import, strings cross-check, output.
# ---------------------------------------------------------------------------

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _needed_libs(so):
    out = subprocess.run(["readelf", "-d", so], check=True, capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)


def _stub_symbols(so):
    out = subprocess.run(["nm", "-D", "--undefined-only", so], check=True, capture_output=True,
                         text=True).stdout
    me = ctypes.CDLL(None)
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0] != "U" or "@" in parts[1]:
            continue
        name = parts[1]
        if name.startswith(("Py", "_Py")) or hasattr(me, name):
            continue
        syms.append(name)
    return syms


def _so_strings(so, min_len=2):
    with open(so, "rb") as f:
        data = f.read()
    return set(s.decode() for s in re.findall(rb"[\x20-\x7e]{%d,}" % min_len, data))


def extract(so, workdir):
    so = os.path.abspath(so)
    src_pkg = os.path.dirname(so)
    pkg = os.path.join(workdir, "tensorrt")
    shutil.copytree(src_pkg, pkg)
    if not os.path.exists(os.path.join(pkg, "__init__.py")):
        # bare extension: make a package that re-exports it
        with open(os.path.join(pkg, "__init__.py"), "w") as f:
            f.write("from .tensorrt import *\n")
    ext_name = os.path.basename(so)
    if not ext_name.startswith("tensorrt."):
        os.rename(os.path.join(pkg, ext_name), os.path.join(pkg, "tensorrt.so"))
    syms = _stub_symbols(so)
    csrc = os.path.join(workdir, "stub.c")
    with open(csrc, "w") as f:
        for s in syms:
            f.write(f"void *{s}(void) {{ return 0; }}\n")
    stubbed = []
    for lib in _needed_libs(so):
        if lib.startswith("libnv"):
            subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(pkg, lib), csrc], check=True)
            stubbed.append(lib)
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-I", os.path.abspath(__file__), "--child", workdir],
                          capture_output=True, text=True, env=env, cwd=workdir)
    if proc.returncode != 0:
        raise SystemExit(f"importing the bindings failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    result["stubbed"] = stubbed
    result["stub_symbols"] = syms
    return result


def _sort_key(rec_index):
    i, rec = rec_index
    return (rec["path"].lower(), rec["path"], i)


def render(result, so, wheel=None, argv_so=None, argv_wheel=None):
    version = result["version"]
    records = result["records"]
    strings = _so_strings(so)
    ext_names = set()
    for r in records:
        if r["origin"] == "ext":
            ext_names.update(p for p in r["path"].split(".") if p)
    missing = sorted(n for n in ext_names if not any(n in s for s in strings if len(s) >= len(n)))
    lines = []
    if wheel:
        wname = os.path.basename(wheel)
        dist, wver = wname.split("-")[:2]
        stem = wname[:-4]
        lines += [
            f"# Public Python API of TensorRT {version} ({dist.replace('_', '-')}=={wver}, PyPI wheel {wname})",
            "# Made with:",
            f"#   pip download --no-deps {dist.replace('_', '-')}=={wver} -d /tmp/trtwheels",
            f"#   unzip -q -o /tmp/trtwheels/{wname} -d /tmp/trtwheels/{stem}",
            f"#   python tests/trt/extract_trt_api.py --wheel /tmp/trtwheels/{wname} "
            f"/tmp/trtwheels/{stem}/tensorrt_bindings/tensorrt.so > tests/trt/data/trt_api_{wver}.txt",
            f"# wheel sha256: {_sha256(wheel)}",
        ]
    else:
        lines += [f"# Public Python API of TensorRT {version}",
                  f"#   python tests/trt/extract_trt_api.py {argv_so}"]
    lines += [
        f"# tensorrt.so sha256: {_sha256(so)}",
        f"# extracted by importing the bindings (Python {sys.version.split()[0]}) against stub "
        f"{', '.join(result['stubbed'])} ({len(result['stub_symbols'])} symbols, never called); "
        "see the script's docstring",
        f"# strings cross-check: {len(ext_names) - len(missing)}/{len(ext_names)} extension names occur in "
        f"the .so's strings" + (f"; missing: {' '.join(missing)}" if missing else ""),
        "# format: <kind> <Class.member><signature or detail>; kinds: class method staticmethod classmethod "
        "property enum attr function; self omitted; 'tensorrt.tensorrt.' omitted from types",
        f"# {len(records)} entries",
    ]
    for _, r in sorted(enumerate(records), key=_sort_key):
        detail = r["detail"].strip()
        sep = "" if detail.startswith(("(", ":")) or not detail else " "
        lines.append(f"{r['kind']} {r['path']}{sep}{detail}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("so", help="path to tensorrt_bindings/tensorrt*.so from an unzipped bindings wheel")
    ap.add_argument("--wheel", help="the wheel it came from (for the header's sha256 and commands)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child_dump(args.so)
        return 0
    with tempfile.TemporaryDirectory(prefix="trtapi-") as tmp:
        result = extract(args.so, tmp)
    sys.stdout.write(render(result, os.path.abspath(args.so), args.wheel, args.so, args.wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
