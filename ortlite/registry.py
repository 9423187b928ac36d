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
        if self.is_class:
            return self.impl(ctx, **attrs)
        if self.specialize is not None:
            direct = self.specialize(ctx, **attrs)
            if direct is not None:
                return direct
        if attrs:
            return functools.partial(self.impl, ctx.xp, **attrs)
        return functools.partial(self.impl, ctx.xp)


# (domain, op_type) -> list of KernelDef sorted by since
_KERNELS: dict[tuple[str, str], list[KernelDef]] = {}


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

    ``specialize(ctx, **attributes)`` (function kernels): at binding, a ``Direct`` call for what the
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
    by_family: dict[str, list[int]] = {}
    for k in _KERNELS.get((domain, op_type), ()):
        for f in k.families:
            by_family.setdefault(f, []).append(k.since)
    if not by_family:
        return "none registered"
    return "; ".join(f"{f} since {', '.join(map(str, sorted(v)))}" for f, v in sorted(by_family.items()))


def registered_ops(family: str | None = None):
    """Sorted (domain, op_type) pairs that have a kernel (for ``family`` when given)."""
    return sorted(
        key for key, lst in _KERNELS.items() if family is None or any(family in k.families for k in lst)
    )


_loaded = False


def load_all_kernels():
    """Import every kernel module once (they register themselves)."""
    global _loaded
    if not _loaded:
        import ortlite.kernels  # noqa: F401

        _loaded = True
        lookup.cache_clear()
