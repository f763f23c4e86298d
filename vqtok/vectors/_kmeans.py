"""k-means (optionally with per-coordinate weights) whose every assignment step is :func:`vqtok.kernels.nearest`.

The weighted variant minimises ``sum_i sum_j h_ij (x_ij - c_j)^2`` with a weight per vector and per
coordinate. It is what vector post-training quantization of weights needs (``h`` = diagonal of
``X^T X`` for the input channels a sub-vector covers). The distance expands to
``sum_j h_ij x_ij^2 - <[2 h_i x_i, -h_i], [c, c^2]>``; the first term does not depend on the code, so
the assignment is a maximum inner product search of ``[2 h x, -h]`` against ``[c, c^2]``, which
``nearest(..., metric="ip")`` solves exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..kernels import nearest

__all__ = ["assign", "kmeans", "kmeans_plusplus", "progressive_kmeans"]


def assign(x: Tensor, centroids: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Nearest centroid of each vector, in (weighted) squared L2.

    Args:
        x: ``(N, D)`` vectors.
        centroids: ``(K, D)``.
        weights: Optional ``(N, D)`` non-negative per-coordinate weights.

    Returns:
        ``(distances, indices)``, both ``(N,)``; distances are the (weighted) squared errors.
    """
    if weights is None:
        return nearest(x, centroids)
    q = torch.cat([2 * weights * x, -weights], 1)
    c = torch.cat([centroids, centroids * centroids], 1)
    neg, idx = nearest(q, c, metric="ip")
    # nearest returns -<q, c>; add back the constant term to get the weighted error itself.
    dist = (weights * x * x).sum(1) + neg
    return dist.clamp_min(0), idx


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator, weights: Tensor | None = None) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007), in (weighted) squared L2.

    Args:
        x: ``(N, D)`` vectors, ``N >= k``.
        k: Number of centroids.
        generator: CPU random generator, for reproducibility.
        weights: Optional ``(N, D)`` per-coordinate weights.

    Returns:
        ``(k, D)`` initial centroids drawn from ``x``.
    """
    n = x.shape[0]
    # sum_j w_j (x_j - c_j)^2 = sum_j w_j x_j^2 - 2 <w x, c> + <w, c^2>: one matrix-vector product per pick
    # instead of three elementwise passes over (N, D), which made seeding most of a PQ fit's time.
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
        probs = best.double().cpu()  # dist_to already clamps rounding below zero
        total = float(probs.sum())
        if total <= 0:
            # Fewer distinct points than k: fall back to uniform picks (duplicates are split later).
            nxt = int(torch.randint(n, (1,), generator=generator))
        else:
            nxt = int(torch.multinomial(probs / total, 1, generator=generator))
        chosen.append(nxt)
        best = torch.minimum(best, dist_to(nxt))
        best[nxt] = 0  # exactly, whatever the rounding: a chosen point is never drawn again
    return x[chosen].clone()


@torch.no_grad()
def kmeans(
    x: Tensor,
    k: int,
    iters: int = 25,
    seed: int = 0,
    init: Tensor | None = None,
    weights: Tensor | None = None,
    max_points: int | None = None,
    progress: bool = False,
    desc: str = "kmeans",
) -> Tensor:
    """Lloyd's k-means with k-means++ seeding and empty-cluster re-seeding.

    Args:
        x: ``(N, D)`` float vectors, ``N >= k``.
        k: Number of centroids.
        iters: Lloyd iterations.
        seed: Seed for seeding and subsampling.
        init: Optional ``(k, D)`` warm start (skips seeding).
        weights: Optional ``(N, D)`` non-negative per-coordinate weights (weighted k-means).
        max_points: Subsample at most this many vectors for speed (``None``: use all).
        progress: Show a tqdm bar over iterations.
        desc: Progress bar label.

    Returns:
        ``(k, D)`` float32 centroids.

    Raises:
        ValueError: If there are fewer vectors than centroids.
    """
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least {k} training vectors for {k} centroids, got {n}")
    g = torch.Generator().manual_seed(seed)
    if max_points is not None and n > max_points:
        pick = torch.randperm(n, generator=g)[:max_points].to(x.device)
        x = x[pick]
        weights = None if weights is None else weights[pick]
        n = max_points
    x = x.float()
    weights = None if weights is None else weights.float()
    if init is None:
        # Seeding is k sequential passes; on a subsample it costs O(k * seed_points) instead of O(k * N).
        sub = torch.arange(n, device=x.device)
        if n > max(8 * k, 8192):
            sub = torch.randperm(n, generator=g)[: max(8 * k, 8192)].to(x.device)
        c = kmeans_plusplus(x[sub], k, g, None if weights is None else weights[sub])
    else:
        c = init.float().clone()
    for _ in tqdm(range(iters), desc=desc, disable=not progress, leave=False):
        dist, idx = assign(x, c, weights)
        if weights is None:
            sums = torch.zeros_like(c).index_add_(0, idx, x)
            den = torch.zeros(k, device=x.device).index_add_(0, idx, torch.ones_like(dist))[:, None]
        else:
            # The weighted centroid is a per-coordinate weighted mean.
            sums = torch.zeros_like(c).index_add_(0, idx, weights * x)
            den = torch.zeros_like(c).index_add_(0, idx, weights)
        filled = den > 0
        c = torch.where(filled, sums / den.clamp_min(1e-12), c)
        empty = (~filled).all(1) if weights is not None else ~filled[:, 0]
        num_empty = int(empty.sum())
        if num_empty:
            # Re-seed empty clusters on the worst-served points, so no code is wasted.
            far = torch.topk(dist, num_empty).indices
            c[empty] = x[far]
    return c


@torch.no_grad()
def progressive_kmeans(
    x: Tensor, k: int, iters: int = 10, steps: int = 10, seed: int = 0, max_points: int | None = None
) -> Tensor:
    """k-means run in PCA space on a growing number of leading dimensions, each step warm-started by the last.

    The idea of faiss's progressive-dimension clustering: the first steps place the centroids along the
    directions of largest variance, where k-means has few poor local minima, and each later step only
    refines them as lower-variance dimensions join. On the high-dimensional residuals of residual
    quantization this reaches clearly lower error than k-means++ + Lloyd on all dimensions, at a
    fraction of the cost (most steps run on few dimensions).

    Args:
        x: ``(N, D)`` float vectors, ``N >= k``.
        k: Number of centroids.
        iters: Lloyd iterations per step.
        steps: Number of dimension steps; step ``s`` uses ``round(D ** ((s + 1) / steps))`` dimensions.
        seed: Seed for subsampling and the first step's k-means++.
        max_points: Subsample at most this many vectors (``None``: all).

    Returns:
        ``(k, D)`` float32 centroids.
    """
    n, d = x.shape
    if n < k:
        raise ValueError(f"k-means needs at least {k} training vectors for {k} centroids, got {n}")
    g = torch.Generator().manual_seed(seed)
    if max_points is not None and n > max_points:
        x = x[torch.randperm(n, generator=g)[:max_points].to(x.device)]
    x = x.float()
    mean = x.mean(0)
    xc = x - mean
    _, vecs = torch.linalg.eigh(xc.T.double() @ xc.double())
    basis = vecs.flip(1).float()  # (D, D), columns by decreasing variance
    z = xc @ basis
    dims = sorted({max(1, min(d, round(d ** ((s + 1) / steps)))) for s in range(steps)} | {d})
    c = None
    for di in dims:
        if c is not None:
            # Extend the previous centroids to the new dimensions with the means of their current clusters.
            _, idx = nearest(z[:, : c.shape[1]], c)
            sums = torch.zeros(k, di, device=x.device).index_add_(0, idx, z[:, :di])
            cnt = torch.zeros(k, device=x.device).index_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))
            c = torch.cat([c, (sums[:, c.shape[1] :] / cnt.clamp_min(1)[:, None])], 1)
        c = kmeans(z[:, :di].contiguous(), k, iters=iters, seed=seed, init=c)
    return c @ basis.T + mean
