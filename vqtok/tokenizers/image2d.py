"""Convolutional image tokenizer: ``(B, C, H, W)`` images to an ``(H/f, W/f)`` grid of tokens.

A VQGAN-style encoder/decoder (Esser et al., "Taming Transformers for High-Resolution Image Synthesis",
CVPR 2021, arXiv:2012.09841) around any registered quantizer: GroupNorm residual blocks, per-level widths (or a
base width times per-level multipliers), optional attention in the bottleneck and optional activation
checkpointing. The model owns only its L1/L2 reconstruction loss; the rest of the VQGAN recipe (perceptual loss,
PatchGAN, adaptive weight, LeCam, EMA) is composed by the trainer from the settings below, so release checkpoints
never carry training-only networks. Inputs follow :mod:`vqtok.tokenizers._image_input`. No weights are shipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..layers import AttnBlock2d, CheckpointedSequential, Downsample2d, ResBlock2d, Upsample2d, create_norm2d
from ._config import TokenizerConfig
from ._image_input import prepare_images
from ._recon_loss import l1_l2_loss
from ._registry import register_tokenizer
from .base import Tokenizer, TokenizerOutput

__all__ = ["Image2dConfig", "Image2dTokenizer"]

_RECON_LOSSES = ("l1", "l2", "l1+l2")


@dataclass
class Image2dConfig(TokenizerConfig):
    """Config of :class:`Image2dTokenizer`.

    Attributes:
        in_channels: Image channels C.
        image_size: ``(H, W)`` the model reads. When set, inputs must have exactly this size, so
            ``tokens_per_example`` is the real token count; ``(0, 0)`` accepts any size divisible by
            ``downsample`` (the network is fully convolutional) and ``tokens_per_example`` is ``None``.
        downsample: Spatial reduction f, a power of two; the token grid is ``(H/f, W/f)``.
        channels: Width at each resolution, ``log2(f) + 1`` entries (input resolution first).
        channel_mult: Per-level multipliers of ``base_channels`` (VQGAN's ``ch_mult``, e.g. ``(1, 1, 2, 2, 4)``);
            when given they replace ``channels``.
        base_channels: Width multiplied by ``channel_mult``.
        num_res_blocks: Residual blocks per resolution.
        norm: ``"group"``, ``"batch"`` or ``"none"``.
        attention: Put ResBlock-Attention-ResBlock in the bottleneck of encoder and decoder (VQGAN's mid block).
        attn_heads: Heads of that attention (VQGAN: 1).
        checkpointing: Recompute block activations in backward (less memory at 256x256, ~30% more compute).
        recon_loss: ``"l1"``, ``"l2"`` or ``"l1+l2"``.
        recon_weight: Weight of the reconstruction term.
        gan_weight: Weight of the generator's adversarial term; 0 disables the discriminator. This and the
            settings below are read by the trainer (:mod:`vqtok.train.adversarial`, :mod:`vqtok.train.perceptual`),
            not by the model.
        gan_start_step: Training step at which the adversarial terms start.
        disc_channels: Width of the discriminator's first layer.
        disc_layers: Stride-2 layers of the discriminator.
        gan_loss: ``"hinge"`` or ``"non_saturating"``.
        gan_adaptive_weight: Scale the generator term by VQGAN's ratio of gradient norms at the decoder's last layer.
        lecam_weight: Weight of LeCam regularisation of the discriminator (Tseng et al. 2021); 0 disables it.
        lecam_decay: EMA decay of LeCam's logit anchors.
        perceptual_weight: Weight of the LPIPS perceptual term; 0 disables it.
        perceptual_net: LPIPS backbone, ``"vgg"`` or ``"alex"``.
        perceptual_backbone: Path of the backbone weights (torchvision ``state_dict`` layout).
        perceptual_head: Path of the LPIPS linear heads (``lpips`` package layout); ``""``: the file shipped in the
            installed ``lpips`` package.
    """

    in_channels: int = 3
    image_size: tuple[int, int] = (0, 0)
    downsample: int = 4
    channels: tuple[int, ...] = (64, 128, 128)
    channel_mult: tuple[int, ...] = ()
    base_channels: int = 64
    num_res_blocks: int = 1
    norm: str = "group"
    attention: bool = False
    attn_heads: int = 1
    checkpointing: bool = False
    recon_loss: str = "l2"
    recon_weight: float = 1.0
    gan_weight: float = 0.0
    gan_start_step: int = 0
    disc_channels: int = 64
    disc_layers: int = 2
    gan_loss: str = "hinge"
    gan_adaptive_weight: bool = False
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
    perceptual_weight: float = 0.0
    perceptual_net: str = "vgg"
    perceptual_backbone: str = ""
    perceptual_head: str = ""

    def __post_init__(self) -> None:
        f = self.downsample
        if f < 1 or f & (f - 1):
            raise ValueError(f"downsample must be a power of two >= 1, got {f}")
        levels = int(math.log2(f)) + 1
        if self.channel_mult:
            if len(self.channel_mult) != levels or min(self.channel_mult) < 1 or self.base_channels < 1:
                raise ValueError(
                    f"downsample {f} needs {levels} positive entries in channel_mult and base_channels >= 1, got "
                    f"channel_mult={self.channel_mult}, base_channels={self.base_channels}"
                )
        elif len(self.channels) != levels:
            raise ValueError(f"downsample {f} needs {levels} entries in channels, got {len(self.channels)}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.gan_loss not in ("hinge", "non_saturating"):
            raise ValueError(f"gan_loss must be 'hinge' or 'non_saturating', got {self.gan_loss!r}")
        if self.recon_loss not in _RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {_RECON_LOSSES}, got {self.recon_loss!r}")
        h, w = self.image_size
        if (h or w) and (h % f or w % f):
            raise ValueError(f"image_size {self.image_size} is not divisible by downsample {f}")

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Width at each resolution: ``base_channels * channel_mult`` when given, else ``channels``."""
        if self.channel_mult:
            return tuple(self.base_channels * m for m in self.channel_mult)
        return tuple(self.channels)


def _mid_block(cfg: Image2dConfig, c: int) -> nn.Module:
    return nn.Sequential(
        ResBlock2d(c, c, cfg.norm), AttnBlock2d(c, cfg.norm, cfg.attn_heads), ResBlock2d(c, c, cfg.norm)
    )


class _Encoder(nn.Module):
    def __init__(self, cfg: Image2dConfig, out_dim: int) -> None:
        super().__init__()
        ch = cfg.level_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for level, c in enumerate(ch):
            blocks += [ResBlock2d(c, c, cfg.norm) for _ in range(cfg.num_res_blocks)]
            if level < len(ch) - 1:
                # Widen while downsampling, so every block runs at its level's width.
                blocks.append(Downsample2d(c, ch[level + 1]))
        if cfg.attention:
            blocks.append(_mid_block(cfg, ch[-1]))
        self.blocks = CheckpointedSequential(*blocks, checkpointing=cfg.checkpointing)
        self.norm_out = create_norm2d(cfg.norm, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, D, H/f, W/f)``."""
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))


class _Decoder(nn.Module):
    def __init__(self, cfg: Image2dConfig, in_dim: int) -> None:
        super().__init__()
        ch = cfg.level_channels[::-1]
        self.conv_in = nn.Conv2d(in_dim, ch[0], 3, padding=1)
        blocks: list[nn.Module] = [_mid_block(cfg, ch[0])] if cfg.attention else []
        for level, c in enumerate(ch):
            blocks += [ResBlock2d(c, c, cfg.norm) for _ in range(cfg.num_res_blocks)]
            if level < len(ch) - 1:
                blocks.append(Upsample2d(c, ch[level + 1]))
        self.blocks = CheckpointedSequential(*blocks, checkpointing=cfg.checkpointing)
        self.norm_out = create_norm2d(cfg.norm, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, D, H/f, W/f) -> (B, C, H, W)``."""
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))


