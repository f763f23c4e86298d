"""The one k-means of vqtok: Lloyd iterations on :func:`vqtok.kernels.nearest`, with faiss's robustness rules.

Used by every offline vector codec (:mod:`vqtok.vectors`), by vector post-training quantization of weights
(:mod:`vqtok.weights.quantize`, per-coordinate weighted) and by the k-means initialisation of the quantizers'
online codebooks (:mod:`vqtok.quantizers._codebook`).

Three rules keep centroids from being wasted on outliers of heavy-tailed data (as in faiss's ``Clustering``,
Johnson, Douze & Jégou, "Billion-scale similarity search with GPUs", 2017, and its source):

* **Sub-sampling**: at most ``max_points_per_centroid`` (256) training points per centroid; more adds time, not
  quality.
* **Seeding**: uniform random rows by default. k-means++ draws seeds with probability ~ squared distance,
  which on heavy-tailed data means outliers; a seed on an isolated outlier stays there as a one-point cluster.
* **Splitting**: after every update, each empty cluster (and, with ``min_points >= 1``, each cluster holding at
  most ``min_points`` points) takes over a copy of a large cluster's centroid, chosen with probability
  ~ ``size - 1``, and the two copies are pushed apart by a relative ``1/1024`` in alternating directions. The
  old rule of re-seeding on the worst-served point put the centroid on an outlier.

The weighted variant minimises ``sum_i sum_j h_ij (x_ij - c_j)^2``; its assignment is a maximum inner product
search of ``[2 h x, -h]`` against ``[c, c^2]`` (the ``sum_j h x^2`` term does not depend on the code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .kmeans_seeding import kmeans_plusplus, random_seeding
from .nearest import nearest

__all__ = ["assign", "kmeans", "lloyd", "progressive_kmeans", "split_clusters_", "update_centroids"]

# faiss's ClusteringParameters.max_points_per_centroid.
MAX_POINTS_PER_CENTROID = 256
# Relative perturbation of a split centroid (faiss's EPS).
_SPLIT_EPS = 1.0 / 1024.0


def assign(x: Tensor, centroids: Tensor, weights: Tensor | None = None, metric: str = "l2") -> tuple[Tensor, Tensor]:
    """Nearest centroid of each vector.

    Args:
        x: ``(N, D)`` vectors.
        centroids: ``(K, D)``.
        weights: Optional ``(N, D)`` non-negative per-coordinate weights (``metric="l2"`` only).
        metric: ``"l2"`` or ``"cosine"``, as :func:`nearest`.

    Returns:
        ``(distances, indices)``, both ``(N,)``; for L2 the distances are the (weighted) squared errors.
    """
    if weights is None:
        return nearest(x, centroids, metric)
    q = torch.cat([2 * weights * x, -weights], 1)
    c = torch.cat([centroids, centroids * centroids], 1)
    neg, idx = nearest(q, c, metric="ip")
    # nearest returns -<q, c>; add back the constant term to get the weighted error itself.
    return ((weights * x * x).sum(1) + neg).clamp_min(0), idx


def update_centroids(
    x: Tensor, indices: Tensor, previous: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The Lloyd update: each centroid becomes the (weighted) mean of its points; an empty one keeps its value.

    Args:
        x: ``(N, D)`` vectors.
        indices: ``(N,)`` int64 assignments.
        previous: ``(K, D)`` current centroids.
        weights: Optional ``(N, D)`` per-coordinate weights (the mean is then per-coordinate weighted).

    Returns:
        ``(centroids, counts)``: ``(K, D)`` and ``(K,)`` float32 numbers of assigned points.
    """
    k = previous.shape[0]
    counts = torch.bincount(indices, minlength=k).float()
    if weights is None:
        sums = torch.zeros_like(previous).index_add_(0, indices, x)
        den = counts[:, None]
    else:
        sums = torch.zeros_like(previous).index_add_(0, indices, weights * x)
        den = torch.zeros_like(previous).index_add_(0, indices, weights)
    return torch.where(den > 0, sums / den.clamp_min(1e-30), previous), counts


