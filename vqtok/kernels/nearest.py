"""Exact nearest-code search whose memory is bounded by a tile, never by N x K.

Every distance is computed as a GEMM against the codebook plus a precomputed per-code bias, in tiles
of ``tile_n`` latents by ``tile_k`` codes, with a running minimum; the full ``(N, K)`` distance matrix
is never materialised, nothing is one-hot encoded and no square root is taken.

Paths:

* **CPU, k = 1, D <= 512** (default when a C++ compiler is present): a fused kernel
  (:mod:`vqtok.kernels._cpu_ext`, source ``_cpu_nearest.cpp``, compiled on first use and cached) scores
  a block of 7-8 latents against 16-32 codes at a time in vector registers, FMA by FMA, and keeps only a
  per-lane running (value, index) pair; the codebook is walked in L2-sized transposed tiles. No
  distance is ever written to memory, which is what makes small ``D`` fast (a GEMM with an inner
  dimension of 8 is bound by writing and re-reading its output). Measured on one AVX-512 core
  against the torch path: 7-9x faster at D=8, 2x at D=64, 1.2x at D=256, 1.06x at D=512, even at
  1024; above D=512 BLAS is as fast or faster and torch is kept. Latents are split between
  ``torch.get_num_threads()`` threads. Scratch: one transposed tile per thread.
* **CPU, 1 < k <= 256, D <= 512**: the same loop nest keeps each latent's k best (value, index) pairs in
  a sorted list; one vector compare against the current k-th value rejects most 16-code groups, and
  ties cost nothing extra (codes arrive in index order, so a tie never enters). The torch path below
  sorts whole tiles when a tie straddles the k-th place, which made tie-heavy data 10-20x slower than
  FAISS.
* **CPU fallback** (``k > 256``, ``D > 512``, no compiler, ``VQTOK_DISABLE_CPU_EXT=1``, or
  ``backend="torch"``) and any device without Triton: tiled ``torch.addmm`` into one preallocated
  ``(tile_n, tile_k)`` buffer (cache resident with the default tiles), a vectorised ``amin`` over
  codes, and an index search only for the latents whose running best improved in this tile, which
  after the first few tiles is a small fraction of them. ``torch.min(dim)``/``argmin`` return
  indices too but are scalar loops, about ten times slower than ``amin``.
* **Graph export** (``torch.export``, ONNX export, TorchScript tracing): one dense ``(N, K)`` GEMM and
  ``argmin``, the only path without data-dependent branches (used by ``Tokenizer.export_onnx``).
* **CUDA + Triton**: :mod:`vqtok.kernels._triton_nearest` fuses the distance GEMM (tensor cores)
  with the running argmin held in registers, then re-checks near ties in fp32 (see below).

Centring (``metric="l2"``): squared distances are translation-invariant, but ``||c||^2 - 2<x, c>`` cancels
catastrophically when the vectors sit far from the origin (with ``c = randn(1024, 8) + 1000`` only 63.5%
of fp32 argmins were right). Both sides are therefore shifted by a centre ``mu`` near the codebook mean
(the fp64 mean of at most 256 evenly spaced codes: O(D) work) before the search, on every backend (fused
CPU kernel, torch, Triton), so the error scales with the spread of the codebook, not with its offset.
``mu`` is rounded to a multiple of a power of two below the codebook's coordinate range: for data whose
spread is well above its rounding unit (anything but degenerate input) ``x - mu`` is then exact in fp32
(Sterbenz), so integer-valued inputs stay exactly representable and exact ties stay ties. Cached
``codebook_norms`` describe the uncentred codebook, so passing them keeps the uncentred search (use them
for codebooks near the origin only).

Precision policy: distances are fp32 whatever the input dtype. The CPU paths and the CUDA torch
fallback compute products in fp32 (inputs are upcast); the fused CPU kernel sums the products in a
different order than BLAS, so the two CPU paths can disagree on fp32 near-ties, never elsewhere.
The Triton path computes products in tf32 (fp32 inputs) or in the input dtype (bf16/fp16) with fp32
accumulation, and also tracks the second-best distance of each latent; every latent whose best and
second-best approximate distances are closer than a proven bound on the low-precision error is
searched again with the fp32 torch path. The returned index is therefore always the argmin of fp32
distances: it is the exact argmin except when two codes are within fp32 rounding of each other (tested against fp64).

Ties: when several codes have the same computed distance, the **lowest index** wins (for ``k > 1``,
ties are ordered by index too).

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cpu_ext
from ._nearest_prep import check_args, finish, prepare

__all__ = ["nearest"]

# Largest D for which "auto" picks the fused CPU kernel: above it BLAS's GEMM is as fast or faster
# (kernel time / torch time measured 0.83 at D=256, 0.94 at 512, 0.98 at 1024, 1.5 at 2048).
_EXT_MAX_DIM = 512
# Largest k for which "auto" picks the fused CPU top-k: each insertion into a row's sorted list costs O(k).
_EXT_MAX_K = 256
_TORCH_TILE_K = 2048
# Above this fraction of improving latents in a tile, one dense argmin is cheaper than a gather.
_DENSE_FRACTION = 0.25


@torch.no_grad()
def nearest(
    latents: Tensor,
    codebook: Tensor,
    metric: str = "l2",
    k: int = 1,
    tile_n: int = 512,
    tile_k: int | None = None,
    *,
    codebook_norms: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Finds the exact nearest codebook rows of each latent.

    Scratch memory is one ``tile_n * tile_k`` fp32 buffer (4 MiB with the defaults) for the torch path
    (``k > 1``: plus an int64 sort key of the tile and its int32 source, 12 MiB more),
    one transposed tile of about 256 KiB per thread for the fused CPU kernel, plus ``O(N k + K)``; if
    the inputs are not fp32 and contiguous, an fp32 copy of them is made (``O((N + K) D)``).

    Args:
        latents: ``(N, D)`` queries, any float dtype.
        codebook: ``(K, D)`` codes, any float dtype.
        metric: ``"l2"`` (squared euclidean), ``"cosine"`` (1 - cosine similarity) or ``"ip"``
            (negative inner product, so that smaller is always better).
        k: Number of neighbours to return.
        tile_n: Latents per tile of the torch path. When ``N < tile_n`` the code tile grows so that
            the buffer keeps the same size (small batches against big codebooks tile over K only).
        tile_k: Codes per tile. ``None``: 2048 for the torch path, about 256 KiB of transposed codes
            for the fused CPU kernel.
        codebook_norms: Optional ``(K,)`` cached squared norms ``(codebook.float() ** 2).sum(-1)``
            for ``metric="l2"``, so callers searching one codebook many times compute them once.
            They turn off the centring (module docstring): pass them only for codebooks near the
            origin. Ignored for the other metrics.
        backend: ``"auto"`` (Triton for CUDA tensors when it is installed; the fused kernel for CPU
            tensors with ``k <= 256`` and ``D <= 512`` when it compiles; torch otherwise), ``"torch"``,
            ``"triton"`` (k = 1) or ``"cpu_ext"`` (CPU, any k and D). ``VQTOK_DISABLE_TRITON=1`` /
            ``VQTOK_DISABLE_CPU_EXT=1`` keep ``"auto"`` off either.

    Returns:
        ``(distances, indices)``, each ``(N,)`` when ``k == 1`` else ``(N, k)`` sorted from nearest;
        distances in the metric above (fp32), indices int64. Exact ties go to the lowest index.

    Raises:
        ValueError: On mismatched shapes, an unknown metric or backend, ``k`` out of range, bad tile
            sizes, non-finite (NaN/Inf) inputs, or ``backend="cpu_ext"`` with CUDA tensors.
        RuntimeError: With ``backend="cpu_ext"`` when the kernel cannot be built.
    """
    if _in_graph_export():
        return _graph_nearest(latents, codebook, metric, k)
    check_args(latents, codebook, metric, k, tile_n, tile_k, backend)
    x, c, cn, scale = prepare(latents, codebook, metric, codebook_norms)
    use_triton = backend == "triton" or (backend == "auto" and x.is_cuda and k == 1 and _triton_ok())
    if backend == "cpu_ext" and x.device.type != "cpu":
        raise ValueError("backend='cpu_ext' needs CPU tensors")
    if backend == "cpu_ext" or (backend == "auto" and auto_cpu_ext(x.device, x.shape[1], k)):
        if k == 1:
            best_d, best_i = _cpu_ext.ext_search(x, c, cn, tile_k)
            best_d, best_i = best_d[:, None], best_i[:, None]
        else:
            best_d, best_i = _cpu_ext.ext_topk(x, c, cn, k, tile_k)
    elif use_triton:
        if k != 1:
            raise ValueError("backend='triton' supports k=1 only")
        from ._triton_nearest import triton_nearest

        best_d, best_i = triton_nearest(x, c, cn, latents.dtype, tile_n=tile_n, tile_k=tile_k or _TORCH_TILE_K)
        best_d, best_i = best_d[:, None], best_i[:, None]
    elif x.shape[0] == 0:
        best_d = x.new_empty(0, k)
        best_i = torch.empty(0, k, dtype=torch.long, device=x.device)
    elif k == 1:
        best_d, best_i = _search_top1(x, c, cn, tile_n, tile_k or _TORCH_TILE_K)
    else:
        best_d, best_i = _search_topk(x, c, cn, k, tile_n, tile_k or _TORCH_TILE_K)
    best_d = finish(best_d, x, metric, scale)
    if k == 1:
        return best_d[:, 0], best_i[:, 0]
    return best_d, best_i


