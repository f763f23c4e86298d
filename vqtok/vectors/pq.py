"""Product quantization.

Jégou, Douze & Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011
(https://doi.org/10.1109/TPAMI.2010.57). The vector is cut into ``M`` contiguous sub-vectors of
``D / M`` dims, each quantized by its own k-means codebook.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..kernels import nearest
from ..kernels.kmeans import kmeans
from .base import VectorCodec

__all__ = ["PQ"]


class PQ(VectorCodec):
    """Product quantizer: ``M`` sub-spaces of ``D / M`` dims, ``2 ** codebook_bits`` centroids each."""

    def __init__(
        self,
        dim: int,
        num_codebooks: int,
        codebook_bits: int = 8,
        *,
        kmeans_iters: int = 25,
        seed: int = 0,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        """Args:
        dim: Vector dimension ``D``, divisible by ``num_codebooks``.
        num_codebooks: Number of sub-spaces ``M``.
        codebook_bits: Bits per index.
        kmeans_iters: Lloyd iterations per sub-space.
        seed: Seed for k-means++.
        device: Fitting/encoding device (CUDA when available if ``None``).
        progress: Show progress bars.
        """
        super().__init__(dim, num_codebooks, codebook_bits, seed=seed, device=device, progress=progress)
        if dim % num_codebooks:
            raise ValueError(f"PQ needs dim divisible by num_codebooks, got {dim} and {num_codebooks}")
        self.kmeans_iters = kmeans_iters
        self.dsub = dim // num_codebooks
        self.codebooks = torch.zeros(num_codebooks, self.codebook_size, self.dsub, device=self.device)

    def _split(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], self.num_codebooks, self.dsub)  # (N, M, dsub)

    def _fit(self, x: Tensor) -> None:
        self._fit_pq(x, init=None, iters=self.kmeans_iters)

    def _fit_pq(self, x: Tensor, init: Tensor | None, iters: int, progress: bool | None = None) -> None:
        xs = self._split(x)
        show = self.progress if progress is None else progress
        for m in tqdm(range(self.num_codebooks), desc=f"{type(self).__name__} k-means", disable=not show):
            self.codebooks[m] = kmeans(
                xs[:, m].contiguous(),
                self.codebook_size,
                iters=iters,
                seed=self.seed + m,
                init=None if init is None else init[m],
            )

    def _encode(self, x: Tensor) -> Tensor:
        xs = self._split(x)
        return torch.stack([nearest(xs[:, m].contiguous(), self.codebooks[m])[1] for m in range(self.num_codebooks)], 1)

    def _decode(self, indices: Tensor) -> Tensor:
        m = torch.arange(self.num_codebooks, device=indices.device)
        return self.codebooks[m, indices].reshape(indices.shape[0], self.dim)  # (N, M, dsub) -> (N, D)

    def _lut(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        qs = self._split(queries)
        # ||q_m - c||^2 = ||q_m||^2 - 2 q_m.c + ||c||^2, for all sub-spaces at once: (Q, M, K)
        dots = torch.einsum("qmd,mkd->qmk", qs, self.codebooks)
        lut = (qs * qs).sum(-1, keepdim=True) - 2 * dots + (self.codebooks**2).sum(-1)[None]
        return lut, torch.zeros(queries.shape[0], device=queries.device)

    def _ip_lut(self, queries: Tensor) -> Tensor:
        return torch.einsum("qmd,mkd->qmk", self._split(queries), self.codebooks)

    def _tensors(self) -> dict[str, Tensor]:
        return {"codebooks": self.codebooks}

    def _load_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.codebooks = tensors["codebooks"].float()

    def _config(self) -> dict[str, Any]:
        return {"kmeans_iters": self.kmeans_iters}
