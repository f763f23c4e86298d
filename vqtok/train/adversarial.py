"""Adversarial training, composed by the trainer: settings, the discriminator and its two hinge terms.

The model contract knows nothing about GANs. This module reads the adversarial settings from the model's config
(the keys existing configs use: ``gan_weight``, ``gan_start_step``, ``disc_channels``, ``disc_layers``) and builds
the discriminator its modality registers here (:func:`register_discriminator`): a PatchGAN for images, multi-period
plus multi-scale STFT discriminators for audio (with ``gan_loss``, ``gan_feature_weight`` and ``gan_balance``). The
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

from ..layers import PatchDiscriminator2d, PatchDiscriminator3d
from ..layers.audio_discriminators import AudioDiscriminator, feature_matching_loss
from .losses import GAN_LOSSES

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


@register_discriminator("audio")
def _audio_discriminator(config: Any, settings: AdversarialSettings) -> nn.Module:
    # Multi-period (HiFi-GAN) + multi-scale STFT (EnCodec); the audio config names periods and FFT sizes.
    periods = tuple(getattr(config, "disc_periods", (2, 3, 5, 7, 11)))
    fft_sizes = tuple(getattr(config, "disc_fft_sizes", (256, 512, 1024)))
    return AudioDiscriminator(periods, fft_sizes, settings.disc_channels, settings.disc_layers)


@register_discriminator("video")
def _patch_discriminator3d(config: Any, settings: AdversarialSettings) -> nn.Module:
    return PatchDiscriminator3d(config.in_channels, settings.disc_channels, settings.disc_layers)


@dataclass(frozen=True)
class AdversarialSettings:
    """The adversarial part of a training recipe.

    Attributes:
        weight: Weight of the generator's hinge term; 0 disables adversarial training.
        start_step: Step at which both terms switch on (the autoencoder warms up first).
        disc_channels: Width of the discriminator's first layer.
        disc_layers: Stride-2 layers of the discriminator.
        loss: ``"hinge"`` or ``"lsgan"`` (least squares), for both players.
        feature_weight: Weight, inside the generator's term, of feature matching (the L1 distance of the
            discriminator's hidden features of real and reconstructed signals, relative to the real ones'
            magnitude); needs a discriminator with a ``features`` method. 0 leaves it out.
        balance: Rescale the generator's term so that its gradient on the reconstruction has the norm of the
            reconstruction loss's gradient (times ``weight``), a stateless form of EnCodec's loss balancer: the
            weight then means "share of the gradient", whatever the scale of the discriminator's logits.
    """

    weight: float = 0.0
    start_step: int = 0
    disc_channels: int = 64
    disc_layers: int = 2
    loss: str = "hinge"
    feature_weight: float = 0.0
    balance: bool = False

    def __post_init__(self) -> None:
        if self.loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {sorted(GAN_LOSSES)}, got {self.loss!r}")

    @classmethod
    def from_model_config(cls, config: Any) -> AdversarialSettings:
        """Reads ``gan_weight``, ``gan_start_step``, ``disc_channels``, ``disc_layers``, ``gan_loss``,
        ``gan_feature_weight`` and ``gan_balance`` where the config has them."""
        defaults = cls()
        return cls(
            weight=float(getattr(config, "gan_weight", defaults.weight)),
            start_step=int(getattr(config, "gan_start_step", defaults.start_step)),
            disc_channels=int(getattr(config, "disc_channels", defaults.disc_channels)),
            disc_layers=int(getattr(config, "disc_layers", defaults.disc_layers)),
            loss=str(getattr(config, "gan_loss", defaults.loss)),
            feature_weight=float(getattr(config, "gan_feature_weight", defaults.feature_weight)),
            balance=bool(getattr(config, "gan_balance", defaults.balance)),
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

    def generator_loss(self, recon: Tensor, real: Tensor | None = None, recon_loss: Tensor | None = None) -> Tensor:
        """Unweighted generator term of ``recon``: the GAN loss, plus feature matching against ``real`` when
        ``feature_weight > 0``, rescaled by the balancer against ``recon_loss`` when ``balance`` is on.

        The discriminator's weights are frozen for this forward: the gradient must reach the generator only (and
        under DDP the wrapped discriminator must not see a second forward), so the bare module is used.
        """
        g_loss = GAN_LOSSES[self.settings.loss][1]
        disc = self.discriminator
        disc.requires_grad_(False)
        try:
            if self.settings.feature_weight > 0 and real is not None and hasattr(disc, "features"):
                fake_logits, fake_feats = disc.features(recon)
                with torch.no_grad():
                    real_feats = disc.features(real)[1]
                g = g_loss(fake_logits) + self.settings.feature_weight * feature_matching_loss(real_feats, fake_feats)
            else:
                g = g_loss(disc(recon))
        finally:
            disc.requires_grad_(True)
        if self.settings.balance and recon_loss is not None and recon.requires_grad:
            # Gradients on the reconstruction only (not the weights): two small backward passes through the losses.
            g_rec = torch.autograd.grad(recon_loss, recon, retain_graph=True)[0]
            g_adv = torch.autograd.grad(g, recon, retain_graph=True)[0]
            g = g * (g_rec.norm() / (g_adv.norm() + 1e-12)).detach()
        return g

    @staticmethod
    def discriminator_loss(discriminator: nn.Module, real: Tensor, fake: Tensor, kind: str = "hinge") -> Tensor:
        """GAN loss ``kind`` (``"hinge"``/``"lsgan"``) of ``discriminator`` (the DDP-wrapped one when distributed)
        on a real and a fake batch.

        One forward over both halves keeps DDP at one forward per backward.
        """
        real_logits, fake_logits = _split_logits(discriminator(torch.cat([real, fake.detach()])))
        return GAN_LOSSES[kind][0](real_logits, fake_logits)


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
