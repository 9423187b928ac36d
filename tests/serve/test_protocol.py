"""The Open Inference Protocol codec (ortlite.serve.protocol): every datatype round trip in JSON and binary,
bad requests -> ProtocolError (400) with a message. No Ray needed."""
import gzip
import json

import numpy as np
import pytest

from ortlite.serve import gpu_providers, protocol
from ortlite.serve.protocol import HEADER, ProtocolError

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


def sample(datatype, shape=(2, 3)):
    rng = np.random.default_rng(0)
    if datatype == "BYTES":
        return np.array([b"", b"abc", "\u00e9t\u00e9".encode(), b"x" * 300, b"q", b"zz"], dtype=object).reshape(shape)
    dt = protocol.DATATYPES[datatype]
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.array([info.min, info.max, 0, 1, info.max // 3, info.min // 3], dtype=dt).reshape(shape)
    return (rng.standard_normal(shape) * 100).astype(dt)


def roundtrip(arr, binary):
    body, headers = protocol.encode_request({"x": arr}, binary=binary)
    req = protocol.decode_request(body, headers.get(HEADER))
    return req.inputs["x"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", NUMERIC + ["BYTES"])
def test_request_and_response_round_trip(datatype, binary):
    arr = sample(datatype)
    got = roundtrip(arr, binary)
    assert got.dtype == protocol.DATATYPES[datatype] and got.shape == arr.shape
    assert got.tolist() == arr.tolist()
    req = protocol.InferRequest({}, id="r1", binary_default=binary)
    body, headers = protocol.encode_response("m", {"y": arr}, req)
    assert (HEADER in headers) == binary
    head = json.loads(body[:int(headers[HEADER])] if binary else body)
    assert head["model_name"] == "m" and head["id"] == "r1" and head["outputs"][0]["datatype"] == datatype
    out = protocol.decode_response(body, headers.get(HEADER))["y"]
    assert out.tolist() == arr.tolist() and out.shape == arr.shape


def test_bf16_binary_only():
    pytest.importorskip("ml_dtypes")
    arr = np.array([1.5, -2.0, 3.0], dtype=protocol.DATATYPES["BF16"])
    assert roundtrip(arr, True).tolist() == arr.tolist()
    with pytest.raises(ProtocolError, match="BF16 data must be sent binary"):
        protocol.from_json_data([1.0], "BF16", [1], "x")


def test_json_accepts_nested_data_and_special_floats():
    body = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                   "data": [[1, 2], [3, "NaN"]]}]}).encode()
    x = protocol.decode_request(body).inputs["x"]
    assert x.shape == (2, 2) and x[0, 1] == 2 and np.isnan(x[1, 1])


def test_mixed_json_and_binary_inputs_and_output_selection():
    a, b = np.arange(6, dtype=np.int64).reshape(2, 3), np.ones(4, np.float32)
    head = {"inputs": [{"name": "a", "shape": [2, 3], "datatype": "INT64", "parameters": {"binary_data_size": 48}},
                       {"name": "b", "shape": [4], "datatype": "FP32", "data": [1, 1, 1, 1]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}]}
    js = json.dumps(head).encode()
    req = protocol.decode_request(js + a.tobytes(), str(len(js)))
    assert req.inputs["a"].tolist() == a.tolist() and req.inputs["b"].tolist() == b.tolist()
    assert req.outputs == ["y", "z"] and req.binary("y") and not req.binary("z")
    body, headers = protocol.encode_response("m", {"y": a, "z": b}, req)
    outs = protocol.decode_response(body, headers[HEADER])
    assert outs["y"].tolist() == a.tolist() and outs["z"].tolist() == b.tolist()


def test_compressed_requests():
    arr = sample("FP32")
    body, headers = protocol.encode_request({"x": arr})
    got = protocol.decode_request(gzip.compress(body), headers[HEADER], "gzip").inputs["x"]
    assert got.tolist() == arr.tolist()


def test_tritonclient_requests_decode():
    http = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    from tritonclient.http._utils import _get_inference_request

    arrs = {dt: sample(dt) for dt in NUMERIC + ["BYTES"]}
    for binary in (True, False):
        inputs = []
        for dt, arr in arrs.items():
            i = http.InferInput(dt.lower(), list(arr.shape), dt)
            i.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(i)
        body, n = _get_inference_request(inputs=inputs, request_id="", outputs=None, sequence_id=0,
                                         sequence_start=False, sequence_end=False, priority=0, timeout=None,
                                         custom_parameters=None)
        req = protocol.decode_request(body, n)
        assert req.binary_default  # no outputs named: tritonclient asks for binary outputs
        for dt, arr in arrs.items():
            assert req.inputs[dt.lower()].tolist() == arr.tolist(), dt
    # and tritonclient reads our responses
    req = protocol.InferRequest({}, binary_default=True)
    body, headers = protocol.encode_response("m", {k.lower(): v for k, v in arrs.items()}, req)
    res = http.InferResult.from_response_body(body, header_length=int(headers[HEADER]))
    for dt, arr in arrs.items():
        assert res.as_numpy(dt.lower()).tolist() == arr.tolist(), dt


@pytest.mark.parametrize("body, header, message", [
    (b"{not json", None, "not valid JSON"),
    (b"[]", None, "JSON object"),
    (b'{"inputs": []}', None, "non-empty 'inputs'"),
    (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}', None, "neither 'data'"),
    (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP33", "data": [1, 2]}]}', None, "unknown datatype 'FP33'"),
    (b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}', None, "needs 3 elements"),
    (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}', None, "non-negative integers"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1.5]}]}', None, "not a INT32 value"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}]}', None, "not a BOOL value"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}', None, "not a FP32 value"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1000]}]}', None, "out of the range"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}',
     None, "no Inference-Header-Content-Length"),
    (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}\0\0\0\0',
     "94", "runs past"),
    (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}\0\0\0\0',
     "94", "needs 8 bytes"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]}\x09\0\0\0',
     "96", "claims 9 bytes"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}', "9999", "body has"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}, '
     b'{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}', None, "given twice"),
])
def test_bad_requests_raise_400_with_a_message(body, header, message):
    if header and header != "9999":
        header = str(body.index(b"}]}") + 3)
    with pytest.raises(ProtocolError, match=message) as e:
        protocol.decode_request(body, header)
    assert e.value.status == 400
    assert json.loads(protocol.error_body(e.value))["error"] == str(e.value)


def test_metadata_shapes_and_types():
    class Arg:
        name, shape, type = "x", ["batch", 3, None], "tensor(float16)"

    assert protocol.tensor_metadata(Arg) == {"name": "x", "datatype": "FP16", "shape": [-1, 3, -1]}


def test_gpu_fraction_sets_gpu_mem_limit():
    total = 80 << 30
    got = gpu_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], 0.5, total)
    assert got == [("CUDAExecutionProvider", {"gpu_mem_limit": 40 << 30}), "CPUExecutionProvider"]
    mine = [("CUDAExecutionProvider", {"gpu_mem_limit": 1 << 30, "device_id": 0})]
    assert gpu_providers(mine, 0.25, total) == mine  # the user's own limit stays
    assert gpu_providers(["CUDAExecutionProvider"], 1, total) == ["CUDAExecutionProvider"]  # a whole GPU: no limit
