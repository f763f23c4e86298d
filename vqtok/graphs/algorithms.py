"""Graph algorithms behind NodePiece: anchor selection, multi-source BFS distances, relation contexts.

Galkin et al., "NodePiece: Compositional and Parameter-Efficient Representations of Large Knowledge Graphs",
ICLR 2022, arXiv:2106.12144. Pure tensor functions on ``(2, E)`` edge lists, below every model layer: the
NodePiece tokenizer (:class:`vqtok.tokenizers.NodePieceTokenizer`) fits its tables with them. Written from the
paper; no code was taken from the reference implementation.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = [
    "STRATEGIES",
    "anchor_distances",
    "anchors_from_neighbors",
    "check_edges",
    "pagerank",
    "relation_context",
    "select_anchors",
    "undirected_adjacency",
]

STRATEGIES = ("degree", "pagerank", "random")
# Entries of the (nodes x anchors) distance block processed at once; bounds BFS memory on large graphs.
_BFS_TILE = 1 << 23


def check_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Validates ``(2, E)`` integer edges over ``num_nodes`` nodes and returns them as int64.

    Raises:
        ValueError: On a wrong shape or dtype, ``num_nodes < 1``, or node ids outside ``[0, num_nodes)``.
    """
    edge_index = torch.as_tensor(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point():
        raise ValueError(f"edge_index must be an integer tensor of shape (2, E), got {tuple(edge_index.shape)}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    edge_index = edge_index.long()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
    return edge_index


def undirected_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``(num_nodes, num_nodes)`` sparse CSR float adjacency with both edge directions."""
    src = torch.cat([edge_index[0], edge_index[1]])
    dst = torch.cat([edge_index[1], edge_index[0]])
    order = torch.argsort(src * num_nodes + dst)
    src, dst = src[order], dst[order]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long)
    crow[1:] = torch.bincount(src, minlength=num_nodes).cumsum(0)
    values = torch.ones(src.numel())
    with warnings.catch_warnings():
        # CSR is flagged "beta" by torch, but CSR x dense is the fastest sparse product on CPU.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, dst, values, (num_nodes, num_nodes), check_invariants=False)


def select_anchors(
    edge_index: Tensor,
    num_nodes: int,
    num_anchors: int,
    strategy: str = "degree",
    seed: int = 0,
) -> Tensor:
    """Picks anchor nodes, most important first.

    Args:
        edge_index: ``(2, E)`` int64 edges; direction is ignored.
        num_nodes: Number of nodes n.
        num_anchors: Number of anchors A (``<= n``).
        strategy: ``"degree"`` (highest undirected degree), ``"pagerank"`` (highest PageRank on the
            undirected graph, damping 0.85) or ``"random"`` (uniform, seeded). Ties go to the smaller node id.
        seed: Seed of the ``"random"`` strategy.

    Returns:
        ``(A,)`` int64 node ids.

    Raises:
        ValueError: On an unknown strategy or ``num_anchors`` out of ``[1, n]``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown anchor strategy {strategy!r}; expected one of {STRATEGIES}")
    if not 1 <= num_anchors <= num_nodes:
        raise ValueError(f"num_anchors must be in [1, num_nodes={num_nodes}], got {num_anchors}")
    if strategy == "random":
        return torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))[:num_anchors]
    degree = torch.bincount(edge_index.reshape(-1), minlength=num_nodes).double()
    if strategy == "degree":
        score = degree
    else:
        score = pagerank(undirected_adjacency(edge_index, num_nodes), degree)
    return torch.argsort(-score, stable=True)[:num_anchors]


def pagerank(adj: Tensor, degree: Tensor, damping: float = 0.85, iters: int = 100, tol: float = 1e-10) -> Tensor:
    """PageRank by power iteration on adjacency ``adj`` ``(n, n)`` with node degrees ``degree`` ``(n,)``, float64."""
    n = degree.numel()
    rank = torch.full((n,), 1.0 / n, dtype=torch.float64)
    adj = adj.to(torch.float64)
    dangling = degree == 0
    inv_degree = torch.where(dangling, 0.0, 1.0 / degree.clamp_min(1))
    for _ in range(iters):
        # Dangling mass is spread uniformly so that the ranks keep summing to one.
        spread = (adj @ (rank * inv_degree)[:, None])[:, 0]
        new = (1 - damping) / n + damping * (spread + rank[dangling].sum() / n)
        done = float((new - rank).abs().sum()) < tol
        rank = new
        if done:
            break
    return rank


