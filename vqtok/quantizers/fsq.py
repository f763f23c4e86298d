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

    ``bound="clamp"`` is the linear grid of residual stacks (:class:`~vqtok.quantizers.ResidualFSQ`):
    latents are clamped to ``[-1, 1]`` and rounded to L evenly spaced values from -1 to 1, both ends
    included, so the output approximates the latent itself rather than ``tanh`` of it and what a
    level leaves over is its rounding error (vector-quantize-pytorch's ``preserve_symmetry`` with
    ``bound_hard_clamp``). The gradient is the identity inside ``[-1, 1]`` and zero outside.

    Args:
        levels: Number of values per channel, e.g. ``(8, 5, 5, 5)`` for a 1,000-code grid.
        dim: Latent width D. When it differs from ``len(levels)``, learned linear projections map
            ``D -> len(levels)`` before quantization and back after it. ``None`` means
            ``D = len(levels)``, no projections.
        bound: ``"tanh"`` (the paper's bound) or ``"clamp"`` (linear, symmetric grid, see above).

    Raises:
        ValueError: If a level count is below 2, ``dim`` is not positive or ``bound`` is unknown.
    """

    def __init__(self, levels: Sequence[int] = (8, 5, 5, 5), dim: int | None = None, bound: str = "tanh") -> None:
        super().__init__()
        levels, self.dim = check_grid(levels, dim, "FSQ levels")
        if bound not in ("tanh", "clamp"):
            raise ValueError(f"FSQ bound must be 'tanh' or 'clamp', got {bound!r}")
        self.bound = bound
        if 2 in levels and bound == "tanh":
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
        # Digit k of a channel decodes to (k - center) / center: center L // 2 puts the tanh grid's zero on
        # a level; (L - 1) / 2 spreads the clamp grid's L values over [-1, 1].
        center = self._levels // 2 if bound == "tanh" else (self._levels - 1) / 2
        self.register_buffer("_center", center, persistent=False)

    def _bound(self, latents: Tensor) -> Tensor:
        """``(N, d)`` -> values in ``(-L/2, L/2)`` per channel that round to exactly L integers."""
        # Even level counts have no zero level: shift by half a step so rounding is symmetric.
        half = (self._levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(latents + shift) * half - offset

    def _digits(self, latents: Tensor) -> Tensor:
        """Grid digits in ``[0, L - 1]`` as floats, ``(N, d)``; straight-through."""
        projected = self.project_in(latents)
        if self.dim != len(self.levels):
            # A learned projection can overflow fp32 on latents near its limit; NaN would become a
            # garbage int64 index.
            self.require_finite(projected, "the projected latents", latents)
        if self.bound == "tanh":
            # Rounded before the shift by L // 2, so ties round as in the paper's centred grid.
            bounded = self._bound(projected)
            digits = torch.round(bounded) + self._center
        else:
            bounded = (projected.clamp(-1.0, 1.0) + 1.0) * self._center
            digits = torch.round(bounded)
        # `b - b.detach()` is exactly zero, so the value is exactly the rounded grid point (eval
        # forward == decode) while the gradient is the identity.
        return digits + (bounded - bounded.detach())

    def _to_indices(self, digits: Tensor) -> Tensor:
        return (digits.detach().long() * self._basis).sum(-1)

    def _values(self, digits: Tensor) -> Tensor:
        """Digits ``(N, d)`` -> grid values in ``[-1, 1]``, projected back to ``D``."""
        return self.project_out((digits - self._center) / self._center)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        digits = self._digits(latents)
        indices = self._to_indices(digits)
        return QuantizerOutput(
            quantized=self._values(digits),
            indices=indices,
            loss=latents.new_zeros(()),
            metrics={"perplexity": code_perplexity(indices, self.codebook_size)},
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        return self._to_indices(self._digits(latents))

    def _decode(self, indices: Tensor) -> Tensor:
        digits = (indices[:, None] // self._basis) % self._levels.long()  # (N, d)
        return self._values(digits.float())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bound={self.bound!r}"
