"""Loading a model from a path, bytes or a ModelProto, with errors that say what is wrong."""
from __future__ import annotations

import itertools
import re
import os

import onnx
from google.protobuf.message import DecodeError

from ortlite.errors import InvalidGraph, InvalidProtobuf, NoSuchFile, NotImplemented as OrtNotImplemented
from ortlite.validate import order_nodes

# The oldest default-domain opset ortlite accepts (onnxruntime's floor is 7; the
# old Caffe2-era models the onnx package ships use opsets from 3 up, so go lower).
MIN_OPSET = 1


def load_model(source, external_dir=None):
    """Return (ModelProto, model_dir, label) for a path, bytes or ModelProto, external data read in.

    A path's external data is read from the model's directory. Bytes and ModelProtos have no
    directory: their external data is refused unless ``external_dir`` names one (the session config
    entry ``EXTERNAL_DIR_KEY``); a ModelProto is copied before its external data is read in.
    """
    if isinstance(source, onnx.ModelProto):
        label = "<ModelProto>"
        if any(True for _ in _external_tensors(source)):
            source = _copy(source)
        _load_external(source, external_dir, label)
        return source, None, label
    if isinstance(source, (bytes, bytearray, memoryview)):
        model = _parse(bytes(source), "<bytes>")
        _load_external(model, external_dir, "<bytes>")
        return model, None, "<bytes>"
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


def _copy(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


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
    if not model.HasField("graph") or (model.ir_version == 0 and not model.opset_import):  # IR 0 + opsets: ort runs it
        raise InvalidProtobuf(
            f"Load model from {label} failed: the bytes parse but hold no ONNX model "
            f"(ir_version={model.ir_version}, graph {'present' if model.HasField('graph') else 'missing'}); "
            "is this an ONNX file, and is it complete?"
        )
    return model


# onnxruntime's session config key (kOrtSessionOptionsModelExternalInitializersFileFolderPath): the
# folder external data of a model loaded from bytes is read from.
EXTERNAL_DIR_KEY = "session.model_external_initializers_file_folder_path"


def _external_tensors(model):
    """(where, TensorProto) for every tensor with external data: initializers, sparse initializers,
    Constant and other tensor attributes, in every subgraph and model-local function."""

    def tensors_of_attr(a, where):
        A = onnx.AttributeProto
        if a.type == A.TENSOR:
            yield f"{where} attribute '{a.name}'", a.t
        elif a.type == A.TENSORS:
            for k, t in enumerate(a.tensors):
                yield f"{where} attribute '{a.name}'[{k}]", t
        elif a.type == A.SPARSE_TENSOR:
            yield f"{where} attribute '{a.name}' (values)", a.sparse_tensor.values
            yield f"{where} attribute '{a.name}' (indices)", a.sparse_tensor.indices
        elif a.type == A.SPARSE_TENSORS:
            for k, sp in enumerate(a.sparse_tensors):
                yield f"{where} attribute '{a.name}'[{k}] (values)", sp.values
                yield f"{where} attribute '{a.name}'[{k}] (indices)", sp.indices
        elif a.type == A.GRAPH:
            yield from of_graph(a.g)
        elif a.type == A.GRAPHS:
            for g in a.graphs:
                yield from of_graph(g)

    def of_nodes(nodes, where):
        for n in nodes:
            for a in n.attribute:
                yield from tensors_of_attr(a, f"{where}node '{n.name}' ({n.op_type})")

    def of_graph(g):
        for t in g.initializer:
            yield f"initializer '{t.name}'", t
        for sp in g.sparse_initializer:
            yield f"sparse initializer '{sp.values.name}' (values)", sp.values
            yield f"sparse initializer '{sp.values.name}' (indices)", sp.indices
        yield from of_nodes(g.node, "")

    def walk():
        yield from of_graph(model.graph)
        for f in model.functions:
            yield from of_nodes(f.node, f"function '{f.name}' ")

    return ((w, t) for w, t in walk() if t.data_location == onnx.TensorProto.EXTERNAL)


def _load_external(model, base_dir, label):
    """Read every tensor's external data from ``base_dir`` into the tensor, refusing any location that
    leaves ``base_dir`` (``..``, absolute paths, symlinks out), any non-regular file (directories,
    /dev and /proc files) and any offset/length outside the file."""
    for where, t in _external_tensors(model):
        if base_dir is None:
            raise InvalidGraph(
                f"Load model from {label} failed: {where} keeps its data in an external file, and a model "
                "loaded from bytes or a ModelProto has no directory to read it from: load the model from its "
                f"path, or name the folder with SessionOptions.add_session_config_entry('{EXTERNAL_DIR_KEY}', dir)")
        _read_external(t, base_dir, f"Load model from {label} failed: {where}")


def _read_external(t, base_dir, what):
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location:
        raise InvalidGraph(f"{what}: its external data has no 'location'")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or os.path.splitdrive(location)[0]:
        raise InvalidGraph(f"{what}: external data location '{location}' is an absolute path; it must be "
                           "relative to the model's directory")
    if ".." in location.replace("\\", "/").split("/"):
        raise InvalidGraph(f"{what}: external data location '{location}' leaves the model's directory ('..'); "
                           "it must name a file inside it")
    base = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, path]) != base:
        raise InvalidGraph(f"{what}: external data location '{location}' resolves to {path}, outside the model's "
                           f"directory {base} (a symbolic link?)")
    if not os.path.exists(path):
        raise NoSuchFile(f"{what}: external data file '{location}' does not exist in {base}")
    if not os.path.isfile(path):
        raise InvalidGraph(f"{what}: external data location '{location}' is not a regular file")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError as e:
        raise InvalidGraph(f"{what}: external data offset/length are not integers: {e}") from e
    size = os.path.getsize(path)
    if offset < 0 or (length is not None and length < 0):
        raise InvalidGraph(f"{what}: external data offset {offset} / length {length} is negative")
    end = size if length is None else offset + length
    if offset > size or end > size:
        raise InvalidGraph(f"{what}: external data [{offset}, {end}) is outside '{location}' ({size} bytes)")
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(end - offset)
    except OSError as e:
        raise NoSuchFile(f"{what}: cannot read external data file '{location}': {e}") from e
    t.raw_data = data
    t.data_location = onnx.TensorProto.DEFAULT
    del t.external_data[:]


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