def anchor_distances(
    edge_index: Tensor,
    num_nodes: int,
    anchors: Tensor,
    k: int,
    max_distance: int,
) -> tuple[Tensor, Tensor]:
    """Each node's ``k`` nearest anchors by BFS hop distance on the undirected graph.

    All anchors are searched at once as columns of a sparse-times-dense frontier product, in column
    tiles so memory stays ``O(n * tile)``. Ties in distance go to the anchor listed first in ``anchors``.

    Args:
        edge_index: ``(2, E)`` int64 edges.
        num_nodes: Number of nodes n.
        anchors: ``(A,)`` anchor node ids.
        k: Anchors per node (``<= A``).
        max_distance: Hops searched; farther anchors count as unreachable.

    Returns:
        ``(anchor_ids, distances)``, each ``(n, k)`` int64, nearest first. ``anchor_ids`` index into
        ``anchors``, with ``A`` where fewer than ``k`` anchors are reachable; such slots have distance
        ``max_distance + 1``.
    """
    num_anchors = anchors.numel()
    adj = undirected_adjacency(edge_index, num_nodes)
    unreachable = max_distance + 1
    # Sorting key: distance first, then anchor rank; fits in int64 for any realistic graph.
    best = torch.full((num_nodes, k), unreachable * num_anchors + num_anchors, dtype=torch.long)
    tile = max(1, min(num_anchors, _BFS_TILE // max(num_nodes, 1)))
    for c0 in range(0, num_anchors, tile):
        cols = anchors[c0 : c0 + tile]
        c = cols.numel()
        # Small integer type: the distance block is the largest tensor here.
        dist = torch.full((num_nodes, c), unreachable, dtype=torch.uint8 if unreachable < 256 else torch.int32)
        frontier = torch.zeros(num_nodes, c)
        frontier[cols, torch.arange(c)] = 1.0
        dist[cols, torch.arange(c)] = 0
        visited = frontier > 0
        for hop in range(1, max_distance + 1):
            reached = (adj @ frontier > 0).logical_and_(visited.logical_not())
            if not bool(reached.any()):
                break
            dist.masked_fill_(reached, hop)
            visited.logical_or_(reached)
            frontier = reached.float()
        key = dist.long() * num_anchors + torch.arange(c0, c0 + c)
        best = torch.cat([best, key], 1).topk(k, dim=1, largest=False, sorted=True).values
    distances = best // num_anchors
    anchor_ids = torch.where(distances >= unreachable, num_anchors, best % num_anchors)
    return anchor_ids, distances.clamp_max(unreachable)


def relation_context(nodes: Tensor, relations: Tensor, num_nodes: int, vocab: int, m: int) -> Tensor:
    """Per node, its ``m`` most frequent relation ids (ties to the smaller id), padded with ``vocab``.

    Args:
        nodes: ``(P,)`` node of each (node, relation) incidence.
        relations: ``(P,)`` relation id of each incidence, in ``[0, vocab)``.

    Returns:
        ``(num_nodes, m)`` int64.
    """
    out = torch.full((num_nodes, m), vocab, dtype=torch.long)
    if nodes.numel() == 0 or m == 0:
        return out
    pairs, counts = torch.unique(nodes * vocab + relations, return_counts=True)  # sorted: node, then relation
    # Stable sorts, least significant key first: count (descending), then node.
    order = torch.argsort(-counts, stable=True)
    order = order[torch.argsort(pairs[order] // vocab, stable=True)]
    node, rel = pairs[order] // vocab, pairs[order] % vocab
    per_node = torch.bincount(node, minlength=num_nodes)
    rank = torch.arange(node.numel()) - (per_node.cumsum(0) - per_node)[node]
    keep = rank < m
    out[node[keep], rank[keep]] = rel[keep]
    return out


def anchors_from_neighbors(
    node_anchors: Tensor, node_distances: Tensor, neighbors: Tensor, num_anchors: int, max_distance: int
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest anchors of a new node, from the stored nearest anchors of its known neighbours.

    The new node's distance to an anchor is one more than its nearest neighbour's; the result is exact whenever
    each of its ``k`` nearest anchors is among some nearest neighbour's ``k`` (always true for ``k`` = A).

    Args:
        node_anchors: ``(n, k)`` anchor ids in ``[0, A]`` of the known nodes (``A``: none).
        node_distances: ``(n, k)`` their hop distances.
        neighbors: ``(E',)`` known node ids the new node is linked to.
        num_anchors: A.
        max_distance: BFS depth M; farther anchors count as unreachable.

    Returns:
        ``(anchor_ids, distances)``, each ``(k,)`` int64, nearest first, as :func:`anchor_distances` lays them out.
    """
    k = node_anchors.shape[1]
    unreachable = max_distance + 1
    cand_anchor = node_anchors[neighbors].reshape(-1)
    cand_dist = node_distances[neighbors].reshape(-1) + 1
    ok = (cand_anchor < num_anchors) & (cand_dist <= max_distance)
    # Shortest distance per anchor, then the k best by (distance, anchor rank).
    dist = torch.full((num_anchors,), unreachable, dtype=torch.long, device=node_anchors.device)
    dist.scatter_reduce_(0, cand_anchor[ok], cand_dist[ok], reduce="amin")
    key = dist * num_anchors + torch.arange(num_anchors, device=dist.device)
    best = key.topk(k, largest=False, sorted=True).values
    distances = best // num_anchors
    return torch.where(distances >= unreachable, num_anchors, best % num_anchors), distances
