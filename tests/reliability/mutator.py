"""Seeded model mutations for the fuzz tests, over four seed models built here with onnx.helper.

``mutants(n, seed)`` yields ``Case``s: a case id (seed model / mutation / number), the mutant's
bytes and feeds made for the mutant's declared inputs. Mutations are byte-level (flips,
truncation), structural (drop / duplicate nodes, swap inputs, change attribute values and types,
change dims and element types, cut initializers, rename outputs) and schema-valid semantic edits
(initializer values with NaN/Inf/huge numbers, op swaps within a family). The same ``(n, seed)``
gives the same cases on every machine, so a case id names a reproducible mutant:
``python -m tests.reliability.mutator conv/attr_value/17 > m.onnx``.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

ML = "ai.onnx.ml"


@dataclass
class Case:
    id: str
    model: bytes
    feeds: dict


def _model(nodes, inputs, outputs, inits=(), ml=False, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(ML, 3)] if ml else [])
    m = helper.make_model(graph, opset_imports=ops)
    m.ir_version = 8
    return m


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def conv_net():
    """Conv -> Relu -> MaxPool -> Conv -> GlobalAveragePool -> Flatten -> Gemm -> Softmax."""
    r = np.random.default_rng(1)
    f32 = np.float32
    nodes = [
        helper.make_node("Conv", ["X", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "W2"], ["c2"], name="conv2", strides=[1, 1], group=1),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "Wf", "Bf"], ["l"], name="fc", transB=1, alpha=1.0),
        helper.make_node("Softmax", ["l"], ["Y"], name="softmax", axis=-1),
    ]
    inits = [_init("W1", r.normal(size=(4, 3, 3, 3)).astype(f32)), _init("B1", r.normal(size=4).astype(f32)),
             _init("W2", r.normal(size=(6, 4, 1, 1)).astype(f32)), _init("Wf", r.normal(size=(5, 6)).astype(f32)),
             _init("Bf", r.normal(size=5).astype(f32))]
    m = _model(nodes, [helper.make_tensor_value_info("X", TP.FLOAT, ["N", 3, 8, 8])],
               [helper.make_tensor_value_info("Y", TP.FLOAT, ["N", 5])], inits)
    return m, {"X": r.normal(size=(2, 3, 8, 8)).astype(f32)}


def attention_net():
    """One attention head: MatMul projections, Transpose, scaled scores, Softmax, MatMul, LayerNormalization."""
    r = np.random.default_rng(2)
    f32 = np.float32
    d = 8
    nodes = [
        helper.make_node("MatMul", ["X", "Wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["X", "Wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["X", "Wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Mul", ["s", "scale"], ["ss"], name="scale"),
        helper.make_node("Softmax", ["ss"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="ctx"),
        helper.make_node("Add", ["o", "X"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["Y"], name="ln", axis=-1, epsilon=1e-5),
    ]
    inits = [_init(n, r.normal(size=(d, d)).astype(f32) * 0.3) for n in ("Wq", "Wk", "Wv")]
    inits += [_init("scale", np.array(d ** -0.5, f32)), _init("gamma", np.ones(d, f32)), _init("beta", np.zeros(d, f32))]
    m = _model(nodes, [helper.make_tensor_value_info("X", TP.FLOAT, ["B", "S", d])],
               [helper.make_tensor_value_info("Y", TP.FLOAT, ["B", "S", d])], inits)
    return m, {"X": r.normal(size=(2, 4, d)).astype(f32)}


def control_flow_net():
    """Loop (trip count from an input) accumulating X * i, then If on the sign of the sum."""
    r = np.random.default_rng(3)
    f32 = np.float32
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], name="cast_i", to=TP.FLOAT),
         helper.make_node("Mul", ["X", "fi"], ["xi"], name="mul_i"),
         helper.make_node("Add", ["acc_in", "xi"], ["acc_out"], name="acc"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond"),
         helper.make_node("ReduceSum", ["acc_out"], ["scan_out"], name="partial", keepdims=0)],
        "body",
        [helper.make_tensor_value_info("i", TP.INT64, []), helper.make_tensor_value_info("cond_in", TP.BOOL, []),
         helper.make_tensor_value_info("acc_in", TP.FLOAT, [3])],
        [helper.make_tensor_value_info("cond_out", TP.BOOL, []), helper.make_tensor_value_info("acc_out", TP.FLOAT, [3]),
         helper.make_tensor_value_info("scan_out", TP.FLOAT, [])])
    then_g = helper.make_graph([helper.make_node("Mul", ["acc", "two"], ["t"], name="double")], "then", [],
                               [helper.make_tensor_value_info("t", TP.FLOAT, [3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["acc"], ["e"], name="negate")], "else", [],
                               [helper.make_tensor_value_info("e", TP.FLOAT, [3])])
    nodes = [
        helper.make_node("Loop", ["M", "cond0", "zeros"], ["acc", "partials"], name="loop", body=body),
        helper.make_node("ReduceSum", ["acc"], ["total"], name="total", keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["pos"], name="positive"),
        helper.make_node("If", ["pos"], ["Y"], name="branch", then_branch=then_g, else_branch=else_g),
    ]
    inits = [_init("cond0", np.array(True)), _init("zeros", np.zeros(3, f32)), _init("two", np.array(2.0, f32)),
             _init("zero", np.array(0.0, f32))]
    m = _model(nodes, [helper.make_tensor_value_info("X", TP.FLOAT, [3]), helper.make_tensor_value_info("M", TP.INT64, [])],
               [helper.make_tensor_value_info("Y", TP.FLOAT, [3]),
                helper.make_tensor_value_info("partials", TP.FLOAT, [None])], inits)
    return m, {"X": r.normal(size=3).astype(f32), "M": np.array(4, np.int64)}


def tree_net():
    """TreeEnsembleClassifier (2 trees, 3 classes) -> ZipMap over its probabilities."""
    r = np.random.default_rng(4)
    tree = dict(
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_featureids=[0, 1, 0, 0, 0, 2, 0, 0], nodes_values=[0.0, 0.5, 0, 0, 0, -0.2, 0, 0],
        nodes_modes=["BRANCH_LEQ", "BRANCH_LT", "LEAF", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 3, 0, 0, 0, 1, 0, 0], nodes_falsenodeids=[2, 4, 0, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[1, 0, 0, 0, 0, 0, 0, 0],
        class_treeids=[0, 0, 0, 0, 1, 1, 1], class_nodeids=[2, 3, 4, 4, 1, 2, 2],
        class_ids=[0, 1, 2, 0, 1, 2, 0], class_weights=[0.4, 0.3, 0.2, 0.1, 0.5, 0.25, 0.25],
        classlabels_int64s=[10, 20, 30], post_transform="SOFTMAX")
    nodes = [helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probs"], name="trees", domain=ML, **tree),
             helper.make_node("ZipMap", ["probs"], ["Z"], name="zipmap", domain=ML, classlabels_int64s=[10, 20, 30])]
    zipped = helper.make_sequence_type_proto(helper.make_map_type_proto(TP.INT64, helper.make_tensor_type_proto(TP.FLOAT, [])))
    m = _model(nodes, [helper.make_tensor_value_info("X", TP.FLOAT, ["N", 3])],
               [helper.make_tensor_value_info("label", TP.INT64, ["N"]), helper.make_value_info("Z", zipped)],
               ml=True)
    x = r.normal(size=(5, 3)).astype(np.float32)
    x[0, 0] = np.nan
    return m, {"X": x}


SEEDS = {"conv": conv_net, "attention": attention_net, "control_flow": control_flow_net, "tree": tree_net}


# ---------------------------------------------------------------------------
# feeds for a mutant


def _elem_dtype(elem):
    try:
        return helper.tensor_dtype_to_np_dtype(elem)
    except (KeyError, ValueError, TypeError):
        return None


def feeds_for(model: onnx.ModelProto, base: dict, rng: np.random.Generator) -> dict:
    """The seed's feeds where the mutant still declares them alike; else values of the declared
    element type and shape (unknown dims take the seed feed's size or 2). Inputs that are
    initializers are left out."""
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        old = base.get(vi.name)
        if t is None:
            if old is not None:
                feeds[vi.name] = old
            continue
        dtype = _elem_dtype(t.elem_type)
        if dtype is None or dtype == np.dtype(object) or (old is not None and old.dtype == dtype
                                                         and _fits(t.shape, old.shape)):
            if old is not None:
                feeds[vi.name] = old
            continue
        dims = []
        for j, d in enumerate(t.shape.dim if t.HasField("shape") else []):
            if d.HasField("dim_value") and 0 <= d.dim_value <= 64:
                dims.append(d.dim_value)
            else:
                dims.append(old.shape[j] if old is not None and j < old.ndim else 2)
        if not t.HasField("shape") and old is not None:
            dims = list(old.shape)
        arr = rng.normal(size=dims) * 3 if dtype.kind in "fc" else rng.integers(-3, 5, size=dims)
        feeds[vi.name] = np.asarray(arr).astype(dtype)
    return feeds


def _fits(shape, dims):
    sd = list(shape.dim)
    if len(sd) != len(dims):
        return False
    return all(not d.HasField("dim_value") or d.dim_value == n for d, n in zip(sd, dims))


# ---------------------------------------------------------------------------
# mutations: each takes (model, rng) and changes the model in place or returns bytes


def _all_graphs(g):
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_graphs(a.g)
            for sub in a.graphs:
                yield from _all_graphs(sub)


def _nodes(m):
    return [(g, n) for g in _all_graphs(m.graph) for n in g.node]


def byte_flip(m, rng):
    b = bytearray(m.SerializeToString())
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(m, rng):
    b = m.SerializeToString()
    return b[:rng.randrange(1, len(b))]


def drop_node(m, rng):
    g, n = rng.choice(_nodes(m))
    g.node.remove(n)


def duplicate_node(m, rng):
    g, n = rng.choice(_nodes(m))
    dup = onnx.NodeProto()
    dup.CopyFrom(n)
    if rng.random() < 0.5:  # renamed outputs: a valid graph with dead nodes; else a value written twice
        del dup.output[:]
        dup.output.extend(o + "_dup" for o in n.output)
        dup.name = n.name + "_dup"
    g.node.insert(list(g.node).index(n) + 1, dup)


def swap_inputs(m, rng):
    """Two inputs of a node change places (two outputs where no node has two inputs)."""
    cands = [n.input for _, n in _nodes(m) if len(n.input) >= 2] or [n.output for _, n in _nodes(m)
                                                                      if len(n.output) >= 2]
    names = rng.choice(cands)
    i, j = rng.sample(range(len(names)), 2)
    names[i], names[j] = names[j], names[i]


def _attr_cands(m):
    return [(n, a) for _, n in _nodes(m) for a in n.attribute if a.type != onnx.AttributeProto.GRAPH]


def attr_value(m, rng):
    n, a = rng.choice(_attr_cands(m))
    A = onnx.AttributeProto
    if a.type == A.INT:
        a.i = rng.choice([a.i + 1, a.i - 1, -a.i, 0, -1, 2 ** 31, -(2 ** 40), rng.randint(-5, 10)])
    elif a.type == A.FLOAT:
        a.f = rng.choice([a.f * 2, -a.f, 0.0, float("nan"), float("inf"), 1e30])
    elif a.type == A.STRING:
        a.s = rng.choice([b"", b"NONE", b"LOGISTIC", b"BRANCH_EQ", b"bogus", a.s[:-1]])
    elif a.type == A.INTS and len(a.ints):
        k = rng.randrange(len(a.ints))
        how = rng.randrange(4)
        if how == 0:
            a.ints[k] = rng.choice([a.ints[k] + 1, -1, 2 ** 40, 99])
        elif how == 1:
            del a.ints[k]
        elif how == 2:
            a.ints.append(a.ints[k])
        else:
            del a.ints[:]
    elif a.type == A.FLOATS and len(a.floats):
        k = rng.randrange(len(a.floats))
        if rng.random() < 0.5:
            a.floats[k] = rng.choice([float("nan"), -a.floats[k], 1e38])
        else:
            del a.floats[k:]
    elif a.type == A.STRINGS and len(a.strings):
        k = rng.randrange(len(a.strings))
        a.strings[k] = rng.choice([b"LEAF", b"BRANCH_GTE", b"BRANCH_MEMBER", b"??"])
    else:
        n.attribute.remove(a)


def attr_type(m, rng):
    n, a = rng.choice(_attr_cands(m))
    A = onnx.AttributeProto
    if a.type == A.INT:
        a.ClearField("i")
        a.type, a.f = A.FLOAT, 1.5
    elif a.type in (A.FLOAT, A.STRING):
        a.ClearField("f")
        a.ClearField("s")
        a.type, a.i = A.INT, 1
    elif a.type == A.INTS:
        vals = list(a.ints)
        a.ClearField("ints")
        a.type = A.FLOATS
        a.floats.extend(float(v) for v in vals)
    else:
        n.attribute.remove(a)  # a required attribute gone, or a default taken


def remove_attr(m, rng):
    n, a = rng.choice(_attr_cands(m))
    n.attribute.remove(a)


def _value_infos(m):
    return [vi for g in _all_graphs(m.graph) for vi in list(g.input) + list(g.output)
            if vi.type.HasField("tensor_type")]


def change_dims(m, rng):
    vi = rng.choice(_value_infos(m))
    shape = vi.type.tensor_type.shape
    how = rng.randrange(3)
    if how == 0 and len(shape.dim):
        d = rng.choice(shape.dim)
        d.dim_value = rng.choice([0, 1, 3, 7])
    elif how == 1:
        shape.dim.add().dim_value = rng.choice([1, 2])
    elif len(shape.dim):
        del shape.dim[-1]


def change_elem_type(m, rng):
    types = [TP.FLOAT, TP.DOUBLE, TP.FLOAT16, TP.INT64, TP.INT32, TP.UINT8, TP.BOOL, TP.STRING]
    if rng.random() < 0.5 and m.graph.initializer:
        t = rng.choice(m.graph.initializer)
        arr = numpy_helper.to_array(t)
        new = rng.choice([TP.DOUBLE, TP.INT64, TP.FLOAT16, TP.INT32])
        t.CopyFrom(numpy_helper.from_array(arr.astype(helper.tensor_dtype_to_np_dtype(new)), t.name))
        if rng.random() < 0.5:
            t.data_type = rng.choice(types)  # the bytes no longer fit the type
    else:
        rng.choice(_value_infos(m)).type.tensor_type.elem_type = rng.choice(types)


def cut_initializer(m, rng):
    if not m.graph.initializer:
        return drop_node(m, rng)
    t = rng.choice(m.graph.initializer)
    if rng.random() < 0.4:
        m.graph.initializer.remove(t)
    elif t.raw_data:
        t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data))]
    else:
        t.dims.append(2)


def rename_output(m, rng):
    if rng.random() < 0.5:
        vi = rng.choice(m.graph.output)
        vi.name = rng.choice([vi.name + "_renamed", m.graph.input[0].name, ""])
    else:
        g, n = rng.choice(_nodes(m))
        k = rng.randrange(len(n.output))
        n.output[k] = rng.choice([n.output[k] + "_x", "", n.input[0] if n.input else "z"])


def semantic_values(m, rng):
    """Schema-valid: an initializer's values become NaN / Inf / huge / zero (where it is a float)."""
    floats = [t for t in m.graph.initializer if t.data_type in (TP.FLOAT, TP.DOUBLE)]
    if not floats:
        return attr_value(m, rng)
    t = rng.choice(floats)
    arr = numpy_helper.to_array(t).copy()
    flat = arr.reshape(-1)
    if flat.size:
        flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e30, 0.0])
    t.CopyFrom(numpy_helper.from_array(arr, t.name))


