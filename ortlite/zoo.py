"""A model zoo built with onnx.helper: no downloads, random weights from a seeded generator.

Each builder returns an ``onnx.ModelProto`` shaped like what ``torch.onnx.export``
produces for the named architecture: the same op patterns (BatchNorm folded into
Conv, addmm as ``Add(bias, MatMul)``, ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape`` chains, constants as ``Constant`` nodes), torch's node naming
(``/layer1/layer1.0/conv1/Conv``, outputs ``<node>_output_0``), parameter names
(``layer1.0.conv1.weight``, transposed MatMul weights as ``onnx::MatMul_<n>``)
and dynamic dims (``batch_size``, ``sequence_length``).

The size arguments (``batch``, ``seq``) only set the example dims recorded in the
model's ``metadata_props`` (key ``ortlite.dims``); the graph's dims stay symbolic
unless ``dynamic=False``.  Integer inputs record their valid range under
``ortlite.input_ranges``; :func:`example_inputs` reads both to build valid feeds::

    from ortlite import zoo
    model = zoo.bert_base(layers=2)
    feeds = zoo.example_inputs(model)          # input_ids in [0, vocab), masks of ones
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from collections import Counter
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ortlite import types as _ot

__all__ = [
    "GraphBuilder", "MODELS", "example_inputs", "input_shapes", "InputShape", "resnet50", "mobilenet_v2",
    "bert_base", "gpt2", "yolo_style", "lstm_text", "control_flow", "demo",
]

RANGES_KEY = "ortlite.input_ranges"
DIMS_KEY = "ortlite.dims"
FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
F32_MIN = float(np.finfo(np.float32).min)  # torch.finfo(torch.float32).min, HF's mask fill


def _ir_version(opset: int) -> int:
    """The IR version torch writes for an opset: the oldest one that knows it (8 for opsets 13-18)."""
    rows = [(ir, ops) for _rel, ir, ops, *_ in helper.VERSION_TABLE if ops is not None]
    return min([ir for ir, ops in rows if ops >= opset] + [onnx.IR_VERSION])


class GraphBuilder:
    """Adds nodes / initializers with torch.onnx.export's naming and a seeded weight generator."""

    def __init__(self, opset: int = 17, seed: int = 0, dims: dict | None = None, dynamic: bool = True):
        if opset < 13:
            raise ValueError(f"zoo models use the opset-13 input forms (Unsqueeze/Split/Resize); got opset {opset}")
        self.opset, self.dynamic = opset, dynamic
        self.rng = np.random.default_rng(seed)
        self.dims = dict(dims or {})
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.ranges: dict[str, list[int]] = {}
        self._names = Counter()
        self._anon = 0

    # -- graph boundary ---------------------------------------------------
    def dim(self, name: str):
        """A symbolic dim (dynamic models) or its example size (static ones)."""
        return name if self.dynamic else int(self.dims[name])

    def input(self, name, elem, shape, range_=None):
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        if range_ is not None:
            self.ranges[name] = [int(range_[0]), int(range_[1])]
        return name

    def output(self, name, elem, shape):
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    # -- parameters -------------------------------------------------------
    def param(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def anon(self, op_type: str, arr) -> str:
        """A parameter torch renames on export (a transposed or reordered weight): ``onnx::MatMul_<n>``."""
        self._anon += 1
        return self.param(f"onnx::{op_type}_{self._anon}", arr)

    def normal(self, shape, std=1.0, mean=0.0):
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean)).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    # -- nodes ------------------------------------------------------------
    def node_name(self, scope: str, op_type: str) -> str:
        base = f"{scope}/{op_type}"
        k = self._names[base]
        self._names[base] += 1
        return base if k == 0 else f"{base}_{k}"

    def op(self, op_type, inputs, scope="", n_out=1, outputs=None, **attrs):
        """Add a node named like torch does; returns its output name (a tuple when it has several)."""
        name = self.node_name(scope, op_type)
        outs = list(outputs) if outputs else [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def const(self, value, scope="", dtype=np.float32) -> str:
        """A ``Constant`` node, the way torch exports Python scalars and traced shapes."""
        return self.op("Constant", [], scope, value=numpy_helper.from_array(np.asarray(value, dtype)))

    # -- torch export idioms ----------------------------------------------
    def linear(self, x, scope, pname, fan_in, fan_out, std=None, bias=True):
        """nn.Linear / Conv1D on a 3-D input: ``MatMul(x, W^T)`` then ``Add(bias, .)``."""
        std = 1.0 / math.sqrt(fan_in) if std is None else std
        y = self.op("MatMul", [x, self.anon("MatMul", self.normal((fan_in, fan_out), std))], scope)
        if bias:
            y = self.op("Add", [self.param(f"{pname}.bias", self.normal((fan_out,), 0.02)), y], scope)
        return y

    def gemm(self, x, scope, pname, fan_in, fan_out, std=None, outputs=None):
        """nn.Linear on a 2-D input: ``Gemm(transB=1)`` with the torch-layout [out, in] weight."""
        std = 1.0 / math.sqrt(fan_in) if std is None else std
        w = self.param(f"{pname}.weight", self.normal((fan_out, fan_in), std))
        b = self.param(f"{pname}.bias", self.normal((fan_out,), 0.02))
        return self.op("Gemm", [x, w, b], scope, outputs=outputs, alpha=1.0, beta=1.0, transB=1)

    def conv(self, x, scope, pname, cin, cout, k, stride=1, pad=None, group=1, bias=True, gain=2.0):
        """Conv2d as torch exports it (all attributes spelled out); He-style init with ``gain``."""
        pad = k // 2 if pad is None else pad
        w = self.param(f"{pname}.weight", self.normal((cout, cin // group, k, k), math.sqrt(gain / (cin // group * k * k))))
        ins = [x, w] + ([self.param(f"{pname}.bias", self.normal((cout,), 0.05))] if bias else [])
        return self.op("Conv", ins, scope, dilations=[1, 1], group=group, kernel_shape=[k, k],
                       pads=[pad] * 4, strides=[stride, stride])

    def layer_norm(self, x, scope, pname, width, eps, outputs=None):
        w = self.param(f"{pname}.weight", self.normal((width,), 0.05, 1.0))
        b = self.param(f"{pname}.bias", self.normal((width,), 0.02))
        return self.op("LayerNormalization", [x, w, b], scope, outputs=outputs, axis=-1, epsilon=eps)

    def dim_of(self, x, axis, scope):
        """``x.size(axis)`` as a 0-d int64: ``Shape -> Gather``."""
        shape = self.op("Shape", [x], scope)
        return self.op("Gather", [shape, self.const(axis, scope, np.int64)], scope, axis=0)

    def unsqueeze(self, x, axes, scope):
        return self.op("Unsqueeze", [x, self.const(axes, scope, np.int64)], scope)

    def view(self, x, scope, lead_axes, tail):
        """``x.view(x.size()[:n] + tail)``: Shape/Gather/Unsqueeze per kept dim, Concat, Reshape."""
        parts = [self.unsqueeze(self.dim_of(x, a, scope), [0], scope) for a in lead_axes]
        parts += [self.const(list(tail[i:i + 1]), scope, np.int64) for i in range(len(tail))]
        shape = self.op("Concat", parts, scope, axis=0)
        return self.op("Reshape", [x, shape], scope)

    def build(self, graph_name: str, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="ortlite.zoo", producer_version="1", doc_string=doc)
        model.ir_version = _ir_version(self.opset)
        helper.set_model_props(model, {RANGES_KEY: json.dumps(self.ranges), DIMS_KEY: json.dumps(self.dims),
                                       "ortlite.zoo.model": graph_name})
        onnx.checker.check_model(model)
        return model


# ---------------------------------------------------------------------------
# CNNs
# ---------------------------------------------------------------------------

def _conv_relu(g, x, scope, pname, relu_scope, cin, cout, k, stride=1, gain=2.0):
    y = g.conv(x, f"{scope}", pname, cin, cout, k, stride, gain=gain)
    return g.op("Relu", [y], relu_scope)


def resnet50(batch=1, opset=17, num_classes=1000, layers=(3, 4, 6, 3), size=224, seed=0, dynamic=True):
    """torchvision ResNet-50 (v1.5, stride on the 3x3) exported in eval mode: BN folded into Conv."""
    g = GraphBuilder(opset, seed, {"batch_size": batch}, dynamic)
    B = g.dim("batch_size")
    x = g.input("input", FLOAT, [B, 3, size, size])
    x = _conv_relu(g, x, "/conv1", "conv1", "/relu", 3, 64, 7, 2)
    x = g.op("MaxPool", [x], "/maxpool", ceil_mode=0, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    cin = 64
    for li, (n, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for bi in range(n):
            stride = 2 if (bi == 0 and li > 1) else 1
            sc, pn = f"/layer{li}/layer{li}.{bi}", f"layer{li}.{bi}"
            y = _conv_relu(g, x, f"{sc}/conv1", f"{pn}.conv1", f"{sc}/relu", cin, width, 1)
            y = _conv_relu(g, y, f"{sc}/conv2", f"{pn}.conv2", f"{sc}/relu_1", width, width, 3, stride)
            # the residual branch's last conv is scaled down (like zero-init-residual, but not zero)
            # so the sum of 16 blocks keeps the activations O(1)
            y = g.conv(y, f"{sc}/conv3", f"{pn}.conv3", width, width * 4, 1, gain=0.2)
            if bi == 0:
                x = g.conv(x, f"{sc}/downsample/downsample.0", f"{pn}.downsample.0", cin, width * 4, 1, stride, gain=1.0)
            x = g.op("Relu", [g.op("Add", [y, x], sc)], f"{sc}/relu_2")
            cin = width * 4
    x = g.op("GlobalAveragePool", [x], "/avgpool")
    x = g.op("Flatten", [x], "", axis=1)
    g.gemm(x, "/fc", "fc", cin, num_classes, outputs=["output"])
    g.output("output", FLOAT, [B, num_classes])
    return g.build("main_graph", "torchvision resnet50")


def _conv_bn_relu6(g, x, scope, pname, cin, cout, k, stride=1, group=1):
    """torchvision Conv2dNormActivation(ReLU6): Conv (BN folded) + Clip(min, max) with Constant inputs."""
    y = g.conv(x, f"{scope}/{pname.rsplit('.', 1)[-1]}.0", f"{pname}.0", cin, cout, k, stride, group=group)
    cs = f"{scope}/{pname.rsplit('.', 1)[-1]}.2"
    return g.op("Clip", [y, g.const(0.0, cs), g.const(6.0, cs)], cs)


def mobilenet_v2(batch=1, opset=17, num_classes=1000, size=224, seed=0, dynamic=True):
    """torchvision MobileNetV2 exported in eval mode: Conv+Clip(0,6), depthwise convs, Add residuals."""
    g = GraphBuilder(opset, seed, {"batch_size": batch}, dynamic)
    B = g.dim("batch_size")
    x = g.input("input", FLOAT, [B, 3, size, size])
    x = _conv_bn_relu6(g, x, "/features/features.0", "features.0", 3, 32, 3, 2)
    cin, idx = 32, 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride, hid = (s if i == 0 else 1), cin * t
            sc, pn = f"/features/features.{idx}/conv", f"features.{idx}.conv"
            y, j = x, 0
            if t != 1:
                y = _conv_bn_relu6(g, y, sc, f"{pn}.0", cin, hid, 1)
                j = 1
            y = _conv_bn_relu6(g, y, sc, f"{pn}.{j}", hid, hid, 3, stride, group=hid)
            gain = 0.3 if (stride == 1 and cin == c) else 1.0
            y = g.conv(y, f"{sc}/conv.{j + 1}", f"{pn}.{j + 1}", hid, c, 1, gain=gain)
            x = g.op("Add", [x, y], f"/features/features.{idx}") if (stride == 1 and cin == c) else y
            cin, idx = c, idx + 1
    x = _conv_bn_relu6(g, x, f"/features/features.{idx}", f"features.{idx}", cin, 1280, 1)
    x = g.op("GlobalAveragePool", [x], "")
    x = g.op("Flatten", [x], "", axis=1)
    g.gemm(x, "/classifier/classifier.1", "classifier.1", 1280, num_classes, outputs=["output"])
    g.output("output", FLOAT, [B, num_classes])
    return g.build("main_graph", "torchvision mobilenet_v2")


def demo(batch=1, opset=17, num_classes=10, seed=0, dynamic=True):
    """A small CNN classifier (3 x Conv/Relu/MaxPool, Flatten, Gemm) on [batch, 3, 64, 64]."""
    g = GraphBuilder(opset, seed, {"batch_size": batch}, dynamic)
    B = g.dim("batch_size")
    x = g.input("input", FLOAT, [B, 3, 64, 64])
    cin = 3
    for i, cout in enumerate((16, 32, 64)):
        x = _conv_relu(g, x, f"/features/features.{3 * i}", f"features.{3 * i}", f"/features/features.{3 * i + 1}", cin, cout, 3)
        x = g.op("MaxPool", [x], f"/features/features.{3 * i + 2}", ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
        cin = cout
    x = g.op("Flatten", [x], "", axis=1)
    g.gemm(x, "/classifier", "classifier", cin * 8 * 8, num_classes, outputs=["output"])
    g.output("output", FLOAT, [B, num_classes])
    return g.build("main_graph", "demo CNN")


# ---------------------------------------------------------------------------
# Transformers
# ---------------------------------------------------------------------------

def _heads(g, x, scope, heads, dh, perm):
    """transpose_for_scores / _split_heads: view(b, s, heads, dh) then permute."""
    return g.op("Transpose", [g.view(x, scope, (0, 1), (heads, dh))], scope, perm=perm)


def _merge_heads(g, x, scope, hidden):
    x = g.op("Transpose", [x], scope, perm=[0, 2, 1, 3])
    return g.view(x, scope, (0, 1), (hidden,))


def bert_base(batch=1, seq=128, opset=17, layers=12, hidden=768, heads=12, intermediate=None, vocab=30522,
              max_positions=512, type_vocab=2, seed=0, dynamic=True):
    """HuggingFace BertModel as torch.onnx.export writes it (eager attention, erf GELU)."""
    g = GraphBuilder(opset, seed, {"batch_size": batch, "sequence_length": seq}, dynamic)
    B, S = g.dim("batch_size"), g.dim("sequence_length")
    dh, inter = hidden // heads, intermediate or 4 * hidden
    ids = g.input("input_ids", INT64, [B, S], (0, vocab))
    mask = g.input("attention_mask", INT64, [B, S])
    tt = g.input("token_type_ids", INT64, [B, S], (0, type_vocab))

    sc = "/embeddings"
    seq_len = g.dim_of(ids, 1, sc)
    pos_ids = g.param("embeddings.position_ids", np.arange(max_positions, dtype=np.int64)[None])
    pos_ids = g.op("Slice", [pos_ids, g.const([0], sc, np.int64), g.unsqueeze(seq_len, [0], sc),
                             g.const([1], sc, np.int64), g.const([1], sc, np.int64)], sc)
    word = g.op("Gather", [g.param("embeddings.word_embeddings.weight", g.normal((vocab, hidden), 0.5)), ids], f"{sc}/word_embeddings")
    ttype = g.op("Gather", [g.param("embeddings.token_type_embeddings.weight", g.normal((type_vocab, hidden), 0.5)), tt], f"{sc}/token_type_embeddings")
    emb = g.op("Add", [word, ttype], sc)
    pos = g.op("Gather", [g.param("embeddings.position_embeddings.weight", g.normal((max_positions, hidden), 0.5)), pos_ids], f"{sc}/position_embeddings")
    x = g.layer_norm(g.op("Add", [emb, pos], sc), f"{sc}/LayerNorm", "embeddings.LayerNorm", hidden, 1e-12)

    # get_extended_attention_mask: (1 - mask[:, None, None, :]) * finfo.min
    m = g.unsqueeze(g.unsqueeze(mask, [1], ""), [2], "")
    m = g.op("Sub", [g.const(1.0, ""), g.op("Cast", [m], "", to=FLOAT)], "")
    ext_mask = g.op("Mul", [m, g.const(F32_MIN, "")], "")

    for i in range(layers):
        p, pn = f"/encoder/layer.{i}", f"encoder.layer.{i}"
        a, an = f"{p}/attention/self", f"{pn}.attention.self"
        q = _heads(g, g.linear(x, f"{a}/query", f"{an}.query", hidden, hidden), a, heads, dh, [0, 2, 1, 3])
        k = _heads(g, g.linear(x, f"{a}/key", f"{an}.key", hidden, hidden), a, heads, dh, [0, 2, 3, 1])
        v = _heads(g, g.linear(x, f"{a}/value", f"{an}.value", hidden, hidden), a, heads, dh, [0, 2, 1, 3])
        s = g.op("Div", [g.op("MatMul", [q, k], a), g.const(math.sqrt(dh), a)], a)
        probs = g.op("Softmax", [g.op("Add", [s, ext_mask], a)], a, axis=-1)
        ctx = _merge_heads(g, g.op("MatMul", [probs, v], a), a, hidden)
        o = g.linear(ctx, f"{p}/attention/output/dense", f"{pn}.attention.output.dense", hidden, hidden)
        o = g.op("Add", [o, x], f"{p}/attention/output")
        x = g.layer_norm(o, f"{p}/attention/output/LayerNorm", f"{pn}.attention.output.LayerNorm", hidden, 1e-12)
        h = g.linear(x, f"{p}/intermediate/dense", f"{pn}.intermediate.dense", hidden, inter)
        act = f"{p}/intermediate/intermediate_act_fn"  # x * 0.5 * (1 + erf(x / sqrt(2)))
        e = g.op("Erf", [g.op("Div", [h, g.const(1.4142135381698608, act)], act)], act)
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [e, g.const(1.0, act)], act)], act), g.const(0.5, act)], act)
        h = g.linear(h, f"{p}/output/dense", f"{pn}.output.dense", inter, hidden, std=0.5 / math.sqrt(inter))
        h = g.op("Add", [h, x], f"{p}/output")
        last = i == layers - 1
        x = g.layer_norm(h, f"{p}/output/LayerNorm", f"{pn}.output.LayerNorm", hidden, 1e-12,
                         outputs=["last_hidden_state"] if last else None)
    if layers == 0:
        x = g.op("Identity", [x], "", outputs=["last_hidden_state"])

    first = g.op("Gather", [x, g.const(0, "/pooler", np.int64)], "/pooler", axis=1)
    pooled = g.gemm(first, "/pooler/dense", "pooler.dense", hidden, hidden)
    g.op("Tanh", [pooled], "/pooler/activation", outputs=["pooler_output"])
    g.output("last_hidden_state", FLOAT, [B, S, hidden])
    g.output("pooler_output", FLOAT, [B, hidden])
    return g.build("main_graph", f"HF BertModel ({layers} layers, hidden {hidden})")


def bert_tiny(batch=1, seq=32, opset=17, **kw):
    """bert_base with 2 layers, hidden 128: the fast test size."""
    return bert_base(batch, seq, opset, **{"layers": 2, "hidden": 128, "heads": 2, "vocab": 1000, **kw})


def gpt2(batch=1, seq=64, opset=17, layers=12, hidden=768, heads=12, vocab=50257, n_positions=1024, seed=0, dynamic=True):
    """HuggingFace GPT2LMHeadModel (no past, eager attention) as torch.onnx.export writes it."""
    if seq > n_positions:
        raise ValueError(f"seq {seq} exceeds n_positions {n_positions}")
    g = GraphBuilder(opset, seed, {"batch_size": batch, "sequence_length": seq}, dynamic)
    B, S = g.dim("batch_size"), g.dim("sequence_length")
    dh = hidden // heads
    ids = g.input("input_ids", INT64, [B, S], (0, vocab))

    sc = "/transformer"
    seq_len = g.dim_of(ids, -1, sc)
    pos_ids = g.op("Range", [g.const(0, sc, np.int64), seq_len, g.const(1, sc, np.int64)], sc)
    pos_ids = g.unsqueeze(pos_ids, [0], sc)
    wte_w = g.normal((vocab, hidden), 0.05)
    wte = g.op("Gather", [g.param("transformer.wte.weight", wte_w), ids], f"{sc}/wte")
    wpe = g.op("Gather", [g.param("transformer.wpe.weight", g.normal((n_positions, hidden), 0.2)), pos_ids], f"{sc}/wpe")
    x = g.op("Add", [wte, wpe], sc)
    causal = g.param("transformer.h.0.attn.bias", np.tril(np.ones((n_positions, n_positions), bool))[None, None])

    for i in range(layers):
        p, pn = f"{sc}/h.{i}", f"transformer.h.{i}"
        a = f"{p}/attn"
        h = g.layer_norm(x, f"{p}/ln_1", f"{pn}.ln_1", hidden, 1e-5)
        qkv = g.linear(h, f"{a}/c_attn", f"{pn}.attn.c_attn", hidden, 3 * hidden)
        q, k, v = g.op("Split", [qkv, g.const([hidden] * 3, a, np.int64)], a, n_out=3, axis=2)
        q = _heads(g, q, a, heads, dh, [0, 2, 1, 3])
        k = _heads(g, k, a, heads, dh, [0, 2, 3, 1])
        v = _heads(g, v, a, heads, dh, [0, 2, 1, 3])
        w = g.op("Div", [g.op("MatMul", [q, k], a), g.const(math.sqrt(dh), a)], a)
        # causal_mask = bias[:, :, k_len - q_len : k_len, :k_len]
        q_len, k_len = g.dim_of(q, -2, a), g.dim_of(v, -2, a)
        k_end = g.unsqueeze(k_len, [0], a)
        cm = g.op("Slice", [causal, g.unsqueeze(g.op("Sub", [k_len, q_len], a), [0], a), k_end,
                            g.const([2], a, np.int64), g.const([1], a, np.int64)], a)
        cm = g.op("Slice", [cm, g.const([0], a, np.int64), k_end, g.const([3], a, np.int64), g.const([1], a, np.int64)], a)
        w = g.op("Softmax", [g.op("Where", [cm, w, g.const(F32_MIN, a)], a)], a, axis=-1)
        o = _merge_heads(g, g.op("MatMul", [w, v], a), a, hidden)
        o = g.linear(o, f"{a}/c_proj", f"{pn}.attn.c_proj", hidden, hidden, std=1 / math.sqrt(hidden * 2 * layers))
        x = g.op("Add", [o, x], p)
        h = g.layer_norm(x, f"{p}/ln_2", f"{pn}.ln_2", hidden, 1e-5)
        h = g.linear(h, f"{p}/mlp/c_fc", f"{pn}.mlp.c_fc", hidden, 4 * hidden)
        act = f"{p}/mlp/act"  # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
        half = g.op("Mul", [g.const(0.5, act), h], act)
        cube = g.op("Mul", [g.const(0.044715, act), g.op("Pow", [h, g.const(3.0, act)], act)], act)
        t = g.op("Tanh", [g.op("Mul", [g.const(math.sqrt(2.0 / math.pi), act), g.op("Add", [h, cube], act)], act)], act)
        h = g.op("Mul", [half, g.op("Add", [g.const(1.0, act), t], act)], act)
        h = g.linear(h, f"{p}/mlp/c_proj", f"{pn}.mlp.c_proj", 4 * hidden, hidden, std=1 / math.sqrt(4 * hidden * 2 * layers))
        x = g.op("Add", [x, h], p)
    x = g.layer_norm(x, f"{sc}/ln_f", "transformer.ln_f", hidden, 1e-5)
    # lm_head is tied to wte; torch exports the transposed copy as a MatMul initializer
    g.op("MatMul", [x, g.anon("MatMul", np.ascontiguousarray(wte_w.T))], "/lm_head", outputs=["logits"])
    g.output("logits", FLOAT, [B, S, vocab])
    return g.build("main_graph", f"HF GPT2LMHeadModel ({layers} layers, hidden {hidden})")


# ---------------------------------------------------------------------------
# Detector
# ---------------------------------------------------------------------------

def _cbs(g, x, scope, pname, cin, cout, k=1, stride=1):
    """ultralytics Conv: Conv(no bias) -> BatchNormalization -> SiLU as Sigmoid * x."""
    y = g.conv(x, f"{scope}/conv", f"{pname}.conv", cin, cout, k, stride, bias=False)
    bn = [g.param(f"{pname}.bn.{n}", a) for n, a in (
        ("weight", g.uniform((cout,), 0.8, 1.2)), ("bias", g.normal((cout,), 0.1)),
        ("running_mean", g.normal((cout,), 0.1)), ("running_var", g.uniform((cout,), 0.8, 1.5)))]
    y = g.op("BatchNormalization", [y] + bn, f"{scope}/bn", epsilon=1e-3, momentum=0.97)
    return g.op("Mul", [y, g.op("Sigmoid", [y], f"{scope}/act")], f"{scope}/act")


def _c2f(g, x, scope, pname, cin, cout, n=1, shortcut=True):
    """CSP bottleneck (YOLOv8 C2f): cv1, Split in halves, n bottlenecks, Concat, cv2."""
    c = cout // 2
    y = _cbs(g, x, f"{scope}/cv1", f"{pname}.cv1", cin, 2 * c)
    parts = list(g.op("Split", [y, g.const([c, c], scope, np.int64)], scope, n_out=2, axis=1))
    for i in range(n):
        ms, mn = f"{scope}/m.{i}", f"{pname}.m.{i}"
        b = _cbs(g, parts[-1], f"{ms}/cv1", f"{mn}.cv1", c, c, 3)
        b = _cbs(g, b, f"{ms}/cv2", f"{mn}.cv2", c, c, 3)
        parts.append(g.op("Add", [parts[-1], b], ms) if shortcut else b)
    return _cbs(g, g.op("Concat", parts, scope, axis=1), f"{scope}/cv2", f"{pname}.cv2", (2 + n) * c, cout)


_ANCHORS = ([10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326])


def yolo_style(batch=1, size=320, opset=17, num_classes=80, seed=0, dynamic=True):
    """A small YOLO-like detector: SiLU conv blocks, C2f, an FPN (Resize + Concat), YOLOv5 Detect decode.

    Output ``output0`` [batch, 3 * (s/8)^2 * 21/16, 5 + num_classes]: xywh in pixels, objectness, classes.
    """
    if size % 32:
        raise ValueError(f"size must be a multiple of 32, got {size}")
    g = GraphBuilder(opset, seed, {"batch": batch}, dynamic)
    B = g.dim("batch")
    no = 5 + num_classes
    x = g.input("images", FLOAT, [B, 3, size, size])
    x = _cbs(g, x, "/model.0", "model.0", 3, 16, 3, 2)
    x = _cbs(g, x, "/model.1", "model.1", 16, 32, 3, 2)
    x = _c2f(g, x, "/model.2", "model.2", 32, 32)
    x = p3 = _cbs(g, x, "/model.3", "model.3", 32, 64, 3, 2)
    x = _c2f(g, x, "/model.4", "model.4", 64, 64)
    x = p4 = _cbs(g, x, "/model.5", "model.5", 64, 128, 3, 2)
    x = _c2f(g, x, "/model.6", "model.6", 128, 128)
    x = _cbs(g, x, "/model.7", "model.7", 128, 256, 3, 2)
    p5 = _c2f(g, x, "/model.8", "model.8", 256, 256)

    def up(t, idx):
        sc = f"/model.{idx}"
        return g.op("Resize", [t, "", g.const([1.0, 1.0, 2.0, 2.0], sc)], sc, coordinate_transformation_mode="asymmetric",
                    cubic_coeff_a=-0.75, mode="nearest", nearest_mode="floor")

    x = g.op("Concat", [up(p5, 9), p4], "/model.10", axis=1)
    n4 = _c2f(g, x, "/model.11", "model.11", 256 + 128, 128, shortcut=False)
    x = g.op("Concat", [up(n4, 12), p3], "/model.13", axis=1)
    n3 = _c2f(g, x, "/model.14", "model.14", 128 + 64, 64, shortcut=False)

    sc, outs = "/model.15", []
    for i, (feat, cin, stride) in enumerate(((n3, 64, 8), (n4, 128, 16), (p5, 256, 32))):
        ny = nx = size // stride
        y = g.conv(feat, f"{sc}/m.{i}", f"model.15.m.{i}", cin, 3 * no, 1, gain=0.3)
        y = g.op("Reshape", [y, g.const([-1, 3, no, ny, nx], sc, np.int64)], sc)
        y = g.op("Sigmoid", [g.op("Transpose", [y], sc, perm=[0, 1, 3, 4, 2])], sc)
        sl = [g.op("Slice", [y, g.const([a], sc, np.int64), g.const([b], sc, np.int64), g.const([4], sc, np.int64),
                             g.const([1], sc, np.int64)], sc) for a, b in ((0, 2), (2, 4), (4, no))]
        yv, xv = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32), indexing="ij")
        grid = np.broadcast_to(np.stack((xv, yv), -1)[None, None] - 0.5, (1, 3, ny, nx, 2))
        agrid = np.broadcast_to(np.asarray(_ANCHORS[i], np.float32).reshape(1, 3, 1, 1, 2), (1, 3, ny, nx, 2))
        xy = g.op("Mul", [g.op("Add", [g.op("Mul", [sl[0], g.const(2.0, sc)], sc), g.anon("Add", grid.astype(np.float32))], sc),
                          g.const(float(stride), sc)], sc)
        wh = g.op("Pow", [g.op("Mul", [sl[1], g.const(2.0, sc)], sc), g.const(2.0, sc)], sc)
        wh = g.op("Mul", [wh, g.anon("Mul", agrid.astype(np.float32))], sc)
        y = g.op("Concat", [xy, wh, sl[2]], sc, axis=4)
        outs.append(g.op("Reshape", [y, g.const([-1, 3 * ny * nx, no], sc, np.int64)], sc))
    g.op("Concat", outs, sc, outputs=["output0"], axis=1)
    n = 3 * sum((size // s) ** 2 for s in (8, 16, 32))
    g.output("output0", FLOAT, [B, n, no])
    return g.build("main_graph", "YOLO-style detector")


# ---------------------------------------------------------------------------
# Recurrent text classifier
# ---------------------------------------------------------------------------

def lstm_text(batch=1, seq=32, opset=17, vocab=1000, emb=128, hidden=256, cell="LSTM", num_classes=4, seed=0, dynamic=True):
    """nn.Embedding -> bidirectional nn.LSTM/nn.GRU (time-major) -> cat(h_n fwd, bwd) -> nn.Linear."""
    cell = cell.upper()
    if cell not in ("LSTM", "GRU"):
        raise ValueError(f"cell must be 'LSTM' or 'GRU', got {cell!r}")
    g = GraphBuilder(opset, seed, {"batch_size": batch, "sequence_length": seq}, dynamic)
    B, S = g.dim("batch_size"), g.dim("sequence_length")
    tokens = g.input("tokens", INT64, [B, S], (0, vocab))
    x = g.op("Gather", [g.param("embedding.weight", g.normal((vocab, emb), 1.0)), tokens], "/embedding")
    x = g.op("Transpose", [x], "", perm=[1, 0, 2])
    sc, gates = f"/{cell.lower()}", 4 if cell == "LSTM" else 3
    bound = 1.0 / math.sqrt(hidden)  # torch's RNN init: U(-1/sqrt(H), 1/sqrt(H))
    w = g.anon(cell, g.uniform((2, gates * hidden, emb), -bound, bound))
    r = g.anon(cell, g.uniform((2, gates * hidden, hidden), -bound, bound))
    b = g.anon(cell, g.uniform((2, 2 * gates * hidden), -bound, bound))
    # zeros initial state of shape [2, batch, hidden], built from the input's shape as torch does
    shape = g.op("Concat", [g.const([2], sc, np.int64), g.unsqueeze(g.dim_of(x, 1, sc), [0], sc), g.const([hidden], sc, np.int64)], sc, axis=0)
    h0 = g.op("ConstantOfShape", [shape], sc, value=numpy_helper.from_array(np.zeros(1, np.float32)))
    if cell == "LSTM":
        _, h_n, _ = g.op("LSTM", [x, w, r, b, "", h0, h0], sc, n_out=3, direction="bidirectional", hidden_size=hidden)
    else:
        _, h_n = g.op("GRU", [x, w, r, b, "", h0], sc, n_out=2, direction="bidirectional", hidden_size=hidden, linear_before_reset=1)
    last = []
    for d in range(2):
        hd = g.op("Slice", [h_n, g.const([d], "", np.int64), g.const([d + 1], "", np.int64), g.const([0], "", np.int64)], "")
        last.append(g.op("Squeeze", [hd, g.const([0], "", np.int64)], ""))
    x = g.op("Concat", last, "", axis=1)
    g.gemm(x, "/fc", "fc", 2 * hidden, num_classes, outputs=["logits"])
    g.output("logits", FLOAT, [B, num_classes])
    return g.build("main_graph", f"bidirectional {cell} text classifier")


# ---------------------------------------------------------------------------
# Control flow
# ---------------------------------------------------------------------------

def control_flow(opset=17, seed=0):
    """If on ``ReduceSum(x) > 0`` (branches read outer-scope values) and a Loop building a sequence.

    Outputs: ``if_out`` [3, 4]; ``loop_out`` = ConcatFromSequence of the n loop states [3n, 4];
    ``loop_state`` the final carried state [3, 4]; ``loop_sums`` the per-iteration sums [n].
    """
    g = GraphBuilder(opset, seed)
    x = g.input("x", FLOAT, [3, 4])
    n = g.input("n", INT64, [], (1, 6))
    w = g.param("w", g.normal((4, 4), 0.5))
    cond = g.op("Greater", [g.op("ReduceSum", [x], "", keepdims=0), g.const(0.0, "")], "")

    def branch(name, body):
        sub = GraphBuilder(opset)
        sub._names = g._names  # node names stay unique across the whole model
        out = body(sub)
        sub.output(out, FLOAT, [3, 4])
        return helper.make_graph(sub.nodes, name, [], sub.outputs, sub.inits)

    # then: relu(x @ w) + x            else: (x - tanh(x)) * w[0]  (both read x and w from outside)
    then_g = branch("then_branch", lambda s: s.op("Add", [s.op("Relu", [s.op("MatMul", [x, w], "/If/then")], "/If/then"), x], "/If/then"))
    else_g = branch("else_branch", lambda s: s.op("Mul", [s.op("Sub", [x, s.op("Tanh", [x], "/If/else")], "/If/else"),
                                                         s.op("Gather", [w, s.const(0, "/If/else", np.int64)], "/If/else", axis=0)], "/If/else"))
    g.op("If", [cond], "", outputs=["if_out"], then_branch=then_g, else_branch=else_g)

    # Loop body: acc = tanh(acc * 0.5 + x * i); seq.append(acc); scan out sum(acc)
    body = GraphBuilder(opset)
    body._names = g._names
    ls = "/Loop/body"
    i_f = body.op("Cast", ["iter"], ls, to=FLOAT)
    acc = body.op("Tanh", [body.op("Add", [body.op("Mul", ["acc_in", body.const(0.5, ls)], ls), body.op("Mul", [x, i_f], ls)], ls)], ls)
    seq_out = body.op("SequenceInsert", ["seq_in", acc], ls)
    total = body.op("ReduceSum", [acc], ls, keepdims=0)
    cond_out = body.op("Identity", ["cond_in"], ls)
    body_g = helper.make_graph(
        body.nodes, "loop_body",
        [helper.make_tensor_value_info("iter", INT64, []), helper.make_tensor_value_info("cond_in", BOOL, []),
         helper.make_tensor_value_info("acc_in", FLOAT, [3, 4]), helper.make_tensor_sequence_value_info("seq_in", FLOAT, None)],
        [helper.make_tensor_value_info(cond_out, BOOL, []), helper.make_tensor_value_info(acc, FLOAT, [3, 4]),
         helper.make_tensor_sequence_value_info(seq_out, FLOAT, None), helper.make_tensor_value_info(total, FLOAT, [])])
    seq0 = g.op("SequenceEmpty", [], "", dtype=FLOAT)
    _, seq, _ = g.op("Loop", [n, "", x, seq0], "", outputs=["loop_state", "/Loop_output_1", "loop_sums"], body=body_g)
    g.op("ConcatFromSequence", [seq], "", outputs=["loop_out"], axis=0)
    g.output("if_out", FLOAT, [3, 4])
    g.output("loop_out", FLOAT, ["loop_rows", 4])
    g.output("loop_state", FLOAT, [3, 4])
    g.output("loop_sums", FLOAT, ["n"])
    return g.build("main_graph", "If + Loop with a sequence")


# ---------------------------------------------------------------------------
# Registry and feeds
# ---------------------------------------------------------------------------

MODELS = {
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "bert_base": bert_base,
    "bert_tiny": bert_tiny,
    "gpt2": gpt2,
    "yolo_style": yolo_style,
    "lstm_text": lstm_text,
    "gru_text": functools.partial(lstm_text, cell="GRU"),
    "control_flow": control_flow,
    "demo": demo,
}


def _as_model(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, str) and model in MODELS:
        return MODELS[model]()
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model), load_external_data=False)
    raise TypeError(f"expected a ModelProto, bytes, a path or a zoo name, got {type(model).__name__}")


