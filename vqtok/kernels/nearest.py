"""Exact nearest-code search with memory bounded by a tile, never by N x K.

This is the reference torch path: latents are processed in row tiles against codebook column
tiles with a running minimum, so scratch memory is ``tile_n * tile_k`` floats whatever N and K are.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["nearest"]

_METRICS = ("l2", "cosine", "ip")


@torch.no_grad()
def nearest(
    latents: Tensor,
    codebook: Tensor,
    metric: str = "l2",
    k: int = 1,
    tile_n: int = 4096,
    tile_k: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Finds the exact nearest codebook rows of each latent.

    Args:
        latents: ``(N, D)`` queries.
        codebook: ``(K, D)`` codes.
        metric: ``"l2"`` (squared euclidean), ``"cosine"`` (1 - cosine similarity) or ``"ip"``
            (negative inner product, so that smaller is always better).
        k: Number of neighbours to return.
        tile_n: Rows of ``latents`` per tile.
        tile_k: Codes per tile.

    Returns:
        ``(distances, indices)``, each ``(N,)`` when ``k == 1`` else ``(N, k)``; distances are in the
        metric above (fp32), indices int64, sorted from nearest.

    Raises:
        ValueError: On mismatched shapes, an unknown metric, ``k`` out of range or non-finite input.
    """
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {_METRICS}")
    if latents.ndim != 2 or codebook.ndim != 2 or latents.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"nearest expects latents (N, D) and codebook (K, D), got {tuple(latents.shape)} and "
            f"{tuple(codebook.shape)}"
        )
    num_codes = codebook.shape[0]
    if not 1 <= k <= num_codes:
        raise ValueError(f"k={k} must be between 1 and the codebook size {num_codes}")
    if not bool(torch.isfinite(latents).all()) or not bool(torch.isfinite(codebook).all()):
        raise ValueError("nearest got NaN/Inf in latents or codebook")

    x = latents.float()
    c = codebook.float()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=-1)
        c = torch.nn.functional.normalize(c, dim=-1)
    code_norms = (c * c).sum(-1) if metric == "l2" else None

    n = x.shape[0]
    best_d = torch.empty(n, k, device=x.device)
    best_i = torch.empty(n, k, dtype=torch.long, device=x.device)
    for r0 in range(0, n, tile_n):
        xr = x[r0 : r0 + tile_n]
        run_d = torch.full((xr.shape[0], k), float("inf"), device=x.device)
        run_i = torch.zeros(xr.shape[0], k, dtype=torch.long, device=x.device)
        for c0 in range(0, num_codes, tile_k):
            cc = c[c0 : c0 + tile_k]
            if metric == "l2":
                # ||x||^2 is constant per row, so it is added only once at the end.
                d = torch.addmm(code_norms[c0 : c0 + tile_k][None], xr, cc.T, alpha=-2.0)
            else:
                d = -(xr @ cc.T)
            kk = min(k, d.shape[1])
            td, ti = torch.topk(d, kk, dim=1, largest=False, sorted=False) if k > 1 else d.min(1, keepdim=True)
            cand_d = torch.cat([run_d, td], 1)
            cand_i = torch.cat([run_i, ti + c0], 1)
            run_d, pos = torch.topk(cand_d, k, dim=1, largest=False, sorted=True)
            run_i = cand_i.gather(1, pos)
        best_d[r0 : r0 + tile_n] = run_d
        best_i[r0 : r0 + tile_n] = run_i
    if metric == "l2":
        best_d = (best_d + (x * x).sum(-1, keepdim=True)).clamp_min_(0)
    elif metric == "cosine":
        best_d = best_d + 1.0
    if k == 1:
        return best_d[:, 0], best_i[:, 0]
    return best_d, best_i
