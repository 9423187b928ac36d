"""Focused tests for kernels/linear_attention.py and kernels/image.py.

LinearAttention runs chunk-parallel; the node suite only has T <= 4 (one chunk),
so these check it against a plain token-by-token loop written here, on random
inputs long enough to span several chunks (a partial last chunk included), for
every update rule, per-head and per-key decay, scalar beta, GQA/MQA, past
state, explicit scale, float16 and bfloat16.

ImageDecoder is checked on images made with Pillow in memory, in every format
the op lists, against Pillow's own decode; plus modes the node suite lacks
(RGBA, palette, greyscale asked for as RGB), corrupt bytes, and a missing Pillow.
"""
from __future__ import annotations

import io
import sys

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

import ortlite
from ortlite.types import onnx_elem_type

RNG = np.random.default_rng(27)


def _session(op, inputs, n_out, opset, out_types=None, **attrs):
    """One-node model; ``inputs`` maps name -> array or None (an omitted optional input)."""
    names = [n if a is not None else "" for n, a in inputs.items()]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    vi = [helper.make_tensor_value_info(n, onnx_elem_type(a.dtype), list(a.shape))
          for n, a in inputs.items() if a is not None]
    ovi = [helper.make_tensor_value_info(o, (out_types or {}).get(o, TensorProto.UNDEFINED), None) for o in outs]
    m = helper.make_model(helper.make_graph([node], "g", vi, ovi), opset_imports=[helper.make_opsetid("", opset)])
    sess = ortlite.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess, {n: a for n, a in inputs.items() if a is not None}


# --------------------------------------------------------------------------- LinearAttention

def slow_linear_attention(q, k, v, past, decay, beta, hq, hkv, rule, scale=0.0):
    """The recurrence of the spec, one batch, head and token at a time, in float64."""
    b, t, _ = q.shape
    dk = q.shape[-1] // hq
    dv = v.shape[-1] // hkv
    grp = hq // hkv
    scale = scale or 1.0 / np.sqrt(dk)
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    out = np.zeros((b, t, hq * dv))
    state = np.zeros((b, hkv, dk, dv)) if past is None else past.astype(np.float64).copy()
    for bi in range(b):
        for h in range(hkv):
            s = state[bi, h]
            for ti in range(t):
                kt = k[bi, ti, h * dk:(h + 1) * dk]
                vt = v[bi, ti, h * dv:(h + 1) * dv]
                if rule in ("gated", "gated_delta"):
                    d = decay[bi, ti].astype(np.float64)
                    g = d[h] if d.shape[0] == hkv else d[h * dk:(h + 1) * dk]
                    s = np.exp(g).reshape(-1, 1) * s
                if rule in ("delta", "gated_delta"):
                    bb = beta[bi, ti].astype(np.float64)
                    vt = bb[h if bb.shape[0] > 1 else 0] * (vt - s.T @ kt)
                s = s + np.outer(kt, vt)
                for j in range(grp):
                    qh = h * grp + j
                    out[bi, ti, qh * dv:(qh + 1) * dv] = scale * (q[bi, ti, qh * dk:(qh + 1) * dk] @ s)
            state[bi, h] = s
    return out, state


def _la_inputs(b, t, hq, hkv, dk, dv, rule, per_key=True, beta_scalar=False, past=False, dtype=np.float32):
    q = RNG.standard_normal((b, t, hq * dk))
    k = RNG.standard_normal((b, t, hkv, dk))
    if rule in ("delta", "gated_delta"):  # the delta rules expect L2-normalised keys
        k /= np.linalg.norm(k, axis=-1, keepdims=True)
    k = k.reshape(b, t, hkv * dk)
    v = RNG.standard_normal((b, t, hkv * dv))
    decay = beta = state = None
    if rule in ("gated", "gated_delta"):
        decay = -np.log1p(np.exp(RNG.standard_normal((b, t, hkv * dk if per_key else hkv)))) * 0.3
    if rule in ("delta", "gated_delta"):
        beta = 1 / (1 + np.exp(-RNG.standard_normal((b, t, 1 if beta_scalar else hkv))))
    if past:
        state = RNG.standard_normal((b, hkv, dk, dv)) * 0.5
    cast = lambda x: None if x is None else x.astype(dtype)  # noqa: E731
    return {"query": cast(q), "key": cast(k), "value": cast(v), "past_state": cast(state),
            "decay": cast(decay), "beta": cast(beta)}


