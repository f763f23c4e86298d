"""Strided 1-D convolutional audio codec: ``(B, C, T)`` waveforms to ``T / hop`` frames of residual-VQ tokens.

The layout follows the SoundStream / EnCodec / DAC family (Zeghidour et al., "SoundStream: An End-to-End
Neural Audio Codec", arXiv:2107.03312; Défossez et al., "High Fidelity Neural Audio Compression",
arXiv:2210.13438; Kumar et al., "High-Fidelity Audio Compression with Improved RVQGAN", arXiv:2306.06546):
a convolutional encoder whose strided stages multiply to the hop (e.g. strides ``(2, 4, 5, 8)`` give 320
samples per frame, 75 Hz at 24 kHz), residual VQ with quantizer dropout so that one model serves several
bitrates, a mirrored transposed-convolution decoder, and waveform L1 + multi-scale STFT + multi-scale mel
losses, plus an optional batch-pooled SNR term (``snr_weight``) for waveform fidelity. No adversarial loss
and no weights are shipped. Written for vqtok; no code was copied.

Lengths: the encoder right-pads ``T`` with zeros to the next multiple of the hop. ``forward`` crops the
reconstruction back to ``T``; :meth:`AudioTokenizer.decode` returns ``frames * hop`` samples unless it is
given ``length=T`` (store ``T`` next to the indices to restore the exact length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..layers.audio_losses import MultiScaleSpectralLoss, snr_loss
from ._config import TokenizerConfig
from ._registry import register_tokenizer
from .base import Tokenizer, TokenizerOutput

__all__ = ["AudioConfig", "AudioTokenizer"]


def _default_rvq() -> dict[str, Any]:
    return {"dim": 64, "codebook_size": 1024, "num_levels": 8, "quantizer_dropout": 0.5}


@dataclass
class AudioConfig(TokenizerConfig):
    """Config of :class:`AudioTokenizer`.

    Attributes:
        quantizer: Registered quantizer; residual VQ (``"rvq"``) by default, which enables
            ``encode(wav, num_levels=n)``.
        quantizer_kwargs: Its kwargs; ``dim`` is the latent width D.
        sample_rate: Hz; used for the mel losses, :meth:`AudioTokenizer.bitrate_kbps` and checks only,
            the network itself works at any rate.
        in_channels: Audio channels C (1 = mono).
        strides: Encoder downsampling per stage; their product is the hop.
        channels: Width of the first stage; each stage doubles it.
        res_dilations: Dilations of the residual units before each strided conv.
        recon_weight: Weight of the waveform L1 term.
        stft_weight: Weight of the multi-scale linear + log STFT magnitude term.
        mel_weight: Weight of the multi-scale log-mel term.
        snr_weight: Weight of the batch-pooled negative SNR in dB (:func:`vqtok.layers.audio_losses.snr_loss`);
            0 leaves it out. It drives the waveform (phase) fidelity that SI-SNR measures, which the
            magnitude-only spectral terms cannot.
        fft_sizes: FFT sizes of the spectral terms.
    """

    quantizer: str = "rvq"
    quantizer_kwargs: dict[str, Any] = field(default_factory=_default_rvq)
    sample_rate: int = 24000
    in_channels: int = 1
    strides: tuple[int, ...] = (2, 4, 5, 8)
    channels: int = 32
    res_dilations: tuple[int, ...] = (1, 3, 9)
    recon_weight: float = 1.0
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    snr_weight: float = 0.0
    fft_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)

    def __post_init__(self) -> None:
        if not self.strides or min(self.strides) < 1:
            raise ValueError(f"strides must be a non-empty tuple of positive ints, got {self.strides}")
        if self.sample_rate < 1 or self.in_channels < 1 or self.channels < 1:
            raise ValueError("sample_rate, in_channels and channels must be positive")
        if min(self.res_dilations, default=1) < 1:
            raise ValueError(f"res_dilations must be positive, got {self.res_dilations}")

    @property
    def hop(self) -> int:
        """Samples per token frame: the product of the strides."""
        return math.prod(self.strides)


class _ResUnit1d(nn.Module):
    """``x + conv1x1(elu(conv7_dilated(elu(x))))``; same length, same width."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(F.elu(self.conv(F.elu(x))))