# Defaults for symbolic dims nobody gave a size for (``input_shapes``).
IMAGE_SIZE = 224  # height and width of an image input, unless the model's metadata says
SEQUENCE_LENGTH = 16
_IMAGE_KEYS = ("imgsz", "img_size", "image_size", "imagesize", "input_size", "input_shape", "resolution")
_IMAGE_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.UINT8}
_BATCH = re.compile(r"n|b|bs|batch.*|.*_batch|nbatch|num_batch(es)?|unk__\d+")
_SEQUENCE = re.compile(r"seq|len|token|past|step|time|word")
_SIDES = (re.compile(r"h|.*height"), re.compile(r"w|.*width"))


def _role(name, axis, img):
    """What a symbolic dim looks like: 'H' / 'W' (an image side, or so named), 'N' (batch-like or
    unnamed), 'L' (a sequence length) or 'D' (anything else)."""
    if img and axis in img:
        return "HW"[img.index(axis)]
    low = (name or "").lower()
    side = next((k for k, r in enumerate(_SIDES) if r.fullmatch(low)), None)
    if side is not None:
        return "HW"[side]
    if not low or _BATCH.fullmatch(low):
        return "N"
    return "L" if _SEQUENCE.search(low) else "D"


class InputShape(NamedTuple):
    """A graph input's shape with its symbolic dims filled in.

    ``chosen``: the axes whose size was picked by default (no size given for them);
    ``pattern``: the shape as ``--shape`` takes it, the chosen sizes written as placeholders
    (N batch, H and W, L sequence, D<axis> others), e.g. ``1x3xHxW``.
    """

    shape: tuple
    chosen: tuple
    pattern: str


