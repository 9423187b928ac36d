"""The kernel registry: one decorator, one lookup.

A kernel is registered for an operator (``op_type`` in ``domain``), valid from
an opset version (``since``) until the next registration of the same op, for
a set of provider families (``"cpu"`` runs numpy, ``"cuda"`` runs CuPy; a
kernel written against the array module ``xp`` serves both).

Two shapes of kernel are accepted:

* a function ``f(xp, *inputs, **attributes)``: inputs positional, attributes
  as keywords with their ONNX names and defaults. It is bound once per node
  (``functools.partial``) and called on every run;
* a class ``K(ctx, **attributes)`` whose instance is called with the inputs:
  the constructor is the prepare step, run once per node at session start
  (parse attributes, pack weights, compile subgraphs), ``__call__`` the compute
  step.

Either returns one array for one output, a tuple for several, a list for a
sequence value, ``None`` for an empty optional.

Version resolution: the node's schema ``since_version`` (from ``onnx.defs``)
picks the newest kernel registered at or below it, so a kernel never silently
covers a later version whose meaning changed.
"""
from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass, field

import onnx.defs

ALL_FAMILIES = ("cpu", "cuda")


@dataclass(frozen=True)
class KernelDef:
    op_type: str
    domain: str
    since: int
    families: tuple
    host_inputs: tuple
    impl: object
    where: str
    is_class: bool
    accepts: frozenset | None = field(default=None)  # attribute names, None = **kwargs
    specialize: object = field(default=None)  # (ctx, **attrs) -> Direct or None, see kernel()

    def bind(self, ctx, attrs: dict):
        """Prepare the kernel for one node; returns the callable a run invokes."""
        if self.accepts is not None:
            unknown = sorted(set(attrs) - self.accepts)
            if unknown:
                from ortlite.errors import NotImplemented as OrtNotImplemented

                raise OrtNotImplemented(
                    f"{self.op_type} (domain '{self.domain or 'ai.onnx'}') node '{ctx.node.name}': "
                    f"attribute(s) {unknown} not supported by the kernel at {self.where}"
                )
        if self.specialize is not None:
            direct = self.specialize(ctx, **attrs)
            if direct is not None:
                return direct
        if self.is_class:
            return self.impl(ctx, **attrs)
        if attrs:
            return functools.partial(self.impl, ctx.xp, **attrs)
        return functools.partial(self.impl, ctx.xp)


class _KernelTable(dict):
    """(domain, op_type) -> list of KernelDef sorted by since. Reading a key (``in``, ``get``, ``[]``)
    first imports the kernel modules that register that op, per the kernel index (see
    load_all_kernels), so a session imports only the kernel modules its ops need."""

    __slots__ = ()

    def __contains__(self, key):
        _ensure_op(key)
        return dict.__contains__(self, key)

    def __getitem__(self, key):
        _ensure_op(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        _ensure_op(key)
        return dict.get(self, key, default)


_KERNELS: dict[tuple[str, str], list[KernelDef]] = _KernelTable()
# (domain, op_type) -> names of the modules whose import registered it (the kernel index's source)
_REGISTERED_BY: dict[tuple[str, str], set] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


class Direct:
    """A bound kernel that is one call ``fn(*inputs, *extra)`` returning one array: the plan's generated
    code calls ``fn`` itself, with no wrapper and no check for a tuple of results."""

    __slots__ = ("fn", "extra")

    def __init__(self, fn, *extra):
        self.fn, self.extra = fn, extra

    def __call__(self, *inputs):
        return self.fn(*inputs, *self.extra)

    def __repr__(self):
        return f"Direct({getattr(self.fn, '__name__', self.fn)}{''.join(f', {e!r}' for e in self.extra)})"


def kernel(op_type: str, since: int = 1, domain: str = "", families=ALL_FAMILIES, host_inputs=(),
           specialize=None):
    """Register a kernel. Registering the same (op, domain, since, family) twice is an error.

    ``specialize(ctx, **attributes)`` (function or class kernels): at binding, a ``Direct`` call for what the
    node's context tells (its provider's array module, its inputs' dtypes and ranks), or None to bind the
    kernel as usual. Small models pay per node mostly for wrappers; a plan calls a Direct's ufunc itself."""
    domain = _norm_domain(domain)
    families = (families,) if isinstance(families, str) else tuple(families)

    def deco(impl):
        where = _where(impl)
        is_class = inspect.isclass(impl)
        sig = inspect.signature(impl.__init__ if is_class else impl)
        params = list(sig.parameters.values())
        params = params[2:] if is_class else params[1:]  # drop (self, ctx) or (xp,)
        if any(p.kind is p.VAR_KEYWORD for p in params):
            accepts = None
        else:
            accepts = frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY)
            if is_class:
                accepts = frozenset(
                    p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                )
        kdef = KernelDef(op_type, domain, since, families, tuple(host_inputs), impl, where, is_class, accepts,
                         specialize)
        _REGISTERED_BY.setdefault((domain, op_type), set()).add(_importing_module())
        lst = _KERNELS.setdefault((domain, op_type), [])
        for other in lst:
            if other.since == since and set(other.families) & set(families):
                if (len(other.families) > 1) != (len(families) > 1):
                    continue  # a provider's own kernel overrides the shared one for its family
                raise RuntimeError(
                    f"kernel {op_type} (domain '{domain}') since {since} registered twice: "
                    f"{other.where} and {where}"
                )
        lst.append(kdef)
        lst.sort(key=lambda k: (k.since, -len(k.families)))  # at one since, the specific kernel last (it wins)
        return impl

    return deco


