"""2-D convolutional blocks of VQGAN-style encoders and decoders.

Esser et al., "Taming Transformers for High-Resolution Image Synthesis", CVPR 2021, arXiv:2012.09841.
Written for vqtok; the block layout (pre-norm residual block, strided-conv down, nearest-neighbour up)
follows the paper's description.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Downsample2d", "ResBlock2d", "Upsample2d", "create_norm2d"]


def create_norm2d(kind: str, channels: int) -> nn.Module:
    """``"group"`` (GroupNorm, up to 32 groups that divide ``channels``), ``"batch"`` or ``"none"``."""
    if kind == "group":
        groups = min(32, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels, eps=1e-6)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected 'group', 'batch' or 'none'")


class ResBlock2d(nn.Module):
    """Pre-norm residual block: ``x + conv(act(norm(conv(act(norm(x))))))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels; a 1x1 conv projects the skip path when they differ.
        norm: Norm kind, see :func:`create_norm2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "group") -> None:
        super().__init__()
        self.norm1 = create_norm2d(norm, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = create_norm2d(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample2d(nn.Module):
    """Halves H and W with a stride-2 3x3 conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (default: ``in_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels or in_channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))``."""
        return self.conv(x)


class Upsample2d(nn.Module):
    """Doubles H and W: nearest-neighbour upsampling then a 3x3 conv (no checkerboard artefacts).

    Args:
        in_channels: Input channels.
        out_channels: Output channels (default: ``in_channels``). Narrowing here, rather than after the
            next block, keeps the most expensive full-resolution convs at the narrow width.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels or in_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
