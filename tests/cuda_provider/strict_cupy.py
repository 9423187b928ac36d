"""A strict CuPy stand-in for CPU-only machines: numpy underneath, CuPy's rules on top.

The CUDA provider's kernels take an array module ``xp``; on a GPU it is ``cupy``. ``SXP`` is an
``xp`` whose arrays (``SArr``) are not numpy arrays (like cupy.ndarray) and which follows the
*installed* CuPy's namespace and signatures (CuPy imports without a GPU; only its names and
signatures are read):

* a name numpy has and CuPy lacks -> AttributeError (MISSING);
* cupy.ndarray's protocol: ``__array__`` -> TypeError (IMPLICIT_CONV); numpy functions dispatch only
  when CuPy has the same function (NP_FUNC_NO_CUPY); numpy arrays mixed into device math -> TypeError
  (MIX_HOST); no ``__index__`` (INDEX_DUNDER); keyword arguments CuPy's signature lacks (KWARG);
  ``ufunc.at`` only where CuPy has a scatter for that op and dtype (UFUNC_AT); dtypes CuPy cannot hold
  (UNSUPPORTED_DTYPE);
* what is legal on a GPU but matters for speed or CUDA-graph capture is recorded, not refused:
  host syncs (SYNC), host->device copies inside kernels (H2D), cuBLAS / cuSOLVER / cuRAND calls
  (BLAS / LINALG / CURAND), Python iteration over device arrays (ITER).

``RAISE[0]`` (default on) makes each refused use raise what CuPy would raise, prefixed
``[strict cupy]``, so a kernel that would fail on a GPU fails a test here; with it off every event is
recorded and the computation goes on with numpy, so one run lists every problem of a kernel
(tests/cuda_provider/strict_report.py). Events carry the innermost kernels/*.py frame and the op.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import os
import sys
import threading

import numpy as np

import cupy as _cp  # the real CuPy: imported for its namespace and signatures only (no device needed)
import cupy.fft as _cpfft
import cupy.linalg as _cplinalg
import cupy.random as _cprandom

EVENTS: collections.Counter = collections.Counter()  # (category, site, op, detail) -> count
CASES: dict = collections.defaultdict(set)  # (category, site) -> node-suite case names
CURRENT_CASE = ["?"]
KERNEL_KEYS: set = set()  # rough count of distinct CuPy kernel sources a GPU run would compile


def _kkey(name, args):
    sig = []
    for a in args:
        if type(a) is SArr:
            sig.append((a._a.dtype.str, a._a.ndim, a._a.flags.c_contiguous))
        elif isinstance(a, (int, float, bool, np.generic)):
            sig.append(type(a).__name__)
    KERNEL_KEYS.add((name, tuple(sig)))
_ctx = threading.local()  # .op: the ONNX op being run, .in_kernel


def current_op():
    return getattr(_ctx, "op", None) or "?"


def _site():
    f = sys._getframe(2)
    best = None
    while f is not None:
        fn = f.f_code.co_filename
        if "/kernels/" in fn and "strict_cupy" not in fn:
            best = f"kernels/{os.path.basename(fn)}:{f.f_lineno} {f.f_code.co_name}"
            break
        f = f.f_back
    return best or "?"


# What CuPy raises for each refused use; the other categories are recorded only.
FAILS = {"IMPLICIT_CONV": TypeError, "MIX_HOST": TypeError, "NP_FUNC_NO_CUPY": TypeError, "KWARG": TypeError,
         "INDEX_DUNDER": TypeError, "UFUNC_AT": TypeError, "UNSUPPORTED_DTYPE": ValueError,
         "MISSING": AttributeError, "CONTRACT": AssertionError, "HOST_INPUT": AssertionError,
         "HOST_OUTPUT": AssertionError, "SEQ_COPY": AssertionError, "INPLACE_INPUT": AssertionError}
RAISE = [True]


class StrictCupyError(Exception):
    """Base of the errors raised for a refused use (each also subclasses what CuPy raises)."""


_ERRORS = {}


def _error(cat):
    base = FAILS[cat]
    if base not in _ERRORS:
        _ERRORS[base] = type(f"Strict{base.__name__}", (StrictCupyError, base), {})
    return _ERRORS[base]


def record(cat, detail=""):
    if not getattr(_ctx, "in_kernel", False):
        return
    site = _site()
    EVENTS[(cat, site, current_op(), str(detail)[:160])] += 1
    CASES[(cat, site)].add(CURRENT_CASE[0])
    if RAISE[0] and cat in FAILS:
        raise _error(cat)(f"[strict cupy] {cat} at {site} ({current_op()}): {detail}")


# The backend sets STREAM_EVENT[0] to a function(what, stream=None) that logs what ran on which
# stream and returns the current stream's handle.
STREAM_EVENT = [None]


def stream_event(what, stream=None):
    fn = STREAM_EVENT[0]
    return fn(what, stream) if fn is not None else None


def reset():
    """Forget the recorded events."""
    EVENTS.clear()
    CASES.clear()
    KERNEL_KEYS.clear()


# ----------------------------------------------------------------------------- helpers
def _unwrap(x, depth=0):
    t = type(x)
    if t is SArr:
        return x._a
    if t in (list, tuple) and depth < 4:
        return t(_unwrap(i, depth + 1) for i in x)
    if t is dict:
        return {k: _unwrap(v, depth + 1) for k, v in x.items()}
    if t is slice:
        for b in (x.start, x.stop, x.step):
            if type(b) is SArr:
                record("INDEX_DUNDER", "device 0-d array as slice bound (cupy.ndarray has no __index__)")
        return slice(_unwrap(x.start), _unwrap(x.stop), _unwrap(x.step))
    return x


_DT_OK = {}


def dtype_ok(dt):
    """Whether CuPy 14 can hold and compute on this dtype (it has a CUDA type name for it)."""
    dt = np.dtype(dt)
    ok = _DT_OK.get(dt)
    if ok is None:
        from cupy._core import _scalar
        try:
            _scalar.get_typename(dt)
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        _DT_OK[dt] = ok
    return ok


def _wrap(r):
    t = type(r)
    if t is np.ndarray:
        if not dtype_ok(r.dtype):
            record("UNSUPPORTED_DTYPE", f"a device array of dtype {r.dtype}: CuPy has no such dtype (ValueError: Unsupported dtype)")
        return SArr(r)
    if isinstance(r, np.generic) and not isinstance(r, (np.str_, np.bytes_, np.void)):
        return SArr(np.asarray(r))  # CuPy returns 0-d device arrays where numpy returns scalars
    if t is tuple:
        return tuple(_wrap(i) for i in r)
    if t is list:
        return [_wrap(i) for i in r]
    return r


def _host_arrays(x, depth=0):
    """numpy arrays (host memory) found in an argument."""
    if type(x) is np.ndarray:
        return [x]
    if type(x) in (list, tuple) and depth < 3:
        out = []
        for i in x:
            out += _host_arrays(i, depth + 1)
        return out
    return []


def _has_list_data(x):
    return type(x) in (list, tuple) and len(x) > 0 and not any(type(i) is SArr for i in x)


# ----------------------------------------------------------------------------- the array
class _Flags:
    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = a.flags.owndata

    def __getitem__(self, k):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[k]

    def __getattr__(self, k):
        record("MISSING", f"ndarray.flags.{k} (cupy's Flags has only c_contiguous/f_contiguous/owndata)")
        raise AttributeError(k)


class _Ptr:
    def __init__(self, a):
        self.ptr = a.ctypes.data


_CP_NDARRAY_ATTRS = set(dir(_cp.ndarray))
_SYNC_METHODS = {"item", "tolist", "get", "tobytes"}
_SLOW_METHODS = {"nonzero"}


class SArr:
    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        assert type(a) is np.ndarray, type(a)
        self._a = a

    # --- numpy interop (cupy.ndarray semantics)
    def __array__(self, dtype=None, copy=None):
        record("IMPLICIT_CONV", "numpy converts a device array (np.asarray/np.array/np.* on it): TypeError")
        return self._a if dtype is None else self._a.astype(dtype)

    def __array_function__(self, func, types, args, kwargs):
        mod = func.__module__ or "numpy"
        sub = mod.split(".")[1:] if mod.startswith("numpy") else []
        target = _cp
        ok = True
        for s in sub:
            if s in ("_core", "core", "lib", "_function_base_impl", "fromnumeric", "_fromnumeric"):
                continue
            target = getattr(target, s, None)
            if target is None:
                ok = False
                break
        name = func.__name__
        if not ok or not hasattr(target, name) or name in _NUMPY_ONLY:
            record("NP_FUNC_NO_CUPY", f"np.{name} on a device array: CuPy has no {name} -> TypeError")
        else:
            record("NP_FUNC_DISPATCH", f"np.{name} on a device array (dispatched to cupy.{name})")
            _check_kwargs(name, getattr(target, name), kwargs)
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for x in inputs + tuple(kwargs.get("out", ()) or ()):
            if type(x) is np.ndarray:
                record("MIX_HOST", f"{ufunc.__name__}: numpy array (shape {x.shape}) mixed with a device array: TypeError")
        if method != "__call__":
            record("UFUNC_METHOD", f"np.{ufunc.__name__}.{method} on a device array")
        kw = dict(kwargs)
        if "out" in kw:
            kw["out"] = tuple(_unwrap(o) for o in kw["out"])
        r = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kw))
        if "out" in kwargs and r is not None and method == "__call__":
            outs = kwargs["out"]
            return outs[0] if len(outs) == 1 else outs
        return _wrap(r)

    # --- attributes
    shape = property(lambda s: s._a.shape)
    dtype = property(lambda s: s._a.dtype)
    ndim = property(lambda s: s._a.ndim)
    size = property(lambda s: s._a.size)
    nbytes = property(lambda s: s._a.nbytes)
    itemsize = property(lambda s: s._a.itemsize)
    strides = property(lambda s: s._a.strides)
    T = property(lambda s: SArr(s._a.T))
    mT = property(lambda s: SArr(s._a.mT))
    real = property(lambda s: SArr(s._a.real))
    imag = property(lambda s: SArr(s._a.imag))
    flags = property(lambda s: _Flags(s._a))
    data = property(lambda s: _Ptr(s._a))
    base = property(lambda s: None if s._a.base is None else SArr(s._a.base) if type(s._a.base) is np.ndarray else None)

    @property
    def flat(self):
        record("FLAT", "ndarray.flat on a device array (cupy.flatiter: limited)")
        return self._a.flat

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        record("ITER", f"Python iteration over a device array of shape {self.shape} (one device array per element)")
        for i in range(len(self._a)):
            yield _wrap(self._a[i])

    def __contains__(self, v):  # cupy has no __contains__: Python falls back to iteration
        record("ITER", "`in` on a device array (no __contains__: iterates, one sync per element)")
        return v in self._a

    def __bool__(self):
        record("SYNC", "bool(device array)")
        return bool(self._a)

    def __int__(self):
        record("SYNC", "int(device array)")
        return int(self._a)

    def __float__(self):
        record("SYNC", "float(device array)")
        return float(self._a)

    def __complex__(self):
        record("SYNC", "complex(device array)")
        return complex(self._a)

    def __index__(self):
        record("INDEX_DUNDER", "operator.index(device array) (range(), int index, list repeat...): cupy.ndarray has no __index__ -> TypeError")
        return self._a.__index__()

    def __repr__(self):
        return f"SArr({self._a!r})"

    __hash__ = None

    def __getstate__(self):
        return self._a

    def __setstate__(self, a):
        self._a = a

    def __copy__(self):
        return SArr(self._a.copy())

    def __deepcopy__(self, memo):
        return SArr(self._a.copy())

    # --- indexing
    def _index(self, key, what):
        keys = key if type(key) is tuple else (key,)
        for k in keys:
            if type(k) is SArr and k.dtype == np.bool_:
                record("SYNC", f"boolean-mask {what} on a device array (nonzero: host sync, data-dependent shape)")
            elif type(k) is np.ndarray:
                record("H2D", f"numpy index array in {what} (copied to the device each call)")
            elif type(k) is list:
                record("H2D", f"list index in {what} (copied to the device each call)")
        return _unwrap(key)

    def __getitem__(self, key):
        return _wrap(self._a[self._index(key, "getitem")])

    def __setitem__(self, key, value):
        stream_event("setitem")
        k = self._index(key, "setitem")
        if type(value) is np.ndarray:
            record("H2D", f"numpy array assigned into a device array (shape {value.shape})")
        elif type(value) in (list, tuple):
            record("H2D", "list assigned into a device array")
        self._a[k] = _unwrap(value)

    # --- what crosses streams (recorded through STREAM_EVENT: see strict_backend.py)
    def set(self, arr, stream=None):
        """cupy.ndarray.set: host -> this array, on ``stream`` or the current stream."""
        stream_event("set", stream)
        self._a[...] = np.asarray(arr)

    def __dlpack__(self, *, stream=None, **kwargs):
        stream_event("dlpack", stream)
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return (2, 0)

    @property
    def __cuda_array_interface__(self):
        stream = stream_event("cuda_array_interface")
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self._a.ctypes.data, False),
                "version": 3, "strides": None, "stream": stream}

    # --- methods
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in _CP_NDARRAY_ATTRS:
            record("MISSING", f"ndarray.{name}: cupy.ndarray has no such attribute")
        if name in _SYNC_METHODS:
            record("SYNC", f"ndarray.{name}()")
        if name in _SLOW_METHODS:
            record("SYNC", f"ndarray.{name}() (host sync)")
        if name == "get":
            return lambda *a, **k: self._a.copy()
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        @functools.wraps(attr)
        def method(*args, **kwargs):
            if name in ("dot",):
                record("BLAS", "ndarray.dot (cuBLAS)")
            if name == "view" and args and isinstance(args[0], type) and issubclass(args[0], np.ndarray):
                record("MISSING", "ndarray.view(ndarray subclass)")
            for h in _host_arrays(args) + _host_arrays(list(kwargs.values())):
                if h.ndim > 0 and name not in ("astype", "reshape", "transpose", "view", "set"):
                    record("MIX_HOST", f"ndarray.{name}: numpy array argument (shape {h.shape})")
            cpm = getattr(_cp.ndarray, name, None)
            if cpm is not None:
                _check_kwargs(f"ndarray.{name}", cpm, kwargs)
            if name in ("astype",) and len(args) >= 1 and kwargs.get("copy", True) is False:
                pass
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

        return method

    # --- operators
    def _bin(op, name, rname=None):
        def f(self, other):
            if isinstance(other, (_UfuncProxy, _Namespace)):
                return NotImplemented
            _kkey(name, (self, other))
            if type(other) is np.ndarray:
                record("MIX_HOST", f"device {name} numpy array (shape {other.shape}): TypeError")
            if op is np.matmul:
                record("BLAS", "@ (cuBLAS)")
                if TF32[0]:
                    return _wrap(op(_tf32_round(self._a), _tf32_round(_unwrap(other))))
            return _wrap(op(self._a, _unwrap(other)))

        def r(self, other):
            if type(other) is np.ndarray:
                record("MIX_HOST", f"numpy array (shape {other.shape}) {name} device: TypeError")
            if op is np.matmul:
                record("BLAS", "@ (cuBLAS)")
            return _wrap(op(_unwrap(other), self._a))

        def i(self, other):
            if type(other) is np.ndarray:
                record("MIX_HOST", f"device {name}= numpy array (shape {other.shape}): TypeError")
            op(self._a, _unwrap(other), out=self._a)
            return self

        return f, r, i

    __add__, __radd__, __iadd__ = _bin(np.add, "+")
    __sub__, __rsub__, __isub__ = _bin(np.subtract, "-")
    __mul__, __rmul__, __imul__ = _bin(np.multiply, "*")
    __truediv__, __rtruediv__, __itruediv__ = _bin(np.true_divide, "/")
    __floordiv__, __rfloordiv__, __ifloordiv__ = _bin(np.floor_divide, "//")
    __mod__, __rmod__, __imod__ = _bin(np.remainder, "%")
    __pow__, __rpow__, __ipow__ = _bin(np.power, "**")
    __and__, __rand__, __iand__ = _bin(np.bitwise_and, "&")
    __or__, __ror__, __ior__ = _bin(np.bitwise_or, "|")
    __xor__, __rxor__, __ixor__ = _bin(np.bitwise_xor, "^")
    __lshift__, __rlshift__, __ilshift__ = _bin(np.left_shift, "<<")
    __rshift__, __rrshift__, __irshift__ = _bin(np.right_shift, ">>")
    __matmul__, __rmatmul__, _imatmul = _bin(np.matmul, "@")
    __lt__, _r1, _i1 = _bin(np.less, "<")
    __le__, _r2, _i2 = _bin(np.less_equal, "<=")
    __gt__, _r3, _i3 = _bin(np.greater, ">")
    __ge__, _r4, _i4 = _bin(np.greater_equal, ">=")
    __eq__, _r5, _i5 = _bin(np.equal, "==")
    __ne__, _r6, _i6 = _bin(np.not_equal, "!=")
    del _bin

    def __neg__(self):
        return _wrap(np.negative(self._a))

    def __pos__(self):
        return _wrap(np.positive(self._a))

    def __abs__(self):
        return _wrap(np.absolute(self._a))

    def __invert__(self):
        return _wrap(np.invert(self._a))


# ----------------------------------------------------------------------------- namespace
_NUMPY_ONLY = set()
TF32 = [bool(int(os.environ.get("STRICT_TF32", "0")))]


def _tf32_round(a):
    """float32 -> TF32 (10-bit mantissa, round to nearest even), as cuBLAS's TF32 GEMMs read their inputs."""
    if type(a) is not np.ndarray or a.dtype != np.float32:
        return a
    b = np.ascontiguousarray(a).view(np.uint32)
    lsb = (b >> 13) & 1
    r = ((b + 0xFFF + lsb) & np.uint32(0xFFFFE000)).view(np.float32)
    return np.where(np.isfinite(a), r, a).astype(np.float32)

