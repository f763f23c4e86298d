"""Codebook machinery shared by the codebook quantizers: written once, imported everywhere.

* k-means++ seeding (Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007)
  followed by a few Lloyd iterations, for data-dependent codebook initialisation; both live in
  :mod:`vqtok.kernels.kmeans` (shared with the offline codecs) and are only composed here.
* EMA codebook statistics with Laplace-smoothed cluster sizes (van den Oord et al., "Neural Discrete
  Representation Learning", arXiv:1711.00937, appendix A.1).
* Gradient estimators that keep the forward value bit-exact: the straight-through estimator and the
  rotation trick (Fifty et al., "Restructuring Vector Quantization with the Rotation Trick",
  arXiv:2410.06424).
* Thin ``torch.distributed`` helpers that are no-ops in a single process.

Every assignment goes through :func:`vqtok.kernels.nearest`, and every per-code statistic is
accumulated with ``bincount``/``index_add_``, so nothing here ever builds an N x K matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._dist import all_reduce_sum_ as all_reduce_sum_
from .._dist import broadcast_ as broadcast_
from .._dist import is_distributed as is_distributed
from .._dist import rank
from ..kernels import nearest
from ..kernels.kmeans import lloyd
from ..kernels.kmeans_seeding import SEEDING_ROUNDS as SEEDING_ROUNDS
from ..kernels.kmeans_seeding import kmeans_plusplus_batched as kmeans_plusplus
from ..metrics.codebook import perplexity_from_counts as perplexity_from_counts  # the one perplexity

__all__ = [
    "all_reduce_sum_",
    "broadcast_",
    "cluster_stats",
    "ema_update_",
    "is_distributed",
    "is_source_rank",
    "kmeans",
    "kmeans_plusplus",
    "laplace_smoothed",
    "perplexity_from_counts",
    "random_latents",
    "rotation_trick",
    "sample_rows",
    "with_gradient_of",
]

# k-means on more rows than this gains little accuracy and costs time on the first step.
KMEANS_MAX_ROWS = 1 << 16


# ------------------------------------------------------------------------------------ distributed
# Codebook state is kept in sync with the one set of collectives in vqtok._dist (re-exported for the quantizers).
def is_source_rank() -> bool:
    """True on the rank whose random choices (k-means, restarts) are broadcast to the others."""
    return rank() == 0


# ------------------------------------------------------------------------------------- statistics
def cluster_stats(
    latents: Tensor,
    indices: Tensor,
    num_codes: int,
    weights: Tensor | None = None,
    with_sums: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Per-code assignment counts and latent sums, without a one-hot matrix.

    Args:
        latents: ``(N, d)`` float latents.
        indices: ``(N,)`` int64 assigned codes.
        num_codes: Codebook size V.
        weights: Optional ``(N,)`` float row weights (0 drops a row); ``None`` weighs every row 1.
        with_sums: Whether to accumulate the ``(V, d)`` sums too.

    Returns:
        ``(counts, sums)``: counts ``(V,)`` float32 and sums ``(V, d)`` float32 (``None`` when
        ``with_sums`` is false).
    """
    counts = torch.bincount(indices, weights=weights, minlength=num_codes).float()
    if not with_sums:
        return counts, None
    rows = latents if weights is None else latents * weights[:, None]
    sums = latents.new_zeros(num_codes, latents.shape[1]).index_add_(0, indices, rows.float())
    return counts, sums


def ema_update_(
    cluster_size: Tensor,
    counts: Tensor,
    decay: float,
    embed_sum: Tensor | None = None,
    sums: Tensor | None = None,
) -> None:
    """In-place exponential moving average of cluster sizes (and of per-code latent sums).

    ``s <- decay * s + (1 - decay) * counts`` and likewise for the sums.
    """
    cluster_size.mul_(decay).add_(counts, alpha=1.0 - decay)
    if embed_sum is not None and sums is not None:
        embed_sum.mul_(decay).add_(sums, alpha=1.0 - decay)


def laplace_smoothed(cluster_size: Tensor, eps: float) -> Tensor:
    """Laplace-smoothed cluster sizes ``(s + eps) / (n + V eps) * n`` with ``n = sum(s)``.

    The smoothing keeps unused codes from dividing by zero while preserving the total count.
    """
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + cluster_size.numel() * eps) * total
    # A zero total only happens if every statistic decayed to nothing; stay finite regardless.
    return smoothed.clamp_min(torch.finfo(smoothed.dtype).tiny)


# ---------------------------------------------------------------------------------------- k-means
def sample_rows(data: Tensor, num: int) -> Tensor:
    """``num`` random rows of ``data`` ``(N, d)``; without replacement whenever ``num <= N``."""
    n = data.shape[0]
    if num <= n:
        pick = torch.randperm(n, device=data.device)[:num]
    else:
        pick = torch.randint(n, (num,), device=data.device)
    return data[pick]


