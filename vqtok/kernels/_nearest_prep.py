"""Argument checks and operand preparation for :func:`vqtok.kernels.nearest`.

Validation, the l2 centring and power-of-two rescaling that keep fp32 distances exact (the reasons are in
:mod:`vqtok.kernels.nearest`), the per-code bias and the final conversion of searched values into the
metric's distance. Shared by every backend. Written for vqtok.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BACKENDS", "METRICS", "abs_max", "centre_of", "check_args", "finish", "prepare", "sq_norms"]

METRICS = ("l2", "cosine", "ip")
BACKENDS = ("auto", "torch", "triton", "cpu_ext")
# Codes sampled to place the centre of the l2 search (see centre_of).
_CENTRE_SAMPLE = 256
# Operands whose norms exceed this are rescaled by an exact power of two before the search, so that
# ||c||^2 - 2<x, c> cannot overflow fp32 (max ~3.4e38); the argmin is invariant to the scale.
_MAX_NORM = 2.0**60


def check_args(
    latents: Tensor, codebook: Tensor, metric: str, k: int, tile_n: int, tile_k: int | None, backend: str
) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if latents.ndim != 2 or codebook.ndim != 2 or latents.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"nearest expects latents (N, D) and codebook (K, D), got {tuple(latents.shape)} and "
            f"{tuple(codebook.shape)}"
        )
    if not latents.is_floating_point() or not codebook.is_floating_point():
        raise ValueError(f"nearest expects float tensors, got {latents.dtype} and {codebook.dtype}")
    num_codes = codebook.shape[0]
    if not 1 <= k <= num_codes:
        raise ValueError(f"k={k} must be between 1 and the codebook size {num_codes}")
    if tile_n < 1 or (tile_k is not None and tile_k < 1):
        raise ValueError(f"tile sizes must be positive, got tile_n={tile_n}, tile_k={tile_k}")
    # amax/amin propagate NaN and expose +-Inf without allocating (isfinite() builds abs() and bool
    # copies the size of the input); a NaN would otherwise silently lose every comparison.
    if not all(math.isfinite(v) for t in (latents, codebook) if t.numel() for v in (t.amax(), t.amin())):
        raise ValueError("nearest got NaN/Inf in latents or codebook")


def prepare(
    latents: Tensor, codebook: Tensor, metric: str, codebook_norms: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, float]:
    """fp32 contiguous operands, the per-code bias and the power-of-two scale applied to both."""
    x = latents.float().contiguous()
    c = codebook.float().contiguous()
    if metric == "l2" and codebook_norms is None and c.shape[0]:
        centre = centre_of(c)
        if centre is not None:
            x, c = x - centre, c - centre
    if metric == "cosine":
        x = F.normalize(x, dim=-1)
        c = F.normalize(c, dim=-1)
    scale = 1.0
    if metric != "cosine":
        peak = max(abs_max(x), abs_max(c))
        # amax * sqrt(D) bounds every norm; rescaling by a power of two is exact, so indices are unchanged.
        if peak * math.sqrt(x.shape[1]) > _MAX_NORM:
            scale = 2.0 ** -math.ceil(math.log2(peak * math.sqrt(x.shape[1]) / _MAX_NORM))
            x, c = x * scale, c * scale
            codebook_norms = None
    if metric == "l2":
        if codebook_norms is None:
            cn = sq_norms(c)
        else:
            if codebook_norms.shape != (c.shape[0],):
                raise ValueError(f"codebook_norms must be ({c.shape[0]},), got {tuple(codebook_norms.shape)}")
            cn = codebook_norms.to(device=c.device, dtype=torch.float32).contiguous()
    else:
        cn = c.new_zeros(c.shape[0])
    return x, c, cn, scale


def centre_of(c: Tensor) -> Tensor | None:
    """``(D,)`` fp32 shift near the codebook mean, on a power-of-two grid; ``None`` when it is zero.

    Any point inside the bulk of the codebook bounds the cancellation, so the mean and the extent are
    taken over at most ``_CENTRE_SAMPLE`` evenly spaced codes (in fp64: no cancellation at any offset),
    which keeps this O(D) whatever K is. The mean is rounded to a multiple of ``2^(floor(log2(extent)) -
    2)``, ``extent`` the largest per-coordinate range of those codes: the shift then has few significant
    bits, so subtracting it from values of about its size is exact in fp32.
    """
    num_codes = c.shape[0]
    rows = c if num_codes <= _CENTRE_SAMPLE else c[torch.linspace(0, num_codes - 1, _CENTRE_SAMPLE).long()]
    rows = rows.double()
    mean = rows.mean(0)
    extent = float((rows.amax(0) - rows.amin(0)).amax())
    if extent > 0:
        step = 2.0 ** (math.floor(math.log2(extent)) - 2)
        mean = torch.round(mean / step) * step
    centre = mean.float()
    return centre if bool(centre.any()) else None


def abs_max(t: Tensor) -> float:
    # amax and amin instead of abs().amax(): no temporary the size of the input.
    return max(float(t.amax()), -float(t.amin())) if t.numel() else 0.0


def sq_norms(t: Tensor, chunk: int = 8192) -> Tensor:
    """Squared row norms of ``(M, D)`` as ``(M,)``, in row chunks so the temporary stays small."""
    out = t.new_empty(t.shape[0])
    for r0 in range(0, t.shape[0], chunk):
        part = t[r0 : r0 + chunk]
        torch.sum(part * part, -1, out=out[r0 : r0 + chunk])
    return out


def finish(best_d: Tensor, x: Tensor, metric: str, scale: float) -> Tensor:
    """Turns the searched ``||c||^2 - 2<x, c>`` (zero bias for ip/cosine) into the metric's distance."""
    if metric == "l2":
        # ||x||^2 is the same for every code of a row, so it is added once, after the search.
        best_d = (best_d + sq_norms(x)[:, None]).clamp_min_(0)
        if scale != 1.0:
            best_d = best_d / (scale * scale)
    else:
        # The search ran on -2<x, c> (zero bias) so that every metric shares one kernel; halving is exact.
        best_d = best_d * 0.5
        if metric == "ip" and scale != 1.0:
            best_d = best_d / (scale * scale)
        elif metric == "cosine":
            best_d = best_d + 1.0
    return best_d
