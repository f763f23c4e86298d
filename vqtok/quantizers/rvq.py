"""Residual VQ and grouped residual VQ: registrations over :class:`Residual` and :class:`Grouped`.

* Residual VQ: Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec",
  arXiv:2107.03312, algorithm 1 and section 3.3 (quantizer dropout).
* Grouped residual VQ: Yang et al., "HiFi-Codec: Group-residual Vector quantization for High
  Fidelity Audio Codec", arXiv:2305.02765 (channels split into groups, an RVQ per group).

Every level is a :class:`~vqtok.quantizers.vq.VQ`, so its options (metric, EMA or gradient codebook,
per-level ``codebook_dim`` projections, SimVQ, rotation trick, k-means init, dead-code restarts) apply
level by level. Losses: summed over levels, averaged over groups (:mod:`vqtok.quantizers._compose`).

State dicts keep the keys of the classes that came before the composites (``levels.{l}.*`` and
``groups.{g}.levels.{l}.*``), so older checkpoints load unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._compose import check_count
from ._registry import register_quantizer
from .base import QuantizerOutput
from .grouped import Grouped
from .residual import Residual, sample_kept_levels

__all__ = ["GroupedResidualQuantizer", "ResidualQuantizer"]


@register_quantizer(
    "rvq",
    example={"dim": 8, "codebook_size": 16, "num_levels": 3, "quantizer_dropout": 0.5, "beam_width": 2},
)
class ResidualQuantizer(Residual):
    """Residual VQ: L levels of :class:`~vqtok.quantizers.vq.VQ`; see :class:`Residual`.

    Args:
        dim: Latent width D.
        codebook_size: Number of codes V of every level.
        num_levels: Number of levels L.
        quantizer_dropout: Per-token probability, in training only, of keeping a random level prefix.
        beam_width: Partial solutions kept per token by the encoder; 1 is greedy.
        shared_codebook_dim: One projection ``D -> d`` around the whole stack (vector-quantize-pytorch's
            ``ResidualVQ(codebook_dim=d)``); the levels then work in ``d``. Not the same as
            ``codebook_dim``, which goes to every level (factorised codes of each VQ).
        **level_kwargs: Passed to every level's VQ (``codebook_dim``, ``metric``, ``ema_decay``, ...).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_levels: int = 8,
        quantizer_dropout: float = 0.0,
        beam_width: int = 1,
        shared_codebook_dim: int | None = None,
        **level_kwargs: Any,
    ) -> None:
        super().__init__(
            "vq",
            num_levels=num_levels,
            dim=dim,
            quantizer_kwargs={"codebook_size": codebook_size, **level_kwargs},
            quantizer_dropout=quantizer_dropout,
            beam_width=beam_width,
            shared_codebook_dim=shared_codebook_dim,
        )


@register_quantizer(
    "grouped_rvq",
    example={"dim": 8, "codebook_size": 16, "num_groups": 2, "num_levels": 2},
)
class GroupedResidualQuantizer(Grouped):
    """Grouped residual VQ: G channel groups, each a :class:`ResidualQuantizer` of L levels.

    Indices are ``(..., G, L)``; ``encode(latents, num_levels=n)`` gives ``(..., G, n)``. With quantizer
    dropout a token keeps the same number of levels in every group.

    Args:
        dim: Latent width D, divisible by ``num_groups``.
        codebook_size: Number of codes V of every level of every group.
        num_groups: Number of channel groups G.
        num_levels: Residual levels L per group.
        quantizer_dropout: As in :class:`ResidualQuantizer`, one draw per token shared by the groups.
        **level_kwargs: Passed to every group's :class:`ResidualQuantizer` (``beam_width``) and every
            level's VQ.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_groups: int = 2,
        num_levels: int = 8,
        quantizer_dropout: float = 0.0,
        **level_kwargs: Any,
    ) -> None:
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be a probability, got {quantizer_dropout}")
        if num_groups < 1 or dim % num_groups:
            raise ValueError(f"dim={dim} must be divisible by num_groups={num_groups}")
        groups = [
            ResidualQuantizer(dim // num_groups, codebook_size, num_levels, **level_kwargs) for _ in range(num_groups)
        ]
        super().__init__(groups)
        self.num_levels = groups[0].num_levels
        self.quantizer_dropout = float(quantizer_dropout)

    def _quantize(self, latents: Tensor, **options: Any) -> QuantizerOutput:
        if self.training and options.get("kept_levels") is None:
            # One draw per token, shared by every group (the groups' own dropout is off).
            num_levels = options.get("num_levels")
            count = self.num_levels if num_levels is None else check_count(num_levels, "num_levels", 1, self.num_levels)
            kept = sample_kept_levels(latents.shape[0], count, self.quantizer_dropout, latents.device)
            if kept is not None:
                options = {**options, "kept_levels": kept}
        return super()._quantize(latents, **options)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer_dropout={self.quantizer_dropout}"
