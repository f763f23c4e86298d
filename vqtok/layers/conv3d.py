"""Causal 3-D convolutional blocks of video encoders and decoders.

Time is causal everywhere: every temporal convolution pads on the left only (by repeating the first frame), and
normalisation is per frame, so an output at time ``t`` depends on input frames ``<= t`` only. Temporal resampling
keeps the first frame on its own: a stride-2 causal conv maps ``1 + 2k`` frames to ``1 + k`` (output 0 sees frame 0
only) and the causal upsample maps ``1 + k`` back to ``1 + 2k``. A 1-frame clip is therefore coded as an image.

Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation" (MAGVIT-v2), ICLR 2024,
arXiv:2310.05737; NVIDIA, "Cosmos World Foundation Model Platform", arXiv:2501.03575. Written for vqtok from the
papers' descriptions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .conv2d import create_norm2d

__all__ = ["CausalConv3d", "FrameNorm", "ResBlock3d", "CausalDownsample3d", "CausalUpsample3d"]


class CausalConv3d(nn.Module):
    """3-D convolution padded on the left in time (replicating the first frame) and symmetrically in space.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: ``(kt, kh, kw)`` or one int for all three.
        stride: ``(st, sh, sw)`` or one int; a temporal stride ``s`` maps ``1 + s*k`` frames to ``1 + k``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        st, sh, sw = (stride,) * 3 if isinstance(stride, int) else stride
        if st > 1 and kt < st + 1:
            # With kt >= st + 1 and left padding kt - 1, output j sees frames st*j - (kt - 1) ... st*j: output 0
            # sees frame 0 only and outputs land on frames 0, st, 2*st, ...
            raise ValueError(f"temporal kernel {kt} must exceed temporal stride {st}")
        self.time_pad = kt - 1
        self.space_pad = (kw // 2, kw // 2, kh // 2, kh // 2)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), stride=(st, sh, sw))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, 1 + (T - 1) // st, H / sh, W / sw)``."""
        if self.time_pad:
            x = _pad_first_frame(x, self.time_pad)
        if any(self.space_pad):
            x = F.pad(x, (*self.space_pad, 0, 0))
        return self.conv(x)


def _pad_first_frame(x: Tensor, frames: int) -> Tensor:
    """Prepends ``frames`` copies of the first frame along time: ``(B, C, T, H, W) -> (B, C, T + frames, H, W)``."""
    first = x[:, :, :1].expand(-1, -1, frames, -1, -1)
    return torch.cat([first, x], dim=2)


class FrameNorm(nn.Module):
    """A 2-D norm applied to each frame on its own (GroupNorm over time would leak the future into the past).

    Args:
        kind: ``"group"`` or ``"none"`` (batch norm mixes frames through its batch statistics, so it is refused).
        channels: Channels.
    """

    def __init__(self, kind: str, channels: int) -> None:
        super().__init__()
        if kind not in ("group", "none"):
            raise ValueError(f"video norm must be 'group' or 'none' (per frame, causal), got {kind!r}")
        self.norm = create_norm2d(kind, channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, C, T, H, W)``."""
        if isinstance(self.norm, nn.Identity):
            return x
        t = x.shape[2]  # (b t) is split by t: an empty batch (b = 0) must not divide by zero
        y = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", t=t)


class ResBlock3d(nn.Module):
    """Pre-norm causal residual block: ``x + conv(act(norm(conv(act(norm(x))))))`` with 3x3x3 causal convs.

    Args:
        in_channels: Input channels.
        out_channels: Output channels; a 1x1x1 conv projects the skip path when they differ.
        norm: ``"group"`` or ``"none"``, see :class:`FrameNorm`.
        temporal_kernel: Temporal kernel size (1 makes the block per-frame).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "group", temporal_kernel: int = 3) -> None:
        super().__init__()
        k = (temporal_kernel, 3, 3)
        self.norm1 = FrameNorm(norm, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, k)
        self.norm2 = FrameNorm(norm, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, k)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class CausalDownsample3d(nn.Module):
    """Halves H and W, and optionally time (``1 + 2k -> 1 + k`` frames), with one strided causal conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        temporal: Whether time is halved too.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=(2 if temporal else 1, 2, 2))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', H/2, W/2)``."""
        return self.conv(x)


class CausalUpsample3d(nn.Module):
    """Doubles H and W (nearest), and optionally time (``1 + k -> 1 + 2k`` frames), then a causal 3x3x3 conv.

    Temporal upsampling repeats every latent frame twice and drops the first copy, so latent frame 0 yields frame
    0 alone and latent frame ``j >= 1`` yields frames ``2j - 1`` and ``2j``: the inverse of :class:`CausalDownsample3d`.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        temporal: Whether time is doubled too.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(in_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', 2H, 2W)``."""
        if self.temporal:
            x = x.repeat_interleave(2, dim=2)[:, :, 1:]
        t = x.shape[2]
        x = F.interpolate(rearrange(x, "b c t h w -> (b t) c h w"), scale_factor=2.0, mode="nearest")
        return self.conv(rearrange(x, "(b t) c h w -> b c t h w", t=t))
