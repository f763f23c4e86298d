"""Entropy terms of binary (lookup-free) quantizers, computed from per-bit logits.

LFQ (Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation",
arXiv:2310.05737) and BSQ (Zhao et al., "Image and Video Tokenization with Binary Spherical
Quantization", arXiv:2406.07548) quantize each of d channels to ``±s`` and regularise the soft code
assignment ``q(c | z) ∝ exp(-||z - c||² / τ)`` over the ``2^d`` corners ``c ∈ {±s}^d``.

Because ``||z - c||²`` is a sum over channels, ``q(c | z)`` is a product of independent Bernoullis
with per-bit logits ``l_i = 4 s z_i / τ`` (``p(c_i = +s) = sigmoid(l_i)``), so:

* the per-sample entropy ``H(q(· | z))`` is exactly the sum of per-bit binary entropies, for any d;
* the codebook entropy ``H(q̄)`` of the batch average ``q̄ = mean_n q(· | z_n)`` is *not* factorised
  (a mixture of products is not a product). Two ways to get it:

  - :func:`factorized_codebook_entropy`: ``sum_i H(mean_n sigmoid(l_ni))``, the sum of the marginal
    bit entropies. By subadditivity it is an upper bound of ``H(q̄)``, exact when the bits are
    independent under ``q̄``. Costs ``O(N d)``; this is what BSQ's Eq. 8 uses with groups of one bit.
  - :func:`exact_codebook_entropy`: the full ``2^d``-way sum. ``log q̄(c) = logsumexp_n(c·l_n / 2 -
    A_n) - log N`` with the closed-form normaliser ``A_n = sum_i log(2 cosh(l_ni / 2))``, streamed
    over tiles of ``code_chunk`` codes × ``sample_chunk`` samples (a running ``logaddexp`` over the
    sample tiles), so scratch memory is one tile whatever N and d are. The backward pass is analytic
    and re-streams the tiles instead of keeping an ``N × 2^d`` autograd graph. Costs ``O(N 2^d d)``
    time: fine for d up to about 20.

All entropies are in nats and computed in float32 (float64 inputs stay float64), with autocast off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = [
    "binary_entropy",
    "code_signs",
    "exact_codebook_entropy",
    "factorized_codebook_entropy",
    "index_perplexity",
    "per_sample_entropy",
]

# Keeps p log p finite (and its gradient finite) when a bit's batch-mean probability underflows.
_EPS = 1e-12


@contextlib.contextmanager
def _full_precision(reference: Tensor) -> Iterator[None]:
    device_type = reference.device.type if reference.device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def _upcast(logits: Tensor) -> Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()


def _check_logits(logits: Tensor) -> None:
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(f"expected floating point per-bit logits (N, d), got {tuple(logits.shape)} {logits.dtype}")


def binary_entropy(logits: Tensor) -> Tensor:
    """Entropy of ``Bernoulli(sigmoid(logits))``, elementwise, in nats.

    Uses ``softplus(l) - l * sigmoid(l)``, which is finite with finite gradients for any logit.

    Args:
        logits: Any shape.

    Returns:
        Same shape as ``logits``, in float32 (or float64).
    """
    with _full_precision(logits):
        logits = _upcast(logits)
        return torch.nn.functional.softplus(logits) - logits * torch.sigmoid(logits)


def per_sample_entropy(logits: Tensor) -> Tensor:
    """Exact entropy of each sample's soft code distribution ``q(· | z_n)``.

    Args:
        logits: ``(N, d)`` per-bit logits.

    Returns:
        ``(N,)`` entropies in nats.
    """
    _check_logits(logits)
    return binary_entropy(logits).sum(-1)


def factorized_codebook_entropy(logits: Tensor) -> Tensor:
    """Sum of the entropies of the batch-mean bit probabilities: an upper bound of ``H(q̄)``.

    Args:
        logits: ``(N, d)`` per-bit logits, ``N >= 1``.

    Returns:
        Scalar, in nats; equals :func:`exact_codebook_entropy` when the bits are independent under
        the batch average.
    """
    _check_logits(logits)
    with _full_precision(logits):
        p = torch.sigmoid(_upcast(logits)).mean(0)  # (d,)
        q = 1 - p
        return -(p * p.clamp_min(_EPS).log() + q * q.clamp_min(_EPS).log()).sum()


def code_signs(start: int, stop: int, bits: int, device: torch.device | None = None, dtype=torch.float32) -> Tensor:
    """The codes ``start .. stop-1`` as ``±1`` vectors; bit ``i`` of the index is channel ``i``.

    Args:
        start: First index.
        stop: One past the last index.
        bits: Number of channels d.
        device: Device of the result.
        dtype: Floating dtype of the result.

    Returns:
        ``(stop - start, bits)`` tensor of ``±1``.
    """
    index = torch.arange(start, stop, device=device)
    shifts = torch.arange(bits, device=device)
    return (((index[:, None] >> shifts) & 1) * 2 - 1).to(dtype)


@torch.no_grad()
def index_perplexity(indices: Tensor) -> Tensor:
    """``exp`` of the entropy of the empirical distribution of hard indices, per column.

    Args:
        indices: ``(N, K)`` integer ids, ``N >= 1``.

    Returns:
        ``(K,)`` float32 perplexities, between 1 and ``min(N, codebook_size)``.
    """
    out = []
    for column in indices.unbind(1):
        _, counts = torch.unique(column, return_counts=True)
        p = counts.float() / column.numel()
        out.append(torch.exp(-(p * p.log()).sum()))
    return torch.stack(out)


def exact_codebook_entropy(logits: Tensor, sample_chunk: int = 4096) -> Tensor:
    """Exact entropy of the batch-average code distribution over all ``2^d`` codes.

    Scratch memory is ``O(sample_chunk · 2^ceil(d/2) + 2^d)`` floats in both passes, never ``N × 2^d``.

    Args:
        logits: ``(N, d)`` per-bit logits, ``N >= 1``.
        sample_chunk: Samples per tile.

    Returns:
        Scalar, in nats, differentiable with respect to ``logits`` (not twice).

    Raises:
        ValueError: On bad shapes, an empty batch or a non-positive chunk size.
    """
    _check_logits(logits)
    if logits.shape[0] == 0:
        raise ValueError("exact_codebook_entropy needs at least one sample")
    if sample_chunk < 1:
        raise ValueError(f"sample_chunk must be positive, got {sample_chunk}")
    with _full_precision(logits):
        return _ExactCodebookEntropy.apply(_upcast(logits), sample_chunk)


def _split(bits: int) -> int:
    """Number of low bits: the code index is ``low + 2^k * high``."""
    return (bits + 1) // 2


def _half_tables(logits: Tensor, signs_low: Tensor, signs_high: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample probabilities of every low-half and every high-half code.

    Returns:
        ``(2^k, n)`` and ``(2^(d-k), n)``; ``p(c | n)`` is the product of one entry of each.
    """
    k = signs_low.shape[1]
    # log p = sum_i [c_i > 0] logsigmoid(l_i) + [c_i < 0] logsigmoid(-l_i): every term is <= 0, so
    # the matmul never cancels (the shorter c·l/2 - A_n form loses digits for large logits).
    log_on = torch.nn.functional.logsigmoid(logits)  # (n, d)
    log_off = torch.nn.functional.logsigmoid(-logits)
    tables = []
    for signs, cols in ((signs_low, slice(0, k)), (signs_high, slice(k, None))):
        on = (signs > 0).to(logits.dtype)
        tables.append((on @ log_on[:, cols].T + (1 - on) @ log_off[:, cols].T).exp())
    return tables[0], tables[1]