def _run_la(feeds, hq, hkv, rule, **attrs):
    # drop trailing omitted inputs, keep omitted middle ones as ''
    names = list(feeds)
    while feeds[names[-1]] is None:
        names.pop()
    sess, run_feeds = _session("LinearAttention", {n: feeds[n] for n in names}, 2, 27,
                               q_num_heads=hq, kv_num_heads=hkv, update_rule=rule, **attrs)
    return sess.run(None, run_feeds)


@pytest.mark.parametrize("rule,per_key,beta_scalar,hq,hkv,past,chunk", [
    ("linear", True, False, 4, 4, False, 8),
    ("linear", True, False, 4, 2, True, 64),
    ("gated", True, False, 2, 2, True, 8),
    ("gated", False, False, 6, 3, False, 5),
    ("delta", True, False, 2, 2, False, 8),
    ("delta", True, True, 4, 1, True, 7),
    ("gated_delta", True, False, 4, 2, True, 8),
    ("gated_delta", False, True, 3, 1, False, 6),
    ("gated_delta", False, False, 2, 2, True, 64),
])
def test_linear_attention_matches_loop(rule, per_key, beta_scalar, hq, hkv, past, chunk):
    b, t, dk, dv = 2, 21, 8, 6  # 21 tokens: several chunks and a partial last one
    feeds = _la_inputs(b, t, hq, hkv, dk, dv, rule, per_key, beta_scalar, past)
    out, state = _run_la(feeds, hq, hkv, rule, chunk_size=chunk)
    ref_out, ref_state = slow_linear_attention(*feeds.values(), hq, hkv, rule)
    assert out.dtype == np.float32 and state.dtype == np.float32
    assert out.shape == (b, t, hq * dv) and state.shape == (b, hkv, dk, dv)
    np.testing.assert_allclose(out, ref_out, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(state, ref_state, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("rule", ["gated", "gated_delta"])
def test_linear_attention_strong_per_key_decay(rule):
    """Log-decays summing past float32's exp range inside a chunk (the kernel splits such chunks)."""
    hq = hkv = 2
    feeds = _la_inputs(1, 16, hq, hkv, 4, 4, rule, past=True)
    feeds["decay"] = (RNG.uniform(-30, 0, feeds["decay"].shape)).astype(np.float32)
    feeds["decay"][0, 5] = -150.0  # one step that forgets everything
    out, state = _run_la(feeds, hq, hkv, rule, chunk_size=16)
    assert np.isfinite(out).all() and np.isfinite(state).all()
    ref_out, ref_state = slow_linear_attention(*feeds.values(), hq, hkv, rule)
    np.testing.assert_allclose(out, ref_out, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(state, ref_state, rtol=2e-4, atol=2e-5)


def test_linear_attention_prefill_then_decode_equals_whole():
    """Splitting a sequence across calls through present_state -> past_state changes nothing."""
    hq, hkv = 4, 2
    feeds = _la_inputs(1, 12, hq, hkv, 8, 8, "gated_delta", per_key=False)
    whole, whole_state = _run_la(feeds, hq, hkv, "gated_delta", chunk_size=4)
    seq = ("query", "key", "value", "decay", "beta")
    part1 = {n: (feeds[n][:, :9] if n in seq else feeds[n]) for n in feeds}
    out1, st = _run_la(part1, hq, hkv, "gated_delta", chunk_size=4)
    outs = [out1]
    for i in range(9, 12):  # decode one token at a time
        step = {n: (feeds[n][:, i:i + 1] if n in seq else feeds[n]) for n in feeds}
        step["past_state"] = st
        o, st = _run_la(step, hq, hkv, "gated_delta")
        outs.append(o)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), whole, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(st, whole_state, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_linear_attention_low_precision(dtype):
    hq, hkv = 4, 2
    feeds = _la_inputs(1, 10, hq, hkv, 8, 8, "gated_delta", past=True, dtype=dtype)
    out, state = _run_la(feeds, hq, hkv, "gated_delta", scale=0.5, chunk_size=4)
    assert out.dtype == dtype and state.dtype == dtype
    ref_out, ref_state = slow_linear_attention(*feeds.values(), hq, hkv, "gated_delta", scale=0.5)
    tol = 1e-2 if dtype == np.float16 else 6e-2
    np.testing.assert_allclose(out.astype(np.float32), ref_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(state.astype(np.float32), ref_state, rtol=tol, atol=tol)


def test_linear_attention_bad_inputs():
    feeds = _la_inputs(1, 3, 2, 2, 4, 4, "gated")
    feeds["decay"] = None  # gated without decay
    with pytest.raises(Exception, match="decay"):
        _run_la(feeds, 2, 2, "gated")


# --------------------------------------------------------------------------- ImageDecoder

PIL_Image = pytest.importorskip("PIL.Image")
from PIL import features as pil_features  # noqa: E402

FORMATS = ["BMP", "JPEG", "JPEG2000", "PNG", "PPM", "TIFF", "WEBP"]


def _encode(img, fmt):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _test_image(mode="RGB"):
    # smooth gradients plus noise: exercises chroma subsampling in the lossy codecs
    y, x = np.mgrid[0:37, 0:53]
    rgb = np.stack([x * 4, y * 6, (x + y) * 3], axis=-1) + RNG.integers(0, 40, (37, 53, 3))
    return PIL_Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").convert(mode)


def _decode(encoded, pixel_format):
    sess, feeds = _session("ImageDecoder", {"x": encoded}, 1, 20, pixel_format=pixel_format)
    return sess.run(None, feeds)[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_decoder_formats(fmt):
    if fmt == "JPEG2000" and not pil_features.check("jpg_2000"):
        pytest.skip("this Pillow build has no OpenJPEG")
    if fmt == "WEBP" and not pil_features.check("webp"):
        pytest.skip("this Pillow build has no libwebp")
    enc = _encode(_test_image(), fmt)
    expect = np.asarray(PIL_Image.open(io.BytesIO(enc.tobytes())).convert("RGB"))
    rgb = _decode(enc, "RGB")
    assert rgb.dtype == np.uint8 and rgb.shape == (37, 53, 3)
    np.testing.assert_array_equal(rgb, expect)
    np.testing.assert_array_equal(_decode(enc, "BGR"), expect[:, :, ::-1])
    gray = _decode(enc, "Grayscale")
    assert gray.shape == (37, 53, 1)
    np.testing.assert_array_equal(gray[:, :, 0], np.asarray(PIL_Image.open(io.BytesIO(enc.tobytes())).convert("L")))


@pytest.mark.parametrize("mode", ["RGBA", "P", "L"])
def test_image_decoder_other_modes_give_three_channels(mode):
    img = _test_image(mode)
    out = _decode(_encode(img, "PNG"), "RGB")
    assert out.shape == (37, 53, 3) and out.flags.writeable
    np.testing.assert_array_equal(out, np.asarray(img.convert("RGB")))


def test_image_decoder_corrupt_bytes_give_empty():
    out = _decode(np.frombuffer(b"definitely not an image", dtype=np.uint8), "BGR")
    assert out.shape == (0, 0, 3) and out.dtype == np.uint8


def test_image_decoder_without_pillow(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # makes `import PIL.Image` raise ImportError
    with pytest.raises(ortlite.errors.NotImplemented, match="Pillow"):
        _session("ImageDecoder", {"x": np.zeros(4, np.uint8)}, 1, 20)
