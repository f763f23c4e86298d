"""Grouped (product) quantization over any registered quantizer.

The D channels (or the ``d`` channels of an optional shared projection) are split into G equal groups
and each group has its own quantizer, so a token is G index entries and the implicit codebook is the
product of the groups' codebooks: Jégou et al., "Product Quantization for Nearest Neighbor Search",
TPAMI 2011; Yang et al., "HiFi-Codec: Group-residual Vector quantization", arXiv:2305.02765 (an RVQ per
group); Zhuang et al., "WeTok", arXiv:2508.05599 (LFQ per group).

:class:`Grouped` uses only the public methods of its groups, so ``pq`` (VQ groups), ``grouped_rvq``
(residual groups), ``group_lfq`` and ``grouped_fsq`` are registrations over it.

Losses and metrics combine by the rule of :mod:`vqtok.quantizers._compose`: a group sees ``D / G``
of the channels, so group losses are **averaged** (a grouped quantizer's loss has the scale of one
ungrouped quantizer over all D channels); each group's own terms are in ``losses["group{g}/..."]``.

Disentanglement (FQGAN: Bai et al., "Factorized Visual Tokenization and Generation",
arXiv:2411.16681, section 3.2): with ``disentangle_weight > 0`` the loss adds the mean squared cosine
similarity between the codes of different groups, ``mean_{i<j} ||C^_i C^_j^T||_F^2 / V^2`` over
l2-normalised code tables (each group's ``decode`` of all its codes). It reaches the codebooks through
their gradient, so it only acts on gradient-learned groups.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._compose import build_parts, check_count, combine, shared_projection
from .base import Quantizer, QuantizerOutput, skip_input_checks

__all__ = ["Grouped"]


class Grouped(Quantizer):
    """Splits the channels into G groups, each quantized by its own quantizer.

    Indices are ``(..., G, *group_index_shape)``; group ``g`` owns channels ``[g d / G, (g + 1) d / G)``.
    ``forward`` and ``encode`` options (e.g. ``num_levels`` of residual groups) go to every group.

    Args:
        quantizer: A registered name (built ``num_groups`` times with ``quantizer_kwargs``) or a list of
            instances, one per group, that agree on ``dim``, ``codebook_size`` and ``index_shape``.
        num_groups: Number of groups G (with a name; defaults to 2).
        dim: Latent width D. With a name it is split evenly: every group gets ``dim=D / G`` (or
            ``d / G`` with ``shared_codebook_dim``). ``None`` takes G times the groups' own width.
        quantizer_kwargs: Constructor kwargs of every group (with a name).
        shared_codebook_dim: Width ``d`` of one learned projection ``D -> d`` before the split and
            ``d -> D`` after it; ``None`` for none.
        disentangle_weight: Weight of the disentanglement loss between the groups' code tables; 0
            turns it off (then it is neither computed nor reported). Needs single-index groups.

    Raises:
        ValueError: If the width does not split evenly, on a bad group count or option.
    """

    def __init__(
        self,
        quantizer: str | Sequence[Quantizer] = "vq",
        num_groups: int | None = None,
        dim: int | None = None,
        quantizer_kwargs: dict[str, Any] | None = None,
        shared_codebook_dim: int | None = None,
        disentangle_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(quantizer, str) and num_groups is None:
            num_groups = 2
        if num_groups is not None:
            num_groups = check_count(num_groups, "num_groups")
        width = dim if shared_codebook_dim is None else check_count(shared_codebook_dim, "shared_codebook_dim")
        if width is not None and num_groups is not None and (width < num_groups or width % num_groups):
            raise ValueError(f"dim={width} must be a positive multiple of num_groups={num_groups}")
        part_dim = None if width is None or num_groups is None else width // num_groups
        self.groups = nn.ModuleList(build_parts(quantizer, num_groups, quantizer_kwargs, part_dim, "Grouped group"))
        first = self.groups[0]
        self.num_groups = len(self.groups)
        self.codebook_size = first.codebook_size
        self.index_shape = (self.num_groups, *first.index_shape)
        self.has_learned_codebook = any(group.has_learned_codebook for group in self.groups)
        self.forward_options = frozenset.intersection(*(frozenset(g.forward_options) for g in self.groups))
        self.encode_options = frozenset.intersection(*(frozenset(g.encode_options) for g in self.groups))
        self.dim, self.project_in, self.project_out = shared_projection(
            dim, first.dim * self.num_groups, shared_codebook_dim
        )
        if disentangle_weight < 0:
            raise ValueError(f"disentangle_weight must be >= 0, got {disentangle_weight}")
        if disentangle_weight > 0 and first.index_shape:
            raise ValueError("disentangle_weight needs groups with one index per token (index_shape ())")
        self.disentangle_weight = float(disentangle_weight)

    def disentanglement(self) -> Tensor:
        """Mean squared cosine similarity between codes of different groups; 0-d tensor.

        Carries the codebooks' gradient when they are learned by gradient; 0 for a single group.
        """
        device = next((t.device for t in (*self.parameters(), *self.buffers())), torch.device("cpu"))
        every = torch.arange(self.codebook_size, device=device)
        with skip_input_checks():
            tables = [F.normalize(group.decode(every), dim=-1) for group in self.groups]  # G x (V, D/G)
        total = tables[0].new_zeros(())
        pairs = 0
        for i in range(len(tables)):
            for j in range(i + 1, len(tables)):
                total = total + (tables[i] @ tables[j].T).square().mean()
                pairs += 1
        return total / max(pairs, 1)

    # ---------------------------------------------------------------------------------- quantization
    def _split(self, latents: Tensor) -> tuple[Tensor, ...]:
        projected = self.project_in(latents)
        # The groups run with their input checks off, so an fp32 overflow of the projection is caught here.
        self.require_finite(projected, "the projected latents", latents)
        return projected.chunk(self.num_groups, dim=-1)  # G x (N, d / G)

    def _quantize(self, latents: Tensor, **options: Any) -> QuantizerOutput:
        parts = self._split(latents)
        with skip_input_checks():  # checked once by forward
            outs = [group(part, **options) for group, part in zip(self.groups, parts, strict=True)]
        combined = combine(outs, "group", 1.0 / self.num_groups, latents)
        loss, losses = combined.loss, combined.losses
        if self.disentangle_weight > 0:
            losses["disentangle"] = self.disentanglement()
            loss = loss + self.disentangle_weight * losses["disentangle"]
        return QuantizerOutput(
            quantized=self.project_out(torch.cat([out.quantized for out in outs], -1)),
            indices=torch.stack([out.indices for out in outs], 1),
            loss=loss,
            losses=losses,
            metrics=combined.metrics,
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        parts = self._split(latents)
        with skip_input_checks():
            return torch.stack([g.encode(p, **options) for g, p in zip(self.groups, parts, strict=True)], 1)

    def _decode(self, indices: Tensor) -> Tensor:
        # Ranges were checked here once; the groups still check the shape of their entries.
        with skip_input_checks():
            return self.project_out(torch.cat([g.decode(indices[:, i]) for i, g in enumerate(self.groups)], -1))

    def _check_indices(self, indices: Tensor) -> Tensor:
        if not isinstance(indices, Tensor):
            raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        rank = len(self.index_shape)
        if indices.ndim < rank or indices.shape[indices.ndim - rank] != self.num_groups:
            raise ValueError(
                f"{type(self).__name__} expects indices of shape (..., {self.num_groups}, "
                f"*{tuple(self.index_shape[1:])}), got {tuple(indices.shape)}"
            )
        indices = indices.long()
        self._check_index_range(indices)
        return indices

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, disentangle_weight={self.disentangle_weight}"
