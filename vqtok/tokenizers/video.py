"""Causal video tokenizer, one model for images and videos: ``(B, C, T, H, W)`` clips to a space-time token grid.

A causal 3-D CNN (MAGVIT-v2, Yu et al., arXiv:2310.05737; Cosmos tokenizers, NVIDIA, arXiv:2501.03575) around any
registered quantizer (FSQ by default). Written for vqtok; no weights are shipped.

**Causality.** Every temporal convolution pads on the left only and normalisation is per frame
(:mod:`vqtok.layers.conv3d`), so the tokens of latent frame ``j`` depend on input frames ``<= ft * j`` only
(``ft`` = ``temporal_downsample``). Changing frames after ``t`` never changes tokens that only see frames ``<= t``.

**Images.** The first frame is coded on its own: latent frame 0 sees frame 0 only. A 1-frame clip is an image, and
``encode(image)`` (``(B, C, H, W)`` -> ``(B, H/f, W/f, ...)``) equals ``encode(video)[:, 0]`` for any video whose
first frame is that image; ``decode`` of image indices returns images.

**Frame counts.** A clip has ``T = 1 + ft * k`` frames (1, 5, 9, 13, 17 ... for ``ft = 4``) and gives
``1 + k`` latent frames. With ``frame_padding="error"`` (default) any other ``T`` is a ``ValueError``; with
``"repeat_last"`` the clip is padded at the end by repeating its last frame up to the next valid count (this never
changes earlier tokens, by causality), ``encode`` returns the padded clip's tokens and ``forward`` trims the
reconstruction back to ``T`` frames. :func:`pad_frames` applies the same rule by hand (16 frames -> 17).

**Values.** Frames are floats, nominally in ``[0, 1]``; uint8 clips are refused with a message pointing at
:func:`video_to_float` (``x / 255``), and NaN/inf are refused. :func:`stack_frames` builds a clip from a list of
frames and names the first frame whose size differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..layers import CausalConv3d, CausalDownsample3d, CausalUpsample3d, FrameNorm, ResBlock3d
from ._config import TokenizerConfig
from ._recon_loss import l1_l2_loss
from ._registry import register_tokenizer
from ._video_clips import pad_frames, stack_frames, valid_frame_count, video_to_float
from .base import Tokenizer, TokenizerOutput

__all__ = ["VideoConfig", "VideoTokenizer", "pad_frames", "stack_frames", "video_to_float", "valid_frame_count"]

_RECON_LOSSES = ("l1", "l2", "l1+l2")
_FRAME_PADDING = ("error", "repeat_last")


def _power_of_two(name: str, value: int) -> int:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 1, got {value}")
    return int(math.log2(value))


@dataclass
class VideoConfig(TokenizerConfig):
    """Config of :class:`VideoTokenizer`.

    Attributes:
        in_channels: Frame channels C.
        frames: Clip length T the model is built for (0: any): used for token counts and, with ``repeat_last``
            padding, to cut decoded clips back to T frames.
        image_size: ``(H, W)``; only used for token counts (``(0, 0)``: any size divisible by ``downsample``).
        temporal_downsample: Temporal factor ``ft`` (power of two); ``1 + ft*k`` frames -> ``1 + k`` latent frames.
        downsample: Spatial factor f (power of two), patch stem included; ``ft x f x f`` is e.g. 4x8x8 or 4x4x4.
        patch_size: Per-frame patchify stem (power of two dividing ``downsample``): a cheap first ``p x`` spatial
            reduction that keeps 3-D convs off the full resolution.
        channels: Width at each resolution after the stem, ``log2(downsample / patch_size) + 1`` entries;
            the last ``log2(ft)`` stride-2 stages also halve time, so ``ft <= downsample / patch_size``.
        num_res_blocks: Causal residual blocks per resolution.
        norm: ``"group"`` (per frame) or ``"none"``.
        frame_padding: ``"error"`` or ``"repeat_last"`` (see the module docstring).
        recon_loss: ``"l1"``, ``"l2"`` or ``"l1+l2"``.
        recon_weight: Weight of the reconstruction term.
        gan_weight: Weight of the 3-D PatchGAN hinge term (0: off); read by :mod:`vqtok.train.adversarial`.
        gan_start_step: Step at which the adversarial terms start.
        disc_channels: Width of the discriminator's first layer.
        disc_layers: Spatial stride-2 layers of the discriminator.
    """

    in_channels: int = 3
    frames: int = 0
    image_size: tuple[int, int] = (0, 0)
    temporal_downsample: int = 4
    downsample: int = 8
    patch_size: int = 2
    channels: tuple[int, ...] = (32, 64, 128)
    num_res_blocks: int = 1
    norm: str = "group"
    frame_padding: str = "error"
    recon_loss: str = "l2"
    recon_weight: float = 1.0
    gan_weight: float = 0.0
    gan_start_step: int = 0
    disc_channels: int = 32
    disc_layers: int = 2

    def __post_init__(self) -> None:
        spatial = _power_of_two("downsample", self.downsample)
        patch = _power_of_two("patch_size", self.patch_size)
        temporal = _power_of_two("temporal_downsample", self.temporal_downsample)
        if patch > spatial:
            raise ValueError(f"patch_size {self.patch_size} exceeds downsample {self.downsample}")
        levels = spatial - patch + 1
        if len(self.channels) != levels:
            raise ValueError(
                f"downsample {self.downsample} with patch_size {self.patch_size} needs {levels} entries in channels, "
                f"got {len(self.channels)}"
            )
        if temporal > levels - 1:
            raise ValueError(
                f"temporal_downsample {self.temporal_downsample} needs {temporal} stride-2 stages but downsample "
                f"{self.downsample} / patch_size {self.patch_size} has {levels - 1}; lower patch_size"
            )
        if self.norm not in ("group", "none"):
            raise ValueError(f"norm must be 'group' or 'none' (per-frame, causal), got {self.norm!r}")
        if self.frame_padding not in _FRAME_PADDING:
            raise ValueError(f"frame_padding must be one of {_FRAME_PADDING}, got {self.frame_padding!r}")
        if self.recon_loss not in _RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {_RECON_LOSSES}, got {self.recon_loss!r}")
        if (
            self.frames
            and self.frame_padding == "error"
            and not valid_frame_count(self.frames, self.temporal_downsample)
        ):
            raise ValueError(
                f"frames {self.frames} is not 1 + {self.temporal_downsample}*k; set frame_padding='repeat_last'"
            )
        h, w = self.image_size
        if (h or w) and (h % self.downsample or w % self.downsample):
            raise ValueError(f"image_size {self.image_size} is not divisible by downsample {self.downsample}")


# ------------------------------------------------------------------------------------------------------ network
class _Encoder(nn.Module):
    def __init__(self, cfg: VideoConfig, out_dim: int) -> None:
        super().__init__()
        ch, p = cfg.channels, cfg.patch_size
        temporal = int(math.log2(cfg.temporal_downsample))
        # A patchify stem is per frame (temporal kernel 1), hence causal.
        self.stem = nn.Conv3d(cfg.in_channels, ch[0], (1, p, p), stride=(1, p, p)) if p > 1 else None
        self.conv_in = CausalConv3d(cfg.in_channels if p == 1 else ch[0], ch[0], 3)
        blocks: list[nn.Module] = []
        for level, c in enumerate(ch):
            blocks += [ResBlock3d(c, c, cfg.norm) for _ in range(cfg.num_res_blocks)]
            if level < len(ch) - 1:
                # Time is halved in the deepest stages, where the feature maps (and the convs) are smallest.
                blocks.append(CausalDownsample3d(c, ch[level + 1], temporal=level >= len(ch) - 1 - temporal))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = FrameNorm(cfg.norm, ch[-1])
        self.conv_out = nn.Conv3d(ch[-1], out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, D, T', H/f, W/f)``."""
        if self.stem is not None:
            x = self.stem(x)
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))


