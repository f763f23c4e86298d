"""The perceptual term of the VQGAN recipe, composed by the trainer like the discriminator.

Reads ``perceptual_weight``, ``perceptual_net``, ``perceptual_backbone`` and ``perceptual_head`` from the model's
config (image families) and builds a frozen :class:`~vqtok.layers.perceptual.LPIPS` from the local files they
name. The network is trainer-owned: it never enters the model's ``state_dict`` or release checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..layers.perceptual import LPIPS

__all__ = ["PerceptualTerm", "build_perceptual"]


@dataclass
class PerceptualTerm:
    """A frozen perceptual distance and its weight.

    Attributes:
        network: ``(recon, target) -> (B,)`` distance.
        weight: Weight of the mean distance in the generator's loss.
    """

    network: LPIPS
    weight: float

    def loss(self, recon: Tensor, target: Tensor) -> Tensor:
        """Unweighted mean LPIPS of the batch (gradients reach ``recon`` only)."""
        return self.network(recon, target.to(recon.dtype)).mean()

    def to(self, device: Any) -> PerceptualTerm:
        self.network = self.network.to(device)
        return self


def build_perceptual(model: Any) -> PerceptualTerm | None:
    """The perceptual term of ``model``'s config, or ``None`` when ``perceptual_weight`` is 0 or absent.

    Raises:
        FileNotFoundError: Naming the missing weight file.
        ValueError: When a file does not fit, or the model does not read 1- or 3-channel images.
    """
    cfg = model.config
    weight = float(getattr(cfg, "perceptual_weight", 0.0))
    if weight <= 0:
        return None
    channels = getattr(cfg, "in_channels", None)
    if channels not in (1, 3):
        raise ValueError(f"perceptual_weight={weight} needs 1- or 3-channel images, the model reads {channels}")
    head = getattr(cfg, "perceptual_head", "") or None
    network = LPIPS(getattr(cfg, "perceptual_net", "vgg"), getattr(cfg, "perceptual_backbone", ""), head)
    return PerceptualTerm(network, weight)