_BLAS_FUNCS = {"matmul", "dot", "tensordot", "einsum", "inner", "vdot", "kron"}  # outer: elementwise
_SYNC_FUNCS = {"nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress", "asnumpy",
               "count_nonzero_host", "histogram", "bincount"}
_CREATION = {"asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray"}
# cupy ufunc.at: ops CuPy has a scatter for, and the dtypes it accepts (cupy/_core/_routines_indexing.pyx)
_AT_DTYPES = {
    "add": {"int32", "int64", "float16", "float32", "float64", "uint32", "uint64"},
    "subtract": {"int32", "uint32"},
    "maximum": {"int32", "int64", "float32", "float64", "uint32", "uint64"},
    "minimum": {"int32", "int64", "float32", "float64", "uint32", "uint64"},
    "bitwise_and": {"int32", "int64", "uint32", "uint64"},
    "bitwise_or": {"int32", "int64", "uint32", "uint64"},
    "bitwise_xor": {"int32", "int64", "uint32", "uint64"},
}

_SIG_CACHE = {}


def _signature(fn):
    key = id(fn)
    if key not in _SIG_CACHE:
        try:
            sig = inspect.signature(fn)
            params = sig.parameters.values()
            if any(p.kind is p.VAR_KEYWORD for p in params):
                _SIG_CACHE[key] = None
            else:
                _SIG_CACHE[key] = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        except (TypeError, ValueError):
            _SIG_CACHE[key] = None
    return _SIG_CACHE[key]