def split_clusters_(
    centroids: Tensor, counts: Tensor, generator: torch.Generator | None = None, min_points: int = 0
) -> int:
    """Re-seeds every cluster with ``<= min_points`` points by splitting a large one (faiss's rule), in place.

    Args:
        centroids: ``(K, D)`` centroids, modified in place.
        counts: ``(K,)`` points per cluster (any device); not modified.
        generator: CPU generator for the donor draws; ``None`` uses the global RNG.
        min_points: Clusters holding at most this many points are re-seeded (0: empty clusters only).

    Returns:
        The number of clusters re-seeded.
    """
    sizes = counts.detach().double().cpu().clone()
    targets = torch.nonzero(sizes <= min_points).flatten().tolist()
    done = 0
    for ci in targets:
        # Donors must keep at least min_points + 1 points after the split, or they would be targets themselves.
        weight = (sizes - 2 * (min_points + 1) + 1).clamp_min(0)
        if float(weight.sum()) <= 0:
            break
        cj = int(torch.multinomial(weight, 1, generator=generator))
        sign = torch.ones(centroids.shape[1], device=centroids.device)
        sign[1::2] = -1
        donor = centroids[cj].clone()
        centroids[ci] = donor * (1 + _SPLIT_EPS * sign)
        centroids[cj] = donor * (1 - _SPLIT_EPS * sign)
        half = sizes[cj] // 2
        sizes[ci] = half
        sizes[cj] -= half
        done += 1
    return done


@torch.no_grad()
def lloyd(
    x: Tensor,
    centroids: Tensor,
    iters: int,
    weights: Tensor | None = None,
    metric: str = "l2",
    generator: torch.Generator | None = None,
    min_points: int = 0,
    progress: bool = False,
    desc: str = "kmeans",
) -> tuple[Tensor, Tensor]:
    """``iters`` Lloyd iterations, each followed by cluster splitting (:func:`split_clusters_`).

    Args:
        x: ``(N, D)`` float32 vectors (unit rows for ``metric="cosine"``: spherical k-means).
        centroids: ``(K, D)`` start.
        iters: Iterations.
        weights: Optional ``(N, D)`` per-coordinate weights.
        metric: ``"l2"`` or ``"cosine"``.
        generator: CPU generator for the split draws (``None``: global RNG).
        min_points: Near-empty threshold of the split rule.
        progress: Show a tqdm bar.
        desc: Its label.

    Returns:
        ``(centroids, counts)``: ``(K, D)`` and the ``(K,)`` sizes of the last assignment.
    """
    c = centroids.float().clone()
    counts = torch.zeros(c.shape[0], device=c.device)
    for _ in tqdm(range(iters), desc=desc, disable=not progress, leave=False):
        _, idx = assign(x, c, weights, metric)
        c, counts = update_centroids(x, idx, c, weights)
        if metric == "cosine":
            c = F.normalize(c, dim=-1)
        if split_clusters_(c, counts, generator, min_points) and metric == "cosine":
            c = F.normalize(c, dim=-1)
    return c, counts