@register_tokenizer("image2d")
class Image2dTokenizer(Tokenizer):
    """Image tokenizer: ``(B, C, H, W)`` -> indices ``(B, H/f, W/f, *index_shape)`` -> ``(B, C, H, W)``.

    Images are uint8 pixels or floats nominally in ``[0, 1]`` (the rule of :mod:`vqtok.tokenizers._image_input`);
    the decoder output is not clamped.

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

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's output conv: where VQGAN's adaptive weight compares gradient norms."""
        return self.decoder.conv_out.weight

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c, f = self.config.in_channels, self.config.downsample
        if signal.ndim != 4 or signal.shape[1] != c:
            raise ValueError(
                f"Image2dTokenizer expects images (B, {c}, H, W) with {c} channel(s), got shape {tuple(signal.shape)}"
            )
        h, w = signal.shape[-2:]
        if h % f or w % f:
            raise ValueError(f"image size {(h, w)} is not divisible by the downsample factor {f}")
        size = tuple(self.config.image_size)
        if all(size) and (h, w) != size:
            raise ValueError(
                f"image size {(h, w)} differs from the model's image_size {size} (which fixes tokens_per_example); "
                "build the model with image_size=(0, 0) to read any size divisible by the downsample factor"
            )

    def forward(self, signal: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """As :meth:`Tokenizer.forward`, after the dtype rule; ``recon`` comes back in the caller's float dtype."""
        images, dtype = prepare_images(signal, self._dtype, type(self).__name__)
        out = super().forward(images, mask)
        out.recon = out.recon.to(dtype)
        return out

    def encode(self, signal: Tensor, **options) -> Tensor:
        """As :meth:`Tokenizer.encode`, after the dtype rule."""
        return super().encode(prepare_images(signal, self._dtype, type(self).__name__)[0], **options)

    @property
    def _dtype(self) -> torch.dtype:
        return self.decoder.conv_out.weight.dtype

    def _encode_latents(self, signal: Tensor) -> Tensor:
        return rearrange(self.encoder(signal), "b d h w -> b h w d")

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.decoder(rearrange(quantized, "b h w d -> b d h w"))

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return l1_l2_loss(signal, recon, self.config.recon_loss, self.config.recon_weight)
