"""Iterated local search (ILS) for additive codes: ICM sweeps with random restarts of a few indices.

Encoding ``x`` ``(N, D)`` with one code from each of ``M`` full-dimensional codebooks is NP-hard; a
sequential beam (:mod:`vqtok.kernels.beam`) follows codebook order and is weak once the codebooks are
jointly trained and no longer residual. LSQ (Martinez et al., "Revisiting Additive Quantization", ECCV
2016; "LSQ++", ECCV 2018) encodes by local search instead:

1. **ICM sweeps.** Each codebook's index is re-chosen with the others fixed. Expanding
   ``||x - sum_m C_m[i_m]||^2``, the cost of index ``k`` of codebook ``a`` is
   ``||C_a[k]||^2 - 2 x.C_a[k] + sum_{b != a} 2 C_b[i_b].C_a[k]`` plus terms that do not depend on
   ``k``. The first two terms (``unary``, ``(N, M, K)``) are computed once per encode and the pairwise
   dot products once per codebook set (``(M, M*K, K)``), so a sweep costs ``O(M^2 K)`` per vector
   instead of ``O(M K D)`` distance evaluations: about 50x fewer operations at ``M=8, K=256, D=384``.
2. **Perturbation.** ``perturb`` randomly chosen indices of the best solution so far are set to random
   codes, ICM sweeps run again, and each row keeps whichever of the two has the lower exact error.

The perturbations are drawn from a hash of each row's bits, the seed and the round, not from a stateful
generator: a vector gets the same codes whichever batch it is encoded in, and equal vectors get equal
codes, as a deterministic encoder should.

Rows never get worse than their starting indices. When the pair table would exceed
``_PAIR_TABLE_BYTES`` (large ``K``), the sweeps fall back to exact nearest-code searches on the
partial residuals (:func:`vqtok.kernels.beam.icm_refine`), which need no table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .beam import decode_sum, icm_refine

__all__ = ["ils_refine", "pair_table"]

# Largest (M, M*K, K) fp32 pair table built (M=16, K=256 needs 64 MiB); beyond it, table-free sweeps.
_PAIR_TABLE_BYTES = 256 << 20
# Floats in one (rows, M, K) unary chunk (32 MiB).
_UNARY_FLOATS = 1 << 23


@torch.no_grad()
def ils_refine(
    x: Tensor,
    codebooks: Tensor,
    indices: Tensor,
    iters: int = 16,
    icm_sweeps: int = 4,
    perturb: int = 4,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Improves additive-code indices by ICM sweeps and ``iters`` rounds of perturb-and-sweep.

    Args:
        x: ``(N, D)`` vectors.
        codebooks: ``(M, K, D)``.
        indices: ``(N, M)`` int64 starting indices (e.g. from a beam search, or last round's codes).
        iters: Perturbation rounds after the first sweeps (0: plain ICM).
        icm_sweeps: ICM sweeps over all ``M`` codebooks per round.
        perturb: Indices per row replaced by random codes in each round (clipped to ``M``).
        seed: Varies the perturbations (e.g. per training round); codes are a function of (row, seed).

    Returns:
        ``(errors (N,), indices (N, M))``: exact squared errors ``||x - sum_m C_m[i_m]||^2`` and the
        refined indices; no row's error exceeds that of its starting indices.

    Raises:
        ValueError: On mismatched shapes, indices out of range, or negative counts.
    """
    if x.ndim != 2 or codebooks.ndim != 3 or indices.ndim != 2:
        raise ValueError(
            f"ils_refine expects x (N, D), codebooks (M, K, D), indices (N, M); got {tuple(x.shape)}, "
            f"{tuple(codebooks.shape)}, {tuple(indices.shape)}"
        )
    m, k, d = codebooks.shape
    if x.shape[1] != d or indices.shape != (x.shape[0], m):
        raise ValueError(
            f"ils_refine shape mismatch: x {tuple(x.shape)}, codebooks {tuple(codebooks.shape)}, "
            f"indices {tuple(indices.shape)}"
        )
    if min(iters, icm_sweeps, perturb) < 0:
        raise ValueError(f"iters, icm_sweeps and perturb must be >= 0, got {iters}, {icm_sweeps}, {perturb}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= k):
        raise ValueError(f"indices must lie in [0, {k}), got range [{int(indices.min())}, {int(indices.max())}]")
    x = x.float().contiguous()
    books = codebooks.float()
    indices = indices.long()
    if m == 0 or x.shape[0] == 0 or not (icm_sweeps or (iters and perturb)):
        return (x - decode_sum(books, indices)).square().sum(-1), indices.clone()
    keys = _row_keys(x, seed)
    weights = pair_table(books)
    rows = max(1, _UNARY_FLOATS // (m * k)) if weights is not None else x.shape[0]
    errors, out = [], []
    for r0 in range(0, x.shape[0], rows):
        sl = slice(r0, r0 + rows)
        sweep = _table_sweeper(x[sl], books, weights) if weights is not None else _exact_sweeper(x[sl], books)
        e, i = _ils_rows(x[sl], books, indices[sl], keys[sl], sweep, iters, icm_sweeps, min(perturb, m))
        errors.append(e)
        out.append(i)
    return torch.cat(errors), torch.cat(out)


def _ils_rows(
    x: Tensor, books: Tensor, start: Tensor, keys: Tensor, sweep, iters: int, icm_sweeps: int, perturb: int
) -> tuple[Tensor, Tensor]:
    """ILS on one row chunk; ``sweep(indices, n)`` runs ``n`` ICM sweeps."""
    m, k, _ = books.shape
    start_error = (x - decode_sum(books, start)).square().sum(-1)
    best = sweep(start, icm_sweeps)
    best_error = (x - decode_sum(books, best)).square().sum(-1)
    # ICM's argmin can only lower the cost up to rounding; keep the start where rounding made it worse.
    worse = best_error > start_error
    best = torch.where(worse[:, None], start, best)
    best_error = torch.where(worse, start_error, best_error)
    for r in range(iters if perturb else 0):
        trial = best.clone()
        rand = _hash(keys[:, None] + (r * (m + perturb) + torch.arange(m + perturb, device=x.device)) * _GOLDEN)
        which = rand[:, :m].argsort(1)[:, :perturb]  # `perturb` distinct codebooks per row
        trial.scatter_(1, which, _shr(rand[:, m:], 1) % k)
        trial = sweep(trial, icm_sweeps)
        error = (x - decode_sum(books, trial)).square().sum(-1)
        better = error < best_error
        best = torch.where(better[:, None], trial, best)
        best_error = torch.where(better, error, best_error)
    return best_error, best


def pair_table(codebooks: Tensor) -> Tensor | None:
    """Pairwise code dot products laid out for one ``embedding_bag`` per codebook, or ``None`` if too large.

    Args:
        codebooks: ``(M, K, D)``.

    Returns:
        ``(M, M*K, K)`` with ``table[a][b*K + i, k] = 2 C_b[i] . C_a[k]``: summing the rows of the other
        codebooks' chosen codes gives, for every code ``k`` of codebook ``a``, the cross term of
        ``||sum_m C_m[i_m]||^2``. ``None`` when it would exceed 256 MiB (large ``M * K``).
    """
    m, k, _ = codebooks.shape
    if m * m * k * k * 4 > _PAIR_TABLE_BYTES:
        return None
    books = codebooks.float()
    return 2 * torch.einsum("bid,akd->abik", books, books).reshape(m, m * k, k)


# splitmix64 constants as signed int64 (torch has no uint64 arithmetic); products wrap modulo 2**64.
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _shr(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (``>>`` is arithmetic on signed tensors)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _hash(z: Tensor) -> Tensor:
    """splitmix64 finaliser: int64 -> well-mixed int64, elementwise."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def _row_keys(x: Tensor, seed: int) -> Tensor:
    """``(N,)`` int64 keys from each row's float bits and the seed."""
    d = x.shape[1]
    weights = _hash(torch.arange(1, d + 1, device=x.device, dtype=torch.long) * _GOLDEN)
    bits = x.view(torch.int32).long()
    return _hash((bits * weights).sum(1) + _hash(torch.tensor(seed + 1, device=x.device, dtype=torch.long) * _GOLDEN))


def _table_sweeper(x: Tensor, books: Tensor, weights: Tensor):
    """ICM sweeps from the rows' unary terms and the pairwise code dot products ``weights`` (small ``M*K``)."""
    m, k, _ = books.shape
    unary = books.square().sum(-1) - 2 * torch.einsum("nd,mkd->nmk", x, books)  # (n, M, K)
    offsets = torch.arange(m, device=x.device) * k

    def sweep(idx: Tensor, sweeps: int) -> Tensor:
        idx = idx.clone()
        for _ in range(sweeps):
            for a in range(m):
                flat = idx + offsets
                others = torch.cat([flat[:, :a], flat[:, a + 1 :]], 1)
                if m > 1:
                    # The M-1 looked-up rows summed in one fused gather-and-add, then the unary term in place.
                    cost = F.embedding_bag(others, weights[a], mode="sum").add_(unary[:, a])
                else:
                    cost = unary[:, a]
                # min(1) ranks like argmin(1) (first minimum on ties) at ~2.5x its speed on CPU.
                idx[:, a] = cost.min(1).indices
        return idx

    return sweep


def _exact_sweeper(x: Tensor, books: Tensor):
    """ICM sweeps by exact nearest-code search on partial residuals (no table; any ``K``)."""

    def sweep(idx: Tensor, sweeps: int) -> Tensor:
        return icm_refine(x, books, idx, sweeps)[1] if sweeps else idx.clone()

    return sweep
