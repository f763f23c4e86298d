"""Adversarial training, composed by the trainer: settings, the discriminator and its two hinge terms.

The model contract knows nothing about GANs. This module reads the adversarial settings from the model's config
(the keys existing configs use: ``gan_weight``, ``gan_start_step``, ``disc_channels``, ``disc_layers``) and builds
the discriminator its modality registers here (:func:`register_discriminator`): a PatchGAN for images. The
trainer owns the discriminator and its optimizer, so release checkpoints (``save_pretrained``) never contain them.

Adding a discriminator for another modality is one ``@register_discriminator("audio")`` function here; configs
of that modality then switch it on with ``gan_weight > 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..layers import PatchDiscriminator2d
from .losses import hinge_d_loss, hinge_g_loss

__all__ = ["Adversary", "AdversarialSettings", "build_adversary", "register_discriminator"]

DiscriminatorFactory = Callable[[Any, "AdversarialSettings"], nn.Module]
_DISCRIMINATORS: dict[str, DiscriminatorFactory] = {}


def register_discriminator(modality: str) -> Callable[[DiscriminatorFactory], DiscriminatorFactory]:
    """Registers ``fn(model_config, settings) -> nn.Module`` as the discriminator of ``modality``."""

    def wrap(fn: DiscriminatorFactory) -> DiscriminatorFactory:
        if modality in _DISCRIMINATORS:
            raise ValueError(f"a discriminator for modality {modality!r} is already registered")
        _DISCRIMINATORS[modality] = fn
        return fn

    return wrap


@register_discriminator("image")
def _patch_discriminator(config: Any, settings: AdversarialSettings) -> nn.Module:
    return PatchDiscriminator2d(config.in_channels, settings.disc_channels, settings.disc_layers)


@dataclass(frozen=True)
class AdversarialSettings:
    """The adversarial part of a training recipe.

    Attributes:
        weight: Weight of the generator's hinge term; 0 disables adversarial training.
        start_step: Step at which both terms switch on (the autoencoder warms up first).
        disc_channels: Width of the discriminator's first layer.
        disc_layers: Stride-2 layers of the discriminator.
    """

    weight: float = 0.0
    start_step: int = 0
    disc_channels: int = 64
    disc_layers: int = 2

    @classmethod
    def from_model_config(cls, config: Any) -> AdversarialSettings:
        """Reads ``gan_weight``, ``gan_start_step``, ``disc_channels`` and ``disc_layers`` where the config has them."""
        defaults = cls()
        return cls(
            weight=float(getattr(config, "gan_weight", defaults.weight)),
            start_step=int(getattr(config, "gan_start_step", defaults.start_step)),
            disc_channels=int(getattr(config, "disc_channels", defaults.disc_channels)),
            disc_layers=int(getattr(config, "disc_layers", defaults.disc_layers)),
        )


class Adversary:
    """A discriminator plus the rules for using it: when it is active and how its terms are weighted.

    Args:
        discriminator: Scores real against reconstructed signals (one logit map or a list of them).
        settings: Weight and start step.
    """

    def __init__(self, discriminator: nn.Module, settings: AdversarialSettings) -> None:
        self.discriminator = discriminator
        self.settings = settings

    def active(self, step: int) -> bool:
        """Whether the adversarial terms are on at ``step``."""
        return step >= self.settings.start_step

    def generator_loss(self, recon: Tensor) -> Tensor:
        """Unweighted generator hinge term of ``recon``.

        The discriminator's weights are frozen for this forward: the gradient must reach the generator only (and
        under DDP the wrapped discriminator must not see a second forward), so the bare module is used.
        """
        self.discriminator.requires_grad_(False)
        try:
            return hinge_g_loss(self.discriminator(recon))
        finally:
            self.discriminator.requires_grad_(True)

    @staticmethod
    def discriminator_loss(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """Hinge loss of ``discriminator`` (the DDP-wrapped one when distributed) on a real and a fake batch.

        One forward over both halves keeps DDP at one forward per backward.
        """
        real_logits, fake_logits = _split_logits(discriminator(torch.cat([real, fake.detach()])))
        return hinge_d_loss(real_logits, fake_logits)


def _split_logits(logits: Tensor | list[Tensor]) -> tuple[Any, Any]:
    if isinstance(logits, (list, tuple)):
        halves = [t.chunk(2) for t in logits]
        return [h[0] for h in halves], [h[1] for h in halves]
    return logits.chunk(2)


def build_adversary(model: Any) -> Adversary | None:
    """The :class:`Adversary` of ``model``'s config, or ``None`` when ``gan_weight`` is 0 or absent.

    Raises:
        ValueError: When the config asks for adversarial training but no discriminator is registered for the
            model's modality.
    """
    settings = AdversarialSettings.from_model_config(model.config)
    if settings.weight <= 0:
        return None
    factory = _DISCRIMINATORS.get(model.modality)
    if factory is None:
        raise ValueError(
            f"gan_weight={settings.weight} but no discriminator is registered for modality {model.modality!r} "
            f"(registered: {sorted(_DISCRIMINATORS)}); see vqtok.train.adversarial.register_discriminator"
        )
    return Adversary(factory(model.config, settings), settings)
