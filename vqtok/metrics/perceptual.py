"""LPIPS as a per-image reconstruction metric (weights from local files; see :mod:`vqtok.layers.perceptual`)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor

from ..layers.perceptual import LPIPS

__all__ = ["lpips_metric"]


def lpips_metric(
    backbone: str | os.PathLike[str], head: str | os.PathLike[str] | None = None, net: str = "vgg", batch: int = 64
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """A ``(recon, target) -> {"lpips": (B,)}`` metric (lower is better) for :func:`vqtok.train.evaluate`.

    Reconstructions are clamped to ``[0, 1]`` first, as for PSNR/SSIM.

    Raises:
        FileNotFoundError: Naming the missing weight file.
    """
    network = LPIPS(net, backbone, head)

    @torch.no_grad()
    def metric(recon: Tensor, target: Tensor) -> dict[str, Tensor]:
        net_ = network.to(recon.device)
        out = [
            net_(r.float().clamp(0, 1), t.float()) for r, t in zip(recon.split(batch), target.split(batch), strict=True)
        ]
        return {"lpips": torch.cat(out)}

    return metric
