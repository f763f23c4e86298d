"""PatchGAN discriminator over space-time patches of video clips.

The 3-D extension of the PatchGAN (Isola et al., arXiv:1611.07004) used as the adversarial term of video
tokenizers (MAGVIT, arXiv:2212.05199; MAGVIT-v2, arXiv:2310.05737). Written for vqtok. It needs no causality (it
only judges whole clips) and strides in space only, so it scores clips of any length, single frames included.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator3d"]


class PatchDiscriminator3d(nn.Module):
    """Fully convolutional discriminator that scores overlapping space-time patches.

    Args:
        in_channels: Frame channels.
        channels: Width of the first layer; doubled at every stride-2 layer (up to 8x).
        num_layers: Number of spatial stride-2 layers.
    """

    def __init__(self, in_channels: int = 3, channels: int = 32, num_layers: int = 2) -> None:
        super().__init__()
        k, s, p = (3, 4, 4), (1, 2, 2), (1, 1, 1)
        layers: list[nn.Module] = [nn.Conv3d(in_channels, channels, k, stride=s, padding=p), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers):
            nxt = channels * min(2**i, 8)
            # GroupNorm rather than BatchNorm: batch statistics would differ across DDP ranks.
            layers += [nn.Conv3d(width, nxt, k, stride=s, padding=p), nn.GroupNorm(1, nxt), nn.LeakyReLU(0.2)]
            width = nxt
        layers += [nn.Conv3d(width, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 1, T, H', W')`` patch logits; images ``(B, C, H, W)`` count as 1-frame clips."""
        if x.ndim == 4:
            x = x.unsqueeze(2)
        return self.net(x)
