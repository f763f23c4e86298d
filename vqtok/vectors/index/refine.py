"""Re-ranking payloads: exact float32 vectors or an 8-bit scalar quantizer (faiss's ``SQ8`` layout).

The SQ8 codec stores one byte per dimension: ``code = floor(255 * clamp((x - vmin) / vdiff, 0, 1))`` and
decodes to ``vmin + (code + 0.5) / 255 * vdiff``, with ``vmin`` / ``vdiff`` the per-dimension minimum and
range of the training set (faiss's ``ScalarQuantizer(QT_8bit, RS_minmax)``), so codes convert to faiss
byte for byte.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SQ8", "exact_scores"]


class SQ8:
    """Per-dimension 8-bit scalar quantizer."""

    def __init__(self, vmin: Tensor, vdiff: Tensor) -> None:
        """Args:
        vmin: ``(D,)`` per-dimension minimum.
        vdiff: ``(D,)`` per-dimension range.
        """
        self.vmin = vmin.float()
        self.vdiff = vdiff.float()

    @classmethod
    def fit(cls, x: Tensor) -> SQ8:
        """Min/max of ``x`` ``(N, D)`` per dimension."""
        vmin = x.min(0).values
        return cls(vmin, x.max(0).values - vmin)

    def encode(self, x: Tensor) -> Tensor:
        """``(N, D)`` float -> ``(N, D)`` uint8."""
        safe = torch.where(self.vdiff > 0, self.vdiff, torch.ones_like(self.vdiff))
        xi = ((x.float() - self.vmin) / safe).clamp(0, 1)
        xi = torch.where(self.vdiff > 0, xi, torch.zeros_like(xi))
        return torch.floor(255 * xi).clamp(0, 255).to(torch.uint8)

    def decode(self, codes: Tensor) -> Tensor:
        """``(N, D)`` uint8 -> ``(N, D)`` float32."""
        return self.vmin + (codes.float() + 0.5) / 255 * self.vdiff


def exact_scores(queries: Tensor, vectors: Tensor, metric: str) -> Tensor:
    """Per-pair score of ``queries`` ``(Q, D)`` and ``vectors`` ``(Q, C, D)``: squared L2, or inner product."""
    if metric == "l2":
        return (queries[:, None, :] - vectors).square().sum(-1)
    return torch.einsum("qd,qcd->qc", queries, vectors)