@torch.no_grad()
def kmeans(
    x: Tensor,
    k: int,
    iters: int = 25,
    seed: int = 0,
    init: Tensor | None = None,
    weights: Tensor | None = None,
    max_points: int | None = None,
    max_points_per_centroid: int | None = MAX_POINTS_PER_CENTROID,
    seeding: str = "random",
    min_points: int = 1,
    progress: bool = False,
    desc: str = "kmeans",
) -> Tensor:
    """k-means: sub-sampling, seeding, then Lloyd with cluster splitting (see the module docstring).

    Args:
        x: ``(N, D)`` float vectors, ``N >= k``.
        k: Number of centroids.
        iters: Lloyd iterations.
        seed: Seed of the sub-sampling, seeding and split draws.
        init: Optional ``(k, D)`` warm start (skips seeding).
        weights: Optional ``(N, D)`` non-negative per-coordinate weights (weighted k-means).
        max_points: Sub-sample at most this many vectors (``None``: no absolute cap).
        max_points_per_centroid: Sub-sample at most ``k`` times this many vectors (``None``: no cap).
        seeding: ``"random"`` (faiss) or ``"kmeans++"``.
        min_points: Clusters with at most this many points are split after each iteration. The default 1 also
            moves centroids off isolated outliers (measured on Student-t data: 0 one-point clusters against
            faiss's 3.3 of 256, equal held-out error; see docs/vectors.md).
        progress: Show a tqdm bar over iterations.
        desc: Progress bar label.

    Returns:
        ``(k, D)`` float32 centroids.

    Raises:
        ValueError: If there are fewer vectors than centroids, an unknown seeding, or non-finite vectors
            or squared distances (values beyond ~1e19 overflow float32 squared distances).
    """
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least {k} training vectors for {k} centroids, got {n}")
    if seeding not in ("random", "kmeans++"):
        raise ValueError(f"seeding must be 'random' or 'kmeans++', got {seeding!r}")
    g = torch.Generator().manual_seed(seed)
    caps = [c for c in (max_points, None if max_points_per_centroid is None else k * max_points_per_centroid) if c]
    cap = min(caps) if caps else None
    if cap is not None and n > cap:
        pick = torch.randperm(n, generator=g)[:cap].to(x.device)
        x = x[pick]
        weights = None if weights is None else weights[pick]
        n = cap
    x = x.float()
    weights = None if weights is None else weights.float()
    scale = float(x.abs().max()) if n else 0.0
    if not torch.isfinite(torch.tensor(scale)) or scale**2 * x.shape[1] > 1e37:
        raise ValueError(
            f"k-means input has values up to {scale:.3g}: squared distances overflow float32 (rescale the vectors)"
        )
    if init is not None:
        c = init.float().clone()
    elif seeding == "random":
        c = random_seeding(x, k, g)
    else:
        # Seeding is k sequential passes; on a subsample it costs O(k * seed_points) instead of O(k * N).
        sub = torch.arange(n, device=x.device)
        if n > max(8 * k, 8192):
            sub = torch.randperm(n, generator=g)[: max(8 * k, 8192)].to(x.device)
        c = kmeans_plusplus(x[sub], k, g, None if weights is None else weights[sub])
    return lloyd(x, c, iters, weights, generator=g, min_points=min_points, progress=progress, desc=desc)[0]


@torch.no_grad()
def progressive_kmeans(
    x: Tensor,
    k: int,
    iters: int = 10,
    steps: int = 10,
    seed: int = 0,
    max_points: int | None = None,
    min_points: int = 1,
    seeding: str = "kmeans++",
) -> Tensor:
    """k-means run in PCA space on a growing number of leading dimensions, each step warm-started by the last.

    The idea of faiss's progressive-dimension clustering: the first steps place the centroids along the
    directions of largest variance, where k-means has few poor local minima, and each later step only refines
    them as lower-variance dimensions join.

    Args:
        x: ``(N, D)`` float vectors, ``N >= k``.
        k: Number of centroids.
        iters: Lloyd iterations per step.
        steps: Number of dimension steps; step ``s`` uses ``round(D ** ((s + 1) / steps))`` dimensions.
        seed: Seed for sub-sampling, seeding and splits.
        max_points: Sub-sample at most this many vectors (``None``: all).
        min_points: Near-empty threshold of the split rule.
        seeding: Seeding of the first (lowest-dimensional) step, as :func:`kmeans`.

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
        c = kmeans(
            z[:, :di].contiguous(),
            k,
            iters=iters,
            seed=seed,
            init=c,
            max_points_per_centroid=None,
            min_points=min_points,
            seeding=seeding,
        )
    return c @ basis.T + mean