def input_shapes(model, dims: dict | None = None, shapes: dict | None = None,
                 batch: int | None = None) -> dict[str, InputShape]:
    """The shape of every tensor graph input of ``model`` (not initializers), symbolic dims filled in.

    A symbolic dim (a dim_param, an unknown or negative dim_value) takes, in order: its size in
    ``shapes`` (input name -> whole shape, checked against the fixed dims; a dim name set there
    holds for every input using it); ``dims`` (dim name -> size); ``batch`` (for batch-like names,
    and axis 0 unless its name says sequence or height / width); else a default, one per dim name:
    the model's ``ortlite.dims`` metadata; for an image input (rank 4, 1, 3 or 4 channels fixed,
    NCHW or NHWC) the height and width from its metadata (ultralytics' ``imgsz`` "[640, 640]",
    ``image_size``, ``input_size``, ``height``/``width``...), else 224, and so for other dims named
    like ``height`` / ``width``; 16 for a sequence-like name (``sequence_length``, ``seq_len``,
    ``past_sequence_length``...); else 1 (batch-like names, unnamed dims).
    ValueError names a shape that does not fit.
    """
    model = _as_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    meta_dims, hw = json.loads(meta.get(DIMS_KEY, "{}")), _image_size(meta)
    inits = {t.name for t in model.graph.initializer}
    inputs = [(vi.name, vi.type.tensor_type.elem_type, _ot.type_proto_shape(vi.type) or [])
              for vi in model.graph.input if vi.name not in inits and vi.type.HasField("tensor_type")]
    shapes = {k: [int(d) for d in v] for k, v in (shapes or {}).items()}
    unknown = sorted(set(shapes) - {name for name, _, _ in inputs})
    if unknown:
        raise ValueError(f"the model has no input '{unknown[0]}'; inputs: {[name for name, _, _ in inputs]}")
    given = dict(dims or {})
    for name, _, decl in inputs:
        if name in shapes:
            _fit(name, decl, shapes[name], given)
    if batch:  # to batch-like names on any axis (an RNN state's axis 1), and to axis 0 unless it looks like more
        for _, _, decl in inputs:
            for k, d in enumerate(decl):
                if isinstance(d, str) and (_BATCH.fullmatch(d.lower()) or (k == 0 and _role(d, 0, None) == "D")):
                    given.setdefault(d, batch)
    picked, out = {}, {}
    # image inputs first: they set the height and width of a dim name other inputs share
    for name, elem, decl in sorted(inputs, key=lambda t: _image_axes(t[2], t[1]) is None):
        if name in shapes:
            out[name] = InputShape(tuple(shapes[name]), (), "x".join(map(str, shapes[name])))
            continue
        img = _image_axes(decl, elem)
        shape, roles = [], {}
        for k, d in enumerate(decl):
            if isinstance(d, int):
                v = d
            elif d in given:
                v = given[d]
            elif k == 0 and d is None and batch:
                v = batch
            else:
                roles[k] = _role(d, k, img)
                v = picked[d] if d in picked else _default_dim(d, roles[k], meta_dims, hw)
                if d is not None:
                    picked[d] = v
            shape.append(int(v))
        out[name] = InputShape(tuple(shape), tuple(roles), _pattern(shape, roles))
    return {name: out[name] for name, _, _ in inputs}


