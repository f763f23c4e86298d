"""Exponential moving average of a model's weights (evaluated and released instead of the raw weights).

``shadow = decay * shadow + (1 - decay) * weight`` after every optimizer step; floating buffers (norm statistics,
quantizer codebooks kept by EMA) are copied as they are, since they are already averages of their own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Shadow copy of ``model``'s state kept as a moving average.

    Args:
        model: The trained model.
        decay: Weight of the old average, in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._params = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Folds the model's current weights into the average (call after each optimizer step)."""
        for name, value in model.state_dict().items():
            avg = self.shadow[name]
            if name in self._params and value.is_floating_point():
                avg.lerp_(value.detach().to(avg.dtype), 1.0 - self.decay)
            else:
                avg.copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = sorted(set(self.shadow) ^ set(state))
        if missing:
            raise ValueError(f"EMA state does not match the model (keys {missing[:6]})")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Loads the averaged weights into ``model``."""
        model.load_state_dict(self.shadow, strict=True)
