"""Small graphs for tests: Zachary's karate club, stochastic block models, and a reference BFS."""

from __future__ import annotations

import collections

import torch

__all__ = ["KARATE", "adjacency_lists", "karate", "reference_bfs", "sbm"]

# Zachary's karate club (Zachary 1977), 0-indexed: 34 members, 78 friendships.
KARATE = [
    (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (0, 10), (0, 11), (0, 12), (0, 13), (0, 17),
    (0, 19), (0, 21), (0, 31), (1, 2), (1, 3), (1, 7), (1, 13), (1, 17), (1, 19), (1, 21), (1, 30), (2, 3), (2, 7),
    (2, 8), (2, 9), (2, 13), (2, 27), (2, 28), (2, 32), (3, 7), (3, 12), (3, 13), (4, 6), (4, 10), (5, 6), (5, 10),
    (5, 16), (6, 16), (8, 30), (8, 32), (8, 33), (9, 33), (13, 33), (14, 32), (14, 33), (15, 32), (15, 33), (18, 32),
    (18, 33), (19, 33), (20, 32), (20, 33), (22, 32), (22, 33), (23, 25), (23, 27), (23, 29), (23, 32), (23, 33),
    (24, 25), (24, 27), (24, 31), (25, 31), (26, 29), (26, 33), (27, 33), (28, 31), (28, 33), (29, 32), (29, 33),
    (30, 32), (30, 33), (31, 32), (31, 33), (32, 33),
]  # fmt: skip


def karate() -> torch.Tensor:
    return torch.tensor(KARATE).T


def sbm(sizes: list[int], p_in: float, p_out: float, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Undirected stochastic block model, each edge listed once: ``((2, E), n)``."""
    g = torch.Generator().manual_seed(seed)
    block = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    n = block.numel()
    p = torch.where(block[:, None] == block[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    return upper.nonzero().T.contiguous(), n


def adjacency_lists(edge_index: torch.Tensor) -> dict[int, list[int]]:
    adj = collections.defaultdict(list)
    for u, v in edge_index.T.tolist():
        adj[u].append(v)
        adj[v].append(u)
    return adj


def reference_bfs(adj: dict[int, list[int]], num_nodes: int, source: int) -> list[float]:
    dist = [float("inf")] * num_nodes
    dist[source] = 0
    queue = collections.deque([source])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if dist[v] == float("inf"):
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist
