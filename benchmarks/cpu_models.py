"""More CPU benchmark models for benchmarks/cpu.py, of the kinds the CPU-performance issue names:
small recurrent models (a voice-activity detector with its LSTM step inside If branches, a GRU
greedy decoder in a Loop, a GRU encoder-decoder), dynamically quantized models (LSTM tagger,
BERT-small, a CNN with ConvInteger) and a tiny If-MLP. Built with onnx.helper (no torch),
shaped like torch.onnx.export writes them (Constant nodes, Shape/Gather/Unsqueeze/Concat shape
math); random weights from a seeded generator.

Each builder returns ``(onnx.ModelProto, kw)`` as benchmarks/cpu.py's MODELS entries do;
inputs have static shapes, token inputs carry ``ortlite.input_ranges`` metadata, so
``zoo.example_inputs`` (cpu.py's feeds_for) makes valid feeds.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


class _G:
    """A node list with automatic names; ``c`` makes Constant nodes as exports do."""

    def __init__(self, prefix, rng):
        self.prefix, self.rng, self.nodes, self.inits, self.n = prefix, rng, [], [], 0

    def _name(self, op):
        self.n += 1
        return f"{self.prefix}/{op}_{self.n}"

    def op(self, op, inputs, n_out=1, **attrs):
        name = self._name(op)
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def c(self, value, dtype=np.int64):
        name = self._name("Constant")
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node("Constant", [], [out], name=name,
                                           value=numpy_helper.from_array(np.asarray(value, dtype=dtype))))
        return out

    def param(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def normal(self, shape, scale):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def linear(self, x, name, n_in, n_out):
        """torch's nn.Linear export: MatMul with the transposed weight, then Add of the bias."""
        w = self.param(f"{name}.weight_T", self.normal((n_in, n_out), 1 / np.sqrt(n_in)))
        b = self.param(f"{name}.bias", self.normal((n_out,), 0.1))
        return self.op("Add", [b, self.op("MatMul", [x, w])])

    def rnn_weights(self, name, cell, d, n_in, hidden):
        g = {"LSTM": 4, "GRU": 3}[cell]
        s = 1 / np.sqrt(hidden)
        return (self.param(f"{name}.W", self.rng.uniform(-s, s, (d, g * hidden, n_in))),
                self.param(f"{name}.R", self.rng.uniform(-s, s, (d, g * hidden, hidden))),
                self.param(f"{name}.B", self.rng.uniform(-s, s, (d, 2 * g * hidden))))


def _model(g, inputs, outputs, ranges=None, doc=""):
    graph = helper.make_graph(g.nodes, "main_graph", inputs, outputs, g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch",
                          producer_version="2.3.0", doc_string=doc)
    m.ir_version = 8
    if ranges:
        helper.set_model_props(m, {"ortlite.input_ranges": json.dumps(ranges)})
    onnx.checker.check_model(m)
    return m


# --------------------------------------------------------------------------- VAD: LSTM step in If branches

