"""Adversarial losses: hinge (Lim & Ye, "Geometric GAN", arXiv:1705.02894, as used by VQGAN), non-saturating, least
squares (Mao et al., arXiv:1611.04076, as used by HiFi-GAN and EnCodec) and LeCam regularisation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GAN_LOSSES",
    "hinge_d_loss",
    "hinge_g_loss",
    "lecam_regularizer",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "non_saturating_d_loss",
    "non_saturating_g_loss",
]


def _logits(out: Tensor | list[Tensor] | tuple[Tensor, ...]) -> list[Tensor]:
    # Multi-scale discriminators (audio) return one logit map per scale.
    return list(out) if isinstance(out, (list, tuple)) else [out]


def hinge_d_loss(real_logits: Tensor | list[Tensor], fake_logits: Tensor | list[Tensor]) -> Tensor:
    """``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``, averaged over scales."""
    real, fake = _logits(real_logits), _logits(fake_logits)
    terms = [F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for r, f in zip(real, fake, strict=True)]
    return sum(terms) / len(terms)  # type: ignore[return-value]


def hinge_g_loss(fake_logits: Tensor | list[Tensor]) -> Tensor:
    """``-mean(D(G(z)))``, averaged over scales."""
    fake = _logits(fake_logits)
    return sum(-f.float().mean() for f in fake) / len(fake)  # type: ignore[return-value]


def non_saturating_d_loss(real_logits: Tensor | list[Tensor], fake_logits: Tensor | list[Tensor]) -> Tensor:
    """``mean(softplus(-D(x))) + mean(softplus(D(G(z))))`` (Goodfellow et al. 2014), averaged over scales."""
    real, fake = _logits(real_logits), _logits(fake_logits)
    terms = [F.softplus(-r.float()).mean() + F.softplus(f.float()).mean() for r, f in zip(real, fake, strict=True)]
    return sum(terms) / len(terms)  # type: ignore[return-value]


def non_saturating_g_loss(fake_logits: Tensor | list[Tensor]) -> Tensor:
    """``mean(softplus(-D(G(z))))``: the generator maximises ``log D(G(z))``; averaged over scales."""
    fake = _logits(fake_logits)
    return sum(F.softplus(-f.float()).mean() for f in fake) / len(fake)  # type: ignore[return-value]


def lecam_regularizer(
    real_logits: Tensor | list[Tensor], fake_logits: Tensor | list[Tensor], ema_real: Tensor, ema_fake: Tensor
) -> Tensor:
    """LeCam regularisation (Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data",
    CVPR 2021, arXiv:2104.03310): ``mean(relu(D(x) - a_F)^2) + mean(relu(a_R - D(G(z)))^2)``, with ``a_R``/``a_F``
    the moving averages of the discriminator's mean real/fake logits; averaged over scales."""
    real, fake = _logits(real_logits), _logits(fake_logits)
    terms = [
        F.relu(r.float() - ema_fake).pow(2).mean() + F.relu(ema_real - f.float()).pow(2).mean()
        for r, f in zip(real, fake, strict=True)
    ]
    return sum(terms) / len(terms)  # type: ignore[return-value]


def lsgan_d_loss(real_logits: Tensor | list[Tensor], fake_logits: Tensor | list[Tensor]) -> Tensor:
    """``mean((1 - D(x))^2) + mean(D(G(z))^2)``, averaged over scales."""
    real, fake = _logits(real_logits), _logits(fake_logits)
    terms = [((1 - r.float()) ** 2).mean() + (f.float() ** 2).mean() for r, f in zip(real, fake, strict=True)]
    return sum(terms) / len(terms)  # type: ignore[return-value]


def lsgan_g_loss(fake_logits: Tensor | list[Tensor]) -> Tensor:
    """``mean((1 - D(G(z)))^2)``, averaged over scales."""
    fake = _logits(fake_logits)
    return sum(((1 - f.float()) ** 2).mean() for f in fake) / len(fake)  # type: ignore[return-value]


#: ``name -> (discriminator loss, generator loss)``.
GAN_LOSSES = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "non_saturating": (non_saturating_d_loss, non_saturating_g_loss),
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
}