_UFUNC_KW = {"out", "dtype", "casting"}


def _check_kwargs(name, cpfn, kwargs):
    if not kwargs:
        return
    if isinstance(cpfn, _cp.ufunc):
        bad = set(kwargs) - _UFUNC_KW
    else:
        allowed = _signature(cpfn)
        if allowed is None:
            return
        bad = set(kwargs) - allowed
    if bad:
        record("KWARG", f"{name}(... {', '.join(sorted(bad))}=...): not a parameter of CuPy's {name} -> TypeError")


class _UfuncProxy:
    def __init__(self, name, npu, cpu):
        self._name, self._np, self._cp = name, npu, cpu

    def __call__(self, *args, **kwargs):
        for h in _host_arrays(args):
            record("MIX_HOST", f"xp.{self._name}: numpy array argument (shape {h.shape}): TypeError")
        if self._name == "matmul":
            record("BLAS", "xp.matmul (cuBLAS: refused during CUDA-graph capture)")
        _kkey(self._name, args)
        _check_kwargs(self._name, self._cp, kwargs)
        kw = _unwrap(kwargs)
        ua = _unwrap(args)
        if self._name == "matmul" and TF32[0]:
            ua = tuple(_tf32_round(a) for a in ua)
        r = self._np(*ua, **kw)
        if "out" in kwargs and kwargs["out"] is not None:
            return kwargs["out"]
        return _wrap(r)

    def at(self, a, indices, b=None):
        dt = np.dtype(a.dtype).name
        if self._name not in _AT_DTYPES:
            record("UFUNC_AT", f"xp.{self._name}.at: NotImplementedError in CuPy (no scatter op)")
        elif dt not in _AT_DTYPES[self._name]:
            record("UFUNC_AT", f"xp.{self._name}.at on {dt}: TypeError in CuPy (supports {sorted(_AT_DTYPES[self._name])})")
        self._np.at(_unwrap(a), _unwrap(indices), _unwrap(b))

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        if self._name not in ("add", "multiply"):
            record("UFUNC_AT", f"xp.{self._name}.reduce: NotImplementedError in CuPy")
        return _wrap(self._np.reduce(_unwrap(array), axis=axis, dtype=dtype, keepdims=keepdims))

    def accumulate(self, array, axis=0, dtype=None, out=None):
        if self._name not in ("add", "multiply"):
            record("UFUNC_AT", f"xp.{self._name}.accumulate: NotImplementedError in CuPy")
        return _wrap(self._np.accumulate(_unwrap(array), axis=axis, dtype=dtype))

    def outer(self, a, b, **kw):
        return _wrap(self._np.outer(_unwrap(a), _unwrap(b), **_unwrap(kw)))

    def __getattr__(self, n):
        if n in ("nin", "nout", "nargs", "types", "identity", "__name__"):
            return getattr(self._np, n)
        record("MISSING", f"xp.{self._name}.{n}")
        return getattr(self._np, n)


