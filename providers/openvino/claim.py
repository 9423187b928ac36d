"""Which nodes OpenVINO can run: the OpenVINO provider's half of onnxruntime's GetCapability.

The candidate nodes become one ONNX model (their weights as initializers, values made outside as
typed graph inputs, values read outside as outputs), converted with OpenVINO's ONNX frontend
(``convert_partially``: ops it cannot convert stay as framework nodes) and asked of the device with
``Core.query_model``. OpenVINO names each op's output tensors with the ONNX output names, so every
ov op maps back to the ONNX node that made it (ops without names belong to the nearest named op
they feed). A node is refused when one of its ops is a framework node (the frontend has no
conversion) or is missing from query_model's answer (the device cannot run it).

Ops downstream of a framework node lose their types in OpenVINO (their query answers mean nothing,
and a converter may fail for want of input types), so after frontend refusals the model is built
again without them, their outputs typed graph inputs: one conversion and one query in the common
case, two of each when the frontend refuses something (plus a one-node conversion for each framework
node whose inputs had no types). A model the frontend cannot load at all, or that query_model throws
on, is split in halves down to the failing nodes.

Refused before asking OpenVINO: nodes with subgraphs (If/Loop/Scan), values that are not tensors,
string tensors, element types OpenVINO lacks, and float64 (OpenVINO's CPU plugin computes it in
float32). Note that the CPU plugin also computes int64 in int32 (values beyond 2**31 wrap); such
nodes are claimed, as onnxruntime's OpenVINO provider does.
"""
from __future__ import annotations

import io
import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ortlite.compiling.groups import connected_groups
from ortlite import types as ot
from ortlite.hints import install_hint
from ortlite.providers.openvino.engine import one_line

FRAMEWORK_OPS = frozenset({"ONNXFrameworkNode", "NotSupportedONNXNode", "ONNXSubgraphFrameworkNode",
                           "FrameworkNode"})
_NOT_CHECKED = frozenset({"Parameter", "Result", "Constant", "NullNode"})
OK_ELEM_TYPES = frozenset({
    TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT8, TensorProto.UINT8,
    TensorProto.INT16, TensorProto.UINT16, TensorProto.INT32, TensorProto.UINT32, TensorProto.INT64,
    TensorProto.UINT64, TensorProto.BOOL,
})
BIG_WEIGHT = 1 << 20  # bytes: weights this large reach the query as ConstantOfShape (no data copied)
MAX_PASSES = 4


def _domain(node):
    return node.domain or "ai.onnx"


def _type_refusal(name, elem):
    if elem == TensorProto.STRING:
        return f"string tensors ('{name}') do not go to OpenVINO in ortlite"
    if elem == TensorProto.DOUBLE:
        return (f"OpenVINO computes float64 ('{name}') in float32; ortlite leaves float64 nodes to the "
                "next provider")
    if elem not in OK_ELEM_TYPES:
        return f"OpenVINO has no {ot.type_name(elem)} element type (value '{name}')"
    if elem == TensorProto.BFLOAT16:
        try:
            ot.np_dtype(elem)
        except TypeError:
            return f"bfloat16 value '{name}' needs ml_dtypes ({install_hint('dtypes')})"
    return ""


def static_refusal(node, graph) -> str:
    """Why ``node`` cannot go to OpenVINO whatever OpenVINO says, or ''."""
    if node.subgraphs:
        return f"{node.op_type} holds subgraphs: control flow runs on the host in ortlite"
    for name in itertools.chain(node.inputs, node.outputs):
        if not name:
            continue
        arr = graph.initializers.get(name)
        if arr is not None:
            try:
                elem = ot.onnx_elem_type(np.asarray(arr).dtype)
            except TypeError:
                return f"initializer '{name}' has dtype {np.asarray(arr).dtype}, which OpenVINO cannot take"
            why = _type_refusal(name, elem)
            if why:
                return why
            continue
        vi = graph.info(name)
        if vi is None:
            continue
        if vi.kind not in (None, "tensor"):
            return f"'{name}' is a {vi.kind.replace('_', ' ')}: OpenVINO runs tensors only"
        if vi.elem_type is not None and vi.elem_type != 0:
            why = _type_refusal(name, vi.elem_type)
            if why:
                return why
    return ""


def _typed(vi) -> bool:
    return (vi is not None and vi.type_proto is not None and vi.kind == "tensor"
            and vi.elem_type not in (None, 0))


