"""Adapter for ``transformers.MimiModel`` (Kyutai, "Moshi: a speech-text foundation model for real-time
dialogue", arXiv:2410.00037): waveforms ``(B, C, T)`` <-> indices ``(B, frames, L)``.

Layout: ``indices[b, t, l]`` is codebook ``l`` at frame ``t`` (the reference's ``audio_codes``
``(B, L, frames)`` transposed): the first ``num_semantic_quantizers`` entries come from the semantic
quantizer, the rest are the acoustic residual levels, coarsest first. ``encode(wav, num_quantizers=n)``
(or ``num_levels=n``) keeps the first ``n >= num_semantic_quantizers`` codebooks, exactly what
``MimiModel.encode(wav, num_quantizers=n)`` returns, and :meth:`decode` accepts any such prefix. Decoding
is not streaming: every call starts from an empty cache, as ``MimiModel.decode`` without a cache does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import ExternalCodes, HFAdapter, register_adapter

__all__ = ["MimiAdapter"]


@register_adapter("mimi")
class MimiAdapter(HFAdapter):
    """vqtok tokenizer around a ``MimiModel`` (see the module docstring for the layout)."""

    hf_model_class = "MimiModel"
    hf_config_class = "MimiConfig"
    modality = "audio"

    def _make_quantizer(self) -> ExternalCodes:
        cfg = self.model.config
        return ExternalCodes(
            cfg.hidden_size, cfg.codebook_size, (cfg.num_quantizers,), self._latent_codes, self._latent_values
        )

    def _latent_codes(self, latents: Tensor, num_levels: int | None = None) -> Tensor:
        return self.model.quantizer.encode(latents.T[None], num_levels)[:, 0].T  # (L, 1, N) -> (N, L)

    def _latent_values(self, indices: Tensor) -> Tensor:
        return self.model.quantizer.decode(indices.T[None])[0].T

    @property
    def min_levels(self) -> int:
        """The semantic codebooks are always kept."""
        return max(1, int(self.model.config.num_semantic_quantizers))

    def bitrate_kbps(self, num_levels: int | None = None) -> float:
        """Bitrate of a fixed-length code at ``num_levels`` codebooks (``None``: all)."""
        levels = self.num_levels if num_levels is None else self._resolve_levels({"num_levels": num_levels})
        return float(self.model.config.frame_rate) * levels * self.quantizer.bits_per_token / self.num_levels / 1000

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c = self.config.in_channels
        if signal.ndim != 3 or signal.shape[1] != c or signal.shape[-1] < 1:
            raise ValueError(f"MimiAdapter expects waveforms (B, {c}, T), got {tuple(signal.shape)}")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        return self.model.encoder(signal).latents.transpose(1, 2)

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.model.decoder(quantized.transpose(1, 2)).audio_values

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """``(B, C, T)`` -> int64 ``(B, frames, L')``; options ``num_quantizers`` or ``num_levels``."""
        self.check_signal(signal)
        levels = self._resolve_levels(options, aliases=("num_quantizers",))
        if levels is not None and levels < self.min_levels:
            raise ValueError(f"MimiAdapter keeps the semantic codebooks: num_levels >= {self.min_levels}, got {levels}")
        codes = self.model.encode(signal.to(self._param.dtype), num_quantizers=levels).audio_codes
        return codes.transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode(self, indices: Tensor, length: int | None = None) -> Tensor:
        """``(B, frames, L')`` -> ``(B, C, T')`` waveforms, cropped to ``length`` if given."""
        indices = self._check_indices(indices, grid_dims=1, min_levels=self.min_levels)
        wav = self.model.decode(indices.transpose(1, 2).to(self._param.device)).audio_values
        return wav if length is None else wav[..., :length]
