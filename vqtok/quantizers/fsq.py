"""Finite Scalar Quantization.

Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024, arXiv:2309.15505.
Each channel is bounded and rounded to one of ``levels[i]`` values; the implicit codebook is the
product grid, and indices are mixed-radix numbers, so no codebook is ever built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["FSQ"]


@register_quantizer("fsq", example={"levels": (8, 5, 5, 5)})
class FSQ(Quantizer):
    """Finite scalar quantizer with per-channel level counts.

    Args:
        levels: Number of values per channel, e.g. ``(8, 5, 5, 5)`` for a 1,000-code grid. The
            latent width D equals ``len(levels)``.
    """

    def __init__(self, levels: Sequence[int] = (8, 5, 5, 5)) -> None:
        super().__init__()
        levels = tuple(int(v) for v in levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must all be >= 2, got {levels}")
        self.levels = levels
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.index_shape = ()
        basis = torch.cumprod(torch.tensor((1, *levels[:-1]), dtype=torch.long), 0)
        # Derived from `levels`, so not saved in the state dict.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def _bound(self, latents: Tensor) -> Tensor:
        # Even level counts have no zero level: shift by half a step so rounding is symmetric.
        half = (self._levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(latents + shift) * half - offset

    def _grid(self, latents: Tensor) -> Tensor:
        """Integer grid coordinates in ``[0, levels)``, ``(N, D)`` float."""
        return torch.round(self._bound(latents)) + (self._levels // 2)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        bounded = self._bound(latents)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        quantized = rounded / (self._levels // 2)
        indices = ((torch.round(bounded) + self._levels // 2).long() * self._basis).sum(-1)
        return QuantizerOutput(quantized=quantized, indices=indices, loss=latents.new_zeros(()))

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        return (self._grid(latents).long() * self._basis).sum(-1)

    def _decode(self, indices: Tensor) -> Tensor:
        digits = (indices[:, None] // self._basis) % self._levels.long()
        return (digits.float() - self._levels // 2) / (self._levels // 2)