class _Decoder(nn.Module):
    def __init__(self, cfg: VideoConfig, in_dim: int) -> None:
        super().__init__()
        ch, p = cfg.channels[::-1], cfg.patch_size
        temporal = int(math.log2(cfg.temporal_downsample))
        self.patch_size = p
        self.conv_in = CausalConv3d(in_dim, ch[0], 3)
        blocks: list[nn.Module] = []
        for level, c in enumerate(ch):
            blocks += [ResBlock3d(c, c, cfg.norm) for _ in range(cfg.num_res_blocks)]
            if level < len(ch) - 1:
                blocks.append(CausalUpsample3d(c, ch[level + 1], temporal=level < temporal))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = FrameNorm(cfg.norm, ch[-1])
        self.conv_out = CausalConv3d(ch[-1], cfg.in_channels * p * p, 3)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, D, T', H/f, W/f) -> (B, C, T, H, W)``."""
        x = self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))
        if self.patch_size > 1:
            p = self.patch_size
            x = rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=p, q=p)
        return x


@register_tokenizer("video")
class VideoTokenizer(Tokenizer):
    """Video (and image) tokenizer: ``(B, C, T, H, W)`` -> indices ``(B, T', H/f, W/f, *index_shape)`` -> clips.

    ``T' = 1 + (T - 1) / ft``. Images ``(B, C, H, W)`` are 1-frame clips: indices ``(B, H/f, W/f, *index_shape)``.
    See the module docstring for causality, the frame-count rule and input conversions.

    Args:
        config: A :class:`VideoConfig`.
    """

    config_class = VideoConfig
    modality = "video"
    config: VideoConfig
    #: ``decode`` also takes image grids ``(B, h, w, *index_shape)``, one axis fewer than clips.
    decodes_image_grids: ClassVar[bool] = True

    def __init__(self, config: VideoConfig) -> None:
        super().__init__(config)
        self.encoder = _Encoder(config, self.quantizer.dim)
        self.decoder = _Decoder(config, self.quantizer.dim)

    # ---------------------------------------------------------------------------------------- geometry
    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of ``frames`` frames (after the ``repeat_last`` padding, if enabled)."""
        ft = self.config.temporal_downsample
        return 1 + math.ceil((frames - 1) / ft)

    @property
    def tokens_per_example(self) -> int | None:
        h, w = self.config.image_size
        f, t = self.config.downsample, self.config.frames
        return self.latent_frames(t) * (h // f) * (w // f) if h and w and t else None

    def check_signal(self, signal: Any) -> None:
        name, c, f = type(self).__name__, self.config.in_channels, self.config.downsample
        if not isinstance(signal, Tensor):
            hint = (
                " (stack a list of frames with vqtok.tokenizers.video.stack_frames)" if isinstance(signal, list) else ""
            )
            raise ValueError(f"{name} expects a tensor, got {type(signal).__name__}{hint}")
        if signal.dtype == torch.uint8:
            raise ValueError(
                f"{name} expects floating point frames in [0, 1], got uint8; convert with "
                "vqtok.tokenizers.video.video_to_float (x / 255)"
            )
        super().check_signal(signal)
        if signal.ndim not in (4, 5) or signal.shape[1] != c:
            raise ValueError(
                f"{name} expects videos (B, {c}, T, H, W) or images (B, {c}, H, W), got shape {tuple(signal.shape)}"
            )
        if any(s == 0 for s in signal.shape):
            raise ValueError(f"{name} got an empty axis in shape {tuple(signal.shape)}")
        h, w = signal.shape[-2:]
        if h % f or w % f:
            raise ValueError(f"frame size {(h, w)} is not divisible by the spatial downsample factor {f}")
        if signal.ndim == 5 and self.config.frame_padding == "error":
            t, ft = signal.shape[2], self.config.temporal_downsample
            if not valid_frame_count(t, ft):
                raise ValueError(
                    f"{t} frames do not fit temporal_downsample {ft}: clips need 1 + {ft}*k frames "
                    f"(e.g. {1 + ft * ((t - 1) // ft)} or {1 + ft * ((t - 1) // ft + 1)}); pad with "
                    "vqtok.tokenizers.video.pad_frames or set frame_padding='repeat_last'"
                )
        if not torch.isfinite(signal).all():
            raise ValueError(f"{name} input contains NaN or inf values")

    # ------------------------------------------------------------------------------------ the layout
    def _encode_latents(self, signal: Tensor) -> Tensor:
        if signal.ndim == 4:
            return rearrange(self.encoder(signal.unsqueeze(2)), "b d 1 h w -> b h w d")
        signal = pad_frames(signal, self.config.temporal_downsample)
        return rearrange(self.encoder(signal), "b d t h w -> b t h w d")

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        if quantized.ndim == 4:
            return self.decoder(rearrange(quantized, "b h w d -> b d 1 h w")).squeeze(2)
        if quantized.ndim != 5:
            raise ValueError(f"expected latents (B, T', h, w, D) or (B, h, w, D), got {tuple(quantized.shape)}")
        return self.decoder(rearrange(quantized, "b t h w d -> b d t h w"))

    def decode(self, indices: Tensor) -> Tensor:
        """Indices ``(B, T', h, w, *index_shape)`` -> clips ``(B, C, 1 + ft*(T'-1), H, W)``; image indices
        ``(B, h, w, *index_shape)`` -> images ``(B, C, H, W)``.

        With ``frame_padding="repeat_last"`` and ``frames`` set, the ``T'`` latent frames of a ``frames``-long clip
        decode to exactly ``frames`` frames (the padding is dropped), so a model built for 16-frame clips returns
        16 frames.

        Raises:
            ValueError: When the grid is neither rank.
        """
        grid = indices.ndim - len(self.index_shape)
        if grid not in (3, 4):
            raise ValueError(
                f"expected indices (B, T', h, w{', ...' if self.index_shape else ''}) or (B, h, w, ...) with index "
                f"shape {self.index_shape}, got {tuple(indices.shape)}"
            )
        recon = super().decode(indices)
        t = self.config.frames
        if grid == 4 and t and self.config.frame_padding == "repeat_last" and indices.shape[1] == self.latent_frames(t):
            recon = recon[:, :, :t]  # a model built for T frames returns T frames (drops the repeat_last padding)
        return recon

    def forward(self, signal: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """As :meth:`Tokenizer.forward`; a ``repeat_last``-padded clip's reconstruction is trimmed to ``T`` frames."""
        out = super().forward(signal, mask)
        if signal.ndim == 5 and out.recon.shape[2] != signal.shape[2]:
            out.recon = out.recon[:, :, : signal.shape[2]]
        return out

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if signal.ndim == 5:
            recon = recon[:, :, : signal.shape[2]]  # drop repeat_last padding frames
        return l1_l2_loss(signal, recon, self.config.recon_loss, self.config.recon_weight)
