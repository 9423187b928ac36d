"""Loading a model from a path, bytes or a ModelProto, with errors that say what is wrong."""
from __future__ import annotations

import itertools
import os

import onnx
from google.protobuf.message import DecodeError

from ortlite.errors import InvalidGraph, InvalidProtobuf, NoSuchFile, NotImplemented as OrtNotImplemented

# The oldest default-domain opset ortlite accepts (onnxruntime's floor is 7; the
# old Caffe2-era models the onnx package ships use opsets from 3 up, so go lower).
MIN_OPSET = 1


def load_model(source):
    """Return (ModelProto, model_dir, label) for a path, bytes or ModelProto."""
    if isinstance(source, onnx.ModelProto):
        return source, None, "<ModelProto>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), "<bytes>"), None, "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise NoSuchFile(f"Load model from {path} failed: file doesn't exist")
        if os.path.isdir(path):
            raise NoSuchFile(f"Load model from {path} failed: it is a directory, expected an .onnx file")
        with open(path, "rb") as f:
            data = f.read()
        model = _parse(data, path)
        model_dir = os.path.dirname(os.path.abspath(path))
        _load_external(model, model_dir, path)
        return model, model_dir, path
    raise TypeError(
        f"InferenceSession expects a path, bytes or onnx.ModelProto, got {type(source).__name__}"
    )


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    if not data:
        raise InvalidProtobuf(f"Load model from {label} failed: the file is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise InvalidProtobuf(
            f"Load model from {label} failed: not an ONNX model or truncated (protobuf parsing failed: {e})"
        ) from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise InvalidProtobuf(
            f"Load model from {label} failed: the bytes parse but hold no ONNX model "
            f"(ir_version={model.ir_version}, graph {'present' if model.HasField('graph') else 'missing'}); "
            "is this an ONNX file, and is it complete?"
        )
    return model


def _load_external(model, model_dir, label):
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    if not any(uses_external_data(t) for t in _all_tensors(model)):
        return
    try:
        load_external_data_for_model(model, model_dir)
    except (OSError, ValueError) as e:
        raise NoSuchFile(f"Load model from {label} failed: cannot read its external data: {e}") from None


def _all_tensors(model):
    from onnx.external_data_helper import _get_all_tensors

    return _get_all_tensors(model)


_STRIP_MIN_ELEMENTS = 1024


def without_weights(model: onnx.ModelProto):
    """(copy of ``model`` without its large initializers, names of the graph inputs added for them).

    The checker and shape inference only need the weights' types and shapes: each large
    initializer becomes a typed graph input instead (an IR < 4 model lists it as one already).
    Serializing hundreds of megabytes of weights for them is what made large models slow to
    load. Small initializers keep their values (shape inference propagates Reshape targets).
    """
    g = model.graph
    light = onnx.GraphProto()
    light.name = g.name
    light.doc_string = g.doc_string
    light.node.extend(g.node)
    light.input.extend(g.input)
    light.output.extend(g.output)
    light.value_info.extend(g.value_info)
    light.sparse_initializer.extend(g.sparse_initializer)
    light.quantization_annotation.extend(g.quantization_annotation)
    listed = {v.name for v in g.input}
    added = []
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= d
        if n < _STRIP_MIN_ELEMENTS or t.data_type == onnx.TensorProto.STRING:
            light.initializer.append(t)
            continue
        if t.name not in listed:
            light.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            added.append(t.name)
    out = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(out, field, getattr(model, field))
    out.opset_import.extend(model.opset_import)
    out.metadata_props.extend(model.metadata_props)
    out.functions.extend(model.functions)
    out.graph.CopyFrom(light)
    return out, added


def normalize_dims(model: onnx.ModelProto) -> set:
    """Make every negative ``dim_value`` unknown, in place, and return the ``dim_param`` names declared.

    Paddle2ONNX and others write a dynamic dim as ``dim_value: -1``; onnxruntime reads any negative
    value as unknown, and so must shape inference (which would otherwise compute with the -1).
    The names returned tell the model's own symbols from the ``unk__N`` ones inference makes up.
    Every graph (subgraphs and functions included) is walked; a 0 stays a real 0-sized dim.
    """
    declared = set()

    def visit_type(tp):
        kind = tp.WhichOneof("value")
        if kind in ("tensor_type", "sparse_tensor_type"):
            for d in getattr(tp, kind).shape.dim:
                if d.HasField("dim_value") and d.dim_value < 0:
                    d.ClearField("dim_value")
                elif d.HasField("dim_param"):
                    declared.add(d.dim_param)
        elif kind in ("sequence_type", "optional_type"):
            visit_type(getattr(tp, kind).elem_type)
        elif kind == "map_type":
            visit_type(tp.map_type.value_type)

    def visit_nodes(nodes):
        for n in nodes:
            for a in n.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    visit_graph(g)

    def visit_graph(g):
        for vi in itertools.chain(g.input, g.output, g.value_info):
            visit_type(vi.type)
        visit_nodes(g.node)

    visit_graph(model.graph)
    for f in model.functions:
        for vi in f.value_info:
            visit_type(vi.type)
        visit_nodes(f.node)
    return declared


def check_model(model: onnx.ModelProto, label: str) -> None:
    """IR and opset limits, then onnx.checker; raises with the checker's message."""
    if model.ir_version > onnx.IR_VERSION:
        raise OrtNotImplemented(
            f"{label}: IR version {model.ir_version} is newer than this onnx supports ({onnx.IR_VERSION}); "
            "upgrade the onnx package"
        )
    default = [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")]
    if model.ir_version >= 3 and not model.opset_import:
        raise InvalidGraph(f"{label}: the model declares no opset_import")
    newest = onnx.defs.onnx_opset_version()
    if default and default[0] > newest:
        raise OrtNotImplemented(
            f"{label}: opset {default[0]} of the default domain is newer than the newest ortlite "
            f"knows ({newest}, from onnx {onnx.__version__}); upgrade onnx or re-export at opset <= {newest}"
        )
    if default and default[0] < MIN_OPSET:
        raise OrtNotImplemented(f"{label}: opset {default[0]} is older than the oldest supported ({MIN_OPSET})")
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        msg = str(e).strip().splitlines()
        benign = ("Field 'shape' of 'type' is required", "Unrecognized type value case",
                  "Field 'type' of 'value_info' is required")
        if any(b in m for m in msg[:2] for b in benign):
            return  # an output without a shape or type: onnxruntime accepts it, and so do we
        raise InvalidGraph(f"{label}: invalid ONNX graph: {' '.join(m.strip() for m in msg[:6])}") from None
    except ValueError as e:  # > 2 GB protos: checker refuses in-memory; skip like onnxruntime does
        if "2GB" not in str(e) and "too large" not in str(e):
            raise InvalidGraph(f"{label}: invalid ONNX graph: {e}") from None