class _ExactCodebookEntropy(torch.autograd.Function):
    """``H(q̄)`` with ``q̄`` as a ``(2^k, 2^(d-k))`` matrix: ``mean_n`` of outer products of half tables."""

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, sample_chunk: int) -> Tensor:  # type: ignore[override]
        n, bits = logits.shape
        k = _split(bits)
        signs_low = code_signs(0, 2**k, k, logits.device, logits.dtype)  # (2^k, k)
        signs_high = code_signs(0, 2 ** (bits - k), bits - k, logits.device, logits.dtype)
        # Probabilities, not log-probabilities, are summed: each is in [0, 1], and ones that
        # underflow contribute less than 1e-35 nats.
        mean = logits.new_zeros(2**k, 2 ** (bits - k))
        for n0, n1 in _tiles(n, sample_chunk):
            low, high = _half_tables(logits[n0:n1], signs_low, signs_high)
            mean += low @ high.T
        mean /= n
        log_mean = torch.where(mean > 0, mean.log(), torch.zeros_like(mean))
        ctx.save_for_backward(logits, log_mean)
        ctx.sample_chunk = sample_chunk
        return -(mean * log_mean).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        # dH/dl_n = -1/(2N) * sum_c p(c|n) log q̄(c) (c - m_n), with m_n = tanh(l_n / 2) = E[c | n];
        # the "+1" of d(-q log q)/dq cancels because sum_c p(c|n) (c - m_n) = 0. Codes where q̄
        # underflowed have p(c|n) = 0 for every n, so the 0 stored for their log q̄ is harmless.
        logits, log_mean = ctx.saved_tensors  # type: ignore[attr-defined]
        n, bits = logits.shape
        k = _split(bits)
        signs_low = code_signs(0, 2**k, k, logits.device, logits.dtype)
        signs_high = code_signs(0, 2 ** (bits - k), bits - k, logits.device, logits.dtype)
        grad = torch.empty_like(logits)
        for n0, n1 in _tiles(n, ctx.sample_chunk):  # type: ignore[attr-defined]
            low, high = _half_tables(logits[n0:n1], signs_low, signs_high)
            low_w = low * (log_mean @ high)  # sum_high p(c|n) log q̄(c), (2^k, n)
            high_w = high * (log_mean.T @ low)  # (2^(d-k), n)
            weighted_signs = torch.cat([low_w.T @ signs_low, high_w.T @ signs_high], dim=1)  # (n, d)
            weight = low_w.sum(0)  # sum_c p(c|n) log q̄(c), (n,)
            grad[n0:n1] = weighted_signs - torch.tanh(0.5 * logits[n0:n1]) * weight[:, None]
        return grad * (-grad_output / (2 * n)), None


def _tiles(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)