def build_model(graph, nodes, read_outside, sources=None):
    """(ModelProto of ``nodes``, {node id: reason} for nodes reading values of unknown type).

    ``read_outside``: the names read by nodes outside ``nodes`` (or graph outputs); ``sources``: the
    names the graph makes (node outputs and graph inputs), to tell an untyped value from a constant
    the graph does not hold."""
    produced = {o for n in nodes for o in n.outputs if o}
    untyped = {}
    inputs, inits, extra_nodes, seen = [], [], [], set()
    for n in nodes:
        for name in n.inputs:
            if not name or name in produced or name in seen:
                continue
            arr = graph.initializers.get(name)
            if arr is not None:
                seen.add(name)
                arr = np.asarray(arr)
                if arr.nbytes >= BIG_WEIGHT and arr.dtype != object:
                    shape_name = f"{name}::ortlite_shape"
                    inits.append(numpy_helper.from_array(np.array(arr.shape, dtype=np.int64), shape_name))
                    zero = numpy_helper.from_array(np.zeros((1,), dtype=arr.dtype), "value")
                    extra_nodes.append(helper.make_node("ConstantOfShape", [shape_name], [name], value=zero,
                                                       name=f"{name}::ortlite_weight"))
                else:
                    inits.append(numpy_helper.from_array(arr, name))
                continue
            vi = graph.info(name)
            if not _typed(vi):
                if sources is not None and name not in sources:
                    why = (f"its input '{name}' is neither made by a node, a graph input nor in graph.initializers "
                           "(a constant held elsewhere?); OpenVINO needs its value")
                else:
                    why = f"the type of its input '{name}' is unknown; OpenVINO needs typed inputs"
                untyped.setdefault(id(n), why)
                continue
            seen.add(name)
            p = onnx.ValueInfoProto(name=name)
            p.type.CopyFrom(vi.type_proto)
            inputs.append(p)
    if untyped:
        return None, untyped
    outputs = []
    for n in nodes:
        for name in n.outputs:
            if name and name in read_outside:
                p = onnx.ValueInfoProto(name=name)
                vi = graph.info(name)
                if _typed(vi):
                    p.type.CopyFrom(vi.type_proto)
                outputs.append(p)
    protos = list(extra_nodes)
    for n in nodes:
        p = onnx.NodeProto(op_type=n.op_type, domain=n.domain, name=n.name)
        p.input.extend(n.inputs)
        p.output.extend(n.outputs)
        p.attribute.extend(n.attr_protos.values())
        protos.append(p)
    g = helper.make_graph(protos, "ortlite_openvino_query", inputs, outputs, initializer=inits)
    domains = {n.domain for n in nodes} | {""}
    opsets = [helper.make_opsetid(d, graph.opsets.get(d, graph.opsets.get("", 1) if d == "" else 1))
              for d in sorted(domains)]
    m = helper.make_model(g, opset_imports=opsets, producer_name="ortlite")
    return m, {}


def convert(model):
    """OpenVINO's ov.Model of ``model`` (convert_partially: unsupported ops stay framework nodes)."""
    import openvino

    fe = openvino.frontend.FrontEndManager().load_by_framework("onnx")
    im = fe.load(io.BytesIO(model.SerializeToString()))
    return fe.convert_partially(im)


def _op_groups(om):
    """{tensor name: [ov ops made for the node writing it]}: the op carrying the name plus the unnamed
    ops feeding it (the rest of that node's conversion)."""
    owner = {}
    named = set()
    for op in om.get_ordered_ops():
        if op.get_type_name() in ("Parameter", "Result"):
            continue
        names = [nm for out in op.outputs() for nm in out.get_names()]
        if names:
            named.add(op.get_name())
        for nm in names:
            owner.setdefault(nm, op)
    return owner, named


def _inputs_typed(op) -> bool:
    return all(not op.get_input_element_type(i).is_dynamic() for i in range(op.get_input_size()))


def _ops_of(node, owner, named):
    seeds = [owner[o] for o in node.outputs if o and o in owner]
    ops, seen, stack = [], set(), list(seeds)
    while stack:
        op = stack.pop()
        key = op.get_name()
        if key in seen:
            continue
        seen.add(key)
        ops.append(op)
        for inp in op.inputs():
            src = inp.get_source_output().get_node()
            if src.get_type_name() == "Parameter" or src.get_name() in named:
                continue
            stack.append(src)
    return ops


