"""Adapter for ``transformers.DacModel`` (Kumar et al., "High-Fidelity Audio Compression with Improved
RVQGAN", arXiv:2306.06546): mono waveforms ``(B, 1, T)`` <-> indices ``(B, frames, L)``.

Layout: ``indices[b, t, l]`` is the code of residual level ``l`` (coarsest first) at frame ``t``: the
reference's ``audio_codes`` ``(B, L, frames)`` transposed. ``encode(wav, n_quantizers=n)`` (or
``num_levels=n``) keeps the first ``n`` levels, exactly what ``DacModel.encode(wav, n_quantizers=n)``
returns; :meth:`decode` accepts any level prefix. Waveforms are right-padded with zeros to a multiple of
the hop length, as DAC's feature extractor does; :meth:`decode` returns ``frames * hop`` samples unless
``length`` is given.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import ExternalCodes, HFAdapter, register_adapter

__all__ = ["DacAdapter"]


@register_adapter("dac")
class DacAdapter(HFAdapter):
    """vqtok tokenizer around a ``DacModel`` (see the module docstring for the layout)."""

    hf_model_class = "DacModel"
    hf_config_class = "DacConfig"
    modality = "audio"

    def _make_quantizer(self) -> ExternalCodes:
        cfg = self.model.config
        return ExternalCodes(
            cfg.hidden_size, cfg.codebook_size, (cfg.n_codebooks,), self._latent_codes, self._latent_values
        )

    def _latent_codes(self, latents: Tensor, num_levels: int | None = None) -> Tensor:
        _, codes, *_ = self.model.quantizer(latents.T[None], num_levels)  # (1, L, N)
        return codes[0].T

    def _latent_values(self, indices: Tensor) -> Tensor:
        return self.model.quantizer.from_codes(indices.T[None])[0][0].T

    @property
    def hop(self) -> int:
        """Samples per frame."""
        return int(self.model.config.hop_length)

    def bitrate_kbps(self, num_levels: int | None = None) -> float:
        """Bitrate of a fixed-length code at ``num_levels`` levels (``None``: all)."""
        levels = self.num_levels if num_levels is None else self._resolve_levels({"num_levels": num_levels})
        bits = levels * self.quantizer.bits_per_token / self.num_levels
        return self.model.config.sampling_rate / self.hop * bits / 1000

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        if signal.ndim != 3 or signal.shape[1] != 1 or signal.shape[-1] < 1:
            raise ValueError(f"DacAdapter expects mono waveforms (B, 1, T), got {tuple(signal.shape)}")

    def _pad(self, signal: Tensor) -> Tensor:
        return F.pad(signal, (0, -signal.shape[-1] % self.hop))

    def _encode_latents(self, signal: Tensor) -> Tensor:
        return self.model.encoder(self._pad(signal)).transpose(1, 2)

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.model.decoder(quantized.transpose(1, 2))

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """``(B, 1, T)`` -> int64 ``(B, frames, L')``; options ``n_quantizers`` or ``num_levels``."""
        self.check_signal(signal)
        levels = self._resolve_levels(options, aliases=("n_quantizers",))
        out = self.model.encode(self._pad(signal).to(self._param.dtype), n_quantizers=levels)
        return out.audio_codes.transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode(self, indices: Tensor, length: int | None = None) -> Tensor:
        """``(B, frames, L')`` -> ``(B, 1, frames * hop)``, cropped to ``length`` if given."""
        indices = self._check_indices(indices, grid_dims=1)
        wav = self.model.decode(audio_codes=indices.transpose(1, 2).to(self._param.device)).audio_values
        wav = wav[:, None]
        return wav if length is None else wav[..., :length]
