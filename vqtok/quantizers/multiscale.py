"""Multi-scale residual quantization over downsampled token maps (VAR-style).

Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction",
NeurIPS 2024, arXiv:2404.02905, section 3.2 and algorithm 1: the latent map ``f`` ``(B, H, W, D)`` is
quantized as a sum of K token maps of growing resolution. Scale ``k`` average-pools the residual
``f - sum_{j<k} up(q_j)`` to ``s_k x s_k`` cells, quantizes every cell with a codebook shared by all
scales, and upsamples the result back to ``H x W``.

Differences from VAR, chosen so that any quantizer fits and decoding is exact:

* Upsampling is nearest (each position takes its cell's code) instead of bicubic followed by VAR's
  3x3 convolution ``phi``; cells are ``floor(p * s / n)`` along every grid axis, so the grid may have
  any number of axes (a 1-D sequence, a 2-D image, a 3-D video) and any size (a scale above an axis'
  size uses that axis at full resolution).
* Indices follow the token contract: ``(B, *grid, K)``, entry ``k`` of a position being the code of its
  scale-``k`` cell. This repeats each coarse code over its cell (``bits_per_token`` counts the
  repetitions); :meth:`MultiScaleResidual.token_maps` returns VAR's compact maps ``(B, *cells_k)``.

The leading axis of the latents is the batch and the rest is the grid; ``(N, D)`` latents are N maps
of one token. Tokens interact (pooling), so ``token_wise`` is False: with a mask, pooling averages the
valid tokens only and cells without any are left out of losses and statistics, so masked tokens change
nothing that valid ones see. Losses are summed over scales (every scale sees all channels, see
:mod:`vqtok.quantizers._compose`).

Written for vqtok from the paper; no code was copied from other implementations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._compose import build_parts, combine
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput, skip_input_checks

__all__ = ["MultiScaleResidual"]


@register_quantizer("multiscale_residual", example={"dim": 8, "codebook_size": 32, "scales": (1, 2, 4)})
class MultiScaleResidual(Quantizer):
    """VAR-style residual quantization over K scales of the token grid; indices ``(B, *grid, K)``.

    Args:
        dim: Latent width D.
        codebook_size: Codes V of the shared (or every) quantizer.
        scales: Cells per grid axis at each scale, coarsest first (VAR: 1, 2, 3, 4, 5, 6, 8, 10, 13, 16).
        quantizer: Registered name of the cell quantizer (default ``"vq"``), or a list of instances
            (one, shared, or one per scale).
        quantizer_kwargs: Its constructor kwargs (with a name; ``dim`` and ``codebook_size`` are set).
        shared: One quantizer (one codebook) for all scales, as in VAR; ``False`` builds one per scale.

    Raises:
        ValueError: On empty or non-increasing scales or a bad quantizer option.
    """

    token_wise = False

    def __init__(
        self,
        dim: int,
        codebook_size: int = 4096,
        scales: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
        quantizer: str | Sequence[Quantizer] = "vq",
        quantizer_kwargs: dict[str, Any] | None = None,
        shared: bool = True,
    ) -> None:
        super().__init__()
        scales = tuple(int(s) for s in scales)
        if not scales or min(scales) < 1 or list(scales) != sorted(set(scales)):
            raise ValueError(f"scales must be increasing positive ints, got {scales}")
        self.scales = scales
        count = 1 if shared else len(scales)
        kwargs = {"codebook_size": codebook_size, **(quantizer_kwargs or {})} if isinstance(quantizer, str) else None
        self.levels = nn.ModuleList(
            build_parts(quantizer, count if isinstance(quantizer, str) else None, kwargs, dim, "scale")
        )
        if len(self.levels) not in (1, len(scales)):
            raise ValueError(f"give one quantizer or one per scale ({len(scales)}), got {len(self.levels)}")
        if self.levels[0].index_shape:
            raise ValueError("multi-scale quantization needs a quantizer with one index per token")
        self.dim = int(dim)
        self.codebook_size = self.levels[0].codebook_size
        self.index_shape = (len(scales),)
        self.has_learned_codebook = any(level.has_learned_codebook for level in self.levels)

    def _level(self, k: int) -> Quantizer:
        return self.levels[k if len(self.levels) > 1 else 0]

    # ---------------------------------------------------------------------------------------- cells
    def _cells(self, grid: Sequence[int], scale: int, device: torch.device) -> tuple[Tensor, int]:
        """Cell id ``(P,)`` of every grid position (row-major) at ``scale``, and the number of cells."""
        cell = torch.zeros((), dtype=torch.long, device=device)
        total = 1
        for n in grid:
            m = min(scale, n)
            along = torch.arange(n, device=device) * m // n  # floor(p * m / n)
            cell = cell[..., None] * m + along
            total *= m
        return cell.reshape(-1), total

    def _layout(self, latents: Tensor) -> tuple[int, tuple[int, ...]]:
        lead = tuple(latents.shape[:-1])
        return (lead[0], lead[1:]) if lead else (1, ())

    # ---------------------------------------------------------------------------------- quantization
    def _quantize_tokens(self, latents: Tensor, mask: Tensor | None, options: dict[str, Any]) -> QuantizerOutput:
        batch, grid = self._layout(latents)
        positions = math.prod(grid)
        x = latents.reshape(batch, positions, self.dim)
        weight = None if mask is None or bool(mask.all()) else mask.reshape(batch, positions).float()
        residual, total = x, torch.zeros_like(x)
        outs, indices = [], []
        for k, scale in enumerate(self.scales):
            cell, cells = self._cells(grid, scale, x.device)
            gid = (torch.arange(batch, device=x.device)[:, None] * cells + cell).reshape(-1)  # (B * P,)
            w = torch.ones(batch * positions, device=x.device) if weight is None else weight.reshape(-1)
            sums = x.new_zeros(batch * cells, self.dim).index_add(0, gid, residual.reshape(-1, self.dim) * w[:, None])
            counts = x.new_zeros(batch * cells).index_add(0, gid, w)
            pooled = sums / counts.clamp_min(1.0)[:, None]  # (B * cells, D): mean of the valid tokens
            with skip_input_checks():
                out = self._level(k)(pooled, mask=None if weight is None else counts > 0)
            up = out.quantized[gid].reshape(batch, positions, self.dim)  # nearest upsampling
            total = total + up
            residual = residual - up
            outs.append(out)
            indices.append(out.indices[gid])
        combined = combine(outs, "scale", 1.0, latents)
        return QuantizerOutput(
            quantized=total.reshape(latents.shape),
            indices=torch.stack(indices, -1).reshape(*latents.shape[:-1], len(self.scales)),
            loss=combined.loss,
            losses=combined.losses,
            metrics=combined.metrics,
        )

    def _quantize(self, latents: Tensor) -> QuantizerOutput:  # pragma: no cover - _quantize_tokens is used
        return self._quantize_tokens(latents, None, {})

    def _encode_tokens(self, latents: Tensor, options: dict[str, Any]) -> Tensor:
        if options:
            raise ValueError(f"MultiScaleResidual.encode takes no options, got {sorted(options)}")
        batch, grid = self._layout(latents)
        positions = math.prod(grid)
        residual = latents.reshape(batch, positions, self.dim)
        indices = []
        with skip_input_checks():
            for k, scale in enumerate(self.scales):
                cell, cells = self._cells(grid, scale, latents.device)
                gid = (torch.arange(batch, device=latents.device)[:, None] * cells + cell).reshape(-1)
                ones = torch.ones(batch * positions, device=latents.device)
                sums = latents.new_zeros(batch * cells, self.dim).index_add(0, gid, residual.reshape(-1, self.dim))
                pooled = sums / latents.new_zeros(batch * cells).index_add(0, gid, ones).clamp_min(1.0)[:, None]
                ids = self._level(k).encode(pooled)
                up = self._level(k).decode(ids)[gid].reshape(batch, positions, self.dim)
                residual = residual - up
                indices.append(ids[gid])
        return torch.stack(indices, -1).reshape(*latents.shape[:-1], len(self.scales))

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:  # pragma: no cover - _encode_tokens is used
        return self._encode_tokens(latents, options)

    def _decode(self, indices: Tensor) -> Tensor:
        # Nearest upsampling means every position decodes its own cell's code: decoding is token-wise.
        total: Tensor | None = None
        with skip_input_checks():
            for k in range(len(self.scales)):
                decoded = self._level(k).decode(indices[:, k])
                total = torch.zeros_like(decoded) + decoded if total is None else total + decoded
        assert total is not None
        return total

    def token_maps(self, indices: Tensor) -> list[Tensor]:
        """VAR's compact token maps: ``(B, *grid, K)`` indices -> K tensors ``(B, *cells_k)``.

        Each cell's code is read at its first position (every position of a cell holds the same code).
        """
        batch, grid = indices.shape[0], tuple(indices.shape[1:-1])
        maps = []
        for k, scale in enumerate(self.scales):
            sizes = [min(scale, n) for n in grid]
            picked = indices[..., k]
            for axis, (n, m) in enumerate(zip(grid, sizes, strict=True)):
                first = (torch.arange(m, device=indices.device) * n + m - 1) // m  # ceil(c * n / m)
                picked = picked.index_select(axis + 1, first)
            maps.append(picked.reshape(batch, *sizes))
        return maps

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scales={self.scales}, shared={len(self.levels) == 1}"
