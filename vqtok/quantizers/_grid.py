"""The mixed-radix grid shared by the per-channel scalar quantizers (FSQ, latent quantization).

Channel ``j`` takes one of ``levels[j]`` values; a token's index is its digits in mixed radix (channel 0 least
significant), so the codebook size is ``prod(levels)``. A latent width ``dim`` other than ``len(levels)`` adds
learned projections ``dim -> len(levels)`` and back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["check_grid", "grid_basis", "grid_projections"]


def check_grid(levels: Sequence[int], dim: int | None, label: str = "levels") -> tuple[tuple[int, ...], int]:
    """``(levels as ints, latent width)``; ``dim=None`` is ``len(levels)``.

    Raises:
        ValueError: If a level count is below 2 (the message starts with ``label``) or ``dim`` is not positive.
    """
    levels = tuple(int(v) for v in levels)
    if not levels or min(levels) < 2:
        raise ValueError(f"{label} must all be >= 2, got {levels}")
    if dim is not None and dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    return levels, len(levels) if dim is None else int(dim)


def grid_projections(dim: int, width: int) -> tuple[nn.Module, nn.Module]:
    """``(project_in, project_out)``: learned ``dim <-> width`` maps, identities when the widths agree."""
    if dim == width:
        return nn.Identity(), nn.Identity()
    return nn.Linear(dim, width), nn.Linear(width, dim)


def grid_basis(levels: Sequence[int]) -> Tensor:
    """Place values of the mixed-radix digits, ``(d,)`` long: ``index = sum_j digit_j * basis_j``."""
    return torch.cumprod(torch.tensor((1, *levels[:-1]), dtype=torch.long), 0)
