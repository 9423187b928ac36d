"""ONNX element types, numpy dtypes and onnxruntime's type strings.

ml_dtypes (optional) supplies numpy dtypes for bfloat16, the float8 and the
4-bit types; without it those element types are reported as unsupported.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ortlite.hints import install_hint

try:  # optional: bfloat16 / float8 / int4 for numpy
    import ml_dtypes
except ImportError:  # pragma: no cover - exercised only without the extra
    ml_dtypes = None

# onnxruntime spells element types in type strings like this: 'tensor(float)'.
_TYPE_NAMES = {
    TensorProto.FLOAT: "float",
    TensorProto.UINT8: "uint8",
    TensorProto.INT8: "int8",
    TensorProto.UINT16: "uint16",
    TensorProto.INT16: "int16",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.STRING: "string",
    TensorProto.BOOL: "bool",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "double",
    TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64",
    TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT8E4M3FN: "float8e4m3fn",
    TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    TensorProto.FLOAT8E5M2: "float8e5m2",
    TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
    TensorProto.UINT4: "uint4",
    TensorProto.INT4: "int4",
    TensorProto.FLOAT4E2M1: "float4e2m1",
}
for _name in ("FLOAT8E8M0", "UINT2", "INT2", "FLOAT6E2M3", "FLOAT6E3M2"):
    if hasattr(TensorProto, _name):
        _TYPE_NAMES[getattr(TensorProto, _name)] = _name.lower()

_NP_OF = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.STRING: np.dtype(object),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.COMPLEX64: np.dtype(np.complex64),
    TensorProto.COMPLEX128: np.dtype(np.complex128),
}
if ml_dtypes is not None:
    for _name, _ml in (
        ("BFLOAT16", "bfloat16"),
        ("FLOAT8E4M3FN", "float8_e4m3fn"),
        ("FLOAT8E4M3FNUZ", "float8_e4m3fnuz"),
        ("FLOAT8E5M2", "float8_e5m2"),
        ("FLOAT8E5M2FNUZ", "float8_e5m2fnuz"),
        ("UINT4", "uint4"),
        ("INT4", "int4"),
        ("FLOAT4E2M1", "float4_e2m1fn"),
        ("FLOAT8E8M0", "float8_e8m0fnu"),
        ("UINT2", "uint2"),
        ("INT2", "int2"),
        ("FLOAT6E2M3", "float6_e2m3fn"),
        ("FLOAT6E3M2", "float6_e3m2fn"),
    ):
        if hasattr(TensorProto, _name) and hasattr(ml_dtypes, _ml):
            _NP_OF[getattr(TensorProto, _name)] = np.dtype(getattr(ml_dtypes, _ml))

_ONNX_OF = {v: k for k, v in _NP_OF.items()}
_ONNX_OF[np.dtype(np.str_)] = TensorProto.STRING


def np_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype holding ONNX element type ``elem_type``."""
    try:
        return _NP_OF[elem_type]
    except KeyError:
        name = _TYPE_NAMES.get(elem_type, str(elem_type))
        hint = f" (install ml_dtypes: {install_hint('dtypes')})" if ml_dtypes is None else ""
        raise TypeError(f"ONNX element type {name} has no numpy dtype{hint}") from None


def onnx_elem_type(dtype) -> int:
    """The ONNX element type of a numpy dtype (str and object map to STRING)."""
    dt = np.dtype(dtype)
    if dt.kind == "U":
        return TensorProto.STRING
    try:
        return _ONNX_OF[dt]
    except KeyError:
        raise TypeError(f"numpy dtype {dt} has no ONNX element type") from None


def type_name(elem_type: int) -> str:
    """'float', 'int64', ... as onnxruntime writes them inside 'tensor(...)'."""
    return _TYPE_NAMES.get(elem_type, f"unknown({elem_type})")


def tensor_type_string(elem_type: int) -> str:
    return f"tensor({type_name(elem_type)})"


def dtype_type_string(dtype) -> str:
    """'tensor(float)' for a numpy dtype."""
    return tensor_type_string(onnx_elem_type(dtype))


def type_proto_string(tp) -> str:
    """onnxruntime's type string for a TypeProto: tensor(float), seq(tensor(int64)), map(string,tensor(float)), optional(...)."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return tensor_type_string(tp.tensor_type.elem_type)
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({type_name(tp.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({type_proto_string(tp.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({type_name(tp.map_type.key_type)},{type_proto_string(tp.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({type_proto_string(tp.optional_type.elem_type)})"
    return "unknown"


def type_proto_shape(tp):
    """Shape of a tensor TypeProto as onnxruntime reports it: ints, dim_param strings, None for unknown.

    A negative dim_value (Paddle2ONNX's -1) is unknown, as in onnxruntime. Returns None when the
    value is not a tensor or has no shape at all.
    """
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        tt = tp.tensor_type
    elif kind == "sparse_tensor_type":
        tt = tp.sparse_tensor_type
    else:
        return None
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value) if d.dim_value >= 0 else None)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def type_proto_elem(tp):
    """ONNX element type of a tensor TypeProto, or None for non-tensors."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return tp.tensor_type.elem_type
    if kind == "sparse_tensor_type":
        return tp.sparse_tensor_type.elem_type
    return None
