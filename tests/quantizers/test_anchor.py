"""NodePiece anchor tokenization: the graph tokenizer against reference BFS, and the anchor quantizer."""

from __future__ import annotations

import collections
import json

import pytest
import torch

from vqtok.quantizers import AnchorQuantizer, AnchorTokenizer
from vqtok.quantizers.anchor import anchor_distances, select_anchors
from vqtok.testing import assert_quantizer_contract, make_latents

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


@pytest.mark.parametrize("strategy", ["degree", "pagerank", "random"])
def test_anchors_are_their_own_nearest_anchor(strategy):
    tok = AnchorTokenizer.fit(karate(), 34, num_anchors=6, anchors_per_node=3, relations_per_node=2, strategy=strategy)
    for a, node in enumerate(tok.anchors.tolist()):
        assert tok.node_anchors[node, 0] == a
        assert tok.node_distances[node, 0] == 0
        assert bool((tok.node_distances[node, 1:] >= 1).all())


def _check_against_reference(tok: AnchorTokenizer, edges: torch.Tensor, n: int, nodes: list[int]) -> None:
    adj = adjacency_lists(edges)
    ref = torch.tensor([reference_bfs(adj, n, a) for a in tok.anchors.tolist()]).T  # (n, A)
    k, unreachable = tok.anchors_per_node, tok.max_distance + 1
    ref = torch.where(ref > tok.max_distance, float(unreachable), ref).long()
    for v in nodes:
        # Nearest first, ties to the more important (lower id) anchor: a stable sort on distance.
        order = torch.argsort(ref[v], stable=True)[:k]
        expected_dist = ref[v][order]
        expected_anchor = torch.where(expected_dist >= unreachable, tok.num_anchors, order)
        assert tok.node_distances[v].tolist() == expected_dist.tolist(), v
        assert tok.node_anchors[v].tolist() == expected_anchor.tolist(), v


def test_bfs_distances_match_reference_on_karate():
    tok = AnchorTokenizer.fit(karate(), 34, num_anchors=8, anchors_per_node=5, relations_per_node=1)
    _check_against_reference(tok, karate(), 34, list(range(34)))


def test_bfs_distances_match_reference_on_sbm_with_tiles(monkeypatch):
    edges, n = sbm([60, 50, 40, 30], p_in=0.08, p_out=0.004, seed=1)
    # Forces several anchor tiles, so the running top-k merge across tiles is exercised.
    monkeypatch.setattr("vqtok.quantizers.anchor._BFS_TILE", n * 7)
    tok = AnchorTokenizer.fit(edges, n, num_anchors=20, anchors_per_node=6, relations_per_node=0, max_distance=3)
    assert bool((tok.node_anchors == tok.num_anchors).any()), "max_distance=3 should leave some slots empty"
    _check_against_reference(tok, edges, n, list(range(n)))


def test_isolated_nodes_get_noanchor():
    edges = torch.tensor([[0, 1], [1, 2]])
    anchors, dist = anchor_distances(edges, 5, torch.tensor([1, 4]), k=2, max_distance=4)
    assert anchors.tolist() == [[0, 2], [0, 2], [0, 2], [2, 2], [1, 2]]
    assert dist.tolist() == [[1, 5], [0, 5], [1, 5], [5, 5], [0, 5]]


def test_relation_context_matches_reference():
    edges, n = sbm([40, 40], p_in=0.1, p_out=0.02, seed=2)
    types = torch.randint(0, 5, (edges.shape[1],), generator=torch.Generator().manual_seed(0))
    tok = AnchorTokenizer.fit(edges, n, types, num_anchors=4, anchors_per_node=2, relations_per_node=3)
    assert tok.num_relations == 10
    counts = [collections.Counter() for _ in range(n)]
    for (u, v), r in zip(edges.T.tolist(), types.tolist(), strict=True):
        counts[u][r] += 1
        counts[v][r + 5] += 1  # incoming edges use the inverse relation
    for v in range(n):
        ranked = sorted(counts[v].items(), key=lambda item: (-item[1], item[0]))[:3]
        expected = [r for r, _ in ranked] + [tok.num_relations] * (3 - len(ranked))
        assert tok.node_relations[v].tolist() == expected

    plain = AnchorTokenizer.fit(
        edges, n, types, num_anchors=4, anchors_per_node=2, relations_per_node=3, inverse_relations=False
    )
    assert plain.num_relations == 5 and int(plain.node_relations.max()) <= 5


