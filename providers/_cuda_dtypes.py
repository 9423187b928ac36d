"""Which dtypes CuPy can hold, and the CUDA provider's refusal of nodes that read or write others.

A node is refused (it runs on the host, with the reason in the placement report) when any input,
output or implicit input, or a dtype attribute (Cast's ``to``, ``output_dtype``, ...), or an array
attribute has an element type CuPy 14 cannot hold. Value types come from shape inference, the
graph's initializers, its parents, and types derived here along the graph where inference left
none (function-expanded bodies, fused intermediates).
"""
from __future__ import annotations

import weakref

import numpy as np
from onnx import TensorProto

from ortlite import types as ot

# ONNX element types whose numpy dtypes CuPy 14 can hold and compute on: those
# cupy._core._scalar.get_typename knows (bfloat16 through ml_dtypes). A fixed table, so
# partitioning needs no GPU. Everything else (string, float8 variants, int4/uint4, int2/uint2,
# float4, float6, float8e8m0) stays on the host: CuPy raises "Unsupported dtype" on a copy.
def _cupy_elem_types():
    T = TensorProto
    return frozenset({T.FLOAT, T.UINT8, T.INT8, T.UINT16, T.INT16, T.INT32, T.INT64, T.BOOL, T.FLOAT16,
                      T.DOUBLE, T.UINT32, T.UINT64, T.COMPLEX64, T.COMPLEX128, T.BFLOAT16})


CUPY_ELEM_TYPES = _cupy_elem_types()
# Attributes holding an ONNX element type a node produces (Cast's to, QuantizeLinear's
# output_dtype, EyeLike / Random*'s dtype); 0 means "not set".
_DTYPE_ATTRS = ("to", "dtype", "output_dtype")


def _elem_type_name(elem_type) -> str:
    """float8_e4m3fn, int4, string, ...: the numpy / ml_dtypes name where there is one."""
    if elem_type == TensorProto.STRING:
        return "string"
    try:
        return ot.np_dtype(elem_type).name
    except TypeError:
        return ot.type_name(elem_type)


def no_cupy_dtype_reason(elem_type, what="") -> str:
    """The refusal reason for a value of ONNX element type ``elem_type`` (``what`` names it)."""
    why = " (strings and objects stay on the host)" if elem_type == TensorProto.STRING else ""
    return f"CuPy has no {_elem_type_name(elem_type)} dtype{why}" + (f": {what}" if what else "")


def dtype_on_cupy(dtype) -> bool:
    """Whether CuPy can hold a numpy dtype (the table above; no GPU needed)."""
    try:
        return ot.onnx_elem_type(dtype) in CUPY_ELEM_TYPES
    except TypeError:
        return False