def _fn_proxy(qual, name, npf, cpf):
    @functools.wraps(npf)
    def f(*args, **kwargs):
        if name in _CREATION:
            src = args[0] if args else kwargs.get("a", kwargs.get("obj"))
            if type(src) is np.ndarray and src.ndim > 0:
                record("H2D", f"xp.{name}(numpy array {src.shape}) inside a kernel (host->device copy each run)")
            elif _has_list_data(src):
                record("H2D", f"xp.{name}(list) inside a kernel (host->device copy each run)")
        else:
            for h in _host_arrays(args) + _host_arrays(list(kwargs.values())):
                record("MIX_HOST", f"{qual}: numpy array argument (shape {h.shape}, dtype {h.dtype}): TypeError or implicit copy")
        if name in _BLAS_FUNCS or qual.startswith("xp.linalg"):
            record("BLAS" if name in _BLAS_FUNCS else "LINALG", f"{qual} (cuBLAS/cuSOLVER: refused during CUDA-graph capture)")
        if qual.startswith("xp.random"):
            record("CURAND", f"{qual} (cuRAND: refused during CUDA-graph capture)")
        if name in _SYNC_FUNCS or (name == "where" and len(args) == 1):
            record("SYNC", f"{qual} (host sync / data-dependent shape)")
        if name == "repeat" and len(args) > 1 and type(args[1]) is SArr:
            record("SYNC", "xp.repeat with device repeats (host sync)")
        _check_kwargs(qual, cpf, kwargs)
        _kkey(qual, args)
        ua = _unwrap(args)
        if TF32[0] and name in ("einsum", "dot", "tensordot", "inner"):
            ua = tuple(_tf32_round(a) for a in ua)
        return _wrap(npf(*ua, **_unwrap(kwargs)))

    return f