def _fit(name, decl, want, given):
    """Check a given shape against the declared one; record the sizes it gives dim names."""
    if len(want) != len(decl):
        raise ValueError(f"input '{name}' has rank {len(decl)} {_shape_text(decl)}, a shape of rank {len(want)} "
                         f"was given: {want}")
    for k, (d, v) in enumerate(zip(decl, want)):
        if isinstance(d, int) and d != v:
            raise ValueError(f"input '{name}': dimension {k} is fixed at {d} by the model {_shape_text(decl)}, "
                             f"{v} was given")
        if isinstance(d, str):
            given.setdefault(d, v)


def _shape_text(decl):
    return "[" + ", ".join("?" if d is None else str(d) for d in decl) + "]"


def _image_axes(decl, elem):
    """The (height, width) axes of an image-like input, NCHW or NHWC with a symbolic side, else None."""
    if len(decl) != 4 or elem not in _IMAGE_TYPES:
        return None
    for c, axes in ((1, (2, 3)), (3, (1, 2))):
        if isinstance(decl[c], int) and decl[c] in (1, 3, 4) and not all(isinstance(decl[a], int) for a in axes):
            return axes
    return None


def _image_size(meta):
    """(height, width) from a model's metadata, read leniently (the last two numbers > 4), else 224x224."""
    lower = {k.lower(): v for k, v in meta.items()}
    for key in _IMAGE_KEYS:
        nums = [int(n) for n in re.findall(r"\d+", lower.get(key, "")) if int(n) > 4]
        if nums:
            return (nums[-2], nums[-1]) if len(nums) > 1 else (nums[0], nums[0])
    h, w = (re.findall(r"\d+", lower.get(k, "")) for k in ("height", "width"))
    return (int(h[0]), int(w[0])) if h and w else (IMAGE_SIZE, IMAGE_SIZE)


