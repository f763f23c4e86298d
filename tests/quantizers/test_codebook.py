"""Shared codebook machinery: k-means++ seeding (sequential and batched) and k-means."""

from __future__ import annotations

import torch

from vqtok.kernels import nearest
from vqtok.quantizers import _codebook as cb


def _separated_clusters(num_clusters: int, per_cluster: int, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = 10.0 * torch.randn(num_clusters, dim, generator=g)
    rows = centres.repeat_interleave(per_cluster, 0) + 0.05 * torch.randn(num_clusters * per_cluster, dim, generator=g)
    return rows, centres


def _are_rows_of(rows: torch.Tensor, data: torch.Tensor) -> bool:
    """Whether every row of ``rows`` is exactly some row of ``data`` (small test sizes only)."""
    return bool((rows[:, None, :] == data[None, :, :]).all(-1).any(1).all())


def _clusters_hit(points: torch.Tensor, centres: torch.Tensor) -> int:
    _, which = nearest(points, centres)
    return len(set(which.tolist()))


def test_more_clusters_than_rows_takes_every_row():
    data = torch.randn(10, 4)
    torch.manual_seed(0)
    centres = cb.kmeans_plusplus(data, 25)
    assert centres.shape == (25, 4)
    # Every row appears among the centres, and every centre is a row.
    assert _are_rows_of(data, centres) and _are_rows_of(centres, data)


def test_sequential_and_batched_seeding_cover_separated_clusters():
    # 400 centres > SEEDING_ROUNDS + 1, so they are drawn in batches; 200 are drawn one by one.
    assert 400 > cb.SEEDING_ROUNDS + 1 >= 200
    for num_clusters in (200, 400):
        data, truth = _separated_clusters(num_clusters, 20)
        torch.manual_seed(1)
        seeds = cb.kmeans_plusplus(data, num_clusters)
        assert _are_rows_of(seeds, data)
        # Uniform seeding would cover about 1 - 1/e = 63% of the clusters; D^2 sampling nearly all.
        assert _clusters_hit(seeds, truth) >= 0.95 * num_clusters
        centres, counts = cb.kmeans(data, num_clusters, iters=5)
        assert counts.sum() == data.shape[0]
        _, assign = nearest(data, centres)
        inertia = (data - centres[assign]).square().sum(-1).mean()
        assert inertia < 1.0, float(inertia)  # an unfound cluster costs ~1.6 per point of its cluster
