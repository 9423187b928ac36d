"""The Open Inference Protocol (KServe v2, Triton's HTTP/REST API) as bytes <-> numpy: pure Python and numpy,
no Ray, no web framework, so the server, the tests and the benchmark clients share one codec.

A request body is JSON, or JSON followed by raw tensor bytes (the binary tensor data extension that
``tritonclient[http]`` uses by default): the ``Inference-Header-Content-Length`` header gives the JSON's
length, each input with ``parameters.binary_data_size`` takes that many bytes after it, in order. Outputs are
returned binary when the request asks (``parameters.binary_data_output`` for all, an output's
``parameters.binary_data`` for one); the response then carries the same header.

Every malformed request raises :class:`ProtocolError` (HTTP 400) with a message naming the tensor and what
is wrong; :func:`error_body` is the ``{"error": "..."}`` body every error response carries.
"""
from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field

import numpy as np

HEADER = "Inference-Header-Content-Length"

# OIP datatype -> numpy dtype (BYTES: an object array of bytes; BF16 only with ml_dtypes, binary only).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16), "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
try:  # optional: ml_dtypes' bfloat16 (Triton sends BF16 as binary only)
    import ml_dtypes as _mld

    DATATYPES["BF16"] = np.dtype(_mld.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is in the test extra
    pass

# ONNX tensor type strings (NodeArg.type) -> OIP datatypes.
_ONNX_TYPES = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64", "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
    "tensor(int64)": "INT64", "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES", "tensor(bfloat16)": "BF16",
}


