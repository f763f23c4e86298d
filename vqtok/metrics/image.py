"""Image reconstruction fidelity: PSNR and SSIM per image, for images in ``[0, data_range]``."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr", "ssim", "image_metrics"]


def psnr(recon: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each image, in dB.

    Args:
        recon: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        data_range: Maximum minus minimum possible pixel value.

    Returns:
        ``(B,)`` float32; ``inf`` for a perfect reconstruction.
    """
    mse = (recon.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(recon: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity (Wang et al. 2004; Gaussian window 11, sigma 1.5) of each image, via torchmetrics.

    Images smaller than the window (e.g. 8x8 digits) use the largest odd window that fits.

    Returns:
        ``(B,)`` float32.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(recon.shape[-2:])
    kernel = 11 if side >= 11 else max(3, side - 1 if side % 2 == 0 else side)
    sigma = 1.5 * kernel / 11
    return structural_similarity_index_measure(
        recon.float(),
        target.float(),
        data_range=data_range,
        kernel_size=kernel,
        sigma=sigma,
        reduction="none",
    )


def image_metrics(recon: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-image ``psnr`` and ``ssim`` of reconstructions clamped to the valid range ``[0, 1]``, each ``(B,)``."""
    recon = recon.float().clamp(0, 1)
    return {"psnr": psnr(recon, target), "ssim": ssim(recon, target)}
