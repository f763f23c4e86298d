"""Reusable building blocks for tokenizers (one concept per module)."""

from .audio_losses import MultiScaleSpectralLoss as MultiScaleSpectralLoss
from .audio_losses import snr_loss as snr_loss
from .conv2d import Downsample2d as Downsample2d
from .conv2d import ResBlock2d as ResBlock2d
from .conv2d import Upsample2d as Upsample2d
from .conv2d import create_norm2d as create_norm2d
from .discriminator import PatchDiscriminator2d as PatchDiscriminator2d

__all__ = [
    "Downsample2d",
    "MultiScaleSpectralLoss",
    "PatchDiscriminator2d",
    "ResBlock2d",
    "Upsample2d",
    "create_norm2d",
    "snr_loss",
]