def _importing_module() -> str:
    """The module whose body is running (the one being imported) above this call: importing that module
    again in a fresh process repeats the registration, whichever helper function made it."""
    import sys

    f = sys._getframe(2)
    name = None
    while f is not None:
        if f.f_code.co_name == "<module>":
            name = f.f_globals.get("__name__")
            if name and name != "__main__":
                return name
        f = f.f_back
    return name or "?"


def _where(impl) -> str:
    """'kernels/math.py:57' for error messages; cheap (no source parsing at import)."""
    import sys

    mod = sys.modules.get(impl.__module__)
    path = getattr(mod, "__file__", None) or "?"
    code = getattr(impl, "__code__", None) or getattr(getattr(impl, "__init__", None), "__code__", None)
    line = code.co_firstlineno if code is not None else 0
    parts = path.replace(os.sep, "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}"


def schema_since(op_type: str, domain: str, opset: int):
    """since_version of the schema in force at ``opset``, or None when onnx.defs has no schema."""
    try:
        return onnx.defs.get_schema(op_type, opset, domain).since_version
    except Exception:  # noqa: BLE001 - unknown op or domain
        return None


def get_schema(op_type: str, domain: str, opset: int):
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except Exception:  # noqa: BLE001
        return None


@functools.lru_cache(maxsize=None)
def lookup(op_type: str, domain: str, opset: int, family: str):
    """The kernel for ``op_type`` at ``opset`` for ``family``, or None."""
    domain = _norm_domain(domain)
    cands = [k for k in _KERNELS.get((domain, op_type), ()) if family in k.families]
    if not cands:
        return None
    version = schema_since(op_type, domain, opset)
    if version is None:
        version = opset
    best = None
    for k in cands:
        if k.since <= version:
            best = k
    return best


def describe(op_type: str, domain: str) -> str:
    """What is registered for an op, for error messages: 'cpu: 1, 13; cuda: 13'."""
    domain = _norm_domain(domain)
    _import_all_kernel_modules()  # error messages only: every registration, not just the index's
    by_family: dict[str, list[int]] = {}
    for k in _KERNELS.get((domain, op_type), ()):
        for f in k.families:
            by_family.setdefault(f, []).append(k.since)
    if not by_family:
        return "none registered"
    return "; ".join(f"{f} since {', '.join(map(str, sorted(v)))}" for f, v in sorted(by_family.items()))


def registered_ops(family: str | None = None):
    """Sorted (domain, op_type) pairs that have a kernel (for ``family`` when given)."""
    _import_all_kernel_modules()
    return sorted(
        key for key, lst in _KERNELS.items() if family is None or any(family in k.families for k in lst)
    )


_loaded = False
_all_imported = False
_index: dict | None = None  # (domain, op_type) -> module names, from the on-disk kernel index
_load_lock = __import__("threading").RLock()
_OFF = ("0", "false", "no", "off")


def load_all_kernels():
    """Make every kernel findable, once per process (sessions call it).

    With a kernel index on disk for these exact kernel sources (``~/.cache/ortlite/kernel-index-*.json``,
    keyed by the kernel files' names, sizes and mtimes and the onnx / Python versions) nothing is
    imported here: a lookup imports the modules that register its op. Without one (a fresh clone, an
    edited kernel file) every kernel module is imported and the index written for the next process.
    ``ORTLITE_LAZY_KERNELS=0`` always imports everything."""
    global _loaded, _index
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        idx = None
        if os.environ.get("ORTLITE_LAZY_KERNELS", "1").strip().lower() not in _OFF:
            idx = _read_index()
        if idx is None:
            _import_all_kernel_modules()
            _write_index()
        else:
            _index = idx
        _loaded = True
        lookup.cache_clear()


def _import_all_kernel_modules():
    """Import every module of ortlite.kernels (each registers its kernels)."""
    global _all_imported
    if _all_imported:
        return
    with _load_lock:
        if not _all_imported:
            import ortlite.kernels as pkg

            pkg.import_all()
            _all_imported = True
            lookup.cache_clear()


def _ensure_op(key):
    """Import the modules the index names for (domain, op_type) ``key`` (no-op when all are loaded)."""
    if _index is None or _all_imported:
        return
    mods = _index.get(key)
    if mods:
        import importlib

        for m in mods:  # cheap when loaded; waits while another thread imports it
            importlib.import_module(m)


def kernel_index() -> dict:
    """{(domain, op_type): sorted module names} from the registrations made so far (all of them after
    _import_all_kernel_modules): what the on-disk index holds."""
    return {k: sorted(v) for k, v in sorted(_REGISTERED_BY.items())}


def _index_file():
    import hashlib
    import sys

    import onnx

    import ortlite.kernels as pkg
    from ortlite._version import __version__

    kdir = pkg.__path__[0]
    h = hashlib.sha256(f"{__version__}|{onnx.__version__}|{sys.version}|{os.path.realpath(kdir)}".encode())
    for name in sorted(os.listdir(kdir)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(kdir, name))
            h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    base = os.environ.get("ORTLITE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ortlite")
    return os.path.join(base, f"kernel-index-{h.hexdigest()[:24]}.json")


def _read_index():
    import json

    try:
        with open(_index_file(), encoding="utf-8") as f:
            raw = json.load(f)
        return {(d, op): tuple(mods) for d, op, mods in raw["ops"]}
    except Exception:  # noqa: BLE001 - missing, unreadable or corrupt: import everything instead
        return None


def _write_index():
    import json
    import tempfile

    try:
        path = _index_file()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ops = []
        for (d, op), mods in kernel_index().items():  # plugins' and tests' registrations are not indexed
            mods = [m for m in mods if m.startswith("ortlite.kernels.")]
            if mods:
                ops.append([d, op, mods])
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"ops": ops}, f)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - a read-only home: every process imports everything, still correct
        pass


