"""Adapter for ``transformers.EncodecModel`` (Défossez et al., "High Fidelity Neural Audio Compression",
arXiv:2210.13438): waveforms ``(B, C, T)`` <-> indices ``(B, frames, L)``.

Layout: ``indices[b, t, l]`` is the code of residual level ``l`` (coarsest first) at frame ``t``, i.e. the
reference's ``audio_codes[0]`` of shape ``(B, L, frames)`` transposed. ``L`` is the level count of the
largest bandwidth in ``config.target_bandwidths`` (the default here: full rate, unlike ``EncodecModel``
whose default is the smallest bandwidth). ``encode(wav, bandwidth=6.0)`` or ``encode(wav, num_levels=n)``
choose the rate per call; residual quantization is greedy, so ``n`` levels are the first ``n`` of a
full-rate encode and :meth:`decode` accepts any level prefix.

Only the unchunked, unnormalised models (``encodec_24khz``) are supported: the chunked 48 kHz model carries
a per-chunk float scale next to the codes, which vqtok indices cannot hold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import ExternalCodes, HFAdapter, register_adapter

__all__ = ["EncodecAdapter"]


@register_adapter("encodec")
class EncodecAdapter(HFAdapter):
    """vqtok tokenizer around an ``EncodecModel`` (see the module docstring for the layout)."""

    hf_model_class = "EncodecModel"
    hf_config_class = "EncodecConfig"
    modality = "audio"

    def check_hf_config(self, hf_config: Any) -> None:
        unsupported = [k for k in ("normalize", "chunk_length_s") if getattr(hf_config, k, None)]
        if unsupported:
            raise ValueError(
                f"EncodecAdapter does not support EnCodec configs with {unsupported} set (the chunked, "
                "normalised 48 kHz model stores a float scale per chunk that vqtok indices cannot hold)"
            )

    def _make_quantizer(self) -> ExternalCodes:
        rvq, cfg = self.model.quantizer, self.model.config
        levels = min(rvq.get_num_quantizers_for_bandwidth(max(cfg.target_bandwidths)), len(rvq.layers))
        return ExternalCodes(cfg.codebook_dim, cfg.codebook_size, (levels,), self._latent_codes, self._latent_values)

    def _latent_codes(self, latents: Tensor, num_levels: int | None = None) -> Tensor:
        codes = self.model.quantizer.encode(latents.T[None], max(self.model.config.target_bandwidths))  # (L, 1, N)
        return codes[:, 0].T[:, :num_levels]

    def _latent_values(self, indices: Tensor) -> Tensor:
        return self.model.quantizer.decode(indices.T[:, None])[0].T  # (1, D, N) -> (N, D)

    # ------------------------------------------------------------------------------------- rate
    @property
    def hop(self) -> int:
        """Samples per frame."""
        return int(self.model.config.hop_length)

    def bitrate_kbps(self, num_levels: int | None = None) -> float:
        """Bitrate at ``num_levels`` levels (``None``: all), as ``EncodecModel`` counts it."""
        levels = self.num_levels if num_levels is None else self._resolve_levels({"num_levels": num_levels})
        return self.model.quantizer.frame_rate * levels * self.quantizer.bits_per_token / self.num_levels / 1000

    # ---------------------------------------------------------------------------------- layouts
    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c = self.config.in_channels
        if signal.ndim != 3 or signal.shape[1] != c or signal.shape[-1] < 1:
            raise ValueError(f"EncodecAdapter expects waveforms (B, {c}, T), got {tuple(signal.shape)}")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        return self.model.encoder(signal).transpose(1, 2)

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return self.model.decoder(quantized.transpose(1, 2))

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """``(B, C, T)`` -> int64 ``(B, frames, L')``; options ``bandwidth`` (kbps) or ``num_levels``."""
        self.check_signal(signal)
        bandwidth = options.pop("bandwidth", None)
        levels = self._resolve_levels(options)
        bandwidths = list(self.model.config.target_bandwidths)
        if bandwidth is not None:
            if levels is not None:
                raise ValueError("pass only one of bandwidth and num_levels")
            if bandwidth not in bandwidths:
                raise ValueError(f"bandwidth {bandwidth} is not one of the model's target_bandwidths {bandwidths}")
        out = self.model.encode(signal.to(self._param.dtype), bandwidth=bandwidth or max(bandwidths))
        codes = out.audio_codes[0]  # (B, L, frames): one chunk, as checked in check_hf_config
        return codes[:, :levels].transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode(self, indices: Tensor, length: int | None = None) -> Tensor:
        """``(B, frames, L')`` with ``1 <= L' <= L`` -> ``(B, C, frames * hop)``, cropped to ``length`` if given."""
        indices = self._check_indices(indices, grid_dims=1)
        codes = indices.transpose(1, 2)[None].to(self._param.device)
        wav = self.model.decode(codes, [None]).audio_values
        return wav if length is None else wav[..., :length]
