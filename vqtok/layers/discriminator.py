"""PatchGAN discriminator.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017,
arXiv:1611.07004; used as the adversarial term of VQGAN (arXiv:2012.09841). Written for vqtok.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator2d"]


class PatchDiscriminator2d(nn.Module):
    """Fully convolutional discriminator that scores overlapping patches.

    Args:
        in_channels: Image channels.
        channels: Width of the first layer; doubled at every stride-2 layer.
        num_layers: Number of stride-2 layers.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers):
            nxt = channels * min(2**i, 8)
            # GroupNorm rather than BatchNorm: batch statistics would differ across DDP ranks.
            layers += [nn.Conv2d(width, nxt, 4, stride=2, padding=1), nn.GroupNorm(1, nxt), nn.LeakyReLU(0.2)]
            width = nxt
        layers += [nn.Conv2d(width, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, 1, H', W')`` patch logits."""
        return self.net(x)
