"""k-means seeding: uniform sampling, sequential k-means++ and batched k-means++ (k-means||-style rounds).

* :func:`random_seeding` draws ``k`` distinct training rows, as faiss's ``Clustering`` does. On heavy-tailed data
  it rarely starts a centroid on an outlier.
* :func:`kmeans_plusplus` is exact sequential k-means++ (Arthur & Vassilvitskii, SODA 2007) with a CPU
  generator, for offline codecs that must be reproducible from a seed.
* :func:`kmeans_plusplus_batched` draws the centres in at most :data:`SEEDING_ROUNDS` rounds from the global
  (device) RNG without a host synchronisation per centre, for the online codebooks of the quantizers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .nearest import nearest

__all__ = ["SEEDING_ROUNDS", "kmeans_plusplus", "kmeans_plusplus_batched", "random_seeding"]

# Batched k-means++ draws more than this many centres in this many rounds (one pass over the data each).
SEEDING_ROUNDS = 256


def random_seeding(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``k`` distinct rows of ``x`` ``(N, D)`` (``N >= k``), drawn uniformly with a CPU generator."""
    pick = torch.randperm(x.shape[0], generator=generator)[:k].to(x.device)
    return x[pick].clone()


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator, weights: Tensor | None = None) -> Tensor:
    """Sequential k-means++ seeding in (weighted) squared L2.

    Args:
        x: ``(N, D)`` vectors, ``N >= k``.
        k: Number of centroids.
        generator: CPU random generator, for reproducibility.
        weights: Optional ``(N, D)`` per-coordinate weights.

    Returns:
        ``(k, D)`` initial centroids drawn from ``x``.
    """
    n = x.shape[0]
    # sum_j w_j (x_j - c_j)^2 = sum_j w_j x_j^2 - 2 <w x, c> + <w, c^2>: one matrix-vector product per pick.
    # Distances do not change under a shift; centring keeps the expansion from cancelling away their digits
    # when the data sit far from the origin.
    xc = x - x.mean(0)
    wx = xc if weights is None else weights * xc
    x_sq = (wx * xc).sum(1)

    def dist_to(i: int) -> Tensor:
        c = xc[i]
        c_sq = (c * c).sum() if weights is None else weights @ (c * c)
        return (x_sq - 2 * (wx @ c) + c_sq).clamp_min(0)

    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    best = dist_to(first)
    best[first] = 0
    for _ in range(1, k):
        probs = best.double().cpu()
        total = float(probs.sum())
        if total <= 0 or not torch.isfinite(torch.tensor(total)):
            # Fewer distinct points than k: uniform picks (the duplicates are split by Lloyd's empty-cluster rule).
            nxt = int(torch.randint(n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(probs / total, 1, generator=generator))
        chosen.append(nxt)
        best = torch.minimum(best, dist_to(nxt))
        best[nxt] = 0  # exactly, whatever the rounding: a chosen point is never drawn again
    return x[chosen].clone()


def kmeans_plusplus_batched(data: Tensor, num_clusters: int) -> Tensor:
    """k-means++ seeding whose draws stay on the device (global RNG), batched beyond :data:`SEEDING_ROUNDS` centres.

    Distances are kept as a running ``(N,)`` minimum, so memory stays O(N + K d). Beyond
    :data:`SEEDING_ROUNDS` centres they are drawn in that many rounds, each sampling a batch of rows by squared
    distance (the oversampling idea of k-means||: Bahmani et al., VLDB 2012) and updating the distances through
    :func:`nearest`. When ``N <= num_clusters`` every row becomes a centre and the rest are uniform repeats.

    Args:
        data: ``(N, d)`` float rows, ``N >= 1``.
        num_clusters: Number of centres K.

    Returns:
        ``(K, d)`` centres, each a row of ``data``.
    """
    n, d = data.shape
    if num_clusters >= n:
        order = torch.randperm(n, device=data.device)
        repeats = torch.randint(n, (num_clusters - n,), device=data.device)
        return data[torch.cat([order, repeats])]
    per_round = -(-(num_clusters - 1) // SEEDING_ROUNDS)
    centres = data.new_empty(num_clusters, d)
    first = torch.randint(n, (1,), device=data.device)
    centres[0] = data[first[0]]
    min_dist = (data - centres[0]).square().sum(-1)
    filled = 1
    while filled < num_clusters:
        m = min(per_round, num_clusters - filled)
        # The tiny floor turns an all-zero distance vector into a uniform draw without a host sync.
        pick = torch.multinomial(min_dist + 1e-30, m)
        fresh = data[pick]  # (m, d)
        centres[filled : filled + m] = fresh
        filled += m
        if filled == num_clusters:
            break
        if m == 1:
            dist = (data - fresh[0]).square().sum(-1)
        else:
            _, near = nearest(data, fresh)
            dist = (data - fresh[near]).square().sum(-1)
        min_dist = torch.minimum(min_dist, dist)
    return centres