def random_latents(data: Tensor, num: int) -> Tensor:
    """``num`` random rows of ``data`` ``(N, d)`` as initial codes; repeats (``num > N``) get noise.

    The noise is 1% of each channel's spread, so repeated rows are distinct codes that the nearest-code
    search can tell apart, while staying on the data's scale.
    """
    rows = sample_rows(data, num)
    if num > data.shape[0]:
        spread = data.float().std(dim=0, unbiased=False).to(data.dtype)
        rows = rows + 0.01 * spread * torch.randn_like(rows)
    return rows


def kmeans(data: Tensor, num_clusters: int, iters: int, metric: str = "l2") -> tuple[Tensor, Tensor]:
    """Batched k-means++ seeding then ``iters`` Lloyd iterations of the shared :func:`vqtok.kernels.kmeans.lloyd`.

    Seeding stays on the device and uses the global RNG (no host synchronisation per centre, reproducible under
    ``torch.manual_seed``); the Lloyd steps are the ones every offline codec uses, including their cluster
    splitting, which costs one ``(K,)`` host copy of the cluster sizes per iteration. Offline codecs seed
    uniformly instead (:func:`vqtok.kernels.kmeans.kmeans`); here k-means++ stays because a first training
    batch can be smaller than the codebook, where D^2 sampling takes every distinct row first, and the
    near-empty split (``min_points=1``) moves centres seeded on outliers anyway.

    Args:
        data: ``(N, d)`` float rows, ``N >= 1``; rows beyond :data:`KMEANS_MAX_ROWS` are subsampled.
        num_clusters: Number of centres K.
        iters: Lloyd iterations after seeding.
        metric: ``"l2"`` or ``"cosine"``; for cosine, centres are re-normalised after each mean
            (spherical k-means).

    Returns:
        ``(centres, counts)``: ``(K, d)`` centres and ``(K,)`` float32 sizes of their final clusters.
    """
    data = data.float()
    if data.shape[0] > KMEANS_MAX_ROWS:
        data = sample_rows(data, KMEANS_MAX_ROWS)
    if metric == "cosine":
        data = F.normalize(data, dim=-1)
    # k-means is scale-equivariant: clustering rows divided by a power of two near their largest entry (exact in
    # fp32) gives the same assignments, and keeps squared distances finite for latents up to the fp32 limit.
    scale = inverse_power_of_two(data.detach().abs().amax())
    data = data * scale
    centres = kmeans_plusplus(data, num_clusters)
    centres, _ = lloyd(data, centres, iters, metric=metric, min_points=1)
    _, assign = nearest(data, centres, metric)
    counts, _ = cluster_stats(data, assign, num_clusters, with_sums=False)
    return centres / scale, counts


# ---------------------------------------------------------------------------- gradient estimators
def with_gradient_of(value: Tensor, path: Tensor) -> Tensor:
    """Returns ``value`` bit for bit in the forward pass, with the gradient of ``path``.

    ``value.detach() + (path - path.detach())`` adds an exact zero, so eval-mode outputs equal
    ``decode(encode(x))`` exactly, while backward sees only ``path``.
    """
    return value.detach() + (path - path.detach())


def rotation_trick(latents: Tensor, quantized: Tensor, eps: float = 1e-6) -> Tensor:
    """Maps ``latents`` onto ``quantized`` by a rotation and rescaling treated as constants.

    Implements ``q~ = sg(|q| / |e| * R) e`` with ``R = I - 2 r r^T + 2 q^ e^T``,
    ``r = (e^ + q^) / |e^ + q^|`` (arXiv:2410.06424, eq. 4 and section 4.2) without building the
    ``(d, d)`` matrix. The value is ``quantized`` up to rounding; the gradient to ``latents`` is
    the rotated and scaled upstream gradient instead of the identity of the straight-through
    estimator. Combine with :func:`with_gradient_of` to keep the forward value exact.

    Args:
        latents: ``(N, d)`` encoder outputs e (with gradient).
        quantized: ``(N, d)`` chosen codes q (treated as constants).
        eps: Floor on norms.

    Returns:
        ``(N, d)`` tensor whose gradient flows to ``latents`` only.
    """
    e = latents.detach()
    q = quantized.detach()
    e_norm = e.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    e_hat = e / e_norm
    q_hat = q / q_norm
    r = F.normalize(e_hat + q_hat, dim=-1, eps=eps)
    rotated = (
        latents - 2.0 * r * (latents * r).sum(-1, keepdim=True) + 2.0 * q_hat * (latents * e_hat).sum(-1, keepdim=True)
    )
    return rotated * (q_norm / e_norm)


def inverse_power_of_two(peak: Tensor) -> Tensor:
    """``2**-e`` with ``peak * 2**-e`` in ``[0.25, 1)``: an exact rescaling that keeps squares of rows finite.

    ``floor(log2)`` rather than ``torch.frexp``, which has no ONNX export; rounding of ``log2`` just below a power
    of two can only lower the scale by one more factor of two, which is still exact. Zero rows get scale 1.
    """
    tiny = torch.finfo(peak.dtype).tiny
    exponent = torch.floor(torch.log2(peak.clamp_min(tiny))) + 1
    return torch.where(peak > 0, torch.pow(2.0, -exponent), torch.ones_like(peak))  # pow: aten::exp2 has no ONNX export
