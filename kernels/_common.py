"""Small helpers shared by kernel modules."""
from __future__ import annotations

import numpy as np


def norm_axis(axis: int, rank: int, name: str = "axis") -> int:
    """Map a possibly negative ONNX axis into [0, rank); ``name`` (the attribute or input holding it)
    goes into the error message."""
    if not -rank <= axis < max(rank, 1):
        from ortlite.errors import InvalidArgument

        raise InvalidArgument(f"{name} {axis} out of range for rank {rank} (expected {-rank} <= {name} < {rank})")
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


# The bound on a tensor whose size comes from an input's *values* (Expand's shape, Tile's repeats, Resize's
# scales / sizes, Pad's pads, ConstantOfShape, Range, OneHot's depth): more elements than this, or more
# bytes than MAX_OUTPUT_BYTES, is refused before anything is allocated. 2**31 elements is beyond any real
# model's single tensor on a CPU and is onnxruntime's own int32 limit in most kernels; a value that asks
# for more is a corrupt or hostile model, and allocating it would swap or kill the process.
MAX_OUTPUT_ELEMENTS = 1 << 31
MAX_OUTPUT_BYTES = 16 << 30


def bad(msg):
    """InvalidArgument for a run-time check (the plan adds the node's name and its inputs' shapes)."""
    from ortlite.errors import InvalidArgument

    return InvalidArgument(msg)


def check_output_size(what, shape, itemsize=4):
    """Refuse (InvalidArgument) an output ``shape`` whose element count or bytes exceed the bounds above,
    or that holds a negative dim; ``what`` names the op and the input the shape came from. Exact in
    Python ints (no int64 overflow). Returns the shape as a tuple of ints."""
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise bad(f"{what}: output shape {list(shape)} has a negative dim")
    n = 1
    for d in shape:
        n *= d
    if n > MAX_OUTPUT_ELEMENTS or n * itemsize > MAX_OUTPUT_BYTES:
        raise bad(f"{what}: an output of shape {list(shape)} ({n} elements, {n * itemsize / 2**30:.1f} GiB) is "
                  f"refused: over the limit of {MAX_OUTPUT_ELEMENTS} elements / {MAX_OUTPUT_BYTES >> 30} GiB "
                  f"(kernels/_common.py: MAX_OUTPUT_ELEMENTS)")
    return shape


# --- the prepare step of function kernels (a ``specialize`` hook that binds nothing) ---------------------

def const_ints(ctx, i):
    """Input ``i`` as a list of ints when it is a constant (initializer / Constant), else None."""
    v = ctx.const(i) if ctx is not None and hasattr(ctx, "const") else None
    return None if v is None else to_ints(v)


def static_shape(ctx, i):
    """Input ``i``'s shape from shape inference when every dim is a known int, else None."""
    t = ctx.input_types[i] if ctx is not None and i < len(ctx.input_types) else None
    if t is None or t.shape is None or not all(isinstance(d, int) and d >= 0 for d in t.shape):
        return None
    return tuple(t.shape)


def prepare_check(ctx, check, *args):
    """Run a run-time check ``check(*args)`` at the prepare step, where constants and static shapes
    already tell its arguments: its InvalidArgument becomes InvalidGraph naming the node (the model is
    refused at session creation, as onnxruntime's shape inference refuses it)."""
    from ortlite.errors import InvalidArgument, InvalidGraph

    try:
        check(*args)
    except InvalidArgument as e:
        raise InvalidGraph(f"{where(ctx)}: {e}") from e


def check_axis_attr(ctx, axis, i=0, *, extra=0, name="axis"):
    """An axis attribute against input ``i``'s rank (+ ``extra``: Concat-like ops allow rank, OneHot
    rank + 1) where shape inference knows the rank."""
    rank = ctx.input_rank(i) if ctx is not None else None
    if rank is not None and axis is not None:
        prepare_check(ctx, norm_axis, int(axis), rank + extra, name)
