"""Index backpropagation quantization (IBQ).

Shi et al., "Taming Scalable Visual Tokenizer for Autoregressive Image Generation", arXiv:2412.02692.
The code is chosen by the largest logit ``z . c / τ``; the output is ``ind @ C`` with the
straight-through one-hot ``ind = onehot - sg(softmax) + softmax``, so its value is the chosen code while
the gradient flows through the softmax into *every* code (and into the latents), which keeps large
codebooks in use without EMA or restarts. Loss (the paper's "double quantization loss"):
``codebook_weight * ||q - sg(z)||^2 + commitment_weight * ||z - sg(q)||^2``.

Memory: a naive implementation materialises the ``N x V`` softmax and its gradient. Here the forward
pass only searches for the largest logit (:func:`vqtok.kernels.nearest` with the inner-product metric,
tiled), and a custom backward recomputes the softmax one tile of rows at a time: its scratch is
``rows x V`` floats with ``rows = max(1, 2^22 // V)``, i.e. at most ``max(2^22, V)`` floats (16 MiB
for ``V <= 2^22``) whatever N is, besides the ``(V, d)`` gradient of the codebook itself.

Written for vqtok from the paper; no code was copied from other implementations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from ..kernels import nearest
from ..metrics.codebook import perplexity_from_counts
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["IBQ"]

# Floats of softmax scratch per backward tile.
_TILE_FLOATS = 1 << 22


@register_quantizer("ibq", example={"dim": 8, "codebook_size": 32})
class IBQ(Quantizer):
    """Index backpropagation quantizer: argmax code, softmax straight-through gradient to every code.

    Args:
        dim: Latent width D (the codes have the same width).
        codebook_size: Number of codes V.
        temperature: τ of the softmax over the logits ``z . c``.
        commitment_weight: Weight of ``||z - sg(q)||^2`` (0.25 in the paper).
        codebook_weight: Weight of ``||q - sg(z)||^2`` (1 in the paper).

    Raises:
        ValueError: On non-positive sizes or temperature.
    """

    has_learned_codebook = True

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        temperature: float = 1.0,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1 or temperature <= 0:
            raise ValueError(
                f"dim, codebook_size and temperature must be positive, got {dim}, {codebook_size}, {temperature}"
            )
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.index_shape = ()
        self.temperature = float(temperature)
        self.commitment_weight = float(commitment_weight)
        self.codebook_weight = float(codebook_weight)
        self.embed = nn.Parameter(torch.randn(codebook_size, dim) / dim**0.5)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        _, indices = nearest(latents.detach(), self.embed.detach(), "ip")
        q = _IndexBackprop.apply(latents, self.embed, indices, 1.0 / self.temperature)
        commitment = F.mse_loss(latents, q.detach())
        codebook = F.mse_loss(q, latents.detach())
        counts = torch.bincount(indices, minlength=self.codebook_size)
        return QuantizerOutput(
            quantized=q,
            indices=indices,
            loss=self.commitment_weight * commitment + self.codebook_weight * codebook,
            losses={"commitment": commitment, "codebook": codebook},
            metrics={"perplexity": perplexity_from_counts(counts), "usage": (counts > 0).float().mean()},
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        if options:
            raise ValueError(f"IBQ.encode takes no options, got {sorted(options)}")
        return nearest(latents, self.embed.detach(), "ip")[1]

    def _decode(self, indices: Tensor) -> Tensor:
        return self.embed.detach()[indices]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"


class _IndexBackprop(torch.autograd.Function):
    """``q = (onehot - sg(p) + p) @ C`` with ``p = softmax(z C^T / τ)``, never holding all of ``p``."""

    @staticmethod
    def forward(ctx: FunctionCtx, z: Tensor, codes: Tensor, indices: Tensor, inv_t: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, codes, indices)
        ctx.inv_t = inv_t  # type: ignore[attr-defined]
        return codes[indices]  # the value of the straight-through one-hot is the one-hot itself

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        z, codes, indices = ctx.saved_tensors  # type: ignore[attr-defined]
        inv_t = ctx.inv_t  # type: ignore[attr-defined]
        grad = grad.float()
        grad_z = torch.zeros_like(z, dtype=torch.float32)
        # The value of `ind` is the one-hot, so d(ind @ C)/dC routes each row's gradient to its code.
        grad_codes = torch.zeros_like(codes, dtype=torch.float32).index_add_(0, indices, grad)
        rows = max(1, _TILE_FLOATS // max(codes.shape[0], 1))
        for start in range(0, z.shape[0], rows):
            zt, gt = z[start : start + rows].float(), grad[start : start + rows]
            p = torch.softmax(zt @ codes.float().T * inv_t, -1)  # (rows, V)
            gp = gt @ codes.float().T  # dL/dp
            gl = p * (gp - (gp * p).sum(-1, keepdim=True)) * inv_t  # dL/d(z . c), softmax Jacobian
            grad_z[start : start + rows] = gl @ codes.float()
            grad_codes.addmm_(gl.T, zt)
        return grad_z.to(z.dtype), grad_codes.to(codes.dtype), None, None