def _in_graph_export() -> bool:
    """True while torch.export / the ONNX exporter / TorchScript trace a model (``Tokenizer.export_onnx``).

    The paths below branch on data (tile improvements, rescaling, finiteness checks), which a traced graph
    would freeze to the example's values; exported graphs take the dense path instead.
    """
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return bool(exporting and exporting()) or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _graph_nearest(latents: Tensor, codebook: Tensor, metric: str, k: int) -> tuple[Tensor, Tensor]:
    """Dense ``(N, K)`` search in graph-friendly ops; same distances, same lowest-index tie rule for k = 1."""
    x, c = latents.float(), codebook.float()
    if metric == "cosine":
        x, c = F.normalize(x, dim=-1), F.normalize(c, dim=-1)
    scores = -2.0 * (x @ c.T)
    if metric == "l2":
        scores = scores + (c * c).sum(-1)
    if k == 1:
        best_i = scores.argmin(dim=1, keepdim=True)  # first minimum: the lowest index wins ties
        best_d = scores.gather(1, best_i)
    else:
        best_d, best_i = torch.topk(scores, k, dim=1, largest=False, sorted=True)
    best_d = finish(best_d, x, metric, 1.0)
    return (best_d[:, 0], best_i[:, 0]) if k == 1 else (best_d, best_i)


