"""ImageDecoder (opset 20): encoded bytes -> (H, W, C) uint8, decoded with Pillow.

Pillow is an optional dependency (the ``image`` extra), imported when
a session prepares an ImageDecoder node. The decode follows onnx's reference
implementation, which also uses Pillow, so outputs match the node suite bit for
bit: the image is decoded in its own mode and converted to RGB (BGR reverses the
channels) or to Pillow's "L" luma for Grayscale. Converting to RGB also covers
what the reference leaves as-is (palette, RGBA, CMYK, grey images asked for as
RGB), so the output always has 3 or 1 channels. Per the spec, bytes that cannot
be decoded give an empty (0, 0, C) tensor rather than an error.
"""
from __future__ import annotations

import io

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.hints import install_hint
from ortlite.registry import kernel

_CHANNELS = {"RGB": 3, "BGR": 3, "Grayscale": 1}


@kernel("ImageDecoder", since=20, families=("cpu",))  # host-side codec
class ImageDecoder:
    def __init__(self, ctx, *, pixel_format="RGB"):
        if pixel_format not in _CHANNELS:
            raise OrtNotImplemented(f"ImageDecoder: pixel_format {pixel_format!r} is not supported "
                                    f"(supported: {', '.join(_CHANNELS)})")
        try:
            import PIL.Image
        except ImportError:
            raise OrtNotImplemented(f"ImageDecoder needs Pillow: {install_hint('image')}") from None
        self.image = PIL.Image
        self.pixel_format = pixel_format
        self.channels = _CHANNELS[pixel_format]

    def __call__(self, encoded):
        data = np.ascontiguousarray(encoded, dtype=np.uint8).tobytes()
        try:
            with self.image.open(io.BytesIO(data)) as img:
                img = img.convert("L" if self.pixel_format == "Grayscale" else "RGB")
        except (OSError, ValueError, SyntaxError, self.image.DecompressionBombError):
            # UnidentifiedImageError is an OSError; truncated/corrupt streams raise OSError too.
            return np.zeros((0, 0, self.channels), dtype=np.uint8)
        out = np.asarray(img, dtype=np.uint8)  # a read-only view of Pillow's buffer: copy once below
        if self.pixel_format == "Grayscale":
            return out[:, :, None].copy()
        if self.pixel_format == "BGR":
            return np.ascontiguousarray(out[:, :, ::-1])
        return out.copy()
