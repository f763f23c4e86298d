"""Graph nodes: int64 node ids, one per example (the input of ``nodepiece``); the graph itself lives in the model.

Files: ``.npy`` only. Value rule: integer arrays are node ids, kept as int64 unchanged (the tokenizer checks that
they name known nodes); floats, bool, complex and strings are errors naming the file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._arrays import real_array
from ._registry import register_modality
from .base import Modality

__all__ = ["GRAPH", "graph_from_array"]


def graph_from_array(arr: np.ndarray, source: str) -> Tensor:
    """Node ids as int64; the layout is left as it is.

    Raises:
        TypeError: On anything but an integer array.
    """
    arr = real_array(np.asarray(arr), source)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{source}: node ids must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{source}: node id {int(arr.max())} does not fit int64")
    return torch.from_numpy(np.array(arr, dtype=np.int64))


GRAPH = register_modality(Modality(name="graph", example_ndim=0, readers={}, from_array=graph_from_array))
