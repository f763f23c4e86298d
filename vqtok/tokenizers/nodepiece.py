"""NodePiece: compositional anchor-relation tokenization of graph nodes, under the tokenizer contract.

Galkin et al., "NodePiece: Compositional and Parameter-Efficient Representations of Large Knowledge Graphs",
ICLR 2022, arXiv:2106.12144.

A node is described by a fixed-size "hash" drawn from a small vocabulary instead of its own embedding row:
its ``k`` nearest anchor nodes (by hop distance), the hop distances to them, and ``m`` relation types of
its incident edges. :class:`NodePieceTokenizer` fits anchors on a graph (:mod:`vqtok.graphs`) and tokenizes
its nodes, and unseen nodes from their neighbours. Its fitted tables are buffers, so ``save_pretrained`` writes
them to ``model.safetensors`` like any tokenizer's weights. The learned counterpart under the quantizer
contract is :class:`vqtok.quantizers.AnchorQuantizer` (``"anchor"``).

Written from the paper; no code was taken from the reference implementation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import atomic_write_bytes
from ..graphs.nodepiece import (
    NodePieceTables,
    check_tables,
    fit_tables,
    lookup_hashes,
    new_node_tables,
    tables_from_dict,
    tables_to_dict,
    token_names,
)
from ._pretrained import CheckpointError
from ._registry import register_tokenizer
from .contract import BaseTokenizer

__all__ = ["NodePieceConfig", "NodePieceTokenizer"]

_TABLES = ("anchors", "node_anchors", "node_distances", "node_relations")


@dataclass
class NodePieceConfig:
    """Sizes of a fitted :class:`NodePieceTokenizer`: n nodes, A anchors, k anchor and m relation slots per node,
    R edge types, BFS depth M, inverse relations (see :class:`vqtok.graphs.NodePieceTables`). The tables themselves
    are the tokenizer's buffers, derived from them on construction and checked against them on loading.
    """

    version: int = 1
    num_nodes: int = 1
    num_anchors: int = 1
    anchors_per_node: int = 1
    relations_per_node: int = 0
    num_relation_types: int = 1
    max_distance: int = 10
    inverse_relations: bool = True

    def to_dict(self) -> dict[str, Any]:
        from ._config import config_to_dict

        return config_to_dict(self)


@register_tokenizer("nodepiece")
class NodePieceTokenizer(BaseTokenizer):
    """NodePiece tokenizer of graph nodes: ``k`` anchors, ``k`` distances and ``m`` relations per node.

    Build it with :meth:`fit`. Signals are int64 node ids ``(B, ...)``; :meth:`encode` gives ``(B, ..., 2k + m)``
    ids of one vocabulary (``index_shape`` is ``()``), whose layout is, with A anchors, ``max_distance`` = M
    and a relation vocabulary of ``Rv`` ids:

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

    Args: the fields of :class:`vqtok.graphs.NodePieceTables`, in order (:meth:`from_tables`).
    """

    config_class = NodePieceConfig
    modality = "graph"
    config: NodePieceConfig

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
        tables = [torch.as_tensor(t).long() for t in (anchors, node_anchors, node_distances, node_relations)]
        if tables[0].ndim != 1 or tables[1].ndim != 2 or tables[3].ndim != 2:
            raise ValueError("anchors must be (A,), node_anchors and node_distances (n, k), node_relations (n, m)")
        config = NodePieceConfig(
            num_nodes=tables[1].shape[0],
            num_anchors=tables[0].numel(),
            anchors_per_node=tables[1].shape[1],
            relations_per_node=tables[3].shape[1],
            num_relation_types=int(num_relation_types),
            max_distance=int(max_distance),
            inverse_relations=bool(inverse_relations),
        )
        super().__init__(config)
        for name, table in zip(_TABLES, tables, strict=True):
            self.register_buffer(name, table)
        self.num_relation_types = config.num_relation_types
        self.max_distance = config.max_distance
        self.inverse_relations = config.inverse_relations
        self._scalars = (config.num_relation_types, config.max_distance, config.inverse_relations)
        check_tables(self.tables)

    @classmethod
    def from_config(cls, config: Any) -> NodePieceTokenizer:
        """Not available (``ValueError``): the tables come from a graph; use :meth:`fit` or :meth:`from_pretrained`."""
        raise ValueError("a NodePieceTokenizer is fitted on a graph: use NodePieceTokenizer.fit(edge_index, ...)")

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], state: dict[str, Tensor], source: str) -> NodePieceTokenizer:
        missing = [k for k in _TABLES if k not in state]
        if missing or len(state) != len(_TABLES):
            raise CheckpointError(f"{source} does not hold NodePiece tables {list(_TABLES)}; found {sorted(state)}")
        try:
            from ._config import config_from_dict

            cfg = config_from_dict(NodePieceConfig, config)
            tok = cls(*(state[k] for k in _TABLES), cfg.num_relation_types, cfg.max_distance, cfg.inverse_relations)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint {source!r} holds invalid NodePiece tables: {err}") from err
        if tok.config != cfg:
            raise CheckpointError(f"checkpoint {source!r}: config {cfg} does not match its tables ({tok.config})")
        return tok

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

    @property
    def codebook_size(self) -> int:
        """The vocabulary size: every id lies in ``[0, vocab_size)``."""
        return self.vocab_size

    @property
    def tokens_per_node(self) -> int:
        """``2k + m``."""
        return 2 * self.anchors_per_node + self.relations_per_node

    # ----------------------------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls, edge_index: Tensor, num_nodes: int, edge_type: Tensor | None = None, **options: Any
    ) -> NodePieceTokenizer:
        """Picks anchors and tokenizes every node of a graph.

        Args:
            edge_index: ``(2, E)`` integer edges ``source -> target``.
            num_nodes: Number of nodes n; ids are ``[0, n)``.
            edge_type: Optional ``(E,)`` integer relation type per edge; all edges share type 0 if omitted.
            **options: ``num_anchors`` (32), ``anchors_per_node`` (8), ``relations_per_node`` (4), ``strategy``
                (``"degree"``), ``max_distance`` (10), ``num_relation_types``, ``inverse_relations`` (True) and
                ``seed``, as documented by :func:`vqtok.graphs.fit_tables`.

        Raises:
            ValueError: On malformed edges or types, sizes out of range, or an unknown option.
        """
        return cls.from_tables(fit_tables(edge_index, num_nodes, edge_type, **options))

    @classmethod
    def from_tables(cls, tables: NodePieceTables) -> NodePieceTokenizer:
        """The tokenizer of already fitted tables."""
        return cls(*tables)

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
        nodes = torch.as_tensor(nodes).long().to(self.anchors.device)
        return self._join(self.node_anchors[nodes], self.node_distances[nodes], self.node_relations[nodes])

    def check_signal(self, signal: Any) -> None:
        """Raises ``ValueError`` unless ``signal`` is an integer tensor of known node ids."""
        if (
            not isinstance(signal, Tensor)
            or signal.is_floating_point()
            or signal.is_complex()
            or signal.dtype == torch.bool
        ):
            raise ValueError(f"NodePieceTokenizer expects an integer tensor of node ids, got {_describe(signal)}")
        if signal.numel() and (int(signal.min()) < 0 or int(signal.max()) >= self.num_nodes):
            raise ValueError(
                f"node ids must lie in [0, {self.num_nodes}), got [{int(signal.min())}, {int(signal.max())}]"
            )

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """Node ids ``(B, ...)`` -> int64 ids ``(B, ..., 2k + m)`` (:meth:`tokens` of every node).

        Raises:
            ValueError: On a non-integer tensor, unknown node ids, or options (there are none).
        """
        if options:
            raise ValueError(f"NodePieceTokenizer.encode takes no options, got {sorted(options)}")
        self.check_signal(signal)
        return self.tokens(signal.reshape(-1)).reshape(*signal.shape, self.tokens_per_node)

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Ids ``(B, ..., 2k + m)`` -> node ids ``(B, ...)``: the smallest node whose tokens are exactly that row.

        Nodes that share a hash decode to the same (smallest) id, so ``encode(decode(t)) == t`` always holds and
        ``decode(encode(v)) == v`` holds for every node with a unique hash.

        Raises:
            ValueError: On a non-integer tensor, a wrong last dimension, ids outside the vocabulary, or a row
                that is no known node's hash.
        """
        length = self.tokens_per_node
        if (
            not isinstance(indices, Tensor)
            or indices.is_floating_point()
            or indices.is_complex()
            or indices.dtype == torch.bool
        ):
            raise ValueError(f"NodePieceTokenizer.decode expects integer ids, got {_describe(indices)}")
        if indices.ndim < 1 or indices.shape[-1] != length:
            raise ValueError(f"NodePieceTokenizer.decode expects ids (..., {length}), got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size})")
        known, rows = self.tokens(), indices.reshape(-1, length).to(self.anchors.device).long()
        n, nodes = self.num_nodes, lookup_hashes(known, rows)
        if bool((nodes == n).any()):
            bad = int((nodes == n).nonzero()[0])
            raise ValueError(f"row {bad} ({rows[bad].tolist()}) is not the hash of any node of the fitted graph")
        return nodes.reshape(indices.shape[:-1])

    def tokenize_new_node(
        self,
        neighbor_ids: Sequence[int] | Tensor,
        relation_types: Sequence[int] | Tensor | None = None,
        incoming: Sequence[bool] | Tensor | None = None,
    ) -> Tensor:
        """Tokenizes a node unseen at fit time from its edges to known nodes.

        Arguments and the exactness condition as in :func:`vqtok.graphs.new_node_tables`.

        Returns:
            ``(2k + m,)`` int64 vocabulary ids.

        Raises:
            ValueError: On unknown node ids or relation types, or mismatched lengths.
        """
        anchors, distances, relations = new_node_tables(self.tables, neighbor_ids, relation_types, incoming)
        return self._join(anchors[None], distances[None], relations[None])[0]  # (2k + m,)

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
        return token_names(self.tables)

    def token_id(self, name: str) -> int:
        """Vocabulary id of a name produced by :meth:`vocab`; ``ValueError`` if it is not one."""
        if not hasattr(self, "_ids"):
            self._ids = {n: i for i, n in enumerate(self.vocab())}
        if name not in self._ids:
            raise ValueError(f"{name!r} is not in the vocabulary")
        return self._ids[name]

    # ------------------------------------------------------------------------------- persistence
    @property
    def tables(self) -> NodePieceTables:
        """The fitted tables."""
        return NodePieceTables(
            self.anchors, self.node_anchors, self.node_distances, self.node_relations, *self._scalars
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (the single-file format of :meth:`save`)."""
        return tables_to_dict(self.tables)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> NodePieceTokenizer:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: On another format or an unsupported version.
        """
        return cls.from_tables(tables_from_dict(state))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the tokenizer as one JSON file (the format of vqtok <= 0.1); prefer :meth:`save_pretrained`."""
        atomic_write_bytes(path, json.dumps(self.to_dict()).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodePieceTokenizer:
        """Reads a JSON file written by :meth:`save`, or a checkpoint folder written by :meth:`save_pretrained`."""
        if Path(path).is_dir():
            return cls.from_pretrained(path)
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def __repr__(self) -> str:
        return (
            f"NodePieceTokenizer(num_nodes={self.num_nodes}, num_anchors={self.num_anchors}, "
            f"anchors_per_node={self.anchors_per_node}, relations_per_node={self.relations_per_node}, "
            f"num_relations={self.num_relations}, max_distance={self.max_distance}, vocab_size={self.vocab_size})"
        )


def _describe(x: Any) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
