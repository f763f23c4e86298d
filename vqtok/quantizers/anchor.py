"""NodePiece-style anchor quantizer: a latent becomes ``k`` anchor ids and ``m`` relation ids.

Galkin et al., "NodePiece: Compositional and Parameter-Efficient Representations of Large Knowledge Graphs",
ICLR 2022, arXiv:2106.12144. A learned vocabulary of anchor and relation embeddings: a latent is tokenized as its
``k`` nearest anchor embeddings and the ``m`` relation embeddings nearest to what the anchors leave unexplained,
and decoded as a fixed weighted composition of them.

The graph side (anchor selection, BFS, relation contexts) lives in :mod:`vqtok.graphs`, and the graph tokenizer
that serves it under the tokenizer contract is :class:`vqtok.tokenizers.NodePieceTokenizer` (formerly
``vqtok.quantizers.AnchorTokenizer``, which still resolves to it with a ``FutureWarning``). The graph methods
here (:meth:`AnchorQuantizer.for_graph`, :meth:`~AnchorQuantizer.graph_indices`) take such a tokenizer by its
public attributes, so this module imports nothing above the quantizer layer.

Written from the paper; no code was taken from the reference implementation.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graphs import anchor_distances, select_anchors
from ..kernels.nearest import nearest
from ..metrics.codebook import perplexity
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

if TYPE_CHECKING:
    from ..tokenizers.nodepiece import NodePieceTokenizer

__all__ = ["AnchorQuantizer", "anchor_distances", "select_anchors"]


def __getattr__(name: str) -> Any:
    # The graph tokenizer moved to the tokenizers layer; keep old imports working for one release.
    if name == "AnchorTokenizer":
        warnings.warn(
            "vqtok.quantizers.anchor.AnchorTokenizer moved to vqtok.tokenizers.NodePieceTokenizer",
            FutureWarning,
            stacklevel=2,
        )
        from ..tokenizers.nodepiece import NodePieceTokenizer

        return NodePieceTokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    :class:`~vqtok.tokenizers.NodePieceTokenizer` decode too (:meth:`from_graph`).

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
    def for_graph(cls, tokenizer: NodePieceTokenizer, dim: int, commitment_weight: float = 0.25) -> AnchorQuantizer:
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
    def graph_indices(self, tokenizer: NodePieceTokenizer, nodes: Tensor | None = None) -> Tensor:
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

    def from_graph(self, tokenizer: NodePieceTokenizer, nodes: Tensor | None = None) -> Tensor:
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
