"""Product (factorised) quantization over channel groups.

Jégou et al., "Product Quantization for Nearest Neighbor Search", TPAMI 2011 (the product codebook);
Bai et al., "Factorized Visual Tokenization and Generation", arXiv:2411.16681 (FQGAN: factorised
sub-codebooks for visual tokenizers, with a disentanglement regulariser between them).

The D channels are split into G equal groups and each group has its own :class:`~vqtok.quantizers.vq.VQ`
of V codes over ``D / G`` channels, so a token is G ids and the implicit codebook has ``V ** G``
entries.

Disentanglement (FQGAN, section 3.2): sub-codebooks that learn the same directions waste capacity.
The regulariser l2-normalises every code and penalises the squared cosine similarity between codes of
different sub-codebooks, ``mean_{i<j} mean_{a,b} (c^_{i,a} . c^_{j,b})^2``, i.e. ``||C^_i C^_j^T||_F^2 /
V^2`` with codes as rows; it needs equal sub-dimensions, hence equal groups. It acts on the codebooks
through their gradient, so an EMA codebook (no gradient) would ignore it: with ``disentangle_weight >
0`` the sub-codebooks are learned by gradient (``ema_decay=None``) unless told otherwise, and asking
for both an EMA codebook and the regulariser is an error.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput
from .vq import VQ

__all__ = ["PQ"]

_AUTO = "auto"


@register_quantizer("pq", example={"dim": 8, "codebook_size": 16, "num_groups": 2})
class PQ(Quantizer):
    """Product quantizer: one VQ per channel group, optionally with disentangled sub-codebooks.

    Args:
        dim: Latent width D; must be divisible by ``num_groups``.
        codebook_size: Codes per sub-codebook V (the range of each index entry).
        num_groups: Number of channel groups G; indices have shape ``(..., G)``.
        disentangle_weight: Weight of the disentanglement loss between sub-codebooks in ``loss``; 0
            turns it off (it is then neither computed nor reported).
        ema_decay: Decay of the EMA codebook updates of every sub-quantizer, or ``None`` for
            gradient-learned sub-codebooks. ``"auto"`` means ``0.99`` without the regulariser and
            ``None`` with it.
        metric: ``"l2"`` or ``"cosine"`` lookup inside each group.
        commitment_weight: Weight of each group's commitment loss.
        codebook_weight: Weight of each group's codebook loss (gradient-learned sub-codebooks only).
        kmeans_init: k-means initialisation of every sub-codebook on the first training batch.
        kmeans_iters: Lloyd iterations of that initialisation.
        dead_code_threshold: Per-group dead-code restart threshold (tokens per batch); 0 disables.

    Raises:
        ValueError: If ``dim`` is not divisible by ``num_groups``, or an EMA codebook is combined with
            the disentanglement loss.
    """

    has_learned_codebook = True

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_groups: int = 2,
        disentangle_weight: float = 0.0,
        ema_decay: float | None | Literal["auto"] = _AUTO,
        metric: Literal["l2", "cosine"] = "l2",
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if num_groups < 1 or dim < num_groups or dim % num_groups:
            raise ValueError(f"dim={dim} must be a positive multiple of num_groups={num_groups}")
        if disentangle_weight < 0:
            raise ValueError(f"disentangle_weight must be >= 0, got {disentangle_weight}")
        if ema_decay == _AUTO:
            ema_decay = None if disentangle_weight > 0 else 0.99
        elif ema_decay is not None and disentangle_weight > 0:
            raise ValueError(
                "the disentanglement loss acts through the codebooks' gradient, which EMA codebooks do not use; "
                "pass ema_decay=None (or 'auto')"
            )
        self.dim = dim
        self.codebook_size = codebook_size
        self.index_shape = (num_groups,)
        self.disentangle_weight = disentangle_weight
        self.groups = nn.ModuleList(
            VQ(
                dim // num_groups,
                codebook_size,
                metric=metric,
                ema_decay=ema_decay,
                commitment_weight=commitment_weight,
                codebook_weight=codebook_weight,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                dead_code_threshold=dead_code_threshold,
            )
            for _ in range(num_groups)
        )

    def disentanglement(self) -> Tensor:
        """Mean squared cosine similarity between codes of different sub-codebooks; 0-d tensor.

        Carries the codebooks' gradient when they are learned by gradient; 0 for a single group.
        """
        codes = [F.normalize(group._codes(), dim=-1) for group in self.groups]  # G x (V, D/G)
        total = codes[0].new_zeros(())
        pairs = 0
        for i in range(len(codes)):
            for j in range(i + 1, len(codes)):
                total = total + (codes[i] @ codes[j].T).square().mean()
                pairs += 1
        return total / max(pairs, 1)

    # ------------------------------------------------------------------------------ contract methods
    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        parts = latents.chunk(len(self.groups), dim=-1)  # G x (N, D/G)
        outs = [group._quantize(part) for group, part in zip(self.groups, parts, strict=True)]
        num = len(outs)
        loss = sum((o.loss for o in outs), latents.new_zeros(())) / num
        losses = {key: sum(o.losses[key] for o in outs) / num for key in outs[0].losses}
        if self.disentangle_weight > 0:
            losses["disentangle"] = self.disentanglement()
            loss = loss + self.disentangle_weight * losses["disentangle"]
        metrics = {key: torch.stack([o.metrics[key] for o in outs]).mean() for key in ("perplexity", "usage")}
        if "restarted_codes" in outs[0].metrics:
            metrics["restarted_codes"] = torch.stack([o.metrics["restarted_codes"] for o in outs]).sum()
        return QuantizerOutput(
            quantized=torch.cat([o.quantized for o in outs], -1),
            indices=torch.stack([o.indices for o in outs], 1),
            loss=loss,
            losses=losses,
            metrics=metrics,
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        if options:
            raise ValueError(f"PQ.encode takes no options, got {sorted(options)}")
        parts = latents.chunk(len(self.groups), dim=-1)
        return torch.stack([group._encode(part) for group, part in zip(self.groups, parts, strict=True)], 1)

    def _decode(self, indices: Tensor) -> Tensor:
        return torch.cat([group._decode(indices[:, g]) for g, group in enumerate(self.groups)], -1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, disentangle_weight={self.disentangle_weight}"
