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

__all__ = [
    "CodebookUsage",
    "bits_per_token",
    "code_counts",
    "code_perplexity",
    "perplexity",
    "perplexity_from_counts",
    "usage",
]

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


def perplexity_from_counts(counts: Tensor) -> Tensor:
    """``exp(H)`` of the code distribution given by ``counts`` ``(..., V)``, over the last axis.

    The one perplexity of vqtok: every quantizer metric, report and benchmark goes through it. It
    stays on the counts' device (no host sync) and is 0 where the counts are all zero.

    Returns:
        ``(...)`` tensor in the counts' floating dtype (float32 for integer counts).
    """
    counts = counts if counts.is_floating_point() else counts.float()
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)
    return torch.where(total[..., 0] > 0, entropy.exp(), torch.zeros_like(entropy))


@torch.no_grad()
def code_perplexity(indices: Tensor, codebook_size: int) -> Tensor:
    """Perplexity of the ids in ``indices`` (any shape) as a 0-d tensor on their device, no host sync.

    Above ``2^24`` codes the distinct ids are counted instead of a dense histogram.
    """
    flat = indices.reshape(-1).long()
    if codebook_size > _DENSE_LIMIT:
        counts = torch.unique(flat, return_counts=True)[1]
    else:
        counts = torch.bincount(flat, minlength=codebook_size)
    return perplexity_from_counts(counts)


def _entropy_bits(counts: Tensor) -> float:
    return float(perplexity_from_counts(counts.double()).clamp_min(1.0).log2()) if counts.sum() > 0 else 0.0


def perplexity(indices: Tensor, codebook_size: int) -> float:
    """``exp(H)`` (equivalently ``2 ** H`` with H in bits) of the empirical code distribution; in ``[1, V]``."""
    if codebook_size > _DENSE_LIMIT:
        _, counts = torch.unique(indices.reshape(-1), return_counts=True)
        return float(perplexity_from_counts(counts.double()))
    return float(perplexity_from_counts(code_counts(indices, codebook_size)))


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
            "perplexity": float(perplexity_from_counts(counts)),
            "dead_codes": int((counts < self.dead_threshold).sum()),
            "entropy_bits": entropy,
            "tokens": float(counts.sum()),
        }
