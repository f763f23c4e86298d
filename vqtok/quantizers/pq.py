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

PQ is a registration over :class:`~vqtok.quantizers.grouped.Grouped` (group losses averaged, see
:mod:`vqtok.quantizers._compose`); its state dict keeps the keys ``groups.{g}.*`` of earlier versions.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

from typing import Literal

from ._registry import register_quantizer
from .grouped import Grouped

__all__ = ["PQ"]

_AUTO = "auto"


@register_quantizer("pq", example={"dim": 8, "codebook_size": 16, "num_groups": 2})
class PQ(Grouped):
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
        super().__init__(
            "vq",
            num_groups=num_groups,
            dim=dim,
            quantizer_kwargs={
                "codebook_size": codebook_size,
                "metric": metric,
                "ema_decay": ema_decay,
                "commitment_weight": commitment_weight,
                "codebook_weight": codebook_weight,
                "kmeans_init": kmeans_init,
                "kmeans_iters": kmeans_iters,
                "dead_code_threshold": dead_code_threshold,
            },
            disentangle_weight=disentangle_weight,
        )