def _vad_branch(rng, tag, kernel, stride, hidden, feat):
    """One sample rate's branch: reshape the chunk (shape math on it), a conv front end, one LSTM
    step on the state (h, c split and rejoined with shape math), Linear, Sigmoid."""
    g = _G(f"/{tag}", rng)
    # [1, 512] -> [batch, 1, samples] through Shape/Gather/Unsqueeze/Concat/Reshape
    shp = g.op("Shape", ["input"])
    bsz = g.op("Gather", [shp, g.c(0)], axis=0)
    nsm = g.op("Gather", [shp, g.c(1)], axis=0)
    x = g.op("Reshape", ["input", g.op("Concat", [g.op("Unsqueeze", [bsz, g.c([0])]), g.c([1]),
                                                  g.op("Unsqueeze", [nsm, g.c([0])])], axis=0)])
    # reflect padding as the STFT front end does
    pad = kernel // 2
    x = g.op("Pad", [x, g.c([0, 0, pad, 0, 0, pad])], mode="reflect")
    w1 = g.param(f"{tag}.stft.weight", g.normal((feat, 1, kernel), 1 / np.sqrt(kernel)))
    x = g.op("Conv", [x, w1], kernel_shape=[kernel], strides=[stride], pads=[0, 0], dilations=[1], group=1)
    x = g.op("Pow", [x, g.c(2.0, np.float32)])
    x = g.op("Sqrt", [g.op("Add", [x, g.c(1e-6, np.float32)])])
    for i, cin in enumerate((feat, 64)):
        w = g.param(f"{tag}.encoder.{i}.weight", g.normal((64, cin, 3), 1 / np.sqrt(3 * cin)))
        b = g.param(f"{tag}.encoder.{i}.bias", g.normal((64,), 0.1))
        x = g.op("Relu", [g.op("Conv", [x, w, b], kernel_shape=[3], strides=[2 if i else 1], pads=[1, 1])])
    # mean over time -> [batch, 64]; then [1 step, batch, 64] for the LSTM
    x = g.op("ReduceMean", [x], axes=[2], keepdims=0)
    x = g.op("Unsqueeze", [x, g.c([0])])
    # state [2, batch, hidden] -> h, c [1, batch, hidden]
    sshp = g.op("Shape", ["state"])
    sb = g.op("Unsqueeze", [g.op("Gather", [sshp, g.c(1)], axis=0), g.c([0])])
    hid = g.op("Unsqueeze", [g.op("Gather", [sshp, g.c(2)], axis=0), g.c([0])])
    st_shape = g.op("Concat", [g.c([1]), sb, hid], axis=0)
    h0 = g.op("Reshape", [g.op("Gather", ["state", g.c(0)], axis=0), st_shape])
    c0 = g.op("Reshape", [g.op("Gather", ["state", g.c(1)], axis=0), st_shape])
    W, R, B = g.rnn_weights(f"{tag}.decoder.rnn", "LSTM", 1, 64, hidden)
    y, hn, cn = g.op("LSTM", [x, W, R, B, "", h0, c0], n_out=3, hidden_size=hidden)
    new_state = g.op("Concat", [hn, cn], axis=0)
    y = g.op("Squeeze", [y, g.c([0, 1])])  # [batch, hidden]
    y = g.op("Relu", [y])
    y = g.linear(y, f"{tag}.decoder.out", hidden, 1)
    out = g.op("Sigmoid", [y])
    out = g.op("Reshape", [out, g.op("Concat", [sb, g.c([1])], axis=0)])
    branch = helper.make_graph(g.nodes, f"{tag}_branch", [],
                               [helper.make_tensor_value_info(out, FLOAT, [1, 1]),
                                helper.make_tensor_value_info(new_state, FLOAT, [2, 1, hidden])])
    return branch, g.inits


def vad_lstm_if(hidden=64, seed=0):
    """A voice-activity detector like silero-vad's export: input [1, 512] audio chunk, state
    [2, 1, hidden] (h, c), sr (int64 scalar); If(sr == 16000) picks the 16 kHz or 8 kHz branch,
    each a conv front end, one LSTM step, Linear and Sigmoid; output [1, 1] and the new state."""
    rng = np.random.default_rng(seed)
    b16, i16 = _vad_branch(rng, "_model", 128, 64, hidden, 65)
    b8, i8 = _vad_branch(rng, "_model_8k", 64, 32, hidden, 33)
    g = _G("", rng)
    g.inits = i16 + i8
    # the outer checks real exports carry: the chunk length and the sample rate
    nsm = g.op("Gather", [g.op("Shape", ["input"]), g.c(1)], axis=0)
    ratio = g.op("Div", [g.op("Cast", ["sr"], to=INT64), nsm])
    ok = g.op("Greater", [ratio, g.c(0)])
    cond = g.op("And", [g.op("Equal", ["sr", g.c(16000)]), ok])
    g.nodes.append(helper.make_node("If", [cond], ["output", "stateN"], name="/If", then_branch=b16, else_branch=b8))
    m = _model(g, [helper.make_tensor_value_info("input", FLOAT, [1, 512]),
                   helper.make_tensor_value_info("state", FLOAT, [2, 1, hidden]),
                   helper.make_tensor_value_info("sr", INT64, [])],
               [helper.make_tensor_value_info("output", FLOAT, [1, 1]),
                helper.make_tensor_value_info("stateN", FLOAT, [2, 1, hidden])],
               ranges={"sr": [16000, 16001]}, doc="VAD: LSTM step inside If branches")
    return m, {}


# --------------------------------------------------------------------------- GRU greedy decoding in a Loop