class ProtocolError(ValueError):
    """A request the server cannot read (HTTP 400 unless ``status`` says otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def error_body(message) -> bytes:
    return json.dumps({"error": str(message)}).encode()


def datatype_of(dtype) -> str:
    """The OIP datatype of a numpy dtype (str / bytes / object arrays are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "BYTES"
    for name, dt in DATATYPES.items():
        if dt == dtype and name != "BYTES":
            return name
    raise ProtocolError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")


def datatype_of_onnx(type_string: str) -> str:
    """The OIP datatype of an ONNX type string as NodeArg.type writes it ("tensor(float)" -> "FP32")."""
    return _ONNX_TYPES.get(type_string, type_string)


def tensor_metadata(arg) -> dict:
    """{name, datatype, shape} of a NodeArg, symbolic dims as -1 (the model metadata endpoint)."""
    shape = arg.shape if isinstance(arg.shape, (list, tuple)) else []
    return {"name": arg.name, "datatype": datatype_of_onnx(arg.type),
            "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in shape]}


# --------------------------------------------------------------------------- tensors <-> bytes / JSON

def _serialize_bytes(arr: np.ndarray) -> bytes:
    """BYTES elements as Triton writes them: a 4-byte little-endian length, then the bytes, per element."""
    parts = []
    for v in arr.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(len(b).to_bytes(4, "little"))
        parts.append(b)
    return b"".join(parts)


def _deserialize_bytes(buf, count: int, name: str) -> np.ndarray:
    out, pos, view = [], 0, memoryview(buf)
    for _ in range(count):
        if pos + 4 > len(view):
            raise ProtocolError(f"input '{name}': BYTES data ends inside an element's length ({count} elements "
                                f"expected, {len(out)} read)")
        n = int.from_bytes(view[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(view):
            raise ProtocolError(f"input '{name}': BYTES element {len(out)} claims {n} bytes, {len(view) - pos} left")
        out.append(bytes(view[pos:pos + n]))
        pos += n
    if pos != len(view):
        raise ProtocolError(f"input '{name}': {len(view) - pos} bytes left after {count} BYTES elements")
    arr = np.empty(count, dtype=object)
    arr[:] = out
    return arr


def to_raw(arr: np.ndarray) -> bytes:
    """A tensor's binary data: little-endian row-major, BYTES length-prefixed."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "OSU":
        return _serialize_bytes(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr).tobytes()


def from_raw(buf, datatype: str, shape, name: str = "") -> np.ndarray:
    """The array a tensor's binary data holds (copied: the request buffer is not kept alive)."""
    dtype = _dtype(datatype, name)
    count = _count(shape, name)
    if datatype == "BYTES":
        return _deserialize_bytes(buf, count, name).reshape(shape)
    want = count * dtype.itemsize
    if len(buf) != want:
        raise ProtocolError(f"input '{name}': {datatype} {list(shape)} needs {want} bytes of binary data, "
                            f"got {len(buf)}")
    return np.frombuffer(buf, dtype=dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype
                         ).astype(dtype, copy=True).reshape(shape)


def to_json_data(arr: np.ndarray) -> list:
    """A tensor's ``data`` as flat JSON (row-major): numbers, booleans, or strings for BYTES."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "OSU":
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    if arr.dtype.kind == "V" or arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    return arr.reshape(-1).tolist()


def from_json_data(data, datatype: str, shape, name: str = "") -> np.ndarray:
    """The array a tensor's JSON ``data`` holds (flat, or nested row-major as the protocol also allows)."""
    dtype = _dtype(datatype, name)
    count = _count(shape, name)
    if datatype == "BF16":
        raise ProtocolError(f"input '{name}': BF16 data must be sent binary (Inference-Header-Content-Length)")
    if not isinstance(data, list):
        data = [data]
    flat = _flatten(data)
    if len(flat) != count:
        raise ProtocolError(f"input '{name}': shape {list(shape)} needs {count} elements, data has {len(flat)}")
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        try:
            arr[:] = [v.encode("utf-8") if isinstance(v, str) else _bad(name, datatype, v) for v in flat]
        except (TypeError, ValueError) as e:
            raise ProtocolError(f"input '{name}': BYTES data must be strings: {e}") from None
        return arr.reshape(shape)
    for v in flat:
        ok = isinstance(v, bool) if datatype == "BOOL" else (
            isinstance(v, (int, float)) and not isinstance(v, bool) or (datatype in ("FP16", "FP32", "FP64")
                                                                        and v in ("NaN", "Infinity", "-Infinity")))
        if not ok:
            _bad(name, datatype, v)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            if dtype.kind in "iu" and any(isinstance(v, float) for v in flat):
                _bad(name, datatype, next(v for v in flat if isinstance(v, float)))
            arr = np.array([float(v) if isinstance(v, str) else v for v in flat], dtype=dtype)
    except OverflowError:
        raise ProtocolError(f"input '{name}': a value is out of the range of {datatype}") from None
    return arr.reshape(shape)


def _bad(name, datatype, v):
    raise ProtocolError(f"input '{name}': {json.dumps(v)[:40]} is not a {datatype} value")


def _flatten(data):
    """Nested row-major lists -> one flat list."""
    if not any(isinstance(v, list) for v in data):
        return data
    out = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            out.append(v)
    walk(data)
    return out


def _dtype(datatype, name) -> np.dtype:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(f"input '{name}': unknown datatype {datatype!r}; expected one of "
                            f"{', '.join(DATATYPES)}")
    return DATATYPES[datatype]


def _count(shape, name) -> int:
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                        for d in shape):
        raise ProtocolError(f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


# --------------------------------------------------------------------------- requests and responses

@dataclass
class InferRequest:
    """A decoded inference request: the feeds, and which outputs to return and how."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[str] | None = None  # None: every output
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False  # request parameters.binary_data_output
    parameters: dict = field(default_factory=dict)

    def binary(self, name) -> bool:
        return name in self.binary_outputs or self.binary_default


def _body(body: bytes, content_encoding: str | None) -> bytes:
    enc = (content_encoding or "").lower().strip()
    if enc in ("", "identity"):
        return body
    try:
        if enc == "gzip":
            return gzip.decompress(body)
        if enc == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError) as e:
        raise ProtocolError(f"the request body is not valid {enc}: {e}") from None
    raise ProtocolError(f"unsupported Content-Encoding {content_encoding!r} (gzip, deflate or none)")


def _header_length(value, size) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{HEADER} must be an integer, got {value!r}") from None
    if not 0 <= n <= size:
        raise ProtocolError(f"{HEADER} is {n} but the body has {size} bytes")
    return n


def decode_request(body: bytes, header_length=None, content_encoding: str | None = None) -> InferRequest:
    """An inference request body (JSON, or JSON + binary tensor data) -> :class:`InferRequest`."""
    body = _body(bytes(body), content_encoding)
    n = _header_length(header_length, len(body))
    head, rest = (body, b"") if n is None else (body[:n], memoryview(body)[n:])
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"the request is not valid JSON: {e}") from None
    if not isinstance(req, dict):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request needs a non-empty 'inputs' list")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be a JSON object")
    feeds, pos = {}, 0
    for k, t in enumerate(inputs):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ProtocolError(f"inputs[{k}] must be an object with a 'name', 'shape', 'datatype' and 'data'")
        name = t["name"]
        if name in feeds:
            raise ProtocolError(f"input '{name}' is given twice")
        for key in ("shape", "datatype"):
            if key not in t:
                raise ProtocolError(f"input '{name}' has no '{key}'")
        tparams = t.get("parameters") or {}
        size = tparams.get("binary_data_size") if isinstance(tparams, dict) else None
        if size is not None:
            if n is None:
                raise ProtocolError(f"input '{name}' has binary_data_size but the request has no {HEADER} header")
            if not isinstance(size, int) or size < 0 or pos + size > len(rest):
                raise ProtocolError(f"input '{name}': binary_data_size {size!r} runs past the {len(rest)} bytes "
                                    f"of binary data ({pos} used before it)")
            feeds[name] = from_raw(rest[pos:pos + size], t["datatype"], t["shape"], name)
            pos += size
        else:
            if "data" not in t:
                raise ProtocolError(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
            feeds[name] = from_json_data(t["data"], t["datatype"], t["shape"], name)
    if n is not None and pos != len(rest):
        raise ProtocolError(f"{len(rest) - pos} bytes of binary data are not claimed by any input's binary_data_size")
    outputs, binary = None, set()
    if req.get("outputs") is not None:
        if not isinstance(req["outputs"], list):
            raise ProtocolError("'outputs' must be a list")
        outputs = []
        for k, o in enumerate(req["outputs"]):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise ProtocolError(f"outputs[{k}] must be an object with a 'name'")
            outputs.append(o["name"])
            op = o.get("parameters") or {}
            if isinstance(op, dict) and op.get("binary_data"):
                binary.add(o["name"])
    rid = req.get("id")
    return InferRequest(feeds, None if rid is None else str(rid), outputs, binary,
                        bool(params.get("binary_data_output", False)), params)


def _tensor(name: str, arr: np.ndarray, binary: bool, raw: list) -> dict:
    """One tensor's JSON entry; with ``binary`` its bytes are appended to ``raw`` (the binary extension)."""
    t = {"name": name, "datatype": datatype_of(arr.dtype), "shape": [int(d) for d in arr.shape]}
    if binary:
        b = to_raw(arr)
        t["parameters"] = {"binary_data_size": len(b)}
        raw.append(b)
    else:
        t["data"] = to_json_data(arr)
    return t


def encode_response(model_name: str, outputs: dict[str, np.ndarray], request: InferRequest | None = None,
                    model_version: str = "1") -> tuple[bytes, dict]:
    """The response body and its extra headers (``Inference-Header-Content-Length`` when some output is binary)."""
    request = request or InferRequest({})
    head = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if request.id is not None:
        head["id"] = request.id
    raw = []
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        head["outputs"].append(_tensor(name, arr, request.binary(name) or datatype_of(arr.dtype) == "BF16", raw))
    js = json.dumps(head, allow_nan=True).encode()
    if not raw:
        return js, {}
    return js + b"".join(raw), {HEADER: str(len(js))}


def encode_request(inputs: dict[str, np.ndarray], binary: bool = True, outputs=None, binary_output: bool = True,
                   request_id: str | None = None) -> tuple[bytes, dict]:
    """A client's request body and headers (what tritonclient sends); for tests and the benchmark clients."""
    head: dict = {"inputs": []}
    if request_id is not None:
        head["id"] = request_id
    raw = []
    for name, arr in inputs.items():
        head["inputs"].append(_tensor(name, np.asarray(arr), binary, raw))
    if outputs is not None:
        head["outputs"] = [{"name": o, "parameters": {"binary_data": binary_output}} for o in outputs]
    elif binary_output:
        head["parameters"] = {"binary_data_output": True}
    js = json.dumps(head).encode()
    headers = {"Content-Type": "application/octet-stream" if raw else "application/json"}
    if raw:
        headers[HEADER] = str(len(js))
    return js + b"".join(raw), headers


def decode_response(body: bytes, header_length=None) -> dict[str, np.ndarray]:
    """A response body -> {output name: array}; a body with "error" raises ProtocolError with its message."""
    n = _header_length(header_length, len(body))
    head, rest = (body, b"") if n is None else (body[:n], memoryview(body)[n:])
    res = json.loads(head)
    if "error" in res:
        raise ProtocolError(res["error"])
    out, pos = {}, 0
    for t in res["outputs"]:
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            out[t["name"]] = from_raw(rest[pos:pos + size], t["datatype"], t["shape"], t["name"])
            pos += size
        else:
            out[t["name"]] = from_json_data(t["data"], t["datatype"], t["shape"], t["name"])
    return out