def test_unseen_node_gets_tokens_from_its_neighbors():
    edges = karate()
    tok = AnchorTokenizer.fit(edges, 34, num_anchors=6, anchors_per_node=6, relations_per_node=2)
    # Node 34 joins, linked to 16 and 24 (an outgoing and an incoming edge).
    new = tok.tokenize_new_node([16, 24], relation_types=[0, 0], incoming=[False, True])
    assert new.shape == (2 * 6 + 2,)
    # With k = A the neighbours know every anchor, so the result equals a refit of the grown graph.
    grown = torch.cat([edges, torch.tensor([[34, 24], [16, 34]])], 1)
    refit = AnchorTokenizer.fit(grown, 35, num_anchors=6, anchors_per_node=6, relations_per_node=2)
    assert torch.equal(refit.anchors, tok.anchors), "the new node must not change the anchors"
    assert torch.equal(new, refit.tokens(torch.tensor([34]))[0])

    anchors, distances, relations = tok.split(new)
    assert distances.tolist() == sorted(distances.tolist())
    assert relations.tolist() == [0, 1]  # rel:0 and rel:0^-1, one each, smaller id first

    # A neighbour that is an anchor is one hop away; no neighbours means no anchor and only padding.
    hub = tok.tokenize_new_node([33])
    assert tok.vocab()[int(hub[0])] == "anchor:33" and tok.vocab()[int(hub[6])] == "dist:1"
    alone = tok.tokenize_new_node([])
    assert {tok.vocab()[i] for i in alone.tolist()} == {"[NOANCHOR]", "dist:inf", "[PAD]"}
    with pytest.raises(ValueError, match="known nodes"):
        tok.tokenize_new_node([34])
    with pytest.raises(ValueError, match="relation types"):
        tok.tokenize_new_node([0], relation_types=[1])