def _asnumpy(a, stream=None, order="C", out=None, blocking=True):
    record("SYNC", "xp.asnumpy (device->host copy)")
    return np.array(a._a if type(a) is SArr else a)


class _Namespace:
    def __init__(self, qual, npmod, cpmod):
        self._qual, self._np, self._cpm = qual, npmod, cpmod
        self._cache = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        c = self._cache.get(name)
        if c is not None:
            return c
        qual = f"{self._qual}.{name}"
        has_cp = hasattr(self._cpm, name)
        npa = getattr(self._np, name, None)
        if not has_cp:
            record("MISSING", f"{qual}: CuPy has no such name -> AttributeError")
            if npa is None:
                raise AttributeError(qual)
            v = npa  # keep going on numpy to find more issues
        elif npa is None:
            v = _CUPY_ONLY.get((self._qual, name))
            if v is None:
                raise AttributeError(f"{qual}: CuPy-only name not emulated")
            self._cache[name] = v
            return v
        else:
            v = npa
        if isinstance(v, np.ufunc):
            v = _UfuncProxy(name, v, getattr(self._cpm, name, None))
        elif isinstance(v, type) or not callable(v):
            pass
        elif name in ("linalg", "fft", "random"):
            pass
        else:
            v = _fn_proxy(qual, name, v, getattr(self._cpm, name, v))
        if has_cp:
            self._cache[name] = v
        return v


