"""Activation checkpointing of a chain of blocks: trade one extra forward for the activations' memory."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["CheckpointedSequential"]


class CheckpointedSequential(nn.Sequential):
    """``nn.Sequential`` whose blocks each recompute their activations in backward when ``checkpointing`` is on.

    Only active while gradients are being recorded (training); evaluation runs the plain chain. The state dict
    keys are those of ``nn.Sequential``, so a model trained with checkpointing loads without it and back.

    Args:
        *blocks: The blocks, run in order.
        checkpointing: Recompute each block's activations in backward instead of keeping them.
    """

    def __init__(self, *blocks: nn.Module, checkpointing: bool = False) -> None:
        super().__init__(*blocks)
        self.checkpointing = checkpointing

    def forward(self, x: Tensor) -> Tensor:
        """Runs the blocks in order."""
        if not (self.checkpointing and torch.is_grad_enabled()):
            return super().forward(x)
        for block in self:
            # use_reentrant=False: works when the input needs no grad and with torch.compile.
            x = checkpoint(block, x, use_reentrant=False)
        return x
