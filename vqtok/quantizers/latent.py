"""Latent quantization: a learned scalar codebook per channel.

Hsu et al., "Disentanglement via Latent Quantization", NeurIPS 2023, arXiv:2305.18378. Channel ``j`` is
rounded to the nearest of its own ``levels[j]`` learnable values, so the implicit codebook is the
product grid of the per-channel value sets (as in FSQ, but the grid is learned and nothing bounds the
latents). The values learn through the quantization loss ``||q - sg(z)||^2`` and the latents are pulled
to them by the commitment loss ``||z - sg(q)||^2`` (section 3 of the paper, weights 0.1 each as in
vector-quantize-pytorch's ``LatentQuantize``); the latents get the straight-through gradient.

Indices are mixed-radix numbers with the first channel least significant (like FSQ): digit ``j`` is the
rank of the chosen value among channel ``j``'s values, so an index names a grid cell even after the
values move. Values start evenly spaced in ``[-0.5, 0.5]``, as in the peer.

Written for vqtok from the paper; vector-quantize-pytorch (MIT) was read for the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics.codebook import code_perplexity
from ._grid import check_grid, grid_basis, grid_projections
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["LatentQuantize"]


@register_quantizer("latent_quantize", example={"levels": (5, 5, 3), "dim": 6})
class LatentQuantize(Quantizer):
    """Per-channel learned scalar quantizer over the product grid of ``levels``.

    Args:
        levels: Number of values per channel, e.g. ``(5, 5, 5, 5)``.
        dim: Latent width D; learned projections ``D -> len(levels)`` and back are added when it
            differs from ``len(levels)``. ``None`` means ``len(levels)``.
        commitment_weight: Weight of ``||z - sg(q)||^2``.
        quantization_weight: Weight of ``||q - sg(z)||^2``, which moves the values.
        optimize_values: Learn the values (a parameter); ``False`` freezes the even grid.

    Raises:
        ValueError: If a level count is below 2 or ``dim`` is not positive.
    """

    def __init__(
        self,
        levels: Sequence[int] = (5, 5, 5, 5),
        dim: int | None = None,
        commitment_weight: float = 0.1,
        quantization_weight: float = 0.1,
        optimize_values: bool = True,
    ) -> None:
        super().__init__()
        levels, self.dim = check_grid(levels, dim)
        self.levels = levels
        self.codebook_size = math.prod(levels)
        self.index_shape = ()
        self.commitment_weight = float(commitment_weight)
        self.quantization_weight = float(quantization_weight)
        self.has_learned_codebook = bool(optimize_values)
        self.project_in, self.project_out = grid_projections(self.dim, len(levels))
        # One padded (d, max L) table; `_valid` marks the real slots (padding is never chosen, and stays
        # finite so that optimizers with weight decay leave it finite too).
        width = max(levels)
        values = torch.zeros(len(levels), width)
        for j, n in enumerate(levels):
            values[j, :n] = torch.linspace(-0.5, 0.5, n) if n % 2 else torch.arange(n) / n - 0.5
        self.register_buffer("_valid", torch.arange(width) < torch.tensor(levels)[:, None], persistent=False)
        if optimize_values:
            self.values = nn.Parameter(values)
        else:
            self.register_buffer("values", values)
        self.register_buffer("_basis", grid_basis(levels), persistent=False)
        self.register_buffer("_levels", torch.tensor(levels), persistent=False)

    def _digits(self, z: Tensor) -> Tensor:
        """``(N, d)`` -> per-channel rank of the nearest value ``(N, d)``; values are kept in rank order."""
        values = self._masked_values()
        nearest = (z.detach()[..., None] - values).abs().argmin(-1)  # (N, d); padding is +inf away
        rank = values.argsort(-1).argsort(-1)  # value slot -> rank; padding ranks last
        return rank.gather(1, nearest.T).T

    def _masked_values(self) -> Tensor:
        return torch.where(self._valid, self.values.detach(), math.inf)

    def _lookup(self, digits: Tensor) -> Tensor:
        """Per-channel ranks ``(N, d)`` -> values ``(N, d)`` (with the values' gradient)."""
        slots = self._masked_values().argsort(-1).gather(1, digits.T).T
        return self.values.gather(1, slots.T).T

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        z = self.project_in(latents)
        digits = self._digits(z)
        q = self._lookup(digits)
        quantization = F.mse_loss(q, z.detach())
        commitment = F.mse_loss(z, q.detach())
        # `z - z.detach()` is exactly zero: the value is exactly the code (eval forward == decode).
        quantized = self.project_out(q.detach() + (z - z.detach()))
        indices = (digits * self._basis).sum(-1)
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=self.commitment_weight * commitment + self.quantization_weight * quantization,
            losses={"commitment": commitment, "quantization": quantization},
            metrics={"perplexity": code_perplexity(indices, self.codebook_size)},
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        if options:
            raise ValueError(f"LatentQuantize.encode takes no options, got {sorted(options)}")
        return (self._digits(self.project_in(latents)) * self._basis).sum(-1)

    def _decode(self, indices: Tensor) -> Tensor:
        digits = (indices[:, None] // self._basis) % self._levels  # (N, d)
        return self.project_out(self._lookup(digits).detach())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, levels={self.levels}"