class _Asker:
    """One claim_groups call: the device to ask and the graph's facts; fills ``refused``."""

    def __init__(self, core, graph, device, devices, mode):
        self.core, self.graph = core, graph
        self.device, self.devices, self.mode = device, devices, mode
        self.sources = {v.name for v in graph.inputs} | {o for n in graph.nodes for o in n.outputs if o}
        self.refused = {}

    def query(self, om):
        """Friendly names of the ops the device supports (composite devices: asked per device when the
        composite name cannot answer; MULTI needs every device, AUTO / HETERO any)."""
        try:
            return set(self.core.query_model(om, self.device))
        except Exception:  # noqa: BLE001
            if not self.mode or not self.devices:
                raise
        sets = [set(self.core.query_model(om, d)) for d in self.devices]
        return set.intersection(*sets) if self.mode == "MULTI" else set.union(*sets)

    def build(self, live, read_outside):
        """(model, live, read_outside) with the nodes reading untyped values refused."""
        while True:
            model, untyped = build_model(self.graph, live, read_outside, self.sources)
            if not untyped:
                return model, live, read_outside
            self.refused.update(untyped)
            read_outside = read_outside | _reads(live, untyped)
            live = [n for n in live if id(n) not in untyped]
            if not live:
                return None, live, read_outside

    def assess(self, nodes, read_outside):
        """Ask OpenVINO about ``nodes``; refuse (with the reason) those it cannot run."""
        live = list(nodes)
        device_refused, frontend = {}, {}
        for _ in range(MAX_PASSES):
            model, live, read_outside = self.build(live, read_outside)
            if model is None:
                return
            try:
                om = convert(model)
            except Exception as e:  # noqa: BLE001 - the frontend threw: find the nodes at fault
                self._split(live, read_outside, e, "OpenVINO's ONNX frontend cannot convert")
                return
            try:
                supported = self.query(om)
            except Exception as e:  # noqa: BLE001 - the plugin threw: find the nodes at fault
                self._split(live, read_outside, e, f"OpenVINO {self.device} query_model fails on")
                return
            owner, named = _op_groups(om)
            frontend, device_refused = {}, {}
            for n in live:
                ops = _ops_of(n, owner, named)
                fw = [op for op in ops if op.get_type_name() in FRAMEWORK_OPS]
                if fw:
                    # A converter may fail only for want of input types (after another framework
                    # node): such a node is asked again on its own, its inputs typed from the graph.
                    if all(_inputs_typed(op) for op in fw) or self._converts_alone(n) is False:
                        frontend[id(n)] = (f"OpenVINO's ONNX frontend has no conversion for {n.op_type} "
                                           f"(domain '{_domain(n)}', opset {n.opset})")
                    else:
                        frontend[id(n)] = None  # may convert once typed: asked again in the next pass
                    continue
                for op in ops:
                    if op.get_type_name() not in _NOT_CHECKED and op.get_friendly_name() not in supported:
                        device_refused[id(n)] = (f"OpenVINO {self.device} does not support {op.get_type_name()} "
                                                 "made from this node (query_model)")
                        break
            gone = {k: v for k, v in frontend.items() if v is not None}
            if not frontend or not gone:
                break
            # Ops after a framework node have no types in OpenVINO (and fail the query): ask again
            # without the framework nodes, their outputs now typed graph inputs.
            self.refused.update(gone)
            read_outside = read_outside | _reads(live, gone)
            live = [n for n in live if id(n) not in gone]
            device_refused = {}
        for k, v in frontend.items():  # only when the passes ran out
            device_refused.setdefault(k, v or "OpenVINO's ONNX frontend could not convert it here")
        self.refused.update(device_refused)

    def _converts_alone(self, n):
        """Whether the frontend converts node ``n`` alone, its inputs typed as the graph says (None when
        an input has no type: the next pass refuses it for that)."""
        model, untyped = build_model(self.graph, [n], {o for o in n.outputs if o}, self.sources)
        if untyped:
            return None
        try:
            om = convert(model)
        except Exception:  # noqa: BLE001
            return False
        return not any(op.get_type_name() in FRAMEWORK_OPS for op in om.get_ordered_ops())

    def _split(self, live, read_outside, exc, what):
        """Ask again in halves, down to the single nodes OpenVINO throws on (refused with its message)."""
        if len(live) == 1:
            n = live[0]
            self.refused[id(n)] = f"{what} {n.op_type} (domain '{_domain(n)}'): {one_line(exc, 300)}"
            return
        half = len(live) // 2
        reads = read_outside | {i for n in live for i in n.inputs if i}
        for part in (live[:half], live[half:]):
            self.assess(part, reads)


def _reads(live, gone_ids):
    """Names the removed nodes read (they now come from outside what is left)."""
    return {i for n in live if id(n) in gone_ids for i in n.inputs if i}


def claim(core, graph, nodes, device, devices, mode):
    """(groups, refused) as CompilingProvider.claim_groups returns them."""
    ask = _Asker(core, graph, device, devices, mode)
    cands = []
    for n in nodes:
        why = static_refusal(n, graph)
        if why:
            ask.refused[id(n)] = why
        else:
            cands.append(n)
    if cands:
        cand_ids = {id(n) for n in cands}
        read_outside = {v.name for v in graph.outputs}
        for n in graph.nodes:
            if id(n) not in cand_ids:
                read_outside.update(i for i in itertools.chain(n.inputs, n.implicit_inputs) if i)
        ask.assess(cands, read_outside)
    claimed = [n for n in cands if id(n) not in ask.refused]
    return connected_groups(claimed), ask.refused
