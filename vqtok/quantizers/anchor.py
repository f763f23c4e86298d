"""Compositional anchor-relation tokenization of graph nodes (NodePiece).

Galkin et al., "NodePiece: Compositional and Parameter-Efficient Representations of Large Knowledge Graphs",
ICLR 2022, arXiv:2106.12144.

A node is described by a fixed-size "hash" drawn from a small vocabulary instead of its own embedding row:
its ``k`` nearest anchor nodes (by hop distance), the hop distances to them, and ``m`` relation types of
its incident edges. Two layers live here:

* :class:`AnchorTokenizer` (pure, no ``nn``) fits anchors on a graph and tokenizes its nodes, and unseen
  nodes from their neighbours.
* :class:`AnchorQuantizer` (registered as ``"anchor"``) is the same idea under the quantizer contract: a
  learned vocabulary of anchor and relation embeddings; a latent is tokenized as its ``k`` nearest anchor
  embeddings and the ``m`` relation embeddings nearest to what the anchors leave unexplained, and decoded
  as a fixed weighted composition of them.

Written from the paper; no code was taken from the reference implementation.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.nearest import nearest
from ..metrics.codebook import perplexity
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["AnchorQuantizer", "AnchorTokenizer", "select_anchors", "anchor_distances"]

_STRATEGIES = ("degree", "pagerank", "random")
_FORMAT = "vqtok.AnchorTokenizer"
_FORMAT_VERSION = 1
# Entries of the (nodes x anchors) distance block processed at once; bounds BFS memory on large graphs.
_BFS_TILE = 1 << 23


# ------------------------------------------------------------------------------------- graph helpers
def _undirected_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
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
    if strategy not in _STRATEGIES:
        raise ValueError(f"unknown anchor strategy {strategy!r}; expected one of {_STRATEGIES}")
    if not 1 <= num_anchors <= num_nodes:
        raise ValueError(f"num_anchors must be in [1, num_nodes={num_nodes}], got {num_anchors}")
    if strategy == "random":
        return torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))[:num_anchors]
    degree = torch.bincount(edge_index.reshape(-1), minlength=num_nodes).double()
    if strategy == "degree":
        score = degree
    else:
        score = _pagerank(_undirected_adjacency(edge_index, num_nodes), degree)
    return torch.argsort(-score, stable=True)[:num_anchors]


def _pagerank(adj: Tensor, degree: Tensor, damping: float = 0.85, iters: int = 100, tol: float = 1e-10) -> Tensor:
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
    adj = _undirected_adjacency(edge_index, num_nodes)
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


def _relation_context(nodes: Tensor, relations: Tensor, num_nodes: int, vocab: int, m: int) -> Tensor:
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


# ------------------------------------------------------------------------------------- the tokenizer
class AnchorTokenizer:
    """NodePiece tokenizer of graph nodes: ``k`` anchors, ``k`` distances and ``m`` relations per node.

    Build it with :meth:`fit`. Every node maps to ``2k + m`` ids of one vocabulary whose layout is, with
    A anchors, ``max_distance`` = M and a relation vocabulary of ``Rv`` ids:

    ======================================  ==========================================================
    ids                                     token
    ======================================  ==========================================================
    ``[0, A)``                              anchor ``a`` (node ``anchors[a]``), most important first
    ``A``                                   ``[NOANCHOR]``: fewer than ``k`` anchors within M hops
    ``A + 1 + d`` for ``d`` in ``[0, M]``   hop distance ``d``
    ``A + M + 2``                           distance of a ``[NOANCHOR]`` slot ("unreachable")
    ``A + M + 3 + r`` for ``r < Rv``        relation ``r``; with inverse relations ``r >= R`` is the
                                            inverse of relation ``r - R`` (an incoming edge)
    ``A + M + 3 + Rv``                      ``[PAD]`` relation
    ======================================  ==========================================================

    A node's ids are ``[anchor_1..k, distance_1..k, relation_1..m]``, anchors nearest first (ties to the
    more important anchor) and relations most frequent first (ties to the smaller id).

    Args:
        anchors: ``(A,)`` anchor node ids.
        node_anchors: ``(n, k)`` anchor ids in ``[0, A]`` per node.
        node_distances: ``(n, k)`` hop distances in ``[0, M + 1]``.
        node_relations: ``(n, m)`` relation ids in ``[0, Rv]``.
        num_relation_types: Number of edge types R.
        max_distance: BFS depth M.
        inverse_relations: Whether incoming edges use their own relation ids ``r + R`` (``Rv = 2R``).
    """

    def __init__(
        self,
        anchors: Tensor,
        node_anchors: Tensor,
        node_distances: Tensor,
        node_relations: Tensor,
        num_relation_types: int,
        max_distance: int,
        inverse_relations: bool = True,
    ) -> None:
        self.anchors = anchors.long()
        self.node_anchors = node_anchors.long()
        self.node_distances = node_distances.long()
        self.node_relations = node_relations.long()
        self.num_relation_types = int(num_relation_types)
        self.max_distance = int(max_distance)
        self.inverse_relations = bool(inverse_relations)
        self._validate()

    # -------------------------------------------------------------------------------- properties
    @property
    def num_nodes(self) -> int:
        return self.node_anchors.shape[0]

    @property
    def num_anchors(self) -> int:
        return self.anchors.numel()

    @property
    def anchors_per_node(self) -> int:
        return self.node_anchors.shape[1]

    @property
    def relations_per_node(self) -> int:
        return self.node_relations.shape[1]

    @property
    def num_relations(self) -> int:
        """Size ``Rv`` of the relation vocabulary without ``[PAD]``."""
        return self.num_relation_types * (2 if self.inverse_relations else 1)

    @property
    def noanchor_id(self) -> int:
        return self.num_anchors

    @property
    def distance_offset(self) -> int:
        return self.num_anchors + 1

    @property
    def relation_offset(self) -> int:
        return self.distance_offset + self.max_distance + 2

    @property
    def pad_id(self) -> int:
        return self.relation_offset + self.num_relations

    @property
    def vocab_size(self) -> int:
        return self.pad_id + 1

    # ----------------------------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
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
    ) -> AnchorTokenizer:
        """Picks anchors and tokenizes every node of a graph.

        Args:
            edge_index: ``(2, E)`` integer edges ``source -> target``.
            num_nodes: Number of nodes n; ids are ``[0, n)``.
            edge_type: Optional ``(E,)`` integer relation type per edge; all edges share type 0 if omitted.
            num_anchors: Number of anchors A.
            anchors_per_node: Anchors k per node (``<= A``).
            relations_per_node: Relation tokens m per node (``>= 0``).
            strategy: Anchor choice, see :func:`select_anchors`.
            max_distance: BFS depth M; anchors farther away are not used.
            num_relation_types: Number of edge types R; defaults to ``edge_type.max() + 1``.
            inverse_relations: Give incoming edges their own relation ids (NodePiece's inverse relations).
            seed: Seed of the ``"random"`` strategy.

        Returns:
            The fitted tokenizer.

        Raises:
            ValueError: On malformed edges or types, or sizes out of range.
        """
        edge_index = _check_edges(edge_index, num_nodes)
        if not 1 <= anchors_per_node <= num_anchors:
            raise ValueError(f"anchors_per_node must be in [1, num_anchors={num_anchors}], got {anchors_per_node}")
        if relations_per_node < 0 or max_distance < 0:
            raise ValueError(
                f"relations_per_node and max_distance must be >= 0, got {relations_per_node}, {max_distance}"
            )
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
        node_relations = _relation_context(
            torch.cat([edge_index[0], edge_index[1]]),
            torch.cat([edge_type, incoming]),
            num_nodes,
            vocab,
            relations_per_node,
        )
        return cls(anchors, node_anchors, node_distances, node_relations, num_types, max_distance, inverse_relations)

    # -------------------------------------------------------------------------------- tokenizing
    def tokens(self, nodes: Tensor | None = None) -> Tensor:
        """Vocabulary ids of known nodes.

        Args:
            nodes: Optional ``(B,)`` node ids; all nodes if omitted.

        Returns:
            ``(B, 2k + m)`` int64 ids, laid out as in the class docstring.
        """
        if nodes is None:
            nodes = torch.arange(self.num_nodes)
        nodes = torch.as_tensor(nodes).long()
        return self._join(self.node_anchors[nodes], self.node_distances[nodes], self.node_relations[nodes])

    def tokenize_new_node(
        self,
        neighbor_ids: Sequence[int] | Tensor,
        relation_types: Sequence[int] | Tensor | None = None,
        incoming: Sequence[bool] | Tensor | None = None,
    ) -> Tensor:
        """Tokenizes a node unseen at fit time from its edges to known nodes.

        The new node's distance to an anchor is one more than its nearest neighbour's; anchors are taken
        from the neighbours' stored ``k`` nearest, so the result is exact whenever each of the new node's
        ``k`` nearest anchors is among some nearest neighbour's ``k`` (always true for ``k`` = A).

        Args:
            neighbor_ids: ``(E',)`` known node ids the new node is linked to.
            relation_types: ``(E',)`` relation type of each link; type 0 if omitted.
            incoming: ``(E',)`` bool, True where the link points into the new node; all outgoing if omitted.

        Returns:
            ``(2k + m,)`` int64 vocabulary ids.

        Raises:
            ValueError: On unknown node ids or relation types, or mismatched lengths.
        """
        nbrs = torch.as_tensor(neighbor_ids, dtype=torch.long).reshape(-1)
        if nbrs.numel() and (int(nbrs.min()) < 0 or int(nbrs.max()) >= self.num_nodes):
            raise ValueError(f"neighbor ids must be known nodes in [0, {self.num_nodes})")
        rel = torch.zeros_like(nbrs) if relation_types is None else torch.as_tensor(relation_types, dtype=torch.long)
        inc = torch.zeros_like(nbrs, dtype=torch.bool) if incoming is None else torch.as_tensor(incoming).bool()
        if rel.shape != nbrs.shape or inc.shape != nbrs.shape:
            raise ValueError("neighbor_ids, relation_types and incoming must have the same length")
        if rel.numel() and (int(rel.min()) < 0 or int(rel.max()) >= self.num_relation_types):
            raise ValueError(f"relation types must be in [0, {self.num_relation_types})")

        num_anchors, k = self.num_anchors, self.anchors_per_node
        unreachable = self.max_distance + 1
        cand_anchor = self.node_anchors[nbrs].reshape(-1)
        cand_dist = self.node_distances[nbrs].reshape(-1) + 1
        ok = (cand_anchor < num_anchors) & (cand_dist <= self.max_distance)
        # Shortest distance per anchor, then the k best by (distance, anchor rank).
        dist = torch.full((num_anchors,), unreachable, dtype=torch.long)
        dist.scatter_reduce_(0, cand_anchor[ok], cand_dist[ok], reduce="amin")
        key = dist * num_anchors + torch.arange(num_anchors)
        best = key.topk(k, largest=False, sorted=True).values
        distances = best // num_anchors
        anchors = torch.where(distances >= unreachable, num_anchors, best % num_anchors)

        if self.inverse_relations:
            rel = torch.where(inc, rel + self.num_relation_types, rel)
        relations = _relation_context(
            torch.zeros_like(rel), rel, 1, self.num_relations, self.relations_per_node
        )  # (1, m)
        return self._join(anchors[None], distances[None], relations)[0]

    def split(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Inverse of the id layout: vocabulary ids back to per-kind ids.

        Args:
            tokens: ``(..., 2k + m)`` vocabulary ids.

        Returns:
            ``(anchors, distances, relations)``: ``(..., k)`` anchor ids in ``[0, A]`` (A = ``[NOANCHOR]``),
            ``(..., k)`` hop distances in ``[0, M + 1]`` and ``(..., m)`` relation ids in ``[0, Rv]``
            (Rv = ``[PAD]``).
        """
        k = self.anchors_per_node
        return (
            tokens[..., :k],
            tokens[..., k : 2 * k] - self.distance_offset,
            tokens[..., 2 * k :] - self.relation_offset,
        )

    def _join(self, anchors: Tensor, distances: Tensor, relations: Tensor) -> Tensor:
        return torch.cat([anchors, distances + self.distance_offset, relations + self.relation_offset], -1)

    # -------------------------------------------------------------------------------- vocabulary
    def vocab(self) -> list[str]:
        """Readable name of every vocabulary id, e.g. ``"anchor:33"`` (node 33), ``"dist:2"``, ``"rel:1^-1"``."""
        names = [f"anchor:{int(node)}" for node in self.anchors]
        names.append("[NOANCHOR]")
        names += [f"dist:{d}" for d in range(self.max_distance + 1)] + ["dist:inf"]
        r = self.num_relation_types
        names += [f"rel:{i}" if i < r else f"rel:{i - r}^-1" for i in range(self.num_relations)]
        names.append("[PAD]")
        return names

    def token_id(self, name: str) -> int:
        """Vocabulary id of a name produced by :meth:`vocab`.

        Raises:
            ValueError: If ``name`` is not in the vocabulary.
        """
        if not hasattr(self, "_ids"):
            self._ids = {n: i for i, n in enumerate(self.vocab())}
        if name not in self._ids:
            raise ValueError(f"{name!r} is not in the vocabulary")
        return self._ids[name]

    # ------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "num_relation_types": self.num_relation_types,
            "max_distance": self.max_distance,
            "inverse_relations": self.inverse_relations,
            "anchors": self.anchors.tolist(),
            "node_anchors": self.node_anchors.tolist(),
            "node_distances": self.node_distances.tolist(),
            "node_relations": self.node_relations.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> AnchorTokenizer:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: On another format or an unsupported version.
        """
        if state.get("format") != _FORMAT or state.get("version") != _FORMAT_VERSION:
            raise ValueError(f"not a {_FORMAT} v{_FORMAT_VERSION} state: {state.get('format')} v{state.get('version')}")
        return cls(
            anchors=torch.tensor(state["anchors"], dtype=torch.long),
            node_anchors=torch.tensor(state["node_anchors"], dtype=torch.long),
            node_distances=torch.tensor(state["node_distances"], dtype=torch.long),
            node_relations=torch.tensor(state["node_relations"], dtype=torch.long),
            num_relation_types=state["num_relation_types"],
            max_distance=state["max_distance"],
            inverse_relations=state["inverse_relations"],
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the tokenizer as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AnchorTokenizer:
        """Reads a tokenizer written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def _validate(self) -> None:
        n, a = self.num_nodes, self.num_anchors
        if self.anchors.ndim != 1 or a < 1:
            raise ValueError("anchors must be a non-empty 1-d tensor of node ids")
        if self.node_distances.shape != self.node_anchors.shape or self.node_relations.shape[0] != n:
            raise ValueError("node_anchors, node_distances and node_relations must cover the same nodes")
        checks = (
            (self.anchors, n - 1, "anchors"),
            (self.node_anchors, a, "node_anchors"),
            (self.node_distances, self.max_distance + 1, "node_distances"),
            (self.node_relations, self.num_relations, "node_relations"),
        )
        for t, high, what in checks:
            if t.numel() and (int(t.min()) < 0 or int(t.max()) > high):
                raise ValueError(f"{what} must be in [0, {high}]")

    def __repr__(self) -> str:
        return (
            f"AnchorTokenizer(num_nodes={self.num_nodes}, num_anchors={self.num_anchors}, "
            f"anchors_per_node={self.anchors_per_node}, relations_per_node={self.relations_per_node}, "
            f"num_relations={self.num_relations}, max_distance={self.max_distance}, vocab_size={self.vocab_size})"
        )


def _check_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    edge_index = torch.as_tensor(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point():
        raise ValueError(f"edge_index must be an integer tensor of shape (2, E), got {tuple(edge_index.shape)}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    edge_index = edge_index.long()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
    return edge_index


# ------------------------------------------------------------------------------------- the quantizer
@register_quantizer(
    "anchor",
    example={"dim": 8, "num_anchors": 16, "num_relations": 6, "anchors_per_node": 3, "relations_per_node": 2},
)
class AnchorQuantizer(Quantizer):
    """NodePiece-style quantizer: a latent becomes ``k`` anchor ids and ``m`` relation ids.

    Encoding picks the ``k`` anchor embeddings nearest to the latent (distinct, nearest first), composes
    them, and picks the ``m`` relation embeddings nearest to the residual. Decoding is the fixed
    composition ``sum_j w_j anchor[a_j] + mean_l relation[r_l]`` with ``w_j`` proportional to ``1 / j``:
    ids are ordered nearest first, so the order carries information and the nearest anchor weighs most.

    Indices have ``index_shape == (k + m,)``: ``k`` anchor slots in ``[0, A]`` then ``m`` relation slots
    in ``[0, R]``. The last id of each table, ``A`` (``[NOANCHOR]``) and ``R`` (``[PAD]``), is never
    produced by ``encode`` but decodes to a learned embedding, so graph tokens from an
    :class:`AnchorTokenizer` decode too (:meth:`from_graph`).

    The embeddings are learned by gradient: ``loss = ||sg(z) - q||^2 + commitment_weight * ||z - sg(q)||^2``
    and the latents get a straight-through gradient.

    Args:
        dim: Latent width D.
        num_anchors: Anchor vocabulary size A.
        num_relations: Relation vocabulary size R (for a graph, the tokenizer's ``num_relations``).
        anchors_per_node: Anchor slots k (``<= A``).
        relations_per_node: Relation slots m (``0 <= m <= R``).
        commitment_weight: Weight of the commitment term.
    """

    has_learned_codebook = True

    def __init__(
        self,
        dim: int,
        num_anchors: int,
        num_relations: int,
        anchors_per_node: int = 4,
        relations_per_node: int = 2,
        commitment_weight: float = 0.25,
    ) -> None:
        super().__init__()
        if dim < 1 or num_anchors < 1 or num_relations < 1:
            raise ValueError(
                f"dim, num_anchors and num_relations must be >= 1, got {dim}, {num_anchors}, {num_relations}"
            )
        if not 1 <= anchors_per_node <= num_anchors:
            raise ValueError(f"anchors_per_node must be in [1, {num_anchors}], got {anchors_per_node}")
        if not 0 <= relations_per_node <= num_relations:
            raise ValueError(f"relations_per_node must be in [0, {num_relations}], got {relations_per_node}")
        self.dim = dim
        self.num_anchors = num_anchors
        self.num_relations = num_relations
        self.anchors_per_node = anchors_per_node
        self.relations_per_node = relations_per_node
        self.commitment_weight = float(commitment_weight)
        self.codebook_size = max(num_anchors, num_relations) + 1
        self.index_shape = (anchors_per_node + relations_per_node,)

        # Rows A and R are [NOANCHOR] and [PAD]: they start at zero so that absent tokens add nothing.
        self.anchor_embeddings = nn.Parameter(torch.cat([torch.randn(num_anchors, dim), torch.zeros(1, dim)]))
        self.relation_embeddings = nn.Parameter(torch.cat([0.5 * torch.randn(num_relations, dim), torch.zeros(1, dim)]))
        weights = 1.0 / torch.arange(1, anchors_per_node + 1, dtype=torch.float32)
        self.register_buffer("_anchor_weights", weights / weights.sum(), persistent=False)
        bounds = [num_anchors + 1] * anchors_per_node + [num_relations + 1] * relations_per_node
        self.register_buffer("_bounds", torch.tensor(bounds, dtype=torch.long), persistent=False)

    @classmethod
    def for_graph(cls, tokenizer: AnchorTokenizer, dim: int, commitment_weight: float = 0.25) -> AnchorQuantizer:
        """A quantizer whose vocabulary matches ``tokenizer`` (anchor ``a`` is the tokenizer's anchor ``a``)."""
        return cls(
            dim=dim,
            num_anchors=tokenizer.num_anchors,
            num_relations=max(tokenizer.num_relations, tokenizer.relations_per_node, 1),
            anchors_per_node=tokenizer.anchors_per_node,
            relations_per_node=tokenizer.relations_per_node,
            commitment_weight=commitment_weight,
        )

    @property
    def bits_per_token(self) -> float:
        """Sum over slots of ``log2`` of the slot's range."""
        return float(torch.log2(self._bounds.double()).sum())

    def _index_upper_bounds(self) -> Tensor:
        return self._bounds

    # ------------------------------------------------------------------------------------ graphs
    def graph_indices(self, tokenizer: AnchorTokenizer, nodes: Tensor | None = None) -> Tensor:
        """Indices of graph nodes: their tokenizer anchors and relations, without the distances.

        Args:
            tokenizer: A tokenizer with this quantizer's A, k and m and at most R relations.
            nodes: Optional ``(B,)`` node ids; all nodes if omitted.

        Returns:
            ``(B, k + m)`` int64 indices; ``[NOANCHOR]``/``[PAD]`` become ids A and R.

        Raises:
            ValueError: If the tokenizer's vocabulary does not fit this quantizer.
        """
        if (
            tokenizer.num_anchors != self.num_anchors
            or tokenizer.anchors_per_node != self.anchors_per_node
            or tokenizer.relations_per_node != self.relations_per_node
            or tokenizer.num_relations > self.num_relations
        ):
            raise ValueError(f"{tokenizer!r} does not match {type(self).__name__}({self.extra_repr()})")
        anchors, _, relations = tokenizer.split(tokenizer.tokens(nodes))
        relations = torch.where(relations == tokenizer.num_relations, self.num_relations, relations)
        return torch.cat([anchors, relations], -1).to(self._bounds.device)

    def from_graph(self, tokenizer: AnchorTokenizer, nodes: Tensor | None = None) -> Tensor:
        """Node embeddings of graph nodes: ``decode`` of their graph tokens.

        Distances are not embedded; they only order each node's anchors (nearest first), which the slot
        weights use. Gradients flow into the anchor and relation embeddings, so this is the NodePiece
        encoder of a graph with a fixed composition.

        Args:
            tokenizer: See :meth:`graph_indices`.
            nodes: Optional ``(B,)`` node ids; all nodes if omitted.

        Returns:
            ``(B, D)`` float32 embeddings.
        """
        return self.decode(self.graph_indices(tokenizer, nodes))

    # ----------------------------------------------------------------------------------- contract
    def _anchor_mix(self, anchor_ids: Tensor) -> Tensor:
        return (self.anchor_embeddings[anchor_ids] * self._anchor_weights[:, None]).sum(1)  # (N, D)

    def _compose(self, indices: Tensor) -> Tensor:
        k = self.anchors_per_node
        mix = self._anchor_mix(indices[:, :k])
        if self.relations_per_node:
            mix = mix + self.relation_embeddings[indices[:, k:]].mean(1)
        return mix

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        k, m = self.anchors_per_node, self.relations_per_node
        anchors = self.anchor_embeddings.detach()
        _, anchor_ids = nearest(latents, anchors[: self.num_anchors], k=k)
        anchor_ids = anchor_ids.reshape(-1, k)
        if m == 0:
            return anchor_ids
        residual = latents - self._anchor_mix(anchor_ids).detach()
        _, relation_ids = nearest(residual, self.relation_embeddings.detach()[: self.num_relations], k=m)
        return torch.cat([anchor_ids, relation_ids.reshape(-1, m)], 1)  # (N, k + m)

    def _decode(self, indices: Tensor) -> Tensor:
        return self._compose(indices)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        indices = self._encode(latents)
        quantized = self._compose(indices)
        codebook = F.mse_loss(quantized, latents.detach())
        commitment = F.mse_loss(latents, quantized.detach())
        loss = codebook + self.commitment_weight * commitment
        metrics = {
            "anchor_perplexity": torch.tensor(perplexity(indices[:, : self.anchors_per_node], self.num_anchors + 1))
        }
        if self.training:
            quantized = latents + (quantized - latents).detach()
        return QuantizerOutput(
            quantized, indices, loss, losses={"codebook": codebook, "commitment": commitment}, metrics=metrics
        )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_anchors={self.num_anchors}, num_relations={self.num_relations}, "
            f"anchors_per_node={self.anchors_per_node}, relations_per_node={self.relations_per_node}"
        )
