"""Self-attention over the pixels of a feature map, the bottleneck block of VQGAN.

Esser et al., "Taming Transformers for High-Resolution Image Synthesis", CVPR 2021, arXiv:2012.09841: one
single-head attention block between two residual blocks at the lowest resolution. Written for vqtok.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .conv2d import create_norm2d

__all__ = ["AttnBlock2d"]


class AttnBlock2d(nn.Module):
    """Pre-norm residual self-attention: ``x + proj(attn(norm(x)))`` over the ``H*W`` positions.

    Args:
        channels: Channels C (the attention width).
        norm: Norm kind, see :func:`~vqtok.layers.create_norm2d`.
        heads: Attention heads (divide ``channels``); VQGAN uses one.
    """

    def __init__(self, channels: int, norm: str = "group", heads: int = 1) -> None:
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"heads ({heads}) must be >= 1 and divide channels ({channels})")
        self.heads = heads
        self.norm = create_norm2d(norm, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, heads, HW, C/heads): the fused kernel picks flash/memory-efficient attention where it can.
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
