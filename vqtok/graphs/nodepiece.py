"""Fitting NodePiece's per-node tables on a graph: anchors, nearest-anchor distances, relation contexts.

Galkin et al., "NodePiece", ICLR 2022, arXiv:2106.12144. The tokenizer that serves these tables under the
tokenizer contract is :class:`vqtok.tokenizers.NodePieceTokenizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .algorithms import anchor_distances, anchors_from_neighbors, check_edges, relation_context, select_anchors

__all__ = [
    "NodePieceTables",
    "check_tables",
    "fit_tables",
    "lookup_hashes",
    "new_node_tables",
    "tables_from_dict",
    "tables_to_dict",
    "token_names",
]

_FORMAT = "vqtok.AnchorTokenizer"
_FORMAT_VERSION = 1


class NodePieceTables(NamedTuple):
    """What :func:`fit_tables` computes.

    Attributes:
        anchors: ``(A,)`` anchor node ids, most important first.
        node_anchors: ``(n, k)`` anchor ids in ``[0, A]`` per node, nearest first (``A``: no anchor within reach).
        node_distances: ``(n, k)`` hop distances in ``[0, M + 1]``.
        node_relations: ``(n, m)`` relation ids in ``[0, Rv]``, most frequent first (``Rv``: padding).
        num_relation_types: Edge types R.
        max_distance: BFS depth M.
        inverse_relations: Whether incoming edges use their own relation ids ``r + R`` (``Rv = 2R``, else ``R``).
    """

    anchors: Tensor
    node_anchors: Tensor
    node_distances: Tensor
    node_relations: Tensor
    num_relation_types: int
    max_distance: int
    inverse_relations: bool

    @property
    def num_relations(self) -> int:
        """``Rv``, relation ids without the padding id."""
        return self.num_relation_types * (2 if self.inverse_relations else 1)


def fit_tables(
    edge_index: Tensor,
    num_nodes: int,
    edge_type: Tensor | None = None,
    num_anchors: int = 32,
    anchors_per_node: int = 8,
    relations_per_node: int = 4,
    strategy: str = "degree",
    max_distance: int = 10,
    num_relation_types: int | None = None,
    inverse_relations: bool = True,
    seed: int = 0,
) -> NodePieceTables:
    """Picks anchors and computes every node's anchors, distances and relations.

    Args:
        edge_index: ``(2, E)`` integer edges ``source -> target``.
        num_nodes: Number of nodes n; ids are ``[0, n)``.
        edge_type: Optional ``(E,)`` integer relation type per edge; all edges share type 0 if omitted.
        num_anchors: Number of anchors A.
        anchors_per_node: Anchors k per node (``<= A``).
        relations_per_node: Relation tokens m per node (``>= 0``).
        strategy: Anchor choice, see :func:`~vqtok.graphs.select_anchors`.
        max_distance: BFS depth M; anchors farther away are not used.
        num_relation_types: Number of edge types R; defaults to ``edge_type.max() + 1``.
        inverse_relations: Give incoming edges their own relation ids (NodePiece's inverse relations).
        seed: Seed of the ``"random"`` strategy.

    Raises:
        ValueError: On malformed edges or types, or sizes out of range.
    """
    edge_index = check_edges(edge_index, num_nodes)
    if not 1 <= anchors_per_node <= num_anchors:
        raise ValueError(f"anchors_per_node must be in [1, num_anchors={num_anchors}], got {anchors_per_node}")
    if relations_per_node < 0 or max_distance < 0:
        raise ValueError(f"relations_per_node and max_distance must be >= 0, got {relations_per_node}, {max_distance}")
    num_edges = edge_index.shape[1]
    if edge_type is None:
        edge_type = torch.zeros(num_edges, dtype=torch.long)
    edge_type = torch.as_tensor(edge_type)
    if edge_type.shape != (num_edges,) or edge_type.is_floating_point():
        raise ValueError(f"edge_type must be an integer tensor of shape ({num_edges},), got {edge_type.shape}")
    edge_type = edge_type.long()
    seen_types = int(edge_type.max()) + 1 if num_edges else 1
    num_types = seen_types if num_relation_types is None else int(num_relation_types)
    if num_edges and (int(edge_type.min()) < 0 or seen_types > num_types):
        raise ValueError(f"edge types must be in [0, {num_types}), got [{int(edge_type.min())}, {seen_types - 1}]")

    anchors = select_anchors(edge_index, num_nodes, num_anchors, strategy, seed)
    node_anchors, node_distances = anchor_distances(edge_index, num_nodes, anchors, anchors_per_node, max_distance)
    vocab = num_types * (2 if inverse_relations else 1)
    incoming = edge_type + num_types if inverse_relations else edge_type
    node_relations = relation_context(
        torch.cat([edge_index[0], edge_index[1]]),
        torch.cat([edge_type, incoming]),
        num_nodes,
        vocab,
        relations_per_node,
    )
    return NodePieceTables(
        anchors, node_anchors, node_distances, node_relations, num_types, max_distance, inverse_relations
    )


def check_tables(tables: NodePieceTables) -> None:
    """Checks that the tables are consistent and every entry is in range.

    Raises:
        ValueError: Naming the first table that is malformed.
    """
    n, a = tables.node_anchors.shape[0], tables.anchors.numel()
    if tables.anchors.ndim != 1 or a < 1:
        raise ValueError("anchors must be a non-empty 1-d tensor of node ids")
    if tables.node_distances.shape != tables.node_anchors.shape or tables.node_relations.shape[0] != n:
        raise ValueError("node_anchors, node_distances and node_relations must cover the same nodes")
    checks = (
        (tables.anchors, n - 1, "anchors"),
        (tables.node_anchors, a, "node_anchors"),
        (tables.node_distances, tables.max_distance + 1, "node_distances"),
        (tables.node_relations, tables.num_relations, "node_relations"),
    )
    for t, high, what in checks:
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > high):
            raise ValueError(f"{what} must be in [0, {high}]")


def tables_to_dict(tables: NodePieceTables) -> dict[str, Any]:
    """JSON-serialisable form (the single-file format of vqtok <= 0.1)."""
    return {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "num_relation_types": tables.num_relation_types,
        "max_distance": tables.max_distance,
        "inverse_relations": tables.inverse_relations,
        "anchors": tables.anchors.tolist(),
        "node_anchors": tables.node_anchors.tolist(),
        "node_distances": tables.node_distances.tolist(),
        "node_relations": tables.node_relations.tolist(),
    }


def tables_from_dict(state: dict[str, Any]) -> NodePieceTables:
    """Inverse of :func:`tables_to_dict`.

    Raises:
        ValueError: On another format, an unsupported version or a missing key.
    """
    if state.get("format") != _FORMAT or state.get("version") != _FORMAT_VERSION:
        raise ValueError(f"not a {_FORMAT} v{_FORMAT_VERSION} state: {state.get('format')} v{state.get('version')}")
    try:
        return NodePieceTables(
            *(torch.tensor(state[k], dtype=torch.long) for k in NodePieceTables._fields[:4]),
            int(state["num_relation_types"]),
            int(state["max_distance"]),
            bool(state["inverse_relations"]),
        )
    except KeyError as err:
        raise ValueError(f"{_FORMAT} state lacks the key {err}") from err


def new_node_tables(
    tables: NodePieceTables,
    neighbor_ids: Sequence[int] | Tensor,
    relation_types: Sequence[int] | Tensor | None = None,
    incoming: Sequence[bool] | Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Anchors, distances and relations of a node unseen at fit time, from its edges to known nodes.

    Anchors come from the neighbours' stored ``k`` nearest (:func:`anchors_from_neighbors`): exact whenever each of
    the new node's ``k`` nearest anchors is among some nearest neighbour's ``k`` (always true for ``k`` = A).

    Args:
        tables: The fitted tables.
        neighbor_ids: ``(E',)`` known node ids the new node is linked to.
        relation_types: ``(E',)`` relation type of each link; type 0 if omitted.
        incoming: ``(E',)`` bool, True where the link points into the new node; all outgoing if omitted.

    Returns:
        ``(anchors (k,), distances (k,), relations (m,))`` int64, on the tables' device.

    Raises:
        ValueError: On unknown node ids or relation types, or mismatched lengths.
    """
    num_nodes, num_types = tables.node_anchors.shape[0], tables.num_relation_types
    nbrs = torch.as_tensor(neighbor_ids, dtype=torch.long).reshape(-1)
    if nbrs.numel() and (int(nbrs.min()) < 0 or int(nbrs.max()) >= num_nodes):
        raise ValueError(f"neighbor ids must be known nodes in [0, {num_nodes})")
    rel = torch.zeros_like(nbrs) if relation_types is None else torch.as_tensor(relation_types, dtype=torch.long)
    inc = torch.zeros_like(nbrs, dtype=torch.bool) if incoming is None else torch.as_tensor(incoming).bool()
    if rel.shape != nbrs.shape or inc.shape != nbrs.shape:
        raise ValueError("neighbor_ids, relation_types and incoming must have the same length")
    if rel.numel() and (int(rel.min()) < 0 or int(rel.max()) >= num_types):
        raise ValueError(f"relation types must be in [0, {num_types})")
    device = tables.anchors.device
    anchors, distances = anchors_from_neighbors(
        tables.node_anchors, tables.node_distances, nbrs.to(device), tables.anchors.numel(), tables.max_distance
    )
    if tables.inverse_relations:
        rel = torch.where(inc, rel + num_types, rel)
    relations = relation_context(torch.zeros_like(rel), rel, 1, tables.num_relations, tables.node_relations.shape[1])
    return anchors, distances, relations[0].to(device)


def token_names(tables: NodePieceTables) -> list[str]:
    """Readable name of every vocabulary id, e.g. ``"anchor:33"`` (node 33), ``"dist:2"``, ``"rel:1^-1"``.

    Order: anchors, ``[NOANCHOR]``, distances ``0..M`` and ``dist:inf``, relations, ``[PAD]``.
    """
    names = [f"anchor:{int(node)}" for node in tables.anchors]
    names.append("[NOANCHOR]")
    names += [f"dist:{d}" for d in range(tables.max_distance + 1)] + ["dist:inf"]
    r = tables.num_relation_types
    names += [f"rel:{i}" if i < r else f"rel:{i - r}^-1" for i in range(tables.num_relations)]
    names.append("[PAD]")
    return names


def lookup_hashes(known: Tensor, rows: Tensor) -> Tensor:
    """For each row, the smallest node whose hash is exactly that row.

    Args:
        known: ``(n, L)`` int64 hashes of the fitted nodes.
        rows: ``(B, L)`` int64 hashes to look up, on the same device.

    Returns:
        ``(B,)`` int64 node ids; ``n`` where no node has that hash.
    """
    unique, inverse = torch.unique(torch.cat([known, rows]), dim=0, return_inverse=True)
    n = known.shape[0]
    first = torch.full((unique.shape[0],), n, dtype=torch.long, device=known.device)
    first.scatter_reduce_(0, inverse[:n], torch.arange(n, device=known.device), reduce="amin")
    return first[inverse[n:]]
