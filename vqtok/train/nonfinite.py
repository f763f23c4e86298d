"""Skipping non-finite training steps without leaving a trace in the model.

Quantizers update EMA codebooks and usage statistics inside their forward, before the loss is known, so
skipping the optimizer step is not enough: :class:`NonFiniteGuard` copies every buffer before the forward
(into tensors allocated once, one memcpy of the buffers per step) and puts them back when the step turns
out to be non-finite. It also counts skips and stops the run after too many in a row.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["NonFiniteGuard", "agreed_finite"]

logger = logging.getLogger(__name__)


def agreed_finite(value: Tensor) -> bool:
    """Whether ``value`` is finite on every rank (ranks must skip a step together, or DDP deadlocks)."""
    bad = (~torch.isfinite(value.detach())).any().float().reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return not bool(bad.item())


class NonFiniteGuard:
    """Buffer backup, restore and counting for non-finite steps.

    Args:
        max_in_a_row: Consecutive skipped steps after which :meth:`skip` raises ``FloatingPointError``.
    """

    def __init__(self, max_in_a_row: int) -> None:
        if max_in_a_row < 1:
            raise ValueError(f"max_nonfinite_steps must be >= 1, got {max_in_a_row}")
        self.max_in_a_row = max_in_a_row
        #: Skipped steps in total (this process) and in a row.
        self.total = 0
        self.in_a_row = 0
        self._backup: list[Tensor] = []

    def backup(self, modules: list[nn.Module]) -> None:
        """Copies every buffer of ``modules``; call before the forward of each step."""
        buffers = [b for m in modules for b in m.buffers()]
        same = len(buffers) == len(self._backup) and all(
            b.shape == s.shape and b.dtype == s.dtype and b.device == s.device
            for b, s in zip(buffers, self._backup, strict=True)
        )
        with torch.no_grad():
            if not same:
                self._backup = [b.detach().clone() for b in buffers]
            else:
                for saved, b in zip(self._backup, buffers, strict=True):
                    saved.copy_(b)

    def succeeded(self) -> None:
        """Records a finite step: the run of consecutive skips ends."""
        self.in_a_row = 0

    def skip(self, modules: list[nn.Module], step: int, reason: str) -> None:
        """Restores the buffers saved by :meth:`backup`, counts and logs the skip.

        Raises:
            FloatingPointError: After ``max_in_a_row`` consecutive skips.
        """
        with torch.no_grad():
            buffers = [b for m in modules for b in m.buffers()]
            for saved, b in zip(self._backup, buffers, strict=True):
                b.copy_(saved)
        self.total += 1
        self.in_a_row += 1
        logger.warning(
            "step %d skipped: non-finite (%s); %d in a row (limit %d), %d skipped in total",
            step,
            reason,
            self.in_a_row,
            self.max_in_a_row,
            self.total,
        )
        if self.in_a_row >= self.max_in_a_row:
            raise FloatingPointError(
                f"training stopped at step {step}: {self.in_a_row} consecutive non-finite steps "
                f"(max_nonfinite_steps={self.max_in_a_row}); last: {reason}. None of them updated the model; "
                "check the data for extreme values or lower optim.lr"
            )