def own_types(g: onnx.GraphProto) -> None:
    """A graph input or initializer keeps its own type, in place, in ``g`` and its subgraphs: onnxruntime
    reads no other declaration of the name. A graph output named as one is that value passed through
    (onnxruntime returns the feed or the initializer whatever type the output declares), so the output
    takes the value's type (shape inference, the type checks and ``get_outputs`` read it); a value_info
    entry naming one is dropped. A name defined twice (a node writing a graph input's name, two nodes
    one name) is still refused by the checker ("... SSA form, however 'X' has been used ...")."""
    inputs = {v.name: v for v in g.input}
    inits = {t.name: t for t in g.initializer}
    for out in g.output:
        src = inputs.get(out.name)
        if src is not None:
            if src.type.WhichOneof("value") is not None and out.type != src.type:  # an untyped body input: keep
                out.type.CopyFrom(src.type)
        elif out.name in inits:
            t = inits[out.name]
            out.type.CopyFrom(onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    if any(v.name in inputs or v.name in inits for v in g.value_info):
        keep = [v for v in g.value_info if v.name not in inputs and v.name not in inits]
        del g.value_info[:]
        g.value_info.extend(keep)
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                own_types(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    own_types(sg)


def check_model(model: onnx.ModelProto, label: str) -> None:
    """IR and opset limits, node order and names, then onnx.checker; raises with the checker's message.

    ``model`` is the session's own light copy: nodes out of topological order are sorted in it
    (``validate.order_nodes``), and an IR 1-2 model with an opset_import, which onnxruntime runs, is
    checked as IR 3 (the checker refuses the combination).
    """
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
    if model.ir_version < 3 and model.opset_import:
        model.ir_version = 3
    own_types(model.graph)
    order_nodes(model.graph, label)
    try:
        _checker(model, label)
    except _Benign:
        # Inputs, outputs or value_info without a type or shape: onnxruntime accepts them. Check
        # the rest of the model on a copy where they are given a placeholder type.
        _checker(_typed_copy(model), label, benign_ok=True)


_BENIGN = ("Field 'shape' of 'type' is required", "Unrecognized type value case",
           "Field 'type' of 'value_info' is required")


class _Benign(Exception):
    """The checker's only complaint is a missing type or shape."""


def _checker(model, label, benign_ok=False):
    skip, checked = set(), model
    while True:
        try:
            onnx.checker.check_model(checked, full_check=False)
            return
        except onnx.checker.ValidationError as e:
            op = _unregistered_default_op(e)
            if op is not None and op not in skip and _runtime_defines(op):
                skip.add(op)  # onnxruntime's own default-domain op: check the rest without it
                checked = _without_schema_check(model, skip)
                continue
            msg = str(e).strip().splitlines()
            if any(b in m for m in msg[:2] for b in _BENIGN):
                if benign_ok:
                    return
                raise _Benign() from None
            raise InvalidGraph(f"{label}: invalid ONNX graph: {' '.join(m.strip() for m in msg[:6])}") from e
        except ValueError as e:  # > 2 GB protos: checker refuses in-memory; skip like onnxruntime does
            if "2GB" not in str(e) and "too large" not in str(e):
                raise InvalidGraph(f"{label}: invalid ONNX graph: {e}") from e
            return


_UNREGISTERED = re.compile(r"No Op registered for (\S+) with domain_version of \d+")
_UNCHECKED_DOMAIN = "ortlite.unchecked"


def _unregistered_default_op(err):
    """The op type of the checker's "No Op registered for X with domain_version of N", else None."""
    m = _UNREGISTERED.search(str(err))
    return m.group(1) if m else None


def _runtime_defines(op_type):
    """Whether ortlite (as onnxruntime) has a default-domain kernel for an op the ONNX schemas do not
    define at the model's opset: LayerNormalization before opset 17, SimplifiedLayerNormalization..."""
    from ortlite.registry import describe

    return describe(op_type, "") != "none registered"


def _without_schema_check(model, ops):
    """A copy of ``model`` for the checker only: default-domain nodes of ``ops`` moved to a domain
    the checker does not know, so it checks everything else."""
    out = onnx.ModelProto()
    out.CopyFrom(model)

    def visit(g):
        for n in g.node:
            if n.domain in ("", "ai.onnx") and n.op_type in ops:
                n.domain = _UNCHECKED_DOMAIN
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    visit(sub)

    visit(out.graph)
    for f in out.functions:
        for n in f.node:
            if n.domain in ("", "ai.onnx") and n.op_type in ops:
                n.domain = _UNCHECKED_DOMAIN
    if not any(o.domain == _UNCHECKED_DOMAIN for o in out.opset_import):
        out.opset_import.add(domain=_UNCHECKED_DOMAIN, version=1)
    return out


def _typed_copy(model):
    """A copy of ``model`` for the checker only: untyped value_info dropped, untyped inputs and outputs
    given a placeholder tensor type, shapeless tensor types an empty shape, in every graph."""
    out = onnx.ModelProto()
    out.CopyFrom(model)

    def fix(vi):
        kind = vi.type.WhichOneof("value")
        if kind is None:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
            kind = "tensor_type"
        if kind in ("tensor_type", "sparse_tensor_type") and not getattr(vi.type, kind).HasField("shape"):
            getattr(vi.type, kind).shape.SetInParent()

    def visit(g):
        keep = [vi for vi in g.value_info if vi.type.WhichOneof("value") is not None]
        if len(keep) != len(g.value_info):
            del g.value_info[:]
            g.value_info.extend(keep)
        for vi in itertools.chain(g.input, g.output, g.value_info):
            fix(vi)
        for n in g.node:
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    visit(sub)

    visit(out.graph)
    return out