_SWAPS = [("Relu", "Sigmoid"), ("Relu", "Abs"), ("Add", "Mul"), ("Add", "Sub"), ("Mul", "Div"), ("Softmax", "LogSoftmax"),
          ("MaxPool", "AveragePool"), ("GlobalAveragePool", "GlobalMaxPool"), ("Neg", "Abs"), ("ReduceSum", "ReduceMax"),
          ("Greater", "Less"), ("MatMul", "Add"), ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]


def semantic_op(m, rng):
    """An op replaced by another of the same arity (a valid or an invalid node, by its schema)."""
    table = {a: b for a, b in _SWAPS} | {b: a for a, b in _SWAPS}
    cands = [n for _, n in _nodes(m) if n.op_type in table]
    if not cands:
        return swap_inputs(m, rng)
    n = rng.choice(cands)
    n.op_type = table[n.op_type]


MUTATIONS = {f.__name__: f for f in (byte_flip, truncate, drop_node, duplicate_node, swap_inputs, attr_value, attr_type,
                                     remove_attr, change_dims, change_elem_type, cut_initializer, rename_output,
                                     semantic_values, semantic_op)}


def mutant(seed_name: str, mutation: str, number: int) -> Case:
    """The one mutant a case id names: seed model, mutation, and the number seeding its choices."""
    model, base = SEEDS[seed_name]()
    rng = random.Random(f"{seed_name}/{mutation}/{number}")
    out = MUTATIONS[mutation](model, rng)
    if isinstance(out, bytes):
        return Case(f"{seed_name}/{mutation}/{number}", out, base)
    feeds = feeds_for(model, base, np.random.default_rng(number))
    return Case(f"{seed_name}/{mutation}/{number}", model.SerializeToString(), feeds)


def mutants(n: int, seed: int = 0):
    """``n`` cases spread evenly over seed models and mutations, numbered from ``seed * n``."""
    combos = [(s, m) for s in SEEDS for m in MUTATIONS]
    for i in range(n):
        s, mu = combos[i % len(combos)]
        yield mutant(s, mu, seed * n + i // len(combos))


def seeds():
    """The unmutated seed models as cases (a control: both runtimes must accept and agree)."""
    for name, build in SEEDS.items():
        model, feeds = build()
        yield Case(f"{name}/seed/0", model.SerializeToString(), feeds)


if __name__ == "__main__":
    s, mu, k = sys.argv[1].split("/")
    sys.stdout.buffer.write(mutant(s, mu, int(k)).model)
