"""Lookup-free quantization.

Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation" (MAGVIT-v2),
ICLR 2024, arXiv:2310.05737. Each of d channels is quantized to ``±scale`` by its sign and the index
is the d-bit binary number, so the ``2^d`` codebook is implicit. Training adds the entropy penalty
``E_n[H(q(· | z_n))] - γ H(E_n[q(· | z_n)])`` (confident per token, diverse over the batch) and a
commitment loss. The entropy math lives in :mod:`vqtok.kernels.entropy`.

The grouped variant (``group_lfq``, several indices per token) is LFQ composed by
:class:`vqtok.quantizers.grouped.Grouped`, in :mod:`vqtok.quantizers.grouped_scalar`.

Written for vqtok; the loss follows the papers, with vector-quantize-pytorch (MIT) read for the
conventions of the soft assignment.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..kernels.entropy import (
    exact_codebook_entropy,
    factorized_codebook_entropy,
    per_sample_entropy,
)
from ..metrics.codebook import code_perplexity
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["LFQ"]

EntropyMode = Literal["auto", "factorized", "exact"]

# The exact codebook entropy keeps a 2^bits table: 2^24 floats is 64 MiB.
_MAX_EXACT_BITS = 24
# "auto" picks the exact entropy up to 2^16 codes per index entry. The factorized form cannot see bits that
# move together (two codes used half the time each score the maximum), and on MNIST it let LFQ collapse to
# 11% usage where the exact form kept 93% (benchmarks/quality.py); above 2^16 codes the exact form's
# O(N 2^d d) time dominates a training step, so "auto" falls back to the factorized bound there.
_AUTO_EXACT_BITS = 16


class _BinaryQuantizer(Quantizer):
    """Shared machinery of sign quantizers (LFQ, BSQ), and LFQ's constructor; see :class:`LFQ` for the args."""

    def __init__(
        self,
        codebook_size: int = 2**18,
        dim: int | None = None,
        scale: float = 1.0,
        temperature: float = 1.0,
        entropy: EntropyMode = "auto",
        entropy_weight: float = 0.1,
        codebook_entropy_weight: float = 1.0,
        commitment_weight: float = 0.25,
    ) -> None:
        super().__init__()
        bits = int(codebook_size).bit_length() - 1
        if codebook_size < 2 or 2**bits != codebook_size:
            raise ValueError(f"codebook_size must be a power of two >= 2, got {codebook_size}")
        if entropy not in ("auto", "factorized", "exact"):
            raise ValueError(f"entropy must be 'auto', 'factorized' or 'exact', got {entropy!r}")
        if entropy == "auto":
            entropy = "exact" if bits <= _AUTO_EXACT_BITS else "factorized"
        if entropy == "exact" and bits > _MAX_EXACT_BITS:
            raise ValueError(f"exact entropy over 2^{bits} codes is too large; use entropy='factorized'")
        if temperature <= 0 or scale <= 0:
            raise ValueError(f"temperature and scale must be positive, got {temperature} and {scale}")
        self.bits = bits
        self.codebook_size = int(codebook_size)
        self.index_shape = ()
        total_bits = bits
        self.dim = total_bits if dim is None else int(dim)
        self.scale = float(scale)
        self.temperature = float(temperature)
        self.entropy = entropy
        self.entropy_weight = float(entropy_weight)
        self.codebook_entropy_weight = float(codebook_entropy_weight)
        self.commitment_weight = float(commitment_weight)
        projected = self.dim != total_bits
        self.projected = projected
        self.project_in = nn.Linear(self.dim, total_bits) if projected else nn.Identity()
        self.project_out = nn.Linear(total_bits, self.dim) if projected else nn.Identity()
        self.register_buffer("_powers", 2 ** torch.arange(bits), persistent=False)

    # ----------------------------------------------------------------------------- sign quantization
    def _prepare(self, projected: Tensor) -> Tensor:
        """Hook applied before the sign: identity for LFQ, projection to the sphere for BSQ."""
        return projected

    def _code_scale(self) -> float:
        return self.scale

    def _bit_latents(self, latents: Tensor) -> Tensor:
        """``(N, D)`` latents -> ``(N, 1, bits)`` pre-sign values."""
        z = self._prepare(self.project_in(latents))
        if self.projected:
            # A learned projection of finite latents near the fp32 limit can overflow to Inf or NaN,
            # whose sign test would give a silently arbitrary index.
            self.require_finite(z, "the projected latents", latents)
        return z.reshape(z.shape[0], -1, self.bits)

    def _bits_to_indices(self, z: Tensor) -> Tensor:
        # Zero goes to the negative code so that encode is a function of the sign test alone.
        return ((z > 0).long() * self._powers).sum(-1)[:, 0]  # (N,)

    def _indices_to_codes(self, indices: Tensor) -> Tensor:
        indices = indices[:, None]
        bits = (indices[..., None] >> torch.arange(self.bits, device=indices.device)) & 1  # (N, 1, bits)
        return (bits * 2 - 1).float() * self._code_scale()

    # -------------------------------------------------------------------------------------- contract
    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        z = self._bit_latents(latents)  # (N, 1, bits)
        codes = torch.where(z > 0, 1.0, -1.0) * self._code_scale()
        # Straight-through written so that its value is exactly `codes` (eval forward == decode).
        quantized = self.project_out((codes + (z - z.detach())).flatten(1))
        indices = self._bits_to_indices(z.detach())

        # q(c | z) ∝ exp(-||z - c||² / τ) factorises into per-bit logits 4 s z / τ.
        logits = z * (4 * self._code_scale() / self.temperature)
        sample_entropy = per_sample_entropy(logits.flatten(1)).mean()
        codebook_entropy = self._codebook_entropy(logits)
        commitment = (z - codes).square().mean()
        loss = (
            self.entropy_weight * (sample_entropy - self.codebook_entropy_weight * codebook_entropy)
            + self.commitment_weight * commitment
        )
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=loss,
            losses={
                "per_sample_entropy": sample_entropy,
                "codebook_entropy": codebook_entropy,
                "commitment": commitment,
            },
            metrics={"perplexity": code_perplexity(indices, self.codebook_size)},
        )

    def _codebook_entropy(self, logits: Tensor) -> Tensor:
        """Sum over index entries of the entropy of each one's batch-average code distribution."""
        if self.entropy == "factorized":
            # Sum of per-bit entropies: does not depend on how the bits are grouped.
            return factorized_codebook_entropy(logits.flatten(1))
        return sum(exact_codebook_entropy(group) for group in logits.unbind(1))  # type: ignore[return-value]

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        return self._bits_to_indices(self._bit_latents(latents))

    def _decode(self, indices: Tensor) -> Tensor:
        return self.project_out(self._indices_to_codes(indices).flatten(1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, entropy={self.entropy!r}, temperature={self.temperature}"


@register_quantizer("lfq", example={"codebook_size": 2**6, "dim": 8})
class LFQ(_BinaryQuantizer):
    """Lookup-free quantizer: one index over ``2^d`` sign patterns.

    The loss is ``entropy_weight * (H_sample - codebook_entropy_weight * H_codebook) +
    commitment_weight * commitment`` (all in nats; the unweighted terms are in ``losses``):

    * ``H_sample``: mean over tokens of the entropy of the soft assignment ``q(c | z) ∝
      exp(-||z - c||² / τ)``. It factorises over bits, so it is exact at any d.
    * ``H_codebook``: entropy of the batch-average ``q̄``. With ``entropy="factorized"`` it
      is the sum of per-bit entropies of the batch-mean bit probabilities, ``O(N d)``, an upper bound
      of the true value that is exact when bits are independent across the batch. With
      ``entropy="exact"`` the full ``2^d``-way sum is computed by
      :func:`vqtok.kernels.entropy.exact_codebook_entropy` in ``O(N 2^d d)`` time and
      ``O(N_tile 2^(d/2) + 2^d)`` memory (d <= 24).
    * ``commitment``: mean squared distance between the pre-sign latents and their codes.

    Args:
        codebook_size: Number of codes V, a power of two ``2^d``; d = log2(V) sign bits.
        dim: Latent width D. When it differs from d, learned linear projections map ``D -> d``
            before the sign and ``d -> D`` after it. ``None`` means D = d, no projections.
        scale: Code magnitude s: codes are ``{-s, +s}^d``.
        temperature: τ of the soft assignment; per-bit logits are ``4 s z / τ``
            (vector-quantize-pytorch's ``inv_temperature=100`` is τ = 0.01).
        entropy: ``"factorized"`` or ``"exact"`` codebook entropy, see above; ``"auto"`` (default) is
            exact up to ``2^16`` codes per index entry and factorized above.
        entropy_weight: Weight of the whole entropy penalty (0.1 in MAGVIT-v2).
        codebook_entropy_weight: γ, weight of the codebook entropy inside the penalty.
        commitment_weight: Weight of the commitment loss (0.25 in MAGVIT-v2).
    """
