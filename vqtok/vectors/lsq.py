"""Additive quantization trained LSQ-style: joint least-squares codebooks and ICM-refined encoding.

Babenko & Lempitsky, "Additive Quantization for Extreme Vector Compression", CVPR 2014; Martinez,
Zakhmi, Hoos & Little, "LSQ++: Lower running time and higher recall in multi-codebook quantization",
ECCV 2018. Codes are ``sum_m C_m[i_m]`` with unconstrained full-dimensional codebooks.

Training starts from a residual quantizer (a good additive initialisation) and alternates encoding
(beam search followed by iterated conditional modes, each index re-chosen with the others fixed)
with the joint least-squares codebook update. As in LSQ++'s stochastic relaxation, the codebook
update early on fits noisy targets, with noise shrinking to zero, to escape poor local minima.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._beam import beam_encode, icm_refine
from .rq import RQ, least_squares_codebooks

__all__ = ["LSQ"]


class LSQ(RQ):
    """Additive quantizer (AQ / LSQ++): ``M`` full-dimensional codebooks, beam + ICM encoding."""

    def __init__(
        self,
        dim: int,
        num_codebooks: int,
        codebook_bits: int = 8,
        *,
        kmeans_iters: int = 10,
        beam_width: int = 5,
        encode_beam_width: int | None = 12,
        refine_iters: int = 0,
        lsq_iters: int = 4,
        icm_passes: int = 2,
        noise: float = 0.1,
        kmeans_max_points: int | None = 65536,
        seed: int = 0,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        """Args:
        dim: Vector dimension ``D``.
        num_codebooks: Number of codebooks ``M``.
        codebook_bits: Bits per index.
        kmeans_iters: Lloyd iterations per dimension step of the residual initialisation.
        beam_width: Beams kept while training the residual initialisation.
        encode_beam_width: Beams kept by the LSQ alternations and ``encode`` (``None``: ``beam_width``).
        refine_iters: Refinement rounds of the residual initialisation.
        lsq_iters: Alternations of (beam + ICM encode, least-squares update).
        icm_passes: ICM passes after the beam, in training and in ``encode``.
        noise: Relative std of the stochastic-relaxation noise on the first update (decays to 0).
        kmeans_max_points: Residuals subsampled per stage's k-means in the residual initialisation.
        seed: Seed for k-means++ and the relaxation noise.
        device: Fitting/encoding device.
        progress: Show progress bars.
        """
        super().__init__(
            dim,
            num_codebooks,
            codebook_bits,
            kmeans_iters=kmeans_iters,
            beam_width=beam_width,
            encode_beam_width=encode_beam_width,
            refine_iters=refine_iters,
            kmeans_max_points=kmeans_max_points,
            seed=seed,
            device=device,
            progress=progress,
        )
        self.lsq_iters = lsq_iters
        self.icm_passes = icm_passes
        self.noise = noise

    def _fit(self, x: Tensor) -> None:
        super()._fit(x)
        g = torch.Generator(device=x.device).manual_seed(self.seed)
        scale = x.std(0, keepdim=True)
        best_err = float("inf")
        best = self.codebooks
        for it in tqdm(range(self.lsq_iters), desc="LSQ", disable=not self.progress):
            err, idx = self._beam_icm(x)
            if float(err.sum()) < best_err:
                best_err, best = float(err.sum()), self.codebooks
            # Stochastic relaxation: noise std decays like (1 - t/T)^2, zero on the last updates.
            temp = self.noise * max(0.0, 1 - (it + 1) / max(1, self.lsq_iters - 1)) ** 2
            target = x + temp * scale * torch.randn(x.shape, generator=g, device=x.device) if temp > 0 else x
            self.codebooks = least_squares_codebooks(target, idx, self.codebook_size)
        err, _ = self._beam_icm(x)
        if float(err.sum()) > best_err:
            self.codebooks = best

    def _beam_icm(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Beam search in residual order, then ICM passes (the codebooks are no longer residual after an update)."""
        _, idx = beam_encode(x, self.codebooks, self.encode_beam_width)
        return icm_refine(x, self.codebooks, idx, self.icm_passes)

    def _encode(self, x: Tensor) -> Tensor:
        return self._beam_icm(x)[1]

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "lsq_iters": self.lsq_iters,
            "icm_passes": self.icm_passes,
            "noise": self.noise,
        }
