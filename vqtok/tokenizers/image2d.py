"""Convolutional image tokenizer: ``(B, C, H, W)`` images to an ``(H/f, W/f)`` grid of tokens.

A VQGAN-style encoder/decoder (Esser et al., "Taming Transformers for High-Resolution Image Synthesis",
CVPR 2021, arXiv:2012.09841) around any registered quantizer, with an L1/L2 reconstruction loss and an
optional PatchGAN hinge loss. Written for vqtok; no weights are shipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..layers import Downsample2d, ResBlock2d, Upsample2d, create_norm2d
from ._config import TokenizerConfig
from ._registry import register_tokenizer
from .base import Tokenizer

__all__ = ["Image2dConfig", "Image2dTokenizer"]

_RECON_LOSSES = ("l1", "l2", "l1+l2")


@dataclass
class Image2dConfig(TokenizerConfig):
    """Config of :class:`Image2dTokenizer`.

    Attributes:
        in_channels: Image channels C.
        image_size: ``(H, W)`` the model is built for; only used for token counts and input checks
            (the network is fully convolutional, any size divisible by ``downsample`` works when
            set to ``(0, 0)``).
        downsample: Spatial reduction f, a power of two; the token grid is ``(H/f, W/f)``.
        channels: Width at each resolution, ``log2(f) + 1`` entries (input resolution first).
        num_res_blocks: Residual blocks per resolution.
        norm: ``"group"``, ``"batch"`` or ``"none"``.
        recon_loss: ``"l1"``, ``"l2"`` or ``"l1+l2"``.
        recon_weight: Weight of the reconstruction term.
        gan_weight: Weight of the generator's PatchGAN hinge term; 0 disables the discriminator. This and the
            three settings below are read by the trainer (:mod:`vqtok.train.adversarial`), not by the model.
        gan_start_step: Training step at which the adversarial terms start.
        disc_channels: Width of the discriminator's first layer.
        disc_layers: Stride-2 layers of the discriminator.
    """

    in_channels: int = 3
    image_size: tuple[int, int] = (0, 0)
    downsample: int = 4
    channels: tuple[int, ...] = (64, 128, 128)
    num_res_blocks: int = 1
    norm: str = "group"
    recon_loss: str = "l2"
    recon_weight: float = 1.0
    gan_weight: float = 0.0
    gan_start_step: int = 0
    disc_channels: int = 64
    disc_layers: int = 2

    def __post_init__(self) -> None:
        f = self.downsample
        if f < 1 or f & (f - 1):
            raise ValueError(f"downsample must be a power of two >= 1, got {f}")
        levels = int(math.log2(f)) + 1
        if len(self.channels) != levels:
            raise ValueError(f"downsample {f} needs {levels} entries in channels, got {len(self.channels)}")
        if self.recon_loss not in _RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {_RECON_LOSSES}, got {self.recon_loss!r}")
        h, w = self.image_size
        if (h or w) and (h % f or w % f):
            raise ValueError(f"image_size {self.image_size} is not divisible by downsample {f}")


class _Encoder(nn.Module):
    def __init__(self, cfg: Image2dConfig, out_dim: int) -> None:
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for level, c in enumerate(ch):
            blocks += [ResBlock2d(c, c, cfg.norm) for _ in range(cfg.num_res_blocks)]
            if level < len(ch) - 1:
                # Widen while downsampling, so every block runs at its level's width.
                blocks.append(Downsample2d(c, ch[level + 1]))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = create_norm2d(cfg.norm, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, D, H/f, W/f)``."""
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))


class _Decoder(nn.Module):
    def __init__(self, cfg: Image2dConfig, in_dim: int) -> None:
        super().__init__()
        ch = cfg.channels[::-1]
        self.conv_in = nn.Conv2d(in_dim, ch[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for level, c in enumerate(ch):
            blocks += [ResBlock2d(c, c, cfg.norm) for _ in range(cfg.num_res_blocks)]
            if level < len(ch) - 1:
                blocks.append(Upsample2d(c, ch[level + 1]))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = create_norm2d(cfg.norm, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, D, H/f, W/f) -> (B, C, H, W)``."""
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))


@register_tokenizer("image2d")
class Image2dTokenizer(Tokenizer):
    """Image tokenizer: ``(B, C, H, W)`` -> indices ``(B, H/f, W/f, *index_shape)`` -> ``(B, C, H, W)``.

    Images are expected as floats, nominally in ``[0, 1]``; the decoder output is not clamped.

    Args:
        config: An :class:`Image2dConfig`.
    """

    config_class = Image2dConfig
    modality = "image"
    config: Image2dConfig

    def __init__(self, config: Image2dConfig) -> None:
        super().__init__(config)
        self.encoder = _Encoder(config, self.quantizer.dim)
        self.decoder = _Decoder(config, self.quantizer.dim)

    @property
    def tokens_per_example(self) -> int | None:
        h, w = self.config.image_size
        f = self.config.downsample
        return (h // f) * (w // f) if h and w else None

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c, f = self.config.in_channels, self.config.downsample
        if signal.ndim != 4 or signal.shape[1] != c:
            raise ValueError(f"Image2dTokenizer expects images (B, {c}, H, W), got shape {tuple(signal.shape)}")
        h, w = signal.shape[-2:]
        if h % f or w % f:
            raise ValueError(f"image size {(h, w)} is not divisible by the downsample factor {f}")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        return rearrange(self.encoder(signal), "b d h w -> b h w d")

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.decoder(rearrange(quantized, "b h w d -> b d h w"))

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        kind = self.config.recon_loss
        terms: dict[str, Tensor] = {}
        total = signal.new_zeros((), dtype=recon.dtype)
        # Losses in fp32: under bf16 autocast the squared error of a good reconstruction underflows.
        recon32, signal32 = recon.float(), signal.float()
        if "l1" in kind:
            terms["recon_l1"] = F.l1_loss(recon32, signal32)
            total = total + terms["recon_l1"]
        if "l2" in kind:
            terms["recon_l2"] = F.mse_loss(recon32, signal32)
            total = total + terms["recon_l2"]
        return self.config.recon_weight * total, {k: v.detach() for k, v in terms.items()}
