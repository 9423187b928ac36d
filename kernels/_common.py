"""Small helpers shared by kernel modules."""
from __future__ import annotations

import numpy as np


def norm_axis(axis: int, rank: int) -> int:
    """Map a possibly negative ONNX axis into [0, rank)."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def norm_axes(axes, rank: int) -> tuple:
    return tuple(sorted(norm_axis(int(a), rank) for a in axes))


def to_ints(x) -> list:
    """A host tensor (shape input) as a Python list of ints."""
    return [int(v) for v in np.asarray(x).reshape(-1)]