class _Down(nn.Module):
    """Strided conv, kernel ``2s``: ``(B, C, T) -> (B, C', T / s)`` for ``T`` divisible by ``s``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(c_in, c_out, 2 * stride, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        # kernel - stride = stride extra samples, split so that the output has exactly T / s frames.
        s = self.stride
        return self.conv(F.pad(F.elu(x), ((s + 1) // 2, s // 2)))


class _Up(nn.Module):
    """Transposed conv, kernel ``2s``: ``(B, C, L) -> (B, C', L * s)``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        y = self.conv(F.elu(x))  # (B, C', L * s + s)
        return y[..., (s + 1) // 2 : y.shape[-1] - s // 2]


class _Encoder(nn.Module):
    def __init__(self, cfg: AudioConfig, out_dim: int) -> None:
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [nn.Conv1d(cfg.in_channels, c, 7, padding=3)]
        for stride in cfg.strides:
            layers += [_ResUnit1d(c, d) for d in cfg.res_dilations]
            layers.append(_Down(c, 2 * c, stride))
            c *= 2
        layers += [nn.ELU(), nn.Conv1d(c, out_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T) -> (B, D, T / hop)``."""
        return self.net(x)


class _Decoder(nn.Module):
    def __init__(self, cfg: AudioConfig, in_dim: int) -> None:
        super().__init__()
        c = cfg.channels * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [nn.Conv1d(in_dim, c, 7, padding=3)]
        for stride in reversed(cfg.strides):
            layers.append(_Up(c, c // 2, stride))
            c //= 2
            layers += [_ResUnit1d(c, d) for d in cfg.res_dilations]
        layers += [nn.ELU(), nn.Conv1d(c, cfg.in_channels, 7, padding=3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, D, L) -> (B, C, L * hop)``."""
        return self.net(z)


@register_tokenizer("audio")
class AudioTokenizer(Tokenizer):
    """Audio codec: ``(B, C, T)`` -> indices ``(B, ceil(T / hop), *index_shape)`` -> ``(B, C, T)``.

    With the default residual VQ the indices are ``(B, frames, L)``; ``encode(wav, num_levels=n)`` keeps the
    first ``n`` levels (``n / L`` of the bitrate) and :meth:`decode` accepts any such prefix.

    Args:
        config: An :class:`AudioConfig`.
    """

    config_class = AudioConfig
    modality = "audio"
    config: AudioConfig

    def __init__(self, config: AudioConfig) -> None:
        super().__init__(config)
        self.encoder = _Encoder(config, self.quantizer.dim)
        self.decoder = _Decoder(config, self.quantizer.dim)
        self.spectral_loss = MultiScaleSpectralLoss(config.sample_rate, config.fft_sizes)

    # ------------------------------------------------------------------------------------- rate
    @property
    def hop(self) -> int:
        """Samples per token frame."""
        return self.config.hop

    @property
    def frames_per_second(self) -> float:
        """Token frames per second (each frame holds ``num_codebooks`` indices at full bitrate)."""
        return self.config.sample_rate / self.hop

    def bitrate_kbps(self, num_levels: int | None = None) -> float:
        """Bitrate of a fixed-length code at ``num_levels`` residual levels (``None``: all levels).

        Raises:
            ValueError: When ``num_levels`` is out of range, or given for a quantizer without levels.
        """
        bits = self.quantizer.bits_per_token
        if num_levels is not None:
            total = getattr(self.quantizer, "num_levels", None)
            if total is None:
                raise ValueError(f"{type(self.quantizer).__name__} has no residual levels; pass num_levels=None")
            if isinstance(num_levels, bool) or not 1 <= int(num_levels) <= total:
                raise ValueError(f"num_levels must be in [1, {total}], got {num_levels}")
            bits = bits * int(num_levels) / total
        return self.frames_per_second * bits / 1000.0

    # ---------------------------------------------------------------------------------- layouts
    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c = self.config.in_channels
        if signal.ndim != 3 or signal.shape[1] != c or signal.shape[-1] < 1:
            raise ValueError(f"AudioTokenizer expects waveforms (B, {c}, T) with T >= 1, got {tuple(signal.shape)}")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        pad = -signal.shape[-1] % self.hop
        if pad:
            signal = F.pad(signal, (0, pad))
        return rearrange(self.encoder(signal), "b d t -> b t d")

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.decoder(rearrange(quantized, "b t d -> b d t"))

    def forward(self, signal: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """As :meth:`Tokenizer.forward`; ``recon`` is cropped back to the input length ``T``."""
        self.check_signal(signal)
        length = signal.shape[-1]
        out = super().forward(F.pad(signal, (0, -length % self.hop)), mask)
        if out.recon.shape[-1] != length:
            # Losses were taken on the padded signal, whose tail is zeros the codec also learns to keep.
            out.recon = out.recon[..., :length]
        return out

    def decode(self, indices: Tensor, length: int | None = None) -> Tensor:
        """Indices ``(B, frames, *index_shape)`` (any level prefix) -> ``(B, C, frames * hop)`` waveforms.

        Args:
            indices: From :meth:`encode`.
            length: Original ``T``; the output is cropped to it (``frames * hop - hop < T <= frames * hop``).

        Raises:
            ValueError: On malformed indices or a ``length`` that does not fit the number of frames.
        """
        if not hasattr(indices, "ndim") or indices.ndim < 2:
            raise ValueError(f"AudioTokenizer expects indices (B, frames, ...), got {getattr(indices, 'shape', None)}")
        wav = super().decode(indices)
        if length is not None:
            frames = indices.shape[1]
            if not (frames - 1) * self.hop < length <= frames * self.hop:
                raise ValueError(f"length {length} does not fit {frames} frames of hop {self.hop}")
            wav = wav[..., :length]
        return wav

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        # fp32: spectral magnitudes of quiet audio underflow in bf16.
        recon32, signal32 = recon.float(), signal.float()
        terms = {"recon_l1": F.l1_loss(recon32, signal32), **self.spectral_loss(recon32, signal32)}
        total = cfg.recon_weight * terms["recon_l1"] + cfg.stft_weight * terms["stft"] + cfg.mel_weight * terms["mel"]
        if cfg.snr_weight:
            terms["neg_snr_db"] = snr_loss(recon32, signal32)
            total = total + cfg.snr_weight * terms["neg_snr_db"]
        return total, {k: v.detach() for k, v in terms.items()}
