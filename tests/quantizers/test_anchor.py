"""The NodePiece-style anchor quantizer (the graph side is tested in tests/graphs and tests/tokenizers)."""

from __future__ import annotations

import pytest
import torch

from vqtok.quantizers import AnchorQuantizer
from vqtok.testing import assert_quantizer_contract, make_latents
from vqtok.testing.graphs import karate
from vqtok.tokenizers import NodePieceTokenizer


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
    tok = NodePieceTokenizer.fit(karate(), 34, types, num_anchors=6, anchors_per_node=3, relations_per_node=3)
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


def test_old_import_paths_still_work():
    import vqtok.quantizers.anchor as anchor_module
    from vqtok.graphs import select_anchors

    with pytest.warns(FutureWarning, match="NodePieceTokenizer"):
        from vqtok.quantizers import AnchorTokenizer
    assert AnchorTokenizer is NodePieceTokenizer
    assert anchor_module.select_anchors is select_anchors