def gru_greedy_loop(hidden=128, vocab=500, max_len=20, seed=0):
    """Greedy decoding: Loop of max_len steps, each Gather (embedding) -> GRU (one step) -> Linear ->
    ArgMax, the token fed back; input the encoder's state h0 [1, 1, hidden]; outputs the tokens
    [max_len, 1] and the final state."""
    rng = np.random.default_rng(seed)
    outer = _G("", rng)
    emb = outer.param("embedding.weight", outer.normal((vocab, hidden), 1.0))
    W, R, B = outer.rnn_weights("gru", "GRU", 1, hidden, hidden)
    b = _G("/loop", rng)
    tok = b.op("Unsqueeze", ["tok_in", b.c([0])])  # [1 step, batch]
    x = b.op("Gather", [emb, tok], axis=0)  # [1, batch, hidden]
    _, hn = b.op("GRU", [x, W, R, B, "", "h_in"], n_out=2, hidden_size=hidden, linear_before_reset=1)
    hs = b.op("Squeeze", [hn, b.c([0])])
    logits = b.linear(hs, "out", hidden, vocab)
    nxt = b.op("ArgMax", [logits], axis=1, keepdims=0)  # [batch]
    # EOS check as exported decoders do (kept running: cond passes through for fixed-length timing)
    eos = b.op("Equal", [nxt, b.c([vocab - 1])])
    b.nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    b.nodes.append(helper.make_node("Identity", [nxt], ["tok_out"]))
    b.nodes.append(helper.make_node("Identity", [hn], ["h_out"]))
    b.nodes.append(helper.make_node("Identity", [nxt], ["tok_scan"]))
    b.nodes.append(helper.make_node("Cast", [eos], ["eos_scan"], to=INT64))
    outer.inits += b.inits
    body = helper.make_graph(
        b.nodes, "greedy_body",
        [helper.make_tensor_value_info("iter", INT64, []), helper.make_tensor_value_info("cond_in", BOOL, []),
         helper.make_tensor_value_info("h_in", FLOAT, [1, 1, hidden]), helper.make_tensor_value_info("tok_in", INT64, [1])],
        [helper.make_tensor_value_info("cond_out", BOOL, []), helper.make_tensor_value_info("h_out", FLOAT, [1, 1, hidden]),
         helper.make_tensor_value_info("tok_out", INT64, [1]), helper.make_tensor_value_info("tok_scan", INT64, [1]),
         helper.make_tensor_value_info("eos_scan", INT64, [1])])
    m_len = outer.c(max_len)
    start = outer.c([1])
    cond = outer.c(True, np.bool_)
    outer.nodes.append(helper.make_node("Loop", [m_len, cond, "h0", start], ["h_final", "last_tok", "tokens", "eos"],
                                        name="/Loop", body=body))
    m = _model(outer, [helper.make_tensor_value_info("h0", FLOAT, [1, 1, hidden])],
               [helper.make_tensor_value_info("tokens", INT64, [max_len, 1]),
                helper.make_tensor_value_info("h_final", FLOAT, [1, 1, hidden])],
               doc="GRU greedy decoder in a Loop")
    return m, {}


# --------------------------------------------------------------------------- GRU encoder-decoder

def gru_seq2seq(hidden=128, vocab=500, emb=128, src_len=32, tgt_len=32, seed=0):
    """Encoder GRU over src tokens [1, src_len], decoder GRU over the target tokens [1, tgt_len]
    (teacher forcing) from the encoder's final state, Linear to the vocabulary: logits [1, tgt_len, vocab]."""
    rng = np.random.default_rng(seed)
    g = _G("", rng)
    e_src = g.param("encoder.embedding.weight", g.normal((vocab, emb), 1.0))
    e_tgt = g.param("decoder.embedding.weight", g.normal((vocab, emb), 1.0))

    def embed(tokens, table, scope):
        x = g.op("Gather", [table, tokens], axis=0)  # [B, S, E]
        return g.op("Transpose", [x], perm=[1, 0, 2])  # time-major

    x = embed("src", e_src, "enc")
    # zeros initial state [1, batch, hidden] from the input's shape, as torch exports it
    bsz = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", [x]), g.c(1)], axis=0), g.c([0])])
    h0 = g.op("ConstantOfShape", [g.op("Concat", [g.c([1]), bsz, g.c([hidden])], axis=0)],
              value=numpy_helper.from_array(np.zeros(1, np.float32)))
    W, R, B = g.rnn_weights("encoder.gru", "GRU", 1, emb, hidden)
    _, henc = g.op("GRU", [x, W, R, B, "", h0], n_out=2, hidden_size=hidden, linear_before_reset=1)
    y = embed("tgt", e_tgt, "dec")
    W, R, B = g.rnn_weights("decoder.gru", "GRU", 1, emb, hidden)
    yd, _ = g.op("GRU", [y, W, R, B, "", henc], n_out=2, hidden_size=hidden, linear_before_reset=1)
    yd = g.op("Squeeze", [yd, g.c([1])])  # [T, B, H]
    yd = g.op("Transpose", [yd], perm=[1, 0, 2])
    logits = g.linear(yd, "decoder.out", hidden, vocab)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    m = _model(g, [helper.make_tensor_value_info("src", INT64, [1, src_len]),
                   helper.make_tensor_value_info("tgt", INT64, [1, tgt_len])],
               [helper.make_tensor_value_info("logits", FLOAT, [1, tgt_len, vocab])],
               ranges={"src": [0, vocab], "tgt": [0, vocab]}, doc="GRU encoder-decoder (teacher forcing)")
    return m, {}


# --------------------------------------------------------------------------- quantized (quantize_dynamic)