def _default_dim(name, role, meta_dims, hw):
    if name in meta_dims:
        return int(meta_dims[name])
    return {"H": hw[0], "W": hw[1], "L": SEQUENCE_LENGTH}.get(role, 1)


def _pattern(shape, roles):
    """``--shape`` text with the chosen sizes (``roles``: axis -> role) as placeholders (N, H, W, L,
    D<axis>); a chosen batch stays 1 when other sizes are placeholders."""
    marks = {k: r if r in "HWL" or (r == "N" and k == 0) else f"D{k}" for k, r in roles.items()}
    if any(m != "N" for m in marks.values()):
        marks = {k: m for k, m in marks.items() if m != "N"}
    return "x".join(marks.get(k, str(v)) for k, v in enumerate(shape))


INT_HIGH = 100  # integer inputs are drawn from [0, INT_HIGH) unless a smaller bound is known


def _index_bounds(model) -> dict:
    """Input name -> the number of rows of the initializer it indexes directly (Gather / GatherElements
    indices on the gathered axis, as token ids index an embedding table); the smallest where several."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    bounds = {}
    for n in model.graph.node:
        if n.op_type in ("Gather", "GatherElements") and len(n.input) > 1 and n.input[0] in inits:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            dims = inits[n.input[0]]
            if dims and -len(dims) <= axis < len(dims):
                bounds[n.input[1]] = min(bounds.get(n.input[1], dims[axis]), dims[axis])
    return bounds


def example_inputs(model, seed: int = 0, dims: dict | None = None, shapes: dict | None = None,
                   batch: int | None = None, val_range: dict | None = None) -> dict[str, np.ndarray]:
    """Random valid feeds for every graph input of ``model`` (a ModelProto, bytes, a path or a MODELS name).

    Shapes come from :func:`input_shapes` (``dims``, ``shapes``, ``batch``, the model's ``ortlite.dims``
    metadata, then defaults). Values, from ``seed``: an input in ``val_range`` (name -> (lo, hi); the key
    "" for every input) is uniform in [lo, hi] (integers inclusive, as Polygraphy's --val-range); else
    integer inputs listed in the ``ortlite.input_ranges`` metadata are uniform in [lo, hi); names containing
    "mask" get ones; ``position_ids`` count 0, 1, ... along the last axis; other integers are uniform in
    [0, min(n, 100)), n the rows of the table the input indexes (Gather on an initializer), so token ids stay
    inside a vocabulary; floats are standard normal; bools are random.
    """
    model = _as_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    ranges = json.loads(meta.get(RANGES_KEY, "{}"))
    chosen = input_shapes(model, dims, shapes, batch)
    val_range = dict(val_range or {})
    unknown = sorted(set(val_range) - set(chosen) - {""})
    if unknown:
        raise ValueError(f"the model has no input '{unknown[0]}'; inputs: {list(chosen)}")
    bounds = _index_bounds(model)
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name not in chosen:
            continue
        shape = chosen[vi.name].shape
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        integer = np.issubdtype(dtype, np.integer)
        given = val_range.get(vi.name, val_range.get(""))
        if given is not None and dtype != np.bool_:
            lo, hi = given
            arr = (rng.integers(math.ceil(lo), math.floor(hi), size=shape, endpoint=True) if integer
                   else rng.uniform(lo, hi, size=shape))
        elif vi.name in ranges:
            lo, hi = ranges[vi.name]
            arr = rng.integers(lo, hi, size=shape)
        elif "mask" in vi.name.lower():
            arr = np.ones(shape)
        elif np.issubdtype(dtype, np.floating):
            arr = rng.standard_normal(shape)
        elif dtype == np.bool_:
            arr = rng.random(shape) < 0.5
        elif integer and vi.name.lower() in ("position_ids", "pos_ids") and len(shape):
            arr = np.broadcast_to(np.arange(shape[-1]), shape)
        elif integer:
            arr = rng.integers(0, max(1, min(bounds.get(vi.name, INT_HIGH), INT_HIGH)), size=shape)
        else:
            arr = np.zeros(shape)
        feeds[vi.name] = np.asarray(arr).astype(dtype)
    return feeds