def _elementwise_kernel(*a, **k):
    raise RuntimeError("strict emulation: ElementwiseKernel not emulated (fused path falls back)")


class _ndarray_type_proxy:  # isinstance(x, xp.ndarray)
    pass


_CUPY_ONLY = {
    ("xp", "asnumpy"): _asnumpy,
    ("xp", "ElementwiseKernel"): _elementwise_kernel,
    ("xp", "RawKernel"): _elementwise_kernel,
    ("xp", "ReductionKernel"): _elementwise_kernel,
    ("xp", "get_array_module"): lambda *a: SXP,
}

SXP = _Namespace("xp", np, _cp)
SXP._cache["ndarray"] = SArr
SXP._cache["linalg"] = _Namespace("xp.linalg", np.linalg, _cplinalg)
SXP._cache["fft"] = _Namespace("xp.fft", np.fft, _cpfft)
SXP._cache["random"] = _Namespace("xp.random", np.random, _cprandom)
SXP.__name__ = "cupy"


@contextlib.contextmanager
def kernel_scope(op):
    prev = getattr(_ctx, "op", None), getattr(_ctx, "in_kernel", False)
    _ctx.op, _ctx.in_kernel = op, True
    try:
        yield
    finally:
        _ctx.op, _ctx.in_kernel = prev
