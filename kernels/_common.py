"""Small helpers shared by kernel modules."""
from __future__ import annotations

import numpy as np


def norm_axis(axis: int, rank: int) -> int:
    """Map a possibly negative ONNX axis into [0, rank)."""
    if not -rank <= axis < max(rank, 1):
        from ortlite.errors import InvalidArgument

        raise InvalidArgument(f"axis {axis} out of range for rank {rank} (expected {-rank} <= axis < {rank})")
    return axis + rank if axis < 0 else axis


def norm_axes(axes, rank: int) -> tuple:
    return tuple(sorted(norm_axis(int(a), rank) for a in axes))


def to_ints(x) -> list:
    """A host tensor (shape input) as a Python list of ints."""
    return [int(v) for v in np.asarray(x).reshape(-1)]



def where(ctx) -> str:
    """``Op node 'name'`` for error messages (ctx: a KernelContext, or None)."""
    node = getattr(ctx, "node", None)  # a KernelContext, or anything holding the node
    return f"{node.op_type} node '{node.name}'" if node is not None else "node"


def check_ints(ctx, name, values, *, length=None, min=None, allow_none=True):  # noqa: A002 - ONNX's word
    """Validate an INTS attribute at the kernel's prepare step: ``length`` items (an int or a tuple of
    accepted lengths), each >= ``min``. Returns the values as a list of ints (None stays None when
    ``allow_none``). Raises InvalidGraph naming the node, the attribute and what was expected, so a
    bad attribute fails at session creation instead of as an IndexError or a huge allocation later."""
    from ortlite.errors import InvalidGraph

    if values is None:
        if allow_none:
            return None
        raise InvalidGraph(f"{where(ctx)}: attribute '{name}' is required")
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError) as e:
        raise InvalidGraph(f"{where(ctx)}: attribute '{name}' must be a list of ints, got {values!r}") from e
    lengths = (length,) if isinstance(length, int) else length
    if lengths is not None and len(out) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise InvalidGraph(f"{where(ctx)}: attribute '{name}'={out} has {len(out)} values, expected {want}")
    if min is not None and any(v < min for v in out):
        raise InvalidGraph(f"{where(ctx)}: attribute '{name}'={out} must hold values >= {min}")
    return out


# A scratch buffer (im2col columns, padded copies) may take this many times the output's bytes before
# it is refused: beyond both limits the shapes cannot be what the model meant (a window attribute gone
# wrong) and allocating would swap or kill the process.
SCRATCH_FACTOR = 16
SCRATCH_BYTES = 1 << 30


def check_scratch(what, nbytes, out_bytes):
    """Raise Fail when a scratch buffer of ``nbytes`` exceeds SCRATCH_FACTOR x ``out_bytes`` and
    SCRATCH_BYTES; called where the buffer is sized (once per input shape)."""
    if nbytes > SCRATCH_BYTES and nbytes > SCRATCH_FACTOR * max(out_bytes, 1):
        from ortlite.errors import Fail

        raise Fail(f"{what}: a scratch buffer of {nbytes / 2**30:.1f} GiB for an output of "
                   f"{out_bytes / 2**20:.1f} MiB is refused (limit {SCRATCH_FACTOR}x the output and "
                   f"{SCRATCH_BYTES >> 30} GiB): check the input shape and the window attributes")


def check_window(ctx, nd, kernel_shape, strides, dilations, pads, *, pool=False, output_padding=None):
    """Validate a windowed op's attributes (Conv, ConvTranspose, the pools) for ``nd`` spatial axes
    (None where the rank is not known yet: only the values are checked). onnxruntime refuses the same
    models at session creation (shape inference): lengths nd (pads 2 nd), kernel / strides / dilations
    >= 1, pads >= 0, and for pools each pad smaller than the window. Raises InvalidGraph."""
    from ortlite.errors import InvalidGraph

    n1, n2 = (None, None) if nd is None else (nd, 2 * nd)
    kernel = check_ints(ctx, "kernel_shape", kernel_shape, length=n1, min=1)
    check_ints(ctx, "strides", strides, length=n1, min=1)
    check_ints(ctx, "dilations", dilations, length=n1, min=1)
    pads = check_ints(ctx, "pads", pads, length=n2, min=0)
    check_ints(ctx, "output_padding", output_padding, length=None if nd is None else (nd, 2 * nd), min=0)
    if pool and kernel and pads and len(pads) == 2 * len(kernel):
        k2 = kernel + kernel
        if any(p >= k for p, k in zip(pads, k2)):
            raise InvalidGraph(f"{where(ctx)}: attribute 'pads'={pads} must be smaller than kernel_shape={kernel}")
