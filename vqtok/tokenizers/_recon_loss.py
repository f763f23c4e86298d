"""The L1/L2 reconstruction loss shared by the image, video and action tokenizers."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["l1_l2_loss"]


def l1_l2_loss(signal: Tensor, recon: Tensor, kind: str, weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """``(weight * total, unweighted detached terms)`` for ``kind`` ``"l1"``, ``"l2"`` or ``"l1+l2"``.

    Computed in fp32: under bf16 autocast the squared error of a good reconstruction underflows.

    Args:
        signal: Target, any shape.
        recon: Reconstruction, the same shape as ``signal``.
        kind: Which terms to sum (validated by the tokenizer's config).
        weight: Factor on the summed terms.
    """
    recon32, signal32 = recon.float(), signal.float()
    terms: dict[str, Tensor] = {}
    if "l1" in kind:
        terms["recon_l1"] = F.l1_loss(recon32, signal32)
    if "l2" in kind:
        terms["recon_l2"] = F.mse_loss(recon32, signal32)
    total = sum(terms.values(), recon32.new_zeros(()))
    return weight * total, {k: v.detach() for k, v in terms.items()}
