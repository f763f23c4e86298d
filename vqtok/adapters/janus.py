"""Adapter for the image VQ-VAE of Janus (``transformers.JanusVQVAE``, ``model_type = "janus_vqgan"``; Wu et
al., "Janus: Decoupling Visual Encoding for Unified Multimodal Understanding and Generation",
arXiv:2410.13848): images ``(B, C, S, S)`` <-> indices ``(B, n, n)``.

Layout: ``indices[b, i, j]`` is the code of the latent cell in row ``i``, column ``j`` (``n =
num_patches``); row-major flattening gives the reference's ``image_tokens``. Images are vqtok's ``[0, 1]``
pixels: the adapter maps them to the ``[-1, 1]`` the model works in and maps decoded images back, so
``decode`` returns ``(JanusVQVAE.decode(tokens) + 1) / 2``. The model has one grid size, ``S = n *
2 ** (len(channel_multiplier) - 1)``, and one codebook: no rate to choose at encode time.

The decoder looks codes up in the l2-normalised codebook while the encoder's quantizer returns raw
codebook rows; the adapter follows the reference (``decode`` and ``forward`` both normalise).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import ExternalCodes, HFAdapter, register_adapter

__all__ = ["JanusVQAdapter"]


@register_adapter("janus_vqgan")
class JanusVQAdapter(HFAdapter):
    """vqtok tokenizer around a ``JanusVQVAE`` (see the module docstring for the layout)."""

    hf_model_class = "JanusVQVAE"
    hf_config_class = "JanusVQVAEConfig"
    modality = "image"

    def _make_quantizer(self) -> ExternalCodes:
        cfg = self.model.config
        return ExternalCodes(cfg.embed_dim, cfg.num_embeddings, (), self._latent_codes, self._latent_values)

    def _latent_codes(self, latents: Tensor, num_levels: int | None = None) -> Tensor:
        return self.model.quantize(latents.T[None, :, :, None])[2]

    def _latent_values(self, indices: Tensor) -> Tensor:
        # The decoder's lookup (get_codebook_entry) l2-normalises the codes.
        return F.normalize(self.model.quantize.embedding(indices), p=2, dim=-1)

    @property
    def grid(self) -> int:
        return int(self.model.config.num_patches)

    @property
    def image_size(self) -> int:
        return self.grid * 2 ** (len(self.model.config.channel_multiplier) - 1)

    @property
    def tokens_per_example(self) -> int:
        return self.grid**2

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c, s = self.config.in_channels, self.image_size
        if signal.ndim != 4 or tuple(signal.shape[1:]) != (c, s, s):
            raise ValueError(f"JanusVQAdapter expects images (B, {c}, {s}, {s}) in [0, 1], got {tuple(signal.shape)}")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        hidden = self.model.quant_conv(self.model.encoder(signal * 2 - 1))
        return hidden.permute(0, 2, 3, 1)

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        return (self.model.decoder(self.model.post_quant_conv(quantized.permute(0, 3, 1, 2))) + 1) / 2

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """``(B, C, S, S)`` in ``[0, 1]`` -> int64 ``(B, n, n)``; no options."""
        self.check_signal(signal)
        self._resolve_levels(options)
        tokens = self.model.encode((signal * 2 - 1).to(self._param.dtype)).image_tokens
        return tokens.reshape(signal.shape[0], self.grid, self.grid)

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """``(B, n, n)`` -> ``(B, C, S, S)`` in about ``[0, 1]``."""
        indices = self._check_indices(indices, grid_dims=2)
        if tuple(indices.shape[1:]) != (self.grid, self.grid):
            n = self.grid
            raise ValueError(f"JanusVQAdapter expects indices (B, {n}, {n}), got {tuple(indices.shape)}")
        pixels = self.model.decode(indices.reshape(indices.shape[0], -1).to(self._param.device))
        return (pixels + 1) / 2
