"""Finite Scalar Quantization.

Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024, arXiv:2309.15505.
Each channel is bounded and rounded to one of ``levels[i]`` values; the implicit codebook is the
product grid, and indices are mixed-radix numbers, so no codebook is ever built.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..metrics.codebook import code_perplexity
from ._grid import check_grid, grid_basis, grid_projections
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["FSQ"]


@register_quantizer("fsq", example={"levels": (8, 5, 5, 5)})
class FSQ(Quantizer):
    """Finite scalar quantizer with per-channel level counts.

    A channel with L levels is bounded to ``(-L/2, L/2)`` by a shifted ``tanh``, rounded with a
    straight-through gradient (so the gradient to the latents is the bound's derivative), and
    rescaled to ``[-1, 1]``. Index ``i`` has digit ``(i // prod(levels[:j])) % levels[j]`` for channel
    j: the first channel is the least significant.

    The bound follows the paper and vector-quantize-pytorch: an even L gets levels
    ``-L/2 .. L/2 - 1`` and a shift that puts 0 on a level, so its two halves are not mirror images.
    For L = 2 this is degenerate (a latent must be below about -3.8 to reach the lower level), so
    ``levels`` containing 2 warn; use :class:`vqtok.quantizers.LFQ` for binary channels.

    Args:
        levels: Number of values per channel, e.g. ``(8, 5, 5, 5)`` for a 1,000-code grid.
        dim: Latent width D. When it differs from ``len(levels)``, learned linear projections map
            ``D -> len(levels)`` before quantization and back after it. ``None`` means
            ``D = len(levels)``, no projections.

    Raises:
        ValueError: If a level count is below 2 or ``dim`` is not positive.
    """

    def __init__(self, levels: Sequence[int] = (8, 5, 5, 5), dim: int | None = None) -> None:
        super().__init__()
        levels, self.dim = check_grid(levels, dim, "FSQ levels")
        if 2 in levels:
            warnings.warn(
                f"FSQ levels {levels} contain 2: the paper's bound sends almost every latent to one of the "
                "two levels; use LFQ for binary channels",
                stacklevel=2,
            )
        self.levels = levels
        self.codebook_size = math.prod(levels)
        self.index_shape = ()
        self.project_in, self.project_out = grid_projections(self.dim, len(levels))
        # Derived from `levels`, so not saved in the state dict.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.register_buffer("_basis", grid_basis(levels), persistent=False)

    def _bound(self, latents: Tensor) -> Tensor:
        """``(N, d)`` -> values in ``(-L/2, L/2)`` per channel that round to exactly L integers."""
        # Even level counts have no zero level: shift by half a step so rounding is symmetric.
        half = (self._levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(latents + shift) * half - offset

    def _rounded(self, latents: Tensor) -> Tensor:
        """Bounded, rounded grid values in ``[-(L // 2), (L - 1) // 2]``, ``(N, d)``; straight-through."""
        projected = self.project_in(latents)
        if self.dim != len(self.levels):
            # A learned projection can overflow fp32 on latents near its limit; NaN would become a
            # garbage int64 index.
            self.require_finite(projected, "the projected latents", latents)
        bounded = self._bound(projected)
        # `b - b.detach()` is exactly zero, so the value is exactly the rounded grid point (eval
        # forward == decode) while the gradient is the identity.
        return torch.round(bounded) + (bounded - bounded.detach())

    def _to_indices(self, rounded: Tensor) -> Tensor:
        return ((rounded.detach() + self._levels // 2).long() * self._basis).sum(-1)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        rounded = self._rounded(latents)
        indices = self._to_indices(rounded)
        quantized = self.project_out(rounded / (self._levels // 2))
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=latents.new_zeros(()),
            metrics={"perplexity": code_perplexity(indices, self.codebook_size)},
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        return self._to_indices(self._rounded(latents))

    def _decode(self, indices: Tensor) -> Tensor:
        digits = (indices[:, None] // self._basis) % self._levels.long()  # (N, d)
        return self.project_out((digits.float() - self._levels // 2) / (self._levels // 2))
