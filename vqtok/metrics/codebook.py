"""Codebook health: usage, perplexity, dead codes and bits per token.

Functions work on one batch of indices; :class:`CodebookUsage` accumulates counts over a window of
batches and, when a process group is initialised, all-reduces them so that every rank reports the
same global numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._dist import all_reduce_sum_

__all__ = ["CodebookUsage", "code_counts", "perplexity", "usage", "bits_per_token"]

# Above this size a dense histogram would be wasteful; unique ids are counted instead.
_DENSE_LIMIT = 1 << 24


def code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """Histogram of ``indices`` over ``[0, codebook_size)`` as a float64 ``(codebook_size,)`` tensor.

    Raises:
        ValueError: If ``codebook_size`` is too large for a dense histogram or ids are out of range.
    """
    if codebook_size > _DENSE_LIMIT:
        raise ValueError(f"codebook_size {codebook_size} is too large for a dense histogram (> {_DENSE_LIMIT})")
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(f"indices out of range [0, {codebook_size})")
    return torch.bincount(flat, minlength=codebook_size).double()


def _entropy_bits(counts: Tensor) -> float:
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * p.log2()).sum())


def perplexity(indices: Tensor, codebook_size: int) -> float:
    """``2 ** H`` of the empirical code distribution (H in bits); between 1 and ``codebook_size``."""
    if codebook_size > _DENSE_LIMIT:
        _, counts = torch.unique(indices.reshape(-1), return_counts=True)
        return 2.0 ** _entropy_bits(counts.double())
    return 2.0 ** _entropy_bits(code_counts(indices, codebook_size))


def usage(indices: Tensor, codebook_size: int) -> float:
    """Fraction of the ``codebook_size`` codes that appear at least once in ``indices``."""
    return torch.unique(indices.reshape(-1)).numel() / codebook_size


def bits_per_token(codebook_size: int, num_codebooks: int = 1) -> float:
    """Fixed-length bits to store one token with ``num_codebooks`` ids of ``codebook_size`` values."""
    return num_codebooks * math.log2(codebook_size)


class CodebookUsage:
    """Streaming code counter over a window of batches.

    Args:
        codebook_size: Number of codes V.
        dead_threshold: A code hit fewer than this many times in the window counts as dead.
    """

    def __init__(self, codebook_size: int, dead_threshold: float = 1.0) -> None:
        if codebook_size > _DENSE_LIMIT:
            raise ValueError(f"codebook_size {codebook_size} is too large to track densely (> {_DENSE_LIMIT})")
        self.codebook_size = codebook_size
        self.dead_threshold = dead_threshold
        self.counts = torch.zeros(codebook_size, dtype=torch.float64)

    def update(self, indices: Tensor) -> None:
        """Adds a batch of ids (any shape) to the window."""
        self.counts += code_counts(indices.detach().cpu(), self.codebook_size)

    def reset(self) -> None:
        self.counts.zero_()

    def _global_counts(self) -> Tensor:
        return all_reduce_sum_(self.counts.clone())

    def compute(self) -> dict[str, float]:
        """Global statistics of the window: usage, perplexity, dead codes, entropy bits."""
        counts = self._global_counts()
        used = int((counts > 0).sum())
        entropy = _entropy_bits(counts)
        return {
            "usage": used / self.codebook_size,
            "perplexity": 2.0**entropy,
            "dead_codes": int((counts < self.dead_threshold).sum()),
            "entropy_bits": entropy,
            "tokens": float(counts.sum()),
        }