def test_vocab_layout_and_round_trip(tmp_path):
    types = torch.tensor([i % 3 for i in range(78)])
    tok = AnchorTokenizer.fit(
        karate(), 34, types, num_anchors=5, anchors_per_node=3, relations_per_node=4, max_distance=4
    )
    names = tok.vocab()
    assert len(names) == tok.vocab_size == 5 + 1 + (4 + 2) + 6 + 1
    assert len(set(names)) == len(names)
    assert all(tok.token_id(name) == i for i, name in enumerate(names))
    assert names[tok.noanchor_id] == "[NOANCHOR]" and names[tok.pad_id] == "[PAD]"
    assert names[tok.distance_offset] == "dist:0" and names[tok.relation_offset] == "rel:0"
    assert names[tok.relation_offset + 3] == "rel:0^-1"
    with pytest.raises(ValueError, match="vocabulary"):
        tok.token_id("anchor:7")

    tokens = tok.tokens()
    assert tokens.shape == (34, 3 + 3 + 4) and int(tokens.max()) < tok.vocab_size
    anchors, distances, relations = tok.split(tokens)
    assert torch.equal(anchors, tok.node_anchors) and torch.equal(distances, tok.node_distances)
    assert torch.equal(relations, tok.node_relations)
    assert [names[i] for i in tokens[33, :3].tolist()][0] == "anchor:33"

    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = AnchorTokenizer.load(path)
    assert torch.equal(loaded.tokens(), tokens) and loaded.vocab() == names
    assert torch.equal(loaded.tokenize_new_node([3, 5], [2, 1]), tok.tokenize_new_node([3, 5], [2, 1]))
    state = json.loads(path.read_text())
    state["version"] = 99
    with pytest.raises(ValueError, match="v1"):
        AnchorTokenizer.from_dict(state)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="edge_index"):
        AnchorTokenizer.fit(torch.zeros(3, 4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="outside"):
        AnchorTokenizer.fit(karate(), 30)
    with pytest.raises(ValueError, match="anchors_per_node"):
        AnchorTokenizer.fit(karate(), 34, num_anchors=3, anchors_per_node=4)
    with pytest.raises(ValueError, match="edge types"):
        AnchorTokenizer.fit(karate(), 34, torch.full((78,), 2), num_anchors=3, anchors_per_node=2, num_relation_types=2)


def test_fit_scales_to_100k_edges():
    g = torch.Generator().manual_seed(0)
    n, e = 20_000, 100_000
    edges = torch.randint(0, n, (2, e), generator=g)
    types = torch.randint(0, 20, (e,), generator=g)
    tok = AnchorTokenizer.fit(edges, n, types, num_anchors=8, anchors_per_node=4, relations_per_node=4)
    assert tok.tokens().shape == (n, 12)
    _check_against_reference(tok, edges, n, [0, 1, 2, 12_345])


# ---------------------------------------------------------------------------------------------- quantizer
def test_encode_picks_nearest_distinct_anchors_then_relations_for_the_residual():
    torch.manual_seed(0)
    q = AnchorQuantizer(dim=6, num_anchors=12, num_relations=5, anchors_per_node=3, relations_per_node=2).eval()
    x = make_latents(q, 200, seed=3)
    idx = q.encode(x)
    anchors, relations = idx[:, :3], idx[:, 3:]
    expected = torch.cdist(x, q.anchor_embeddings[:12].detach()).argsort(1)[:, :3]
    assert torch.equal(anchors, expected)
    assert bool((anchors < 12).all()) and bool((relations < 5).all()), "encode never emits NOANCHOR/PAD"
    weights = 1 / torch.arange(1.0, 4.0)
    mix = (q.anchor_embeddings[anchors] * (weights / weights.sum())[:, None]).sum(1).detach()
    assert torch.equal(relations, torch.cdist(x - mix, q.relation_embeddings[:5].detach()).argsort(1)[:, :2])
    torch.testing.assert_close(q.decode(idx), mix + q.relation_embeddings[relations].mean(1).detach())
    assert torch.equal(q._index_upper_bounds(), torch.tensor([13, 13, 13, 6, 6]))


def test_training_lowers_error_and_reports_losses():
    torch.manual_seed(0)
    q = AnchorQuantizer(dim=8, num_anchors=32, num_relations=8, anchors_per_node=2, relations_per_node=2)
    x = make_latents(q, 512, seed=1)
    opt = torch.optim.Adam(q.parameters(), lr=5e-2)
    before = float((q.decode(q.encode(x)) - x).square().mean().detach())
    for _ in range(30):
        out = q(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = float((q.decode(q.encode(x)) - x).square().mean().detach())
    assert after < 0.5 * before, (before, after)
    assert set(out.losses) == {"codebook", "commitment"} and "anchor_perplexity" in out.metrics


def test_from_graph_decodes_graph_tokens():
    types = torch.tensor([i % 2 for i in range(78)])
    tok = AnchorTokenizer.fit(karate(), 34, types, num_anchors=6, anchors_per_node=3, relations_per_node=3)
    q = AnchorQuantizer.for_graph(tok, dim=16)
    assert q.num_relations == tok.num_relations == 4
    emb = q.from_graph(tok)
    assert emb.shape == (34, 16)
    idx = q.graph_indices(tok)
    assert torch.equal(emb, q.decode(idx))
    assert torch.equal(idx[:, :3], tok.node_anchors)
    # Graph PAD maps onto the quantizer's PAD row; decode accepts it although encode never produces it.
    assert bool((idx[:, 3:][tok.node_relations == tok.num_relations] == q.num_relations).all())
    assert torch.equal(q.from_graph(tok, torch.tensor([5, 33])), emb[[5, 33]])
    # Gradients from graph embeddings reach the anchor table.
    emb.square().sum().backward()
    assert q.anchor_embeddings.grad is not None and q.anchor_embeddings.grad[:6].abs().sum() > 0
    with pytest.raises(ValueError, match="does not match"):
        AnchorQuantizer(16, 7, 4, 3, 3).from_graph(tok)


def test_quantizer_rejects_bad_config():
    with pytest.raises(ValueError):
        AnchorQuantizer(dim=4, num_anchors=3, num_relations=2, anchors_per_node=4)
    with pytest.raises(ValueError):
        AnchorQuantizer(dim=4, num_anchors=3, num_relations=2, anchors_per_node=2, relations_per_node=3)


OTHER_CONFIGS = [
    {"dim": 5, "num_anchors": 10, "num_relations": 3, "anchors_per_node": 1, "relations_per_node": 0},
    {"dim": 4, "num_anchors": 6, "num_relations": 4, "anchors_per_node": 6, "relations_per_node": 4},
    {"dim": 16, "num_anchors": 64, "num_relations": 1, "anchors_per_node": 4, "relations_per_node": 1},
]


@pytest.mark.parametrize("cfg", OTHER_CONFIGS, ids=["k1_m0", "k_eq_A", "d16_m1"])
def test_contract_on_other_configs(cfg):
    torch.manual_seed(0)
    q = AnchorQuantizer(**cfg)
    assert_quantizer_contract(q, AnchorQuantizer(**cfg))
