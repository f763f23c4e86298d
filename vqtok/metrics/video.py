"""Video reconstruction fidelity: per-frame PSNR/SSIM, temporal consistency, and the Fréchet video distance.

* Per-frame PSNR and SSIM (:mod:`vqtok.metrics.image`) averaged over the frames of each clip.
* Temporal consistency: the mean absolute error between the frame differences of the reconstruction and of the
  original, ``mean |(r[t+1] - r[t]) - (x[t+1] - x[t])|``; flicker and lost motion raise it, a static error does not.
* FVD (Unterthiner et al., "Towards Accurate Generative Models of Video: A New Metric & Challenges",
  arXiv:1812.01717): the Fréchet distance between Gaussians fitted to I3D features of real and reconstructed clips.
  vqtok ships no weights: pass the path of a TorchScript I3D feature extractor (the ``i3d_torchscript.pt`` of
  StyleGAN-V's FVD, which takes ``(B, 3, T, 224, 224)`` in ``[-1, 1]``) or set ``VQTOK_I3D_WEIGHTS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .image import psnr, ssim

__all__ = ["I3DFeatures", "frechet_distance", "fvd", "per_frame", "temporal_consistency_error", "video_metrics"]

I3D_ENV = "VQTOK_I3D_WEIGHTS"


def _check_clips(recon: Tensor, target: Tensor) -> None:
    if recon.shape != target.shape or recon.ndim != 5:
        raise ValueError(
            f"expected two clips batches (B, C, T, H, W) of one shape, got {tuple(recon.shape)} and "
            f"{tuple(target.shape)}"
        )


def per_frame(metric: Any, recon: Tensor, target: Tensor) -> Tensor:
    """An image metric ``fn((N, C, H, W), (N, C, H, W)) -> (N,)`` on every frame: ``(B, C, T, H, W)`` -> ``(B, T)``."""
    _check_clips(recon, target)
    b = recon.shape[0]
    values = metric(rearrange(recon, "b c t h w -> (b t) c h w"), rearrange(target, "b c t h w -> (b t) c h w"))
    return rearrange(values, "(b t) -> b t", b=b)


def temporal_consistency_error(recon: Tensor, target: Tensor) -> Tensor:
    """Mean absolute frame-difference error of each clip, ``(B,)``; 0 for 1-frame clips."""
    _check_clips(recon, target)
    if recon.shape[2] < 2:
        return recon.new_zeros(recon.shape[0], dtype=torch.float32)
    dr = recon.float().diff(dim=2)
    dt = target.float().diff(dim=2)
    return (dr - dt).abs().flatten(1).mean(1)


def video_metrics(recon: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-clip ``psnr`` and ``ssim`` (means over frames) and ``temporal_error``, each ``(B,)``; the
    reconstruction is clamped to ``[0, 1]`` first."""
    recon = recon.float().clamp(0, 1)
    target = target.float()
    return {
        "psnr": per_frame(psnr, recon, target).mean(1),
        "ssim": per_frame(ssim, recon, target).mean(1),
        "temporal_error": temporal_consistency_error(recon, target),
    }


def _sqrt_psd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``:
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, in float64.

    ``Tr((S_a S_b)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix ``S_a^(1/2) S_b S_a^(1/2)`` (same spectrum), which avoids the complex ``sqrtm`` of the non-symmetric
    product.

    Raises:
        ValueError: When a set has fewer than 2 rows, the widths differ, or the features are not finite.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"expected features (N, D) and (M, D), got {tuple(features_a.shape)}, {tuple(features_b.shape)}"
        )
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError("the Fréchet distance needs at least 2 feature rows per set")
    a, b = features_a.double(), features_b.double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("features contain NaN or inf")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


class I3DFeatures:
    """I3D features of clips from LOCALLY supplied TorchScript weights (nothing is downloaded).

    Args:
        path: A TorchScript file; default: the ``VQTOK_I3D_WEIGHTS`` environment variable.
        size: Frame side the detector takes (224 for I3D).
        detector_kwargs: Keyword arguments of the detector's call; the default matches StyleGAN-V's
            ``i3d_torchscript.pt`` (inputs already in ``[-1, 1]`` at ``size``; return the 400-d logits' features).

    Raises:
        FileNotFoundError: When no path is given or the file does not exist (the message says how to supply it).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, size: int = 224, detector_kwargs: dict | None = None
    ) -> None:
        source = path if path is not None else os.environ.get(I3D_ENV)
        if not source or not Path(source).is_file():
            where = f"{str(source)!r} does not exist" if source else f"no path given and {I3D_ENV} is not set"
            raise FileNotFoundError(
                f"FVD needs I3D weights as a TorchScript file ({where}); vqtok downloads nothing: obtain "
                f"i3d_torchscript.pt (StyleGAN-V's FVD extractor) yourself and pass its path or set {I3D_ENV}"
            )
        self.model = torch.jit.load(str(source), map_location="cpu").eval()
        self.size = size
        self.kwargs = (
            {"rescale": False, "resize": False, "return_features": True} if detector_kwargs is None else detector_kwargs
        )

    @torch.no_grad()
    def __call__(self, clips: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` in ``[0, 1]`` (C = 1 or 3) -> ``(B, D)`` features."""
        if clips.ndim != 5 or clips.shape[1] not in (1, 3):
            raise ValueError(f"expected clips (B, 1 or 3, T, H, W), got {tuple(clips.shape)}")
        x = clips.float().clamp(0, 1).expand(-1, 3, -1, -1, -1)
        b = x.shape[0]
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        frames = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = rearrange(frames, "(b t) c h w -> b c t h w", b=b) * 2 - 1
        return self.model(x, **self.kwargs).float().reshape(b, -1)


def fvd(real: Tensor, recon: Tensor, extractor: I3DFeatures, batch_size: int = 8) -> float:
    """FVD between two clip sets ``(N, C, T, H, W)`` with a local :class:`I3DFeatures` extractor."""
    feats = [torch.cat([extractor(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) for x in (real, recon)]
    return frechet_distance(feats[0], feats[1])
