"""The engine cache shared by compiling providers.

Key: a SHA-256 over the group's serialized ONNX model (its nodes *and weights*), its input
and output dtypes and shapes, and what the provider says decides the compiled result
(``cache_key_fields``: compiler version, device, options, shape ranges). onnxruntime's
TensorRT cache hashes the model's file name and tensor names only, so a retrained model with
the same names reuses a stale engine; here any change of a weight is a new key.

An entry is two files in the cache directory: ``<prefix>_<key>.engine`` (the provider's
serialized engine) and ``<prefix>_<key>.json`` (the key fields, the blob's size and SHA-256,
build seconds, when). Both are written to a temporary file and renamed, so a reader never sees
half an entry. An entry that cannot be read, whose sidecar does not match its key fields or
whose blob does not match its recorded hash is logged, deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time

log = logging.getLogger("ortlite")

FORMAT = 1


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def key_fields(prov, spec) -> dict:
    """Everything besides the model bytes that decides the compiled result."""
    def tensors(ts):
        return [[t.name, None if t.dtype is None else str(t.dtype),
                 None if t.shape is None else [d if isinstance(d, int) else (str(d) if d else None)
                                               for d in t.shape]] for t in ts]
    return _jsonable({
        "format": FORMAT,
        "provider": prov.name,
        "inputs": tensors(spec.inputs),
        "outputs": tensors(spec.outputs),
        **prov.cache_key_fields(),
    })


def cache_key(prov, spec) -> tuple[str, dict]:
    """(hex key, key fields) for ``spec`` on ``prov``."""
    fields = key_fields(prov, spec)
    h = hashlib.sha256()
    h.update(spec.fingerprint.encode() if spec.fingerprint else spec.model_bytes)
    h.update(json.dumps(fields, sort_keys=True).encode())
    return h.hexdigest(), fields


def _atomic_write(path, data: bytes):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class EngineCache:
    """Entries in one directory (created on first store)."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(os.path.expanduser(directory))

    def paths(self, prefix, key) -> tuple[str, str]:
        stem = os.path.join(self.directory, f"{prefix}_{key[:40]}")
        return stem + ".engine", stem + ".json"

    def load(self, prefix, key, fields):
        """A ``LoadedEntry`` for a valid entry, else None (a bad entry is logged and deleted).

        The sidecar and the blob's size are checked here; the blob's SHA-256 is computed on a
        thread while the provider loads the engine (``LoadedEntry.verify()`` waits for it)."""
        blob_path, meta_path = self.paths(prefix, key)
        if not os.path.exists(blob_path) and not os.path.exists(meta_path):
            return None
        problem = None
        try:
            with open(meta_path, "rb") as f:
                meta = json.loads(f.read().decode())
            blob = _map(blob_path)
        except (OSError, ValueError) as e:
            problem = f"unreadable ({type(e).__name__}: {e})"
        else:
            if meta.get("key") != key or meta.get("fields") != fields:
                diff = sorted(k for k in set(fields) | set(meta.get("fields") or {})
                              if (meta.get("fields") or {}).get(k) != fields.get(k))
                problem = f"its sidecar does not match the key (fields differing: {', '.join(diff) or 'key'})"
            elif meta.get("size") != len(blob):
                problem = f"its blob does not match the sidecar (size {len(blob)}, recorded {meta.get('size')})"
        if problem is None:
            return LoadedEntry(blob_path, blob, meta)
        log.warning("engine cache entry %s is %s: deleted, the engine is rebuilt", blob_path, problem)
        self.delete(prefix, key)
        return None

    def delete(self, prefix, key):
        for p in self.paths(prefix, key):
            try:
                os.unlink(p)
            except OSError:
                pass

    def store(self, prefix, key, fields, blob: bytes, build_s: float, extra=None) -> str:
        os.makedirs(self.directory, exist_ok=True)
        blob_path, meta_path = self.paths(prefix, key)
        meta = {
            "key": key, "fields": fields, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
            "build_seconds": round(build_s, 4), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra or {}),
        }
        _atomic_write(blob_path, blob)
        _atomic_write(meta_path, json.dumps(meta, indent=1, sort_keys=True).encode())
        return blob_path


def _map(path):
    """The file's bytes: a copy-on-write memory map (nothing read up front; an engine loader that
    takes a buffer maps the file instead of copying it), or bytes for small files."""
    size = os.path.getsize(path)
    if size < (1 << 20):
        with open(path, "rb") as f:
            return f.read()
    import numpy as np

    return np.memmap(path, dtype=np.uint8, mode="c")


class LoadedEntry:
    """A cache entry whose sidecar matched: ``blob`` (bytes or a uint8 memory map) and a hash check
    running on a thread (hashlib releases the GIL) while the engine loads."""

    def __init__(self, path, blob, meta):
        import threading

        self.path, self.blob, self.meta = path, blob, meta
        self._ok = None
        self._thread = threading.Thread(target=self._hash, daemon=True)
        self._thread.start()

    def _hash(self):
        data = self.blob if isinstance(self.blob, bytes) else memoryview(self.blob)
        self._ok = hashlib.sha256(data).hexdigest() == self.meta.get("sha256")

    def verify(self):
        """None when the blob matches its recorded SHA-256, else what is wrong."""
        self._thread.join()
        return None if self._ok else "its blob does not match the SHA-256 in its sidecar (changed or damaged)"


def read_entry(blob_path):
    """A ``LoadedEntry`` for an entry named by its blob path (EP-context loading): the sidecar read,
    the blob mapped, its hash checked on a thread (``verify()``)."""
    meta_path = blob_path[: -len(".engine")] + ".json" if blob_path.endswith(".engine") else blob_path + ".json"
    with open(meta_path, "rb") as f:
        meta = json.loads(f.read().decode())
    blob = _map(blob_path)
    if meta.get("size") != len(blob):
        raise ValueError(f"the engine file is {len(blob)} bytes, its sidecar {meta_path} says {meta.get('size')}")
    return LoadedEntry(blob_path, blob, meta)
