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
reconstruction back to ``T`` (and takes its losses there); :meth:`AudioTokenizer.decode` returns ``frames * hop``
samples unless it is given ``length=T`` (store ``T`` next to the indices to restore the exact length).

Streaming: with ``causal=True`` every convolution pads on the left only (:mod:`vqtok.layers.conv1d`), and
:meth:`AudioTokenizer.encode_stream` / :meth:`AudioTokenizer.decode_stream` turn any chunking of a signal into
exactly the tokens and samples of whole-signal :meth:`encode` / :meth:`decode`. Input that is not a finite float
``(B, C, T)`` batch is refused; :func:`vqtok.tokenizers.audio_input.to_waveform` converts int16, stereo and other
sample rates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..layers.audio_losses import MultiScaleSpectralLoss, snr_loss
from ..layers.codec1d import Codec1dSpec, ConvDecoder1d, ConvEncoder1d
from ..layers.conv1d import StreamCache
from ._config import TokenizerConfig
from ._registry import register_tokenizer
from .audio_input import check_waveform
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
        causal: Left-only padding in every convolution: frame ``t`` depends on samples up to the end of
            frame ``t`` only, which makes :meth:`AudioTokenizer.encode_stream` / ``decode_stream`` possible
            (algorithmic latency one hop). ``False`` (default, and what older checkpoints were trained
            with) pads both sides and sees about a hop into the future.
        activation: ``"elu"`` (default, what older checkpoints used) or ``"snake"`` (DAC's periodic
            activation with a learned frequency per channel, :class:`vqtok.layers.snake.Snake1d`).
        gan_weight: Adversarial training (read by :mod:`vqtok.train.adversarial`, which builds the
            multi-period + multi-scale STFT discriminator); 0 (default) trains without one.
        gan_start_step: Step at which the adversarial terms switch on.
        gan_loss: ``"hinge"`` or ``"lsgan"``.
        gan_feature_weight: Feature-matching weight inside the generator's adversarial term.
        gan_balance: Balance the adversarial gradient against the reconstruction gradient (see
            :class:`vqtok.train.adversarial.AdversarialSettings`).
        disc_channels: Width of each sub-discriminator.
        disc_layers: Hidden layers of each sub-discriminator.
        disc_periods: Periods of the multi-period discriminator.
        disc_fft_sizes: FFT sizes of the multi-scale STFT discriminator.
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
    causal: bool = False
    activation: str = "elu"
    gan_weight: float = 0.0
    gan_start_step: int = 0
    gan_loss: str = "hinge"
    gan_feature_weight: float = 0.0
    gan_balance: bool = False
    disc_channels: int = 16
    disc_layers: int = 3
    disc_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    disc_fft_sizes: tuple[int, ...] = (256, 512, 1024)

    def __post_init__(self) -> None:
        if not self.strides or min(self.strides) < 1:
            raise ValueError(f"strides must be a non-empty tuple of positive ints, got {self.strides}")
        if self.sample_rate < 1 or self.in_channels < 1 or self.channels < 1:
            raise ValueError("sample_rate, in_channels and channels must be positive")
        if min(self.res_dilations, default=1) < 1:
            raise ValueError(f"res_dilations must be positive, got {self.res_dilations}")
        if self.activation not in ("elu", "snake"):
            raise ValueError(f"activation must be 'elu' or 'snake', got {self.activation!r}")

    @property
    def hop(self) -> int:
        """Samples per token frame: the product of the strides."""
        return math.prod(self.strides)


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
        c = config
        net = Codec1dSpec(
            c.in_channels,
            c.channels,
            tuple(c.strides),
            tuple(c.res_dilations),
            self.quantizer.dim,
            c.causal,
            c.activation,
        )
        self.encoder = ConvEncoder1d(net)
        self.decoder = ConvDecoder1d(net)
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
    @property
    def algorithmic_latency_ms(self) -> float | None:
        """Causal models: one hop (the encoder waits for a whole frame, the decoder adds nothing); ``None``
        for a non-causal model, which needs the whole signal."""
        return 1000.0 * self.hop / self.config.sample_rate if self.config.causal else None

    def check_signal(self, signal: Tensor) -> None:
        """Refuses anything but finite float ``(B, C, T)`` waveforms with ``T >= 1``; signals shorter than a hop
        are zero-padded to one frame. Convert int16 / stereo / other rates with
        :func:`vqtok.tokenizers.audio_input.to_waveform`."""
        check_waveform(signal, self.config.in_channels, f"{type(self).__name__} input")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        pad = -signal.shape[-1] % self.hop
        if pad:
            signal = F.pad(signal, (0, pad))
        return rearrange(self.encoder(signal), "b d t -> b t d")

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.decoder(rearrange(quantized, "b t d -> b d t"))

    def forward(self, signal: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """As :meth:`Tokenizer.forward`; ``recon`` is cropped back to the input length ``T`` *before* the losses, so
        they (and the gradients a GAN balancer compares on ``recon``) cover the real samples only."""
        self.check_signal(signal)
        signal = self._cast_signal(signal)  # fp16/bf16/fp64 to the parameters' dtype, as the base class does
        qout = self.quantizer(self._encode_latents(signal), mask=mask)
        recon = self._decode_latents(qout.quantized)[..., : signal.shape[-1]]
        rec_loss, losses = self._reconstruction_losses(signal, recon)
        losses = {**losses, **{f"q_{k}": v.detach() for k, v in qout.losses.items()}}
        metrics = {f"q_{k}": v for k, v in qout.metrics.items()}
        return TokenizerOutput(recon, qout, rec_loss + qout.loss, losses, metrics)

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """As :meth:`Tokenizer.encode`; a causal model runs the stream (so chunking never changes a token)."""
        if not self.config.causal:
            return super().encode(signal, **options)
        self.check_signal(signal)
        return torch.cat(list(self.encode_stream([signal], **options)), dim=1)

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
        wav = torch.cat(list(self.decode_stream([indices])), dim=-1) if self.config.causal else super().decode(indices)
        if length is not None:
            frames = indices.shape[1]
            if not (frames - 1) * self.hop < length <= frames * self.hop:
                raise ValueError(f"length {length} does not fit {frames} frames of hop {self.hop}")
            wav = wav[..., :length]
        return wav

    # -------------------------------------------------------------------------------- streaming
    # A causal model encodes and decodes one frame at a time, in encode/decode as in the streams: CPU
    # convolutions do not promise the same rounding for inputs of different lengths (oneDNN picks kernels by
    # shape), so equal shapes per call is what makes every chunking bit-identical to the whole signal.
    def encode_stream(self, chunks: Iterable[Tensor], **options: Any) -> Iterator[Tensor]:
        """Encodes a stream of waveform pieces; the concatenated indices equal ``encode(whole signal)`` exactly.

        Needs a causal model. Yields one ``(B, m, *index_shape)`` tensor per input chunk: the ``m >= 0`` frames
        that chunk completes. When the stream ends inside a frame, one more item holds that frame, zero-padded
        as :meth:`encode` pads the whole signal.

        Args:
            chunks: ``(B, C, n)`` float pieces, any ``n >= 0``, same ``B`` throughout.
            options: As for :meth:`encode` (e.g. ``num_levels``).

        Raises:
            ValueError: For a non-causal model, a malformed or non-finite chunk, or an empty stream.
        """
        self._check_streamable()
        cache: StreamCache = {}
        param = next(self.parameters())
        pending: Tensor | None = None
        for chunk in chunks:
            if not (isinstance(chunk, Tensor) and chunk.ndim == 3 and chunk.shape[-1] == 0):
                self.check_signal(chunk)
            chunk = chunk.to(param.dtype)
            if pending is not None and chunk.shape[:2] != pending.shape[:2]:
                raise ValueError(f"chunks must keep (B, C) = {tuple(pending.shape[:2])}, got {tuple(chunk.shape)}")
            pending = chunk if pending is None else torch.cat([pending, chunk], dim=-1)
            whole = pending.shape[-1] // self.hop * self.hop
            yield self._encode_frames(pending[..., :whole], cache, options)
            pending = pending[..., whole:]
        if pending is None or (not cache and pending.shape[-1] == 0):
            raise ValueError(f"{type(self).__name__}.encode_stream got an empty stream (0 samples)")
        if pending.shape[-1]:
            yield self._encode_frames(F.pad(pending, (0, self.hop - pending.shape[-1])), cache, options)

    @torch.no_grad()
    def _encode_frames(self, wav: Tensor, cache: StreamCache, options: dict[str, Any]) -> Tensor:
        """``(B, C, m * hop)`` -> ``(B, m, *index_shape)``: the encoder one frame per call, then the quantizer
        on all ``m`` frames at once (its search and lookups treat rows independently)."""
        frames = [self.encoder.step(frame, cache) for frame in wav.split(self.hop, dim=-1) if frame.shape[-1]]
        if frames:
            return self.quantizer.encode(rearrange(torch.cat(frames, dim=-1), "b d t -> b t d"), **options)
        # Options (num_levels) change the index shape, so ask the quantizer for it.
        probe = wav.new_zeros(wav.shape[0], 1, self.quantizer.dim)
        return self.quantizer.encode(probe, **options)[:, :0]

    def decode_stream(self, index_chunks: Iterable[Tensor]) -> Iterator[Tensor]:
        """Decodes a stream of index pieces ``(B, m, *index_shape)`` into their ``(B, C, m * hop)`` samples.

        The concatenated output equals :meth:`decode` of all indices exactly (crop it to the original length
        as ``decode(length=T)`` does). Needs a causal model.

        Raises:
            ValueError: For a non-causal model or malformed indices.
        """
        self._check_streamable()
        cache: StreamCache = {}
        param = next(self.parameters())
        for indices in index_chunks:
            if not isinstance(indices, Tensor) or indices.ndim < 2:
                shape = getattr(indices, "shape", None)
                raise ValueError(f"decode_stream expects indices (B, frames, ...), got {shape}")
            with torch.no_grad():
                quantized = rearrange(self.quantizer.decode(indices).to(param.dtype), "b t d -> b d t")
                out = [param.new_zeros(indices.shape[0], self.config.in_channels, 0)]
                out += [self.decoder.step(frame, cache) for frame in quantized.split(1, dim=-1)]
                yield torch.cat(out, dim=-1)

    def _check_streamable(self) -> None:
        if not self.config.causal:
            raise ValueError(
                f"{type(self).__name__} was built with causal=False (centred padding needs future samples); "
                "train a model with causal: true to stream"
            )

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
