"""Reusable building blocks for tokenizers (one concept per module)."""

from .audio_losses import MultiScaleSpectralLoss as MultiScaleSpectralLoss
from .audio_losses import snr_loss as snr_loss
from .conv2d import Downsample2d as Downsample2d
from .conv2d import ResBlock2d as ResBlock2d
from .conv2d import Upsample2d as Upsample2d
from .conv2d import create_norm2d as create_norm2d
from .conv3d import CausalConv3d as CausalConv3d
from .conv3d import CausalDownsample3d as CausalDownsample3d
from .conv3d import CausalUpsample3d as CausalUpsample3d
from .conv3d import FrameNorm as FrameNorm
from .conv3d import ResBlock3d as ResBlock3d
from .discriminator import PatchDiscriminator2d as PatchDiscriminator2d
from .discriminator3d import PatchDiscriminator3d as PatchDiscriminator3d

__all__ = [
    "CausalConv3d",
    "CausalDownsample3d",
    "CausalUpsample3d",
    "FrameNorm",
    "PatchDiscriminator3d",
    "ResBlock3d",
    "Downsample2d",
    "MultiScaleSpectralLoss",
    "PatchDiscriminator2d",
    "ResBlock2d",
    "Upsample2d",
    "create_norm2d",
    "snr_loss",
]
