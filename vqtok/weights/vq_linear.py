"""``VQLinear``: an ``nn.Linear`` whose weight is stored as vector-quantized indices and decoded on the fly.

The weight ``W`` ``(out, in)`` is cut along the input dimension into vectors of ``vector_len`` (``v``)
weights. Each vector is ``row_scale[r] * sum_s codebooks[s][indices[s, r, g]]`` (one or more residual
stages), and optionally a few per-row outlier entries are stored exactly and overwrite the decoded
value. This is the storage layout of VPTQ (Liu et al., "VPTQ: Extreme Low-bit Vector Post-Training
Quantization for Large Language Models", EMNLP 2024, arXiv:2409.17066); the code here is our own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VQLinear"]


class VQLinear(nn.Module):
    """Linear layer with a vector-quantized weight; ``forward`` is ``F.linear(x, self.weight(), bias)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        vector_len: int,
        codebook_sizes: list[int],
        bias: bool = True,
        num_outliers: int = 0,
        codebook_dtype: torch.dtype = torch.float16,
    ) -> None:
        """Args:
        in_features: Input features; divisible by ``vector_len``.
        out_features: Output features.
        vector_len: Weights per quantized vector ``v``.
        codebook_sizes: Codebook size of each residual stage, e.g. ``[256]`` or ``[256, 16]``.
        bias: Whether the layer has a bias (kept in full precision).
        num_outliers: Exact entries per row that overwrite the decoded weight.
        codebook_dtype: Storage dtype of codebooks, row scales and outlier values (fp16 or bf16).
        """
        super().__init__()
        if in_features % vector_len:
            raise ValueError(f"in_features={in_features} must be divisible by vector_len={vector_len}")
        if not codebook_sizes:
            raise ValueError("need at least one codebook stage")
        self.in_features = in_features
        self.out_features = out_features
        self.vector_len = vector_len
        self.codebook_sizes = list(codebook_sizes)
        self.num_outliers = num_outliers
        groups = in_features // vector_len
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.zeros(k, vector_len, dtype=codebook_dtype)) for k in codebook_sizes]
        )
        idx_dtype = torch.uint8 if max(codebook_sizes) <= 256 else torch.int32
        self.register_buffer("indices", torch.zeros(len(codebook_sizes), out_features, groups, dtype=idx_dtype))
        self.row_scale = nn.Parameter(torch.ones(out_features, dtype=codebook_dtype))
        self.register_buffer("outlier_cols", torch.zeros(out_features, num_outliers, dtype=torch.long))
        self.outlier_values = nn.Parameter(torch.zeros(out_features, num_outliers, dtype=codebook_dtype))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def weight(self, dtype: torch.dtype | None = None) -> Tensor:
        """Decodes the weight by codebook lookup.

        Args:
            dtype: Output dtype (default float32).

        Returns:
            ``(out_features, in_features)``.
        """
        dtype = dtype or torch.float32
        idx = self.indices.long()
        w = self.codebooks[0].to(dtype)[idx[0]]  # (out, groups, v)
        for s in range(1, len(self.codebooks)):
            w = w + self.codebooks[s].to(dtype)[idx[s]]
        w = w.reshape(self.out_features, self.in_features) * self.row_scale.to(dtype)[:, None]
        if self.num_outliers:
            w = w.scatter(1, self.outlier_cols, self.outlier_values.to(dtype))
        return w

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(..., in_features)``.

        Returns:
            ``(..., out_features)``.
        """
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight(x.dtype), bias)

    def storage_bits(self) -> int:
        """Bits needed to store the weight (indices, codebooks, row scales, outliers); bias excluded."""
        elem = torch.finfo(self.row_scale.dtype).bits
        groups = self.in_features // self.vector_len
        bits = sum(self.out_features * groups * math.ceil(math.log2(k)) for k in self.codebook_sizes)
        bits += sum(k * self.vector_len * elem for k in self.codebook_sizes)
        bits += self.out_features * elem
        bits += self.out_features * self.num_outliers * (elem + math.ceil(math.log2(self.in_features)))
        return bits

    def bits_per_weight(self) -> float:
        """``storage_bits() / (out_features * in_features)``."""
        return self.storage_bits() / (self.out_features * self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, vector_len={self.vector_len}, "
            f"codebook_sizes={self.codebook_sizes}, num_outliers={self.num_outliers}, "
            f"bits_per_weight={self.bits_per_weight():.3f}"
        )
