"""Residual vector quantization, plain and channel-grouped.

* Residual VQ: Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec",
  arXiv:2107.03312, algorithm 1 (levels quantize what the previous levels left over) and section
  3.3 (quantizer dropout for variable bitrate, as in Kumar et al., "High-Fidelity Audio Compression
  with Improved RVQGAN", arXiv:2306.06546, section 3.2).
* Grouped residual VQ: Yang et al., "HiFi-Codec: Group-residual Vector quantization for High
  Fidelity Audio Codec", arXiv:2305.02765 (channels split into groups, an RVQ per group).

Every level is a :class:`~vqtok.quantizers.vq.VQ`, so its options (metric, EMA or gradient codebook,
projections, SimVQ, rotation trick, k-means init, dead-code restarts) apply level by level.

Encoding is greedy by default (each level picks the code nearest to what is left). With
``beam_width > 1``, encoding (and the eval-mode forward) keeps the ``beam_width`` best partial sums
after every level (:func:`vqtok.kernels.beam.beam_search`, the search that AQ encodes with, run on
the levels' output tables), which lowers the reconstruction error of a trained model at no cost in bits.
Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels.beam import beam_search
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput
from .vq import VQ

__all__ = ["GroupedResidualQuantizer", "ResidualQuantizer"]


@register_quantizer(
    "rvq",
    example={"dim": 8, "codebook_size": 16, "num_levels": 3, "quantizer_dropout": 0.5, "beam_width": 2},
)
class ResidualQuantizer(Quantizer):
    """Residual VQ: level ``l`` quantizes ``z - (q_0 + ... + q_{l-1})``; the output is the sum.

    Indices are ``(..., L)`` with the coarsest level first. ``encode(latents, num_levels=n)`` keeps
    only the first ``n`` levels (``(..., n)``, fewer bits), and ``decode`` accepts any such prefix.
    ``encode(latents, beam_width=b)`` overrides the constructor's beam width for one call; with a
    beam, the code of a level prefix need not be the prefix of the full code (each is searched alone).

    Args:
        dim: Latent width D.
        codebook_size: Number of codes V of every level.
        num_levels: Number of levels L.
        quantizer_dropout: Per-sample probability, in training only, that a token keeps just its
            first ``n`` levels with ``n`` uniform in ``[1, L]``, which trains every prefix for variable
            bitrate. Dropped levels still report their (valid) indices but add nothing to the output,
            the losses or their codebook statistics.
        beam_width: Partial solutions kept per token by the encoder; 1 is greedy. Used by ``encode`` and
            the eval-mode forward, which stay equal (``decode(encode(z))``). No row's squared error
            ``||z - decode(encode(z))||^2`` is ever above the greedy one: the greedy code is kept where
            the beam does not beat it. Training forwards stay greedy, so that every level's k-means
            init, EMA statistics and restarts see the residual its own nearest-code choice leaves.
        **level_kwargs: Passed to every level's :class:`VQ` (``codebook_dim``, ``metric``,
            ``ema_decay``, ``commitment_weight``, ...).

    Raises:
        ValueError: On a bad level count, dropout probability, beam width or level option.
    """

    has_learned_codebook = True
    encode_options = frozenset({"num_levels", "beam_width"})

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_levels: int = 8,
        quantizer_dropout: float = 0.0,
        beam_width: int = 1,
        **level_kwargs: Any,
    ) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be a probability, got {quantizer_dropout}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_levels = num_levels
        self.index_shape = (num_levels,)
        self.quantizer_dropout = quantizer_dropout
        self.beam_width = _check_beam_width(beam_width)
        self.levels = nn.ModuleList(VQ(dim, codebook_size, **level_kwargs) for _ in range(num_levels))

    # ------------------------------------------------------------------------------ quantization
    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        kept = _sample_kept_levels(latents.shape[0], self.num_levels, self.quantizer_dropout, self.training, latents)
        return self._quantize_levels(latents, kept)

    def _quantize_levels(self, latents: Tensor, kept: Tensor | None) -> QuantizerOutput:
        """Runs every level on ``(N, D)`` latents; ``kept`` ``(N,)`` is each token's level count."""
        # Eval mode with a beam: the codes come from the same search as encode, and every level
        # then only looks them up, so forward equals decode(encode(z)) and keeps each level's
        # losses and straight-through (or rotation) gradient.
        chosen = None
        if not self.training and self.beam_width > 1:
            chosen = self._search(latents.detach(), self.num_levels, self.beam_width)
        residual = latents
        quantized: Tensor | None = None
        indices: list[Tensor] = []
        loss = latents.new_zeros(())
        losses: dict[str, Tensor] = {}
        metrics: dict[str, Tensor] = {}
        for level_id, level in enumerate(self.levels):
            weights = None if kept is None else (kept > level_id).float()
            out = level._step(residual, weights, None if chosen is None else chosen[:, level_id])
            contribution = out.quantized if weights is None else out.quantized * weights[:, None]
            quantized = contribution if quantized is None else quantized + contribution
            # Not detached: with the straight-through estimator the residual's gradient cancels, so
            # the latents get the identity gradient once rather than once per level.
            residual = residual - out.quantized
            indices.append(out.indices)
            loss = loss + out.loss
            for key, value in out.losses.items():
                losses[key] = losses.get(key, 0.0) + value
            for key, value in out.metrics.items():
                metrics[f"level{level_id}/{key}"] = value
        assert quantized is not None
        for key in ("perplexity", "usage"):
            metrics[key] = torch.stack([metrics[f"level{i}/{key}"] for i in range(self.num_levels)]).mean()
        return QuantizerOutput(
            quantized=quantized, indices=torch.stack(indices, 1), loss=loss, losses=losses, metrics=metrics
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        num_levels, beam_width = self._encode_options(options)
        return self._search(latents, num_levels, beam_width)

    @torch.no_grad()
    def _search(self, latents: Tensor, num_levels: int, beam_width: int) -> Tensor:
        """Indices ``(N, num_levels)`` of the first ``num_levels`` levels, greedy or by beam search."""
        greedy = self._greedy(latents, num_levels)
        if beam_width == 1:
            return greedy
        # The beam scores what decode returns: the sum of the levels' output tables (latent space).
        tables = torch.stack([level._output_table() for level in self.levels[:num_levels]])  # (num_levels, V, D)
        _, beam = beam_search(latents, tables, beam_width=beam_width)
        # A beam can prune the greedy path, and projected or cosine levels search a different
        # space, so keep the greedy codes wherever the beam is not strictly better.
        better = _squared_error(self, latents, beam) < _squared_error(self, latents, greedy)
        return torch.where(better[:, None], beam, greedy)

    def _greedy(self, latents: Tensor, num_levels: int) -> Tensor:
        residual = latents
        indices = []
        for level in self.levels[:num_levels]:
            level_indices = level._encode(residual)
            residual = residual - level._decode(level_indices)
            indices.append(level_indices)
        return torch.stack(indices, 1)  # (N, num_levels)

    def _decode(self, indices: Tensor) -> Tensor:
        quantized = self.levels[0]._decode(indices[:, 0])
        # Summed in level order, exactly like forward, so the round trip is bit-exact.
        for level_id in range(1, indices.shape[1]):
            quantized = quantized + self.levels[level_id]._decode(indices[:, level_id])
        return quantized

    # ----------------------------------------------------------------------------------- checking
    def _encode_options(self, options: dict[str, Any]) -> tuple[int, int]:
        """Validated ``(num_levels, beam_width)`` of one ``encode`` call."""
        _check_option_names(self, options)
        beam_width = options.get("beam_width")
        return (
            _check_num_levels(options.get("num_levels"), self.num_levels),
            self.beam_width if beam_width is None else _check_beam_width(beam_width),
        )

    def _check_indices(self, indices: Tensor) -> Tensor:
        # Any prefix of the levels decodes: the last dimension may be 1..L.
        return _check_prefix_indices(self, indices, (), self.num_levels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer_dropout={self.quantizer_dropout}, beam_width={self.beam_width}"


@register_quantizer(
    "grouped_rvq",
    example={"dim": 8, "codebook_size": 16, "num_groups": 2, "num_levels": 2},
)
class GroupedResidualQuantizer(Quantizer):
    """Grouped residual VQ: the D channels are split into G groups, each with its own RVQ.

    Indices are ``(..., G, L)``; ``encode(latents, num_levels=n)`` gives ``(..., G, n)`` and
    ``decode`` accepts any such level prefix. ``beam_width`` (in ``**level_kwargs`` or as an
    ``encode`` option) runs the beam search of :class:`ResidualQuantizer` in every group.

    Args:
        dim: Latent width D, divisible by ``num_groups``.
        codebook_size: Number of codes V of every level of every group.
        num_groups: Number of channel groups G; group ``g`` owns channels
            ``[g * D / G, (g + 1) * D / G)``.
        num_levels: Residual levels L per group.
        quantizer_dropout: As in :class:`ResidualQuantizer`; a token keeps the same number of levels
            in every group.
        **level_kwargs: Passed to every group's :class:`ResidualQuantizer` (``beam_width``) and
            every level's :class:`VQ`.

    Raises:
        ValueError: If ``dim`` is not divisible by ``num_groups`` or on a bad option.
    """

    has_learned_codebook = True
    encode_options = frozenset({"num_levels", "beam_width"})

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_groups: int = 2,
        num_levels: int = 8,
        quantizer_dropout: float = 0.0,
        **level_kwargs: Any,
    ) -> None:
        super().__init__()
        if num_groups < 1 or dim % num_groups:
            raise ValueError(f"dim={dim} must be divisible by num_groups={num_groups}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be a probability, got {quantizer_dropout}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_groups = num_groups
        self.num_levels = num_levels
        self.index_shape = (num_groups, num_levels)
        self.quantizer_dropout = quantizer_dropout
        self.groups = nn.ModuleList(
            ResidualQuantizer(dim // num_groups, codebook_size, num_levels, **level_kwargs) for _ in range(num_groups)
        )

    def _split(self, latents: Tensor) -> tuple[Tensor, ...]:
        return latents.chunk(self.num_groups, dim=-1)  # G x (N, D / G)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        kept = _sample_kept_levels(latents.shape[0], self.num_levels, self.quantizer_dropout, self.training, latents)
        parts = self._split(latents)
        outs = [group._quantize_levels(part, kept) for group, part in zip(self.groups, parts, strict=True)]
        losses: dict[str, Tensor] = {}
        metrics: dict[str, Tensor] = {}
        for group_id, out in enumerate(outs):
            for key, value in out.losses.items():
                losses[key] = losses.get(key, 0.0) + value
            for key, value in out.metrics.items():
                metrics[f"group{group_id}/{key}"] = value
        for key in ("perplexity", "usage"):
            metrics[key] = torch.stack([out.metrics[key] for out in outs]).mean()
        return QuantizerOutput(
            quantized=torch.cat([out.quantized for out in outs], -1),
            indices=torch.stack([out.indices for out in outs], 1),  # (N, G, L)
            loss=torch.stack([out.loss for out in outs]).sum(),
            losses=losses,
            metrics=metrics,
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        _check_option_names(self, options)
        num_levels = _check_num_levels(options.get("num_levels"), self.num_levels)
        beam = {} if options.get("beam_width") is None else {"beam_width": _check_beam_width(options["beam_width"])}
        parts = self._split(latents)
        return torch.stack(
            [g._encode(p, num_levels=num_levels, **beam) for g, p in zip(self.groups, parts, strict=True)], 1
        )

    def _decode(self, indices: Tensor) -> Tensor:
        return torch.cat([group._decode(indices[:, group_id]) for group_id, group in enumerate(self.groups)], -1)

    def _check_indices(self, indices: Tensor) -> Tensor:
        return _check_prefix_indices(self, indices, (self.num_groups,), self.num_levels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer_dropout={self.quantizer_dropout}"


# ---------------------------------------------------------------------------------------- helpers
def _sample_kept_levels(n: int, num_levels: int, dropout: float, training: bool, like: Tensor) -> Tensor | None:
    """Per-token level counts ``(n,)`` for quantizer dropout, or ``None`` when every level is kept."""
    if not training or dropout <= 0.0 or num_levels == 1:
        return None
    dropped = torch.rand(n, device=like.device) < dropout
    prefix = torch.randint(1, num_levels + 1, (n,), device=like.device)
    return torch.where(dropped, prefix, torch.full_like(prefix, num_levels))


def _squared_error(q: ResidualQuantizer, latents: Tensor, indices: Tensor) -> Tensor:
    """``(N,)`` squared error ``||z - decode(indices)||^2``, computed exactly as decode computes it."""
    return (latents - q._decode(indices)).square().sum(-1)


def _check_option_names(q: Quantizer, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - {"num_levels", "beam_width"})
    if unknown:
        raise ValueError(
            f"{type(q).__name__}.encode got unknown options {unknown}; it accepts num_levels and beam_width"
        )


def _check_beam_width(beam_width: Any) -> int:
    try:
        if isinstance(beam_width, bool):
            raise TypeError
        value = operator.index(beam_width)
    except TypeError:
        raise ValueError(f"beam_width must be an int, got {beam_width!r}") from None
    if value < 1:
        raise ValueError(f"beam_width must be >= 1, got {value}")
    return value


def _check_num_levels(num_levels: Any, max_levels: int) -> int:
    if num_levels is None:
        return max_levels
    try:
        if isinstance(num_levels, bool):
            raise TypeError
        value = operator.index(num_levels)
    except TypeError:
        raise ValueError(f"num_levels must be an int, got {num_levels!r}") from None
    if not 1 <= value <= max_levels:
        raise ValueError(f"num_levels must be in [1, {max_levels}], got {value}")
    return value


def _check_prefix_indices(q: Quantizer, indices: Tensor, fixed: tuple[int, ...], max_levels: int) -> Tensor:
    """Validates ``(..., *fixed, n)`` indices with ``1 <= n <= max_levels``; returns them as int64."""
    if not isinstance(indices, Tensor):
        raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
    trailing = len(fixed) + 1
    ok = indices.ndim >= trailing and tuple(indices.shape[indices.ndim - trailing : -1]) == fixed
    if not ok or not 1 <= indices.shape[-1] <= max_levels:
        expected = "(..., " + "".join(f"{s}, " for s in fixed) + f"n) with 1 <= n <= {max_levels}"
        raise ValueError(f"{type(q).__name__} expects indices of shape {expected}, got {tuple(indices.shape)}")
    indices = indices.long()
    q._check_index_range(indices)
    return indices