def _leaf_elem_types(tp) -> list:
    """Element types a TypeProto holds (tensor, sparse tensor, and inside sequence/optional/map)."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return [tp.tensor_type.elem_type] if tp.tensor_type.elem_type else []
    if kind == "sparse_tensor_type":
        return [tp.sparse_tensor_type.elem_type] if tp.sparse_tensor_type.elem_type else []
    if kind == "sequence_type":
        return _leaf_elem_types(tp.sequence_type.elem_type)
    if kind == "optional_type":
        return _leaf_elem_types(tp.optional_type.elem_type)
    if kind == "map_type":
        return [tp.map_type.key_type] + _leaf_elem_types(tp.map_type.value_type)
    return []


def _array_elem_types(arr) -> list:
    try:
        return [ot.onnx_elem_type(arr.dtype)]
    except (TypeError, AttributeError):
        return [TensorProto.STRING]  # an object / bytes array: host only


# Types derived while partitioning (values with no value_info: function-expanded bodies, fused
# nodes' intermediates), per graph.
_DERIVED = weakref.WeakKeyDictionary()


def _value_types(graph, name):
    """The element types of value ``name`` as known at partition time (None where unknown)."""
    g = graph
    while g is not None:
        vi = g.value_info.get(name)
        if vi is not None:
            if vi.type_proto is not None:
                types = _leaf_elem_types(vi.type_proto)
                if types:
                    return types
            elif vi.elem_type:
                return [vi.elem_type]
        arr = g.initializers.get(name)
        if arr is not None:
            return _array_elem_types(arr)
        try:
            derived = _DERIVED.get(g)
        except TypeError:
            derived = None
        if derived and name in derived:
            return derived[name]
        g = getattr(g, "parent", None)
    return None


def _tensor_types(type_str):
    """[elem_type] for 'tensor(float)'-like type strings; None for others."""
    if type_str.startswith("tensor(") and type_str.endswith(")"):
        inner = type_str[7:-1]
        for et, nm in ot._TYPE_NAMES.items():
            if nm == inner:
                return [et]
    return None


def _derive_output_types(node, schema, in_types) -> dict:
    """Output index -> element types, from the schema's fixed output types and its type
    parameters bound by typed inputs; outputs not derivable are left out (dtype attributes
    such as Cast's to are checked by the caller)."""
    import onnx

    out = {}
    if schema is None:
        return out
    formal_in = list(schema.inputs)
    bound = {}
    for k, types in enumerate(in_types):
        if not types or not formal_in:
            continue
        f = formal_in[min(k, len(formal_in) - 1)]
        if k >= len(formal_in) and f.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            continue
        bound.setdefault(f.type_str, types)
    formal_out = list(schema.outputs)
    for k in range(len(node.outputs)):
        if not formal_out:
            break
        f = formal_out[min(k, len(formal_out) - 1)]
        types = bound.get(f.type_str) or _tensor_types(f.type_str)
        if types:
            out[k] = types
    return out


def cupy_dtype_refusal(node, graph=None) -> str:
    """Why CuPy cannot run ``node`` for its dtypes ('' when it can): an input, output or implicit
    input whose type (from shape inference, initializers, or derived from the schema's type
    parameters) CuPy cannot hold, or a dtype attribute (Cast's to, QuantizeLinear's output_dtype,
    ConstantOfShape's value) naming one. A value whose type stays unknown does not refuse the node
    (shape inference types every value of a well-formed model; types not inferred are derived from
    the node's schema where its inputs bind them)."""
    from ortlite import registry

    why, attr_type = "", None
    for an in _DTYPE_ATTRS:
        v = node.attrs.get(an)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v:
            attr_type = attr_type or int(v)
            if int(v) not in CUPY_ELEM_TYPES and not why:
                why = no_cupy_dtype_reason(int(v), f"attribute {an} of {node.op_type} '{node.name}'")
    for an, v in node.attrs.items():
        if isinstance(v, np.ndarray) and not dtype_on_cupy(v.dtype) and not why:
            why = no_cupy_dtype_reason(_array_elem_types(v)[0], f"attribute {an} of {node.op_type} '{node.name}'")
    if graph is None:
        return why
    in_types = []
    for k, name in enumerate(list(node.inputs) + list(node.implicit_inputs)):
        types = _value_types(graph, name) if name else None
        in_types.append(types)
        for et in types or ():
            if et not in CUPY_ELEM_TYPES and not why:
                what = "implicit input" if k >= len(node.inputs) else "input"
                why = no_cupy_dtype_reason(et, f"{what} '{name}'")
    derived = None
    for k, name in enumerate(node.outputs):  # derived types are recorded even when refused
        if not name:
            continue
        types = _value_types(graph, name)
        if types is None:
            if derived is None:
                schema = registry.get_schema(node.op_type, node.domain, node.opset)
                derived = _derive_output_types(node, schema, in_types[:len(node.inputs)])
            types = derived.get(k) or ([attr_type] if attr_type and k == 0 else None)
            if types is not None:
                try:
                    _DERIVED.setdefault(graph, {})[name] = types
                except TypeError:
                    pass
        for et in types or ():
            if et not in CUPY_ELEM_TYPES and not why:
                why = no_cupy_dtype_reason(et, f"output '{name}'")
    return why