def _quantize(model, **kw):
    """onnxruntime.quantization.quantize_dynamic on the model (through temporary files)."""
    from onnxruntime.quantization import quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, **kw)
        q = onnx.load(dst)
    # keep the builder's metadata (input ranges, dims) for the feeds
    have = {p.key for p in q.metadata_props}
    for p in model.metadata_props:
        if p.key not in have:
            q.metadata_props.add(key=p.key, value=p.value)
    return q


def _lstm_tagger(vocab=5000, emb=100, hidden=128, tags=20, seq=32, seed=0):
    rng = np.random.default_rng(seed)
    g = _G("", rng)
    table = g.param("embedding.weight", g.normal((vocab, emb), 1.0))
    x = g.op("Transpose", [g.op("Gather", [table, "tokens"], axis=0)], perm=[1, 0, 2])  # [S, B, E]
    W, R, B = g.rnn_weights("lstm", "LSTM", 2, emb, hidden)
    y, _, _ = g.op("LSTM", [x, W, R, B], n_out=3, hidden_size=hidden, direction="bidirectional")
    y = g.op("Transpose", [y], perm=[2, 0, 1, 3])  # [B, S, 2, H]
    y = g.op("Reshape", [y, g.c([1, seq, 2 * hidden])])
    logits = g.linear(y, "hidden2tag", 2 * hidden, tags)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    return _model(g, [helper.make_tensor_value_info("tokens", INT64, [1, seq])],
                  [helper.make_tensor_value_info("logits", FLOAT, [1, seq, tags])],
                  ranges={"tokens": [0, vocab]}, doc="bidirectional LSTM tagger")


def lstm_tagger_int8():
    """Embedding + bidirectional LSTM (hidden 128) + Linear, dynamically quantized (QInt8 weights:
    DynamicQuantizeLSTM, DynamicQuantizeLinear + MatMulInteger)."""
    from onnxruntime.quantization import QuantType

    return _quantize(_lstm_tagger(), weight_type=QuantType.QInt8), {}


def bert_small_int8(seq=64):
    """A 2-layer BERT-small (hidden 256, 4 heads, FFN 1024, vocab 5000), dynamically quantized (QInt8)."""
    from onnxruntime.quantization import QuantType

    from ortlite import zoo

    m = zoo.bert_base(batch=1, seq=seq, layers=2, hidden=256, heads=4, intermediate=1024, vocab=5000)
    return _quantize(m, weight_type=QuantType.QInt8), {"batch": 1, "seq": seq}


def cnn_int8():
    """ortlite.zoo.demo (3 x Conv/Relu/MaxPool + Gemm on [1, 3, 64, 64]) dynamically quantized with
    Conv included (ConvInteger, QUInt8 weights as onnxruntime's CPU ConvInteger takes)."""
    from onnxruntime.quantization import QuantType

    from ortlite import zoo

    m = zoo.demo(batch=1)
    return _quantize(m, weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv", "MatMul", "Gemm"]), {"batch": 1}


# --------------------------------------------------------------------------- tiny If-MLP

def if_mlp_tiny(seed=0):
    """If(sum(x) > 0) between two 2-layer MLPs (16 -> 32 -> 8) on x [1, 16]: about 0.1 ms on onnxruntime,
    so the runtime's per-run and per-node overheads dominate."""
    rng = np.random.default_rng(seed)
    g = _G("", rng)
    branches = []
    for tag in ("pos", "neg"):
        b = _G(f"/{tag}", rng)
        h = b.op("Relu", [b.linear("x", f"{tag}.fc1", 16, 32)])
        y = b.linear(h, f"{tag}.fc2", 32, 8)
        g.inits += b.inits
        branches.append(helper.make_graph(b.nodes, f"{tag}_branch", [], [helper.make_tensor_value_info(y, FLOAT, [1, 8])]))
    cond = g.op("Greater", [g.op("ReduceSum", ["x"], keepdims=0), g.c(0.0, np.float32)])
    g.nodes.append(helper.make_node("If", [cond], ["y"], name="/If", then_branch=branches[0], else_branch=branches[1]))
    m = _model(g, [helper.make_tensor_value_info("x", FLOAT, [1, 16])],
               [helper.make_tensor_value_info("y", FLOAT, [1, 8])], doc="tiny If-MLP")
    return m, {}


BUILDERS = {
    "vad_lstm_if": vad_lstm_if,
    "gru_greedy_loop": gru_greedy_loop,
    "gru_seq2seq": gru_seq2seq,
    "lstm_tagger_int8": lstm_tagger_int8,
    "bert_small_int8": bert_small_int8,
    "cnn_int8": cnn_int8,
    "if_mlp_tiny": if_mlp_tiny,
}
