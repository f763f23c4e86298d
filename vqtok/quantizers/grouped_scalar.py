"""Grouped lookup-free and finite scalar quantization: registrations over :class:`Grouped`.

* ``group_lfq``: LFQ on G channel groups, one index of ``log2(V)`` bits per group, as in WeTok (Zhuang et
  al., "WeTok: Powerful Discrete Tokenization for High-Fidelity Visual Reconstruction",
  arXiv:2508.05599): a ``2^18`` code space becomes, for example, two indices over ``2^9`` codes.
* ``grouped_fsq``: FSQ on G channel groups, one mixed-radix index per group.

A latent width ``dim`` that differs from the groups' total width adds one learned projection around all
groups (``project_in``/``project_out``, the keys older ``group_lfq`` checkpoints have). Group losses are
averaged (:mod:`vqtok.quantizers._compose`): for ``group_lfq`` the entropy terms are the mean over groups
of each group's entropies, where the class before the composites summed them (``G`` times larger);
multiply ``entropy_weight`` by G to keep an old run's loss scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._compose import check_count, renamed
from ._registry import register_quantizer
from .fsq import FSQ
from .grouped import Grouped
from .lfq import LFQ

__all__ = ["GroupLFQ", "GroupedFSQ"]


@register_quantizer("group_lfq", example={"codebook_size": 2**3, "num_groups": 2})
class GroupLFQ(Grouped):
    """LFQ on G channel groups; indices ``(..., G)``, each over ``codebook_size`` codes.

    Args:
        codebook_size: Codes per group V, a power of two; each group has ``log2(V)`` channels.
        num_groups: Number of groups G; ``None`` is 2 (``num_codebooks`` is its deprecated alias).
        dim: Latent width D; a shared projection is added when it differs from ``G log2(V)``.
        scale: Code magnitude s.
        temperature: τ of the soft assignment, as in :class:`~vqtok.quantizers.lfq.LFQ`.
        entropy: ``"auto"``, ``"factorized"`` or ``"exact"``, per group, as in LFQ.
        entropy_weight: Weight of the whole entropy penalty of each group.
        codebook_entropy_weight: γ, weight of the codebook entropy inside the penalty.
        commitment_weight: Weight of the commitment loss.

    ``scale`` and the entropy settings are keyword options, passed to every group's :class:`LFQ`.
    """

    def __init__(
        self, codebook_size: int = 2**9, num_groups: int | None = None, dim: int | None = None, **lfq_options: Any
    ) -> None:
        num_groups = renamed(lfq_options, "num_codebooks", "num_groups", num_groups, None, "group_lfq")
        num_groups = check_count(2 if num_groups is None else num_groups, "num_groups")
        groups = [LFQ(codebook_size, **lfq_options) for _ in range(num_groups)]
        total = groups[0].dim * num_groups
        shared = None if dim is None or dim == total else total
        super().__init__(groups, dim=dim, shared_codebook_dim=shared)


@register_quantizer("grouped_fsq", example={"levels": (5, 3), "num_groups": 2})
class GroupedFSQ(Grouped):
    """FSQ on G channel groups; indices ``(..., G)``, each over ``prod(levels)`` codes.

    Args:
        levels: Values per channel of every group, e.g. ``(8, 5, 5, 5)``.
        num_groups: Number of groups G.
        dim: Latent width D; a shared projection is added when it differs from ``G len(levels)``.
    """

    def __init__(self, levels: Sequence[int] = (8, 5, 5, 5), num_groups: int = 2, dim: int | None = None) -> None:
        num_groups = check_count(num_groups, "num_groups")
        groups = [FSQ(levels) for _ in range(num_groups)]
        total = groups[0].dim * num_groups
        shared = None if dim is None or dim == total else total
        super().__init__(groups, dim=dim, shared_codebook_dim=shared)
        self.levels = tuple(groups[0].levels)
