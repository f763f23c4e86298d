"""Adversarial training, composed by the trainer: settings, the discriminator and its two hinge terms.

The model contract knows nothing about GANs. This module reads the adversarial settings from the model's config
(the keys existing configs use: ``gan_weight``, ``gan_start_step``, ``disc_channels``, ``disc_layers``, ``gan_loss``;
image configs add ``gan_adaptive_weight``, ``lecam_weight``, ``lecam_decay``; audio configs ``gan_feature_weight`` and
``gan_balance``) and builds the discriminator its modality registers here (:func:`register_discriminator`): a
PatchGAN for images, multi-period plus multi-scale STFT discriminators for audio, a 3-D PatchGAN for video. The
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
from .losses import GAN_LOSSES, lecam_regularizer

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
        loss: ``"hinge"``, ``"non_saturating"`` or ``"lsgan"`` (least squares), for both players.
        adaptive_weight: Multiply ``weight`` by VQGAN's ``|grad nll| / |grad g|`` at the decoder's last layer
            (Esser et al. 2021, eq. 7), clamped to ``[0, 1e4]``.
        lecam_weight: Weight of the LeCam term added to the discriminator's loss; 0 disables it.
        lecam_decay: EMA decay of LeCam's anchors.
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
    adaptive_weight: bool = False
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
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
            adaptive_weight=bool(getattr(config, "gan_adaptive_weight", defaults.adaptive_weight)),
            lecam_weight=float(getattr(config, "lecam_weight", defaults.lecam_weight)),
            lecam_decay=float(getattr(config, "lecam_decay", defaults.lecam_decay)),
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
        # LeCam anchors: moving averages of the mean real/fake logits (part of the resumable state).
        self.ema_real = torch.zeros(())
        self.ema_fake = torch.zeros(())

    def state_dict(self) -> dict[str, Tensor]:
        """Trainer state beyond the discriminator's weights (LeCam anchors)."""
        return {"ema_real": self.ema_real.clone(), "ema_fake": self.ema_fake.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.ema_real, self.ema_fake = state["ema_real"].clone(), state["ema_fake"].clone()

    def adaptive_weight(self, nll_loss: Tensor, g_loss: Tensor, last_layer: Tensor) -> Tensor:
        """The generator term's weight: ``weight``, times VQGAN's gradient-norm ratio when ``adaptive_weight``.

        Balances the adversarial gradient against the reconstruction (+ perceptual) one at the decoder's last layer,
        so neither swamps the other whatever their scales.
        """
        w = torch.tensor(self.settings.weight, device=g_loss.device)
        if not self.settings.adaptive_weight:
            return w
        nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        ratio = nll_grad.float().norm() / (g_grad.float().norm() + 1e-4)
        return (ratio.clamp(0.0, 1e4) * w).detach()

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

    def discriminator_terms(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """The discriminator's loss under these settings (``"loss"``) plus its parts, updating LeCam's anchors.

        Returns:
            ``{"loss": total, "d_adv": adversarial part}`` and ``"lecam"`` when it is on.
        """
        real_logits, fake_logits = _split_logits(discriminator(torch.cat([real.to(fake.dtype), fake.detach()])))
        d_adv = GAN_LOSSES[self.settings.loss][0](real_logits, fake_logits)
        terms = {"loss": d_adv, "d_adv": d_adv.detach()}
        if self.settings.lecam_weight > 0:
            dev = d_adv.device
            self.ema_real, self.ema_fake = self.ema_real.to(dev), self.ema_fake.to(dev)
            reg = lecam_regularizer(real_logits, fake_logits, self.ema_real, self.ema_fake)
            terms["loss"] = d_adv + self.settings.lecam_weight * reg
            terms["lecam"] = reg.detach()
            d = self.settings.lecam_decay
            self.ema_real = d * self.ema_real + (1 - d) * _mean_logit(real_logits)
            self.ema_fake = d * self.ema_fake + (1 - d) * _mean_logit(fake_logits)
        return terms


def _mean_logit(logits: Tensor | list[Tensor]) -> Tensor:
    parts = logits if isinstance(logits, (list, tuple)) else [logits]
    return torch.stack([p.detach().float().mean() for p in parts]).mean()


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
