"""Graph algorithms behind NodePiece: anchor strategies, multi-source BFS against a reference, relation contexts."""

from __future__ import annotations

import collections

import pytest
import torch

from vqtok.graphs import NodePieceTables, anchor_distances, fit_tables, select_anchors
from vqtok.testing.graphs import adjacency_lists, karate, reference_bfs, sbm


def test_karate_graph_is_the_real_one():
    edges = karate()
    assert edges.shape == (2, 78) and int(edges.max()) == 33
    degree = torch.bincount(edges.reshape(-1), minlength=34)
    assert degree[33] == 17 and degree[0] == 16 and degree[32] == 12 and degree.sum() == 156


def test_anchor_strategies():
    edges = karate()
    # Highest degree: 33 (17), 0 (16), 32 (12), 2 (10), 1 (9); PageRank agrees on the karate club.
    assert select_anchors(edges, 34, 5, "degree").tolist() == [33, 0, 32, 2, 1]
    assert select_anchors(edges, 34, 5, "pagerank").tolist() == [33, 0, 32, 2, 1]
    rand = select_anchors(edges, 34, 10, "random", seed=3)
    assert torch.equal(rand, select_anchors(edges, 34, 10, "random", seed=3))
    assert torch.unique(rand).numel() == 10
    with pytest.raises(ValueError, match="strategy"):
        select_anchors(edges, 34, 5, "betweenness")
    with pytest.raises(ValueError, match="num_anchors"):
        select_anchors(edges, 34, 35)


def _check_against_reference(tok: NodePieceTables, edges: torch.Tensor, n: int, nodes: list[int]) -> None:
    adj = adjacency_lists(edges)
    ref = torch.tensor([reference_bfs(adj, n, a) for a in tok.anchors.tolist()]).T  # (n, A)
    k, unreachable = tok.node_anchors.shape[1], tok.max_distance + 1
    ref = torch.where(ref > tok.max_distance, float(unreachable), ref).long()
    for v in nodes:
        # Nearest first, ties to the more important (lower id) anchor: a stable sort on distance.
        order = torch.argsort(ref[v], stable=True)[:k]
        expected_dist = ref[v][order]
        expected_anchor = torch.where(expected_dist >= unreachable, tok.anchors.numel(), order)
        assert tok.node_distances[v].tolist() == expected_dist.tolist(), v
        assert tok.node_anchors[v].tolist() == expected_anchor.tolist(), v


def test_bfs_distances_match_reference_on_karate():
    tok = fit_tables(karate(), 34, num_anchors=8, anchors_per_node=5, relations_per_node=1)
    _check_against_reference(tok, karate(), 34, list(range(34)))


def test_bfs_distances_match_reference_on_sbm_with_tiles(monkeypatch):
    edges, n = sbm([60, 50, 40, 30], p_in=0.08, p_out=0.004, seed=1)
    # Forces several anchor tiles, so the running top-k merge across tiles is exercised.
    monkeypatch.setattr("vqtok.graphs.algorithms._BFS_TILE", n * 7)
    tok = fit_tables(edges, n, num_anchors=20, anchors_per_node=6, relations_per_node=0, max_distance=3)
    assert bool((tok.node_anchors == tok.anchors.numel()).any()), "max_distance=3 should leave some slots empty"
    _check_against_reference(tok, edges, n, list(range(n)))


def test_isolated_nodes_get_noanchor():
    edges = torch.tensor([[0, 1], [1, 2]])
    anchors, dist = anchor_distances(edges, 5, torch.tensor([1, 4]), k=2, max_distance=4)
    assert anchors.tolist() == [[0, 2], [0, 2], [0, 2], [2, 2], [1, 2]]
    assert dist.tolist() == [[1, 5], [0, 5], [1, 5], [5, 5], [0, 5]]


def test_relation_context_matches_reference():
    edges, n = sbm([40, 40], p_in=0.1, p_out=0.02, seed=2)
    types = torch.randint(0, 5, (edges.shape[1],), generator=torch.Generator().manual_seed(0))
    tok = fit_tables(edges, n, types, num_anchors=4, anchors_per_node=2, relations_per_node=3)
    assert tok.num_relations == 10
    counts = [collections.Counter() for _ in range(n)]
    for (u, v), r in zip(edges.T.tolist(), types.tolist(), strict=True):
        counts[u][r] += 1
        counts[v][r + 5] += 1  # incoming edges use the inverse relation
    for v in range(n):
        ranked = sorted(counts[v].items(), key=lambda item: (-item[1], item[0]))[:3]
        expected = [r for r, _ in ranked] + [tok.num_relations] * (3 - len(ranked))
        assert tok.node_relations[v].tolist() == expected

    plain = fit_tables(
        edges, n, types, num_anchors=4, anchors_per_node=2, relations_per_node=3, inverse_relations=False
    )
    assert plain.num_relations == 5 and int(plain.node_relations.max()) <= 5


def test_fit_scales_to_100k_edges():
    g = torch.Generator().manual_seed(0)
    n, e = 20_000, 100_000
    edges = torch.randint(0, n, (2, e), generator=g)
    types = torch.randint(0, 20, (e,), generator=g)
    tok = fit_tables(edges, n, types, num_anchors=8, anchors_per_node=4, relations_per_node=4)
    assert tok.node_anchors.shape == (n, 4) and tok.node_relations.shape == (n, 4)
    _check_against_reference(tok, edges, n, [0, 1, 2, 12_345])
