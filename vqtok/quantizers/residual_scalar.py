"""Residual FSQ, LFQ and BSQ: registrations over :class:`Residual`.

Each level quantizes the scaled residual of the previous ones with a fixed grid (no codebook to learn),
so level ``l`` sees ``s**l`` times the residual (``level_scale``) and contributes its output divided by
``s**l``; otherwise later levels would see residuals far below their grid's step. The defaults follow
vector-quantize-pytorch's ``ResidualFSQ`` (``s = levels``, per channel) and ``ResidualLFQ`` (``s = 2``).
A latent width ``dim`` that differs from the grid's width adds one learned projection around the whole
stack, as in the peer (the levels themselves are never projected).

Residual FSQ bounds its input once, softly (``c * tanh(z / c)`` with ``c = 1 + 1 / (L - 1)``, half a grid step
beyond 1), and its levels use FSQ's linear ``bound="clamp"`` grid of L values from -1 to 1, as the peer's
``ResidualFSQ`` does. With the paper's ``tanh`` bound in every level each level approximates ``tanh`` of its
input, not the input, so what it leaves over is not its rounding error; on the MNIST autoencoder of
``benchmarks/quality.py`` (levels ``8,5,5,5``, 3 levels, 3 seeds) the tanh levels had 6-9 % higher test MSE
(docs/quality.md).

Losses are summed over levels (:mod:`vqtok.quantizers._compose`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._registry import register_quantizer
from .bsq import BSQ
from .fsq import FSQ
from .lfq import LFQ
from .residual import Residual

__all__ = ["ResidualBSQ", "ResidualFSQ", "ResidualLFQ"]


def _shared(dim: int | None, width: int) -> int | None:
    return None if dim is None or dim == width else width


@register_quantizer("residual_fsq", example={"levels": (5, 5, 3), "num_levels": 3, "quantizer_dropout": 0.5})
class ResidualFSQ(Residual):
    """Residual FSQ: L levels of linear :class:`~vqtok.quantizers.fsq.FSQ`, level ``l`` scaled by ``levels**l``.

    The latents are soft-clamped once to ``c = 1 + 1 / (levels - 1)`` per channel; every level is
    ``FSQ(levels, bound="clamp")``.

    Args:
        levels: Values per channel of every level, e.g. ``(8, 5, 5, 5)``.
        num_levels: Number of levels L.
        dim: Latent width D; ``None`` is ``len(levels)``.
        quantizer_dropout: Per-token probability of keeping a random level prefix in training.
        bound: ``"clamp"`` (the rule above) or ``"tanh"``: FSQ's tanh bound in every level and no input clamp,
            the rule of ``residual_fsq`` before 2026-12-02. Models trained then decode as they did only with
            ``bound="tanh"`` in their quantizer settings (docs/quantizers.md).
    """

    def __init__(
        self,
        levels: Sequence[int] = (8, 5, 5, 5),
        num_levels: int = 4,
        dim: int | None = None,
        quantizer_dropout: float = 0.0,
        bound: str = "clamp",
    ) -> None:
        if bound not in ("clamp", "tanh"):
            raise ValueError(f"residual_fsq bound must be 'clamp' or 'tanh', got {bound!r}")
        levels = tuple(int(v) for v in levels)
        super().__init__(
            [FSQ(levels, bound=bound) for _ in range(num_levels)],
            dim=dim,
            quantizer_dropout=quantizer_dropout,
            level_scale=[float(v) for v in levels],
            shared_codebook_dim=_shared(dim, len(levels)),
            input_clamp=[1.0 + 1.0 / (v - 1) for v in levels] if bound == "clamp" else None,
        )
        self.levels_per_channel = levels


class _ResidualBinary(Residual):
    """L levels of one binary quantizer (LFQ or BSQ) of ``log2(V)`` bits, level ``l`` scaled by ``2**l``."""

    _level: type[LFQ] | type[BSQ]

    def __init__(
        self,
        codebook_size: int = 2**10,
        num_levels: int = 4,
        dim: int | None = None,
        quantizer_dropout: float = 0.0,
        level_scale: float = 2.0,
        **level_kwargs: object,
    ) -> None:
        bits = max(int(codebook_size).bit_length() - 1, 1)  # validated by the level quantizer
        super().__init__(
            [self._level(codebook_size, **level_kwargs) for _ in range(num_levels)],  # type: ignore[arg-type]
            dim=dim,
            quantizer_dropout=quantizer_dropout,
            level_scale=level_scale,
            shared_codebook_dim=_shared(dim, bits),
        )


@register_quantizer("residual_lfq", example={"codebook_size": 2**4, "num_levels": 3, "dim": 6})
class ResidualLFQ(_ResidualBinary):
    """Residual LFQ: L levels of :class:`~vqtok.quantizers.lfq.LFQ`, level ``l`` scaled by ``2**l``.

    Args:
        codebook_size: Codes per level V, a power of two (``log2(V)`` sign bits).
        num_levels: Number of levels L.
        dim: Latent width D; ``None`` is ``log2(V)``.
        quantizer_dropout: Per-token probability of keeping a random level prefix in training.
        level_scale: Scale ratio between consecutive levels.
        **level_kwargs: Passed to every level's LFQ (``temperature``, ``entropy``, ``entropy_weight``, ...).
    """

    _level = LFQ


@register_quantizer("residual_bsq", example={"codebook_size": 2**4, "num_levels": 3, "dim": 6})
class ResidualBSQ(_ResidualBinary):
    """Residual BSQ: L levels of :class:`~vqtok.quantizers.bsq.BSQ` (unit-norm codes), level ``l`` scaled by ``2**l``.

    Every BSQ level returns a unit vector whatever its input's norm, so level ``l`` adds a vector of norm
    ``2**-l``: the stack suits latents of about unit norm.

    Args:
        codebook_size: Codes per level V, a power of two.
        num_levels: Number of levels L.
        dim: Latent width D; ``None`` is ``log2(V)``.
        quantizer_dropout: Per-token probability of keeping a random level prefix in training.
        level_scale: Scale ratio between consecutive levels.
        **level_kwargs: Passed to every level's BSQ (``temperature``, ``entropy``, ...).
    """

    _level = BSQ