def auto_cpu_ext(device: torch.device, dim: int, k: int) -> bool:
    """Whether ``backend="auto"`` runs the fused CPU kernel for this device, dimension and ``k``."""
    return device.type == "cpu" and k <= _EXT_MAX_K and dim <= _EXT_MAX_DIM and _cpu_ext.available()


def _tiles(n: int, num_codes: int, tile_n: int, tile_k: int) -> tuple[int, int]:
    tn = min(n, tile_n)
    # Keep the buffer size when there are few latents: tile over the codes instead.
    tk = min(num_codes, max(tile_k, (tile_n * tile_k) // max(tn, 1)))
    return tn, tk


def _search_top1(x: Tensor, c: Tensor, cn: Tensor, tile_n: int, tile_k: int) -> tuple[Tensor, Tensor]:
    """Running argmin of ``cn - 2 x c^T``; returns ``(N, 1)`` distances and indices."""
    n, num_codes = x.shape[0], c.shape[0]
    tn, tk = _tiles(n, num_codes, tile_n, tile_k)
    # On CPU the index search runs only on the latents that improved; the data-dependent gather
    # needs a host sync per tile, so CUDA takes the dense branch.
    sparse = x.device.type == "cpu"
    buf = x.new_empty(tn * tk)
    tile_min = x.new_empty(tn)
    # Descending column weights: the amax of weights over the columns equal to the row minimum is
    # the first such column, in vectorised passes (argmin is a scalar loop, ~10x slower than amin).
    weights = torch.arange(tk, 0, -1, dtype=torch.float32, device=x.device)
    best_d = x.new_empty(n)
    best_i = torch.empty(n, dtype=torch.long, device=x.device)
    for r0 in range(0, n, tn):
        xr = x[r0 : r0 + tn]
        m = xr.shape[0]
        run_d = best_d[r0 : r0 + m].fill_(float("inf"))
        run_i = best_i[r0 : r0 + m].zero_()
        tmin = tile_min[:m]
        for c0 in range(0, num_codes, tk):
            kk = min(tk, num_codes - c0)
            d = torch.addmm(cn[c0 : c0 + kk], xr, c[c0 : c0 + kk].T, alpha=-2.0, out=buf[: m * kk].view(m, kk))
            torch.amin(d, 1, out=tmin)
            # Strict < keeps the earlier tile on ties and the first equal column is taken within a
            # tile, so the lowest index wins.
            better = tmin < run_d
            if sparse:
                rows = better.nonzero().squeeze(1)
                if rows.numel() == 0:
                    continue
                if rows.numel() <= _DENSE_FRACTION * m:
                    run_i[rows] = _first_equal(d[rows], tmin[rows], weights[:kk]) + c0
                    run_d[rows] = tmin[rows]
                    continue
            arg = _first_equal(d, tmin, weights[:kk]) + c0
            run_i.copy_(torch.where(better, arg, run_i))
            torch.minimum(run_d, tmin, out=run_d)
    return best_d[:, None], best_i[:, None]


def _first_equal(d: Tensor, row_min: Tensor, weights: Tensor) -> Tensor:
    """Column of the first occurrence of ``row_min`` in each row of ``d`` ``(m, kk)``; ``(m,)`` int64.

    Overwrites ``d`` (a scratch tile) to avoid allocating: 1.0 where equal, times the weights.
    """
    hit = d.eq_(row_min[:, None]).mul_(weights)
    return (weights[0] - hit.amax(1)).long()


def _search_topk(x: Tensor, c: Tensor, cn: Tensor, k: int, tile_n: int, tile_k: int) -> tuple[Tensor, Tensor]:
    """Running top-k of ``cn - 2 x c^T`` ordered by (distance, index); returns ``(N, k)`` each."""
    n, num_codes = x.shape[0], c.shape[0]
    tn, tk = _tiles(n, num_codes, tile_n, tile_k)
    buf = x.new_empty(tn * tk)
    best_d = x.new_empty(n, k)
    best_i = torch.empty(n, k, dtype=torch.long, device=x.device)
    for r0 in range(0, n, tn):
        xr = x[r0 : r0 + tn]
        m = xr.shape[0]
        run_d = x.new_full((m, 0), float("inf"))
        run_i = torch.empty(m, 0, dtype=torch.long, device=x.device)
        for c0 in range(0, num_codes, tk):
            kk = min(tk, num_codes - c0)
            d = torch.addmm(cn[c0 : c0 + kk], xr, c[c0 : c0 + kk].T, alpha=-2.0, out=buf[: m * kk].view(m, kk))
            ke = min(k, kk)
            td, ti = _tile_topk(d, ke)
            # Running entries all have lower indices than this tile's, and both blocks are ordered by
            # (distance, index), so a stable sort by distance keeps that order.
            cand_d = torch.cat([run_d, td], 1)
            cand_i = torch.cat([run_i, ti + c0], 1)
            cand_d, order = torch.sort(cand_d, dim=1, stable=True)
            run_d, run_i = cand_d[:, :k], cand_i.gather(1, order[:, :k])
        best_d[r0 : r0 + m] = run_d
        best_i[r0 : r0 + m] = run_i
    return best_d, best_i


def _tile_topk(d: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest of each row of ``(m, kk)`` fp32 ordered by (value, column), by one int64 ``topk``.

    Each entry becomes a unique int64 key: its fp32 bits mapped to an int32 of the same order in the high
    word, its column in the low word. Ties are thus ordered by column in a single ``topk``; a float
    ``topk`` picks arbitrary members of a tie, and redoing tied rows with a stable sort made tie-heavy
    data (integer or binary codes) 2-3x slower still.
    """
    bits = (d + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0, which must tie with it
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: flip all but the sign bit
    key = bits.long()
    del bits
    key <<= 32
    key |= torch.arange(d.shape[1], device=d.device)
    ti = torch.topk(key, k, dim=1, largest=False, sorted=True).indices
    return d.gather(1, ti), ti


def _triton_ok() -> bool:
    if os.environ.get("VQTOK_DISABLE_TRITON", "0") == "1":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