# ---- Python custom ops (onnxruntime's custom-op libraries, as Python callables) ----------------------
_CUSTOM: set[tuple[str, str]] = set()  # (domain, op_type) registered by register_custom_op


def register_custom_op(domain: str, op_type: str, fn_or_class=None, *, since: int = 1, families=("cpu",),
                       host_inputs=()):
    """Register a Python kernel for ``op_type`` in ``domain`` so models with such nodes run.

    ``fn_or_class`` is a function ``fn(*inputs, **attributes)`` or a class ``K(**attributes)`` (made once per
    node, at session creation) whose instances are called with the inputs; attributes are keyword-only with
    their ONNX names, and an attribute the callable does not accept fails at session creation. Inputs are
    numpy arrays (the CPU family; name ``families=("cpu", "cuda")`` for code that takes CuPy arrays too). It
    returns one array, a tuple for several outputs. Without ``fn_or_class`` this is a decorator.
    Sessions created before ``unregister_custom_op`` keep the kernel.
    """
    from ortlite.errors import InvalidArgument

    if fn_or_class is None:
        return lambda impl: register_custom_op(domain, op_type, impl, since=since, families=families,
                                               host_inputs=host_inputs)
    if not callable(fn_or_class):
        raise InvalidArgument(f"register_custom_op('{domain}', '{op_type}'): expected a function or a class, "
                              f"got {type(fn_or_class).__name__}")
    if not isinstance(op_type, str) or not op_type or not isinstance(domain, str):
        raise InvalidArgument(f"register_custom_op: expected a domain string and a non-empty op_type string, "
                              f"got {domain!r}, {op_type!r}")
    key = (_norm_domain(domain), op_type)
    load_all_kernels()  # built-in kernels first, so a clash with one is seen
    if key in _KERNELS and key not in _CUSTOM:
        raise InvalidArgument(
            f"register_custom_op: {op_type} (domain '{domain or 'ai.onnx'}') has built-in kernels "
            f"({describe(op_type, domain)}); a custom op needs a domain of its own, e.g. 'my.ops'")
    is_class = inspect.isclass(fn_or_class)
    target = fn_or_class.__init__ if is_class else fn_or_class
    try:
        params = list(inspect.signature(target).parameters.values())[1 if is_class else 0:]
    except (TypeError, ValueError):  # builtins without a signature: no attributes
        params = []
    if any(p.kind is p.VAR_KEYWORD for p in params):
        accepts = None
    else:
        accepts = frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY)
    if is_class:
        def impl(ctx, **attrs):
            return fn_or_class(**attrs)
    else:
        def impl(xp, *inputs, **attrs):
            return fn_or_class(*inputs, **attrs)
    families = (families,) if isinstance(families, str) else tuple(families)
    kdef = KernelDef(op_type, key[0], since, families, tuple(host_inputs), impl, _where(fn_or_class), is_class,
                     accepts)
    lst = _KERNELS.setdefault(key, [])
    clash = [k for k in lst if k.since == since and set(k.families) & set(families)]
    if clash:
        raise InvalidArgument(
            f"register_custom_op: {op_type} (domain '{domain}') since {since} is already registered "
            f"({clash[0].where}); call ortlite.unregister_custom_op('{domain}', '{op_type}') first")
    lst.append(kdef)
    lst.sort(key=lambda k: k.since)
    _CUSTOM.add(key)
    lookup.cache_clear()
    return fn_or_class


def unregister_custom_op(domain: str, op_type: str) -> None:
    """Remove every registration of a custom op made by ``register_custom_op`` (built-in kernels stay)."""
    from ortlite.errors import InvalidArgument

    key = (_norm_domain(domain), op_type)
    if key not in _CUSTOM:
        raise InvalidArgument(f"unregister_custom_op: no custom op {op_type} (domain '{domain}') is registered; "
                              f"registered: {sorted(_CUSTOM)}")
    _CUSTOM.discard(key)
    del _KERNELS[key]
    lookup.cache_clear()
