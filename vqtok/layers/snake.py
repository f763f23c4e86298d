"""Snake activation, ``x + sin(alpha * x)**2 / alpha`` with one learned ``alpha`` per channel.

Ziyin et al., "Neural Networks Fail to Learn Periodic Functions and How to Fix It" (arXiv:2006.08195); DAC
(Kumar et al., arXiv:2306.06546, section 3.1) uses it in every layer of its audio codec for the periodic
structure of voiced speech. Element-wise, so it streams as is. Written for vqtok; no code was copied.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Snake1d", "activation1d"]


class Snake1d(nn.Module):
    """``(B, C, T) -> (B, C, T)``; ``alpha`` starts at 1 for every channel.

    Args:
        channels: C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        # The small constant keeps 1 / alpha finite if an alpha is driven to zero.
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)

    def step(self, x: Tensor, cache: object) -> Tensor:
        """Element-wise: a stream piece maps like the whole signal (``cache`` is unused)."""
        return self.forward(x)


def activation1d(name: str, channels: int) -> nn.Module:
    """``"elu"`` (parameter-free, what older checkpoints used) or ``"snake"`` (:class:`Snake1d`).

    Raises:
        ValueError: For another name.
    """
    if name == "elu":
        return nn.ELU()
    if name == "snake":
        return Snake1d(channels)
    raise ValueError(f"activation must be 'elu' or 'snake', got {name!r}")
