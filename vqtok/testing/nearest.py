"""The fp64 reference that the nearest-code kernels (:mod:`vqtok.kernels.nearest`) are tested against."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["reference_distances"]


def reference_distances(x: Tensor, c: Tensor, metric: str) -> Tensor:
    """``(N, K)`` fp64 distances between ``(N, D)`` vectors and ``(K, D)`` codes (both upcast).

    Args:
        x: ``(N, D)`` vectors.
        c: ``(K, D)`` codes.
        metric: ``"l2"`` (squared Euclidean), ``"ip"`` (negative inner product) or ``"cosine"`` (1 - cosine).
    """
    x, c = x.double(), c.double()
    if metric == "cosine":
        return 1.0 - F.normalize(x, dim=-1) @ F.normalize(c, dim=-1).T
    if metric == "ip":
        return -(x @ c.T)
    return (x * x).sum(-1, keepdim=True) - 2 * x @ c.T + (c * c).sum(-1)
