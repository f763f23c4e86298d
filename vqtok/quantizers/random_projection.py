"""Frozen random-projection quantizer (BEST-RQ).

Chiu et al., "Self-supervised Learning with Random-projection Quantizer for Speech Recognition",
ICML 2022, arXiv:2202.01855, section 2.1: each token is standardised (zero mean, unit variance over its
channels), projected by a frozen random matrix ``P`` ``(D, d)`` (Xavier-normal), l2-normalised and
matched to the nearest of V frozen, l2-normalised standard-normal codes. Nothing is learned: the
indices are targets for masked prediction. ``num_codebooks`` K > 1 draws K independent projections and
codebooks (indices ``(..., K)``), as in vector-quantize-pytorch's ``RandomProjectionQuantizer``.

To sit behind the quantizer contract the quantizer also decodes: ``decode`` maps each chosen code back
through the least-squares inverse of its projection (``pinv(P)``), averaged over the K codebooks, in
the standardised latent space; ``forward`` returns that value with a straight-through (identity)
gradient and no loss. It is a crude reconstruction: use the indices, as the paper does.

Written for vqtok from the paper; vector-quantize-pytorch (MIT) was read for the conventions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import nearest
from ..metrics.codebook import code_perplexity
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["RandomProjectionQuantizer"]


@register_quantizer("random_projection", example={"dim": 8, "codebook_size": 16, "codebook_dim": 4})
class RandomProjectionQuantizer(Quantizer):
    """BEST-RQ targets: nearest frozen random code of a frozen random projection; nothing learns.

    Args:
        dim: Latent width D.
        codebook_size: Codes per codebook V (8192 in the paper).
        codebook_dim: Projected width d (16 in the paper).
        num_codebooks: Independent projections and codebooks K; indices are ``(..., K)`` when K > 1.
        normalize: Standardise every token over its channels before projecting (the paper's input
            normalisation, which keeps the targets from collapsing).

    Raises:
        ValueError: On non-positive sizes.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 8192,
        codebook_dim: int = 16,
        num_codebooks: int = 1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if min(dim, codebook_size, codebook_dim, num_codebooks) < 1:
            raise ValueError("dim, codebook_size, codebook_dim and num_codebooks must be positive")
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.index_shape = (num_codebooks,) if num_codebooks > 1 else ()
        self.normalize = bool(normalize)
        projection = torch.empty(num_codebooks, dim, codebook_dim)
        for k in range(num_codebooks):
            nn.init.xavier_normal_(projection[k])
        # Frozen random state must travel with a checkpoint: persistent buffers, never parameters.
        self.register_buffer("projection", projection)
        self.register_buffer("codebook", F.normalize(torch.randn(num_codebooks, codebook_size, codebook_dim), dim=-1))
        # Derived from `projection` (not saved) and refreshed on load: computed once, not per decode, and
        # `linalg.pinv` has no ONNX export.
        self.register_buffer("pseudo_inverse", torch.linalg.pinv(projection), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_pseudo_inverse)

    def _standardize(self, latents: Tensor) -> Tensor:
        return F.layer_norm(latents, (self.dim,)) if self.normalize else latents

    def _search(self, latents: Tensor) -> Tensor:
        """``(N, D)`` -> ``(N, K)`` nearest code ids, by cosine similarity in each projected space."""
        x = self._standardize(latents)
        ids = []
        for p, c in zip(self.projection, self.codebook, strict=True):
            projected = x @ p
            self.require_finite(projected, "the projected latents", latents)
            ids.append(nearest(projected, c, "cosine")[1])
        return torch.stack(ids, 1)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        with torch.no_grad():
            ids = self._search(latents)
            decoded = self._reconstruct(ids)
        # `latents - latents.detach()` is exactly zero: the value is the decode, the gradient the identity.
        quantized = decoded + (latents - latents.detach())
        indices = ids if self.index_shape else ids[:, 0]
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=latents.new_zeros(()),
            metrics={"perplexity": torch.stack([code_perplexity(c, self.codebook_size) for c in ids.unbind(1)]).mean()},
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        ids = self._search(latents)
        return ids if self.index_shape else ids[:, 0]

    def _reconstruct(self, ids: Tensor) -> Tensor:
        """``(N, K)`` ids -> ``(N, D)``: mean over codebooks of the least-squares preimage of each code."""
        out = None
        for k in range(ids.shape[1]):
            back = self.codebook[k][ids[:, k]] @ self.pseudo_inverse[k]  # (N, D)
            out = back if out is None else out + back
        assert out is not None
        return out / ids.shape[1]

    def _decode(self, indices: Tensor) -> Tensor:
        return self._reconstruct(indices if self.index_shape else indices[:, None])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, codebook_dim={self.codebook_dim}, normalize={self.normalize}"


def _refresh_pseudo_inverse(module: nn.Module, incompatible_keys: object) -> None:
    with torch.no_grad():
        module.pseudo_inverse.copy_(torch.linalg.pinv(module.projection))
