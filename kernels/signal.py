"""Signal processing: DFT, STFT, window functions, MelWeightMatrix.

Complex values travel as a trailing dimension of size 2 (real, imaginary); a
trailing dimension of size 1 holds a real signal. Spec:
https://onnx.ai/onnx/operators/onnx__DFT.html
"""
from __future__ import annotations

import math

import numpy as np

from ortlite.registry import kernel
from ortlite.types import np_dtype


def _compute_dtype(dt):
    return np.float64 if np.dtype(dt) == np.float64 else np.float32


def _to_complex(xp, x):
    """[..., 1] real or [..., 2] complex-as-pairs -> (array without the last dim, is_complex)."""
    ct = _compute_dtype(x.dtype)
    if x.shape[-1] == 1:
        return x[..., 0].astype(ct, copy=False), False
    if x.shape[-1] == 2:
        xc = x.astype(ct, copy=False)
        return xc[..., 0] + 1j * xc[..., 1], True
    raise ValueError(f"DFT/STFT: the last input dimension must be 1 (real) or 2 (complex), got {x.shape[-1]}")


def _from_complex(xp, c, dtype):
    """Complex array -> [..., 2] pairs of ``dtype``."""
    out = xp.empty(c.shape + (2,), dtype=dtype)
    out[..., 0] = c.real
    out[..., 1] = c.imag
    return out


def _dft(xp, x, dft_length, axis, inverse, onesided):
    rank = x.ndim
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        raise ValueError(f"DFT: axis {axis} out of range for an input of rank {rank} "
                         "(the last dimension holds the complex pair)")
    axis = axis % rank
    sig, is_complex = _to_complex(xp, x)
    n = None if dft_length is None else int(np.asarray(dft_length).reshape(-1)[0])
    if inverse:
        if onesided:
            # One-sided spectrum in, full real signal out (as onnxruntime and the reference do).
            if n is None:
                n = 2 * (sig.shape[axis] - 1)
            res = xp.fft.irfft(sig, n=n, axis=axis)
            return res[..., None].astype(x.dtype, copy=False)
        res = xp.fft.ifft(sig, n=n, axis=axis)
    elif onesided and not is_complex:
        res = xp.fft.rfft(sig, n=n, axis=axis)
    else:
        res = xp.fft.fft(sig, n=n, axis=axis)
        if onesided:
            keep = res.shape[axis] // 2 + 1
            res = res[(slice(None),) * axis + (slice(0, keep),)]
    return _from_complex(xp, res, x.dtype)


# DFT v17: axis is an attribute (default 1).
@kernel("DFT", since=17, host_inputs=(1,))
def dft_17(xp, input, dft_length=None, *, axis=1, inverse=0, onesided=0):
    return _dft(xp, input, dft_length, axis, inverse, onesided)


# DFT v20: axis moved to an optional input (default -2, i.e. the last signal dimension).
@kernel("DFT", since=20, host_inputs=(1, 2))
def dft_20(xp, input, dft_length=None, axis=None, *, inverse=0, onesided=0):
    ax = -2 if axis is None else int(np.asarray(axis).reshape(-1)[0])
    return _dft(xp, input, dft_length, ax, inverse, onesided)


@kernel("STFT", since=17, host_inputs=(1, 3))
def stft(xp, signal, frame_step, window=None, frame_length=None, *, onesided=1):
    step = int(np.asarray(frame_step).reshape(-1)[0])
    if frame_length is not None:
        flen = int(np.asarray(frame_length).reshape(-1)[0])
    elif window is not None:
        flen = window.shape[0]
    else:
        flen = signal.shape[-2]
    sig, is_complex = _to_complex(xp, signal)  # [batch, length]
    n_frames = 1 + (sig.shape[-1] - flen) // step
    # Gather all frames at once: [batch, frames, frame_length].
    idx = xp.arange(n_frames)[:, None] * step + xp.arange(flen)[None, :]
    frames = sig[:, idx]
    if window is not None:
        frames = frames * window.astype(frames.real.dtype, copy=False)
    if onesided and not is_complex:
        res = xp.fft.rfft(frames, n=flen, axis=-1)
    else:
        res = xp.fft.fft(frames, n=flen, axis=-1)
    return _from_complex(xp, res, signal.dtype)


def _window_n(xp, size, periodic):
    """(n as float64 [0..size), denominator N): N = size when periodic, size - 1 when symmetric."""
    size = int(np.asarray(size).reshape(-1)[0])
    denom = size if periodic else size - 1
    return xp.arange(size, dtype=np.float64), max(denom, 1)


@kernel("HannWindow", since=17, host_inputs=(0,))
def hann_window(xp, size, *, output_datatype=1, periodic=1):
    n, N = _window_n(xp, size, periodic)
    return (xp.sin(n * (math.pi / N)) ** 2).astype(np_dtype(output_datatype))


@kernel("HammingWindow", since=17, host_inputs=(0,))
def hamming_window(xp, size, *, output_datatype=1, periodic=1):
    n, N = _window_n(xp, size, periodic)
    alpha = 25.0 / 46.0  # the spec's alpha; beta = 1 - alpha
    return (alpha - (1 - alpha) * xp.cos(n * (2 * math.pi / N))).astype(np_dtype(output_datatype))


@kernel("BlackmanWindow", since=17, host_inputs=(0,))
def blackman_window(xp, size, *, output_datatype=1, periodic=1):
    n, N = _window_n(xp, size, periodic)
    w = 0.42 - 0.5 * xp.cos(n * (2 * math.pi / N)) + 0.08 * xp.cos(n * (4 * math.pi / N))
    return w.astype(np_dtype(output_datatype))


@kernel("MelWeightMatrix", since=17, host_inputs=(0, 1, 2, 3, 4))
def mel_weight_matrix(xp, num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *,
                      output_datatype=1):
    """Triangular filters on the mel scale, on the integer spectrogram bins onnxruntime uses."""
    def scalar(v, kind):
        return kind(np.asarray(v).reshape(-1)[0])

    mels, n_fft = scalar(num_mel_bins, int), scalar(dft_length, int)
    rate = scalar(sample_rate, int)
    lo_hz, hi_hz = scalar(lower_edge_hertz, float), scalar(upper_edge_hertz, float)
    n_bins = n_fft // 2 + 1
    # mel(f) = 2595 * log10(1 + f / 700); mels + 2 equally spaced points (step over mels + 2, as ORT).
    lo_mel = 2595.0 * np.log10(1.0 + lo_hz / 700.0)
    hi_mel = 2595.0 * np.log10(1.0 + hi_hz / 700.0)
    step = (hi_mel - lo_mel) / (mels + 2)
    pts = np.arange(mels + 2) * step + lo_mel
    hz = 700.0 * (10.0 ** (pts / 2595.0) - 1.0)
    edges = (((n_fft + 1) * hz) // rate).astype(np.int64)
    lo, ce, hi = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    j = np.arange(n_bins)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where(ce > lo, (j - lo) / np.maximum(ce - lo, 1), (j == ce).astype(np.float64))
        falling = (hi - j) / np.maximum(hi - ce, 1)
    out = np.where((j >= ce) & (j < hi), falling, np.where((j >= lo) & (j <= ce), rising, 0.0))
    return xp.asarray(out.astype(np_dtype(output_datatype)))
