"""Writing the optimized IR back to an ONNX file (SessionOptions.optimized_model_filepath).

Fused nodes carry onnxruntime's com.microsoft op names, so the saved model runs
on onnxruntime as well. Initializers of 1 MiB and more go to an external data
file beside the model when the weights total more than 100 MiB (protobuf caps a
model at 2 GiB).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

_EXTERNAL_TOTAL = 100 << 20
_EXTERNAL_MIN = 1 << 20


def _tensor(name, value):
    arr = np.asarray(value)
    if arr.dtype == object:
        return helper.make_tensor(name, onnx.TensorProto.STRING, arr.shape, [str(s).encode() for s in arr.reshape(-1)])
    return numpy_helper.from_array(arr, name)


def graph_to_proto(graph, constants, fed=()):
    """GraphProto of an IR graph; ``constants`` become initializers (device copies left out)."""
    used = set()
    for n in graph.nodes:
        used.update(i for i in n.inputs if i)
        used.update(n.implicit_inputs)
    used.update(v.name for v in graph.outputs)
    nodes = []
    constants = dict(constants)
    for n in graph.nodes:
        if (n.domain, n.op_type) == ("ortlite", "ShapeChain"):  # ortlite's own op: its original nodes again
            nodes.extend(node_to_proto(x) for x in n.attrs["program"].nodes)
            used.update(n.attrs["program"].constants)
            for k, v in n.attrs["program"].constants.items():
                constants.setdefault(k, v)
        else:
            nodes.append(node_to_proto(n))
    # Initializers listed as graph inputs (IR < 4 does that for every weight) stay inputs only
    # when they can still be fed (overridable); folded-away ones disappear with their inputs.
    overridable = [v for v in graph.inputs if v.name in graph.initializers and v.name in fed]
    inputs = [_value_info(v) for v in graph.inputs if v.name not in graph.initializers or v.name in fed]
    outputs = [_value_info(v) for v in graph.outputs]
    inits = [_tensor(k, v) for k, v in constants.items()
             if k in used and "@" not in k and k not in fed and hasattr(v, "dtype")]
    inits += [_tensor(v.name, graph.initializers[v.name]) for v in overridable]
    return helper.make_graph(nodes, graph.name, inputs, outputs, initializer=inits)


def node_to_proto(n):
    """NodeProto of an IR node (subgraph attributes written back as GraphProtos)."""
    attrs = [a for k, a in n.attr_protos.items() if k not in n.subgraphs]
    for an, sg in n.subgraphs.items():
        attrs.append(helper.make_attribute(an, graph_to_proto(sg, sg.initializers)))
    p = helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name, domain=n.domain)
    p.attribute.extend(attrs)
    return p


def _value_info(v):
    if v.type_proto is not None:
        vi = onnx.ValueInfoProto(name=v.name)
        vi.type.CopyFrom(v.type_proto)
        return vi
    return onnx.ValueInfoProto(name=v.name)


def save_optimized(path, graph, constants, fed, model: onnx.ModelProto, value_info=()):
    gp = graph_to_proto(graph, constants, fed)
    gp.value_info.extend(value_info)
    domains = ({n.domain for n in graph.nodes} | set(graph.opsets)) - {"ortlite"}
    for n in graph.nodes:
        if (n.domain, n.op_type) == ("ortlite", "ShapeChain"):
            domains |= {x.domain for x in n.attrs["program"].nodes}
    opsets = [helper.make_opsetid(d, graph.opsets.get(d, 1)) for d in sorted(domains)]
    out = helper.make_model(gp, opset_imports=opsets, producer_name="ortlite", producer_version=_version())
    out.ir_version = max(model.ir_version, 7)
    out.metadata_props.extend(model.metadata_props)
    out.doc_string = model.doc_string
    total = sum(t.ByteSize() for t in gp.initializer)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    if total > _EXTERNAL_TOTAL:
        onnx.save_model(out, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=_EXTERNAL_MIN)
    else:
        onnx.save_model(out, path)
    return path


def _version():
    from ortlite import __version__

    return __version__
