"""Fréchet Inception Distance (rFID between originals and reconstructions) and Inception Score.

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017
(FID); Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016 (IS). The maths takes features (or
class probabilities) from any network; :class:`InceptionFeatures` reads the standard FID network from a LOCAL
TorchScript file (NVIDIA's ``inception-2015-12-05.pt``, the one StyleGAN/clean-fid use, a port of the TF-slim
Inception of the original FID code). Nothing is downloaded: a missing file is a clear error naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["FeatureStatistics", "InceptionFeatures", "frechet_distance", "inception_score"]


class FeatureStatistics:
    """Running mean and covariance of ``(N, D)`` features, in float64 (what FID compares).

    Args:
        dim: Feature width D.
    """

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, features: Tensor) -> None:
        f = features.detach().to("cpu", torch.float64).flatten(1)
        if f.shape[1] != self.sum.shape[0]:
            raise ValueError(f"expected (N, {self.sum.shape[0]}) features, got {tuple(features.shape)}")
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def compute(self) -> tuple[Tensor, Tensor]:
        """``(mean (D,), covariance (D, D))`` with the unbiased (N - 1) normalisation of ``numpy.cov``."""
        if self.n < 2:
            raise ValueError(f"FID needs at least 2 examples per side, got {self.n}")
        mean = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return mean, cov


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` of two Gaussians.

    ``tr((S1 S2)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix ``S1^(1/2) S2 S1^(1/2)``, which has the same spectrum: stable without ``scipy.linalg.sqrtm``'s complex
    round-off (rounding below zero is clamped).
    """
    mu1, mu2, s1, s2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    s1_half = (v * w.clamp(min=0).sqrt()) @ v.T
    middle = s1_half @ s2 @ s1_half
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * trace_sqrt)


def inception_score(probs: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` of ``(N, classes)`` probabilities: ``(mean, std)`` over
    ``splits`` consecutive chunks, as in the original code."""
    p = probs.to(torch.float64)
    if p.ndim != 2 or (p < 0).any() or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-4):
        raise ValueError("inception_score needs (N, classes) rows of probabilities")
    scores = []
    for chunk in p.chunk(splits):
        marginal = chunk.mean(0, keepdim=True)
        kl = (chunk * (torch.log(chunk + 1e-12) - torch.log(marginal + 1e-12))).sum(1).mean()
        scores.append(torch.exp(kl))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False)) if len(scores) > 1 else 0.0


class InceptionFeatures:
    """The FID Inception network from a local TorchScript file.

    Called with images in ``[0, 1]`` ``(B, 3, H, W)`` (1-channel images are repeated); the network resizes to 299
    itself. :meth:`features` gives the 2048-d pool features of FID, :meth:`probabilities` the 1008-way softmax
    without output bias used for the Inception Score.

    Args:
        path: ``inception-2015-12-05.pt`` (TorchScript). Get it once, on a machine with network access, from
            https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pt
        device: Where to run it.

    Raises:
        FileNotFoundError: When ``path`` is empty or missing (the message names it).
        ValueError: When the file is not a TorchScript module.
    """

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        if not path or not Path(path).is_file():
            raise FileNotFoundError(
                f"Inception weights {str(path)!r} not found: rFID/IS need the FID Inception network as a local "
                "TorchScript file (inception-2015-12-05.pt); it is never downloaded"
            )
        try:
            self.net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:  # noqa: BLE001 - torch.jit.load raises many types for a bad file
            raise ValueError(f"{str(path)!r} is not a TorchScript Inception network: {err}") from err
        self.device = torch.device(device)

    def _input(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
        # The network expects pixel values 0..255 (it normalises them itself).
        return (images.float().clamp(0, 1) * 255).expand(-1, 3, -1, -1).to(self.device)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """``(B, 2048)`` float32 pool features."""
        return self.net(self._input(images), return_features=True).float().cpu()

    @torch.no_grad()
    def probabilities(self, images: Tensor) -> Tensor:
        """``(B, classes)`` class probabilities."""
        return self.net(self._input(images), no_output_bias=True).float().cpu()
