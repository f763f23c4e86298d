"""Binary spherical quantization.

Zhao, Xiong and Krähenbühl, "Image and Video Tokenization with Binary Spherical Quantization",
arXiv:2406.07548. Latents are (optionally projected and) normalised onto the unit sphere, then each
of the d channels is replaced by ``sign(u_i) / sqrt(d)``, so every code is itself a unit vector and
the quantization error is bounded whatever d is. The entropy penalty is LFQ's with the soft
assignment ``q(c | u) ∝ exp(-||u - c||² / τ)`` over the sphere's ``2^d`` corners, whose codebook
term is factorised per bit by default, as in the paper's Eq. 8.

Written for vqtok; the reference implementation (github.com/zhaoyue-zephyrus/bsq-vit, MIT) was read
for the conventions of the soft assignment.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import _codebook as cb
from ._registry import register_quantizer
from .lfq import _BinaryQuantizer

__all__ = ["BSQ"]


@register_quantizer("bsq", example={"codebook_size": 2**6, "dim": 8})
class BSQ(_BinaryQuantizer):
    """Binary spherical quantizer: one index over ``2^d`` corners of the scaled hypercube.

    The loss is ``entropy_weight * (H_sample - codebook_entropy_weight * H_codebook) +
    commitment_weight * commitment``, with the terms of :class:`vqtok.quantizers.LFQ` computed on
    the normalised latents ``u`` and codes ``±1/sqrt(d)``; per-bit logits are ``4 u / (sqrt(d) τ)``.

    Args:
        codebook_size: Number of codes V, a power of two ``2^d``; d = log2(V) sign bits.
        dim: Latent width D. When it differs from d, learned linear projections map ``D -> d``
            before normalisation and ``d -> D`` after quantization. ``None`` means D = d.
        temperature: τ of the soft assignment. Because ``|u_i|`` is about ``1/sqrt(d)``, the logits
            are about ``4 / (d τ)``: lower τ for larger d to keep the entropy terms informative.
            The default matches the reference implementation's ``inv_temperature=1``.
        entropy: ``"factorized"`` (the paper's per-bit form), ``"exact"`` (all ``2^d`` codes,
            see :func:`vqtok.kernels.entropy.exact_codebook_entropy`) or ``"auto"`` (default: exact up
            to ``2^16`` codes, as in :class:`LFQ`).
        entropy_weight: Weight of the whole entropy penalty.
        codebook_entropy_weight: γ, weight of the codebook entropy inside the penalty.
        commitment_weight: Weight of the commitment loss (mean squared ``u - code``).

    ``temperature``, ``entropy`` and the weights are keyword options (the scale is fixed by ``d``).
    """

    def __init__(self, codebook_size: int = 2**18, dim: int | None = None, **options: Any) -> None:
        bits = max(int(codebook_size).bit_length() - 1, 1)  # validated by the base class
        super().__init__(codebook_size, dim, 1 / math.sqrt(bits), **options)

    def _prepare(self, projected: Tensor) -> Tensor:
        # The norm squares the entries, which overflows fp32 above ~1.8e19 and would send the whole row
        # to zero; dividing each row by a power of two near its largest entry first is exact and does
        # not change the direction, the value or the gradient.
        # (torch.ldexp is avoided: its gradient with integer exponents is zero.)
        scale = cb.inverse_power_of_two(projected.detach().abs().amax(-1, keepdim=True))
        return torch.nn.functional.normalize(projected * scale, dim=-1)
