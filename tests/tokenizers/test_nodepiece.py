"""NodePiece graph tokenizer: fitting, unseen nodes, vocabulary, legacy JSON; the tokenizer contract is in
tests/tokenizers/test_fitted_contract.py."""

from __future__ import annotations

import json

import pytest
import torch

from vqtok.testing.graphs import karate
from vqtok.tokenizers import NodePieceTokenizer


@pytest.mark.parametrize("strategy", ["degree", "pagerank", "random"])
def test_anchors_are_their_own_nearest_anchor(strategy):
    tok = NodePieceTokenizer.fit(
        karate(), 34, num_anchors=6, anchors_per_node=3, relations_per_node=2, strategy=strategy
    )
    for a, node in enumerate(tok.anchors.tolist()):
        assert tok.node_anchors[node, 0] == a
        assert tok.node_distances[node, 0] == 0
        assert bool((tok.node_distances[node, 1:] >= 1).all())


def test_unseen_node_gets_tokens_from_its_neighbors():
    edges = karate()
    tok = NodePieceTokenizer.fit(edges, 34, num_anchors=6, anchors_per_node=6, relations_per_node=2)
    # Node 34 joins, linked to 16 and 24 (an outgoing and an incoming edge).
    new = tok.tokenize_new_node([16, 24], relation_types=[0, 0], incoming=[False, True])
    assert new.shape == (2 * 6 + 2,)
    # With k = A the neighbours know every anchor, so the result equals a refit of the grown graph.
    grown = torch.cat([edges, torch.tensor([[34, 24], [16, 34]])], 1)
    refit = NodePieceTokenizer.fit(grown, 35, num_anchors=6, anchors_per_node=6, relations_per_node=2)
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
    tok = NodePieceTokenizer.fit(
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
    loaded = NodePieceTokenizer.load(path)
    assert torch.equal(loaded.tokens(), tokens) and loaded.vocab() == names
    assert torch.equal(loaded.tokenize_new_node([3, 5], [2, 1]), tok.tokenize_new_node([3, 5], [2, 1]))
    state = json.loads(path.read_text())
    state["version"] = 99
    with pytest.raises(ValueError, match="v1"):
        NodePieceTokenizer.from_dict(state)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="edge_index"):
        NodePieceTokenizer.fit(torch.zeros(3, 4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="outside"):
        NodePieceTokenizer.fit(karate(), 30)
    with pytest.raises(ValueError, match="anchors_per_node"):
        NodePieceTokenizer.fit(karate(), 34, num_anchors=3, anchors_per_node=4)
    with pytest.raises(ValueError, match="edge types"):
        NodePieceTokenizer.fit(
            karate(), 34, torch.full((78,), 2), num_anchors=3, anchors_per_node=2, num_relation_types=2
        )
