"""Triton kernel for :func:`vqtok.kernels.nearest` (k=1): distance GEMM fused with a running argmin.

Each program owns ``BLOCK_M`` latents and sweeps the codebook in ``BLOCK_N`` code tiles; the
``(BLOCK_M, BLOCK_N)`` distance tile lives only in registers (``tl.dot`` on tensor cores), and the
running best distance, its index and the running second-best distance are ``BLOCK_M`` registers.
Nothing of size N x K ever reaches global memory.

Products run in tf32 (fp32 inputs) or in the input dtype (bf16/fp16), accumulated in fp32. The
error of each approximate distance is bounded by ``margin = 4 u ||x|| max||c|| + D 2^-22 (||x|| max||c||
+ max||c||^2)`` (``u`` the unit roundoff of the product inputs); a latent whose best and second-best
approximate distances differ by more than ``2 * margin`` has the same winner in exact arithmetic,
every other latent (near ties, duplicate codes) is searched again by the fp32 torch path, so the
result is the fp32 argmin with the lowest index on exact ties.

Imported lazily by :func:`vqtok.kernels.nearest`, only for CUDA tensors when Triton is installed;
with ``TRITON_INTERPRET=1`` it also runs on CPU tensors (used by the tests).

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["triton_nearest"]

# Unit roundoff of the inputs the tensor cores see: tf32 and fp16 keep 10 mantissa bits, bf16 7.
_UNIT_ROUNDOFF = {torch.float32: 2.0**-11, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


@triton.jit
def _nearest_kernel(
    x_ptr,
    c_ptr,
    cn_ptr,
    best_ptr,
    second_ptr,
    index_ptr,
    n,
    num_codes,
    dim,
    stride_x,
    stride_c,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    # int64: rows * stride_x overflows int32 once N * D >= 2^31 (8 GiB of fp32 latents).
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    row_ok = rows < n
    best = tl.full((BLOCK_M,), float("inf"), tl.float32)
    second = tl.full((BLOCK_M,), float("inf"), tl.float32)
    best_idx = tl.zeros((BLOCK_M,), tl.int32)
    for c0 in range(0, num_codes, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        col_ok = cols < num_codes
        acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            d_ok = dd < dim
            x_mask = row_ok[:, None] & d_ok[None, :]
            xt = tl.load(x_ptr + rows[:, None] * stride_x + dd[None, :], mask=x_mask, other=0.0)
            # (BLOCK_D, BLOCK_N): codes as columns, so the dot needs no transpose.
            c_mask = col_ok[None, :] & d_ok[:, None]
            ct = tl.load(c_ptr + cols[None, :] * stride_c + dd[:, None], mask=c_mask, other=0.0)
            acc = tl.dot(xt, ct, acc, input_precision=INPUT_PRECISION)
        cn = tl.load(cn_ptr + cols, mask=col_ok, other=0.0)
        dist = cn[None, :] - 2.0 * acc
        dist = tl.where(col_ok[None, :], dist, float("inf"))
        # argmin keeps the first minimum on ties (lowest column).
        t_best = tl.min(dist, axis=1)
        t_arg = tl.argmin(dist, axis=1)
        t_second = tl.min(tl.where(cols[None, :] == (c0 + t_arg)[:, None], float("inf"), dist), axis=1)
        second = tl.minimum(tl.minimum(second, t_second), tl.maximum(best, t_best))
        # Strict < keeps the earlier tile on ties.
        take = t_best < best
        best_idx = tl.where(take, c0 + t_arg, best_idx)
        best = tl.minimum(best, t_best)
    tl.store(best_ptr + rows, best, mask=row_ok)
    tl.store(second_ptr + rows, second, mask=row_ok)
    tl.store(index_ptr + rows, best_idx, mask=row_ok)


def _launch(xl, cl, cn, best, second, index, n, num_codes, dim, block_m, block_n, block_d, low):
    """One launch of the kernel over ``cdiv(n, block_m)`` programs (the caller picks the device)."""
    _nearest_kernel[(triton.cdiv(n, block_m),)](
        xl,
        cl,
        cn,
        best,
        second,
        index,
        n,
        num_codes,
        dim,
        xl.stride(0),
        cl.stride(0),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        INPUT_PRECISION="tf32" if low == torch.float32 else "ieee",
    )


def triton_nearest(
    x: Tensor,
    c: Tensor,
    cn: Tensor,
    input_dtype: torch.dtype,
    tile_n: int = 128,
    tile_k: int = 128,
) -> tuple[Tensor, Tensor]:
    """Running argmin of ``cn - 2 x c^T`` with an fp32 re-check of near ties.

    Args:
        x: ``(N, D)`` fp32 latents (already normalised for cosine, already rescaled).
        c: ``(K, D)`` fp32 codes.
        cn: ``(K,)`` fp32 per-code bias (squared norms for l2, zeros for ip/cosine).
        input_dtype: The caller's dtype; bf16/fp16 inputs are multiplied in that dtype, fp32 in tf32.
        tile_n: Upper bound on latents per program (rounded to a power of two, at most 128).
        tile_k: Upper bound on codes per tile (rounded to a power of two, at most 128).

    Returns:
        ``(N,)`` fp32 ``min_j cn_j - 2 <x, c_j>`` and ``(N,)`` int64 indices.
    """
    n, dim = x.shape
    num_codes = c.shape[0]
    low = input_dtype if input_dtype in (torch.float16, torch.bfloat16) else torch.float32
    xl, cl = x.to(low).contiguous(), c.to(low).contiguous()
    best = torch.empty(n, dtype=torch.float32, device=x.device)
    second = torch.empty_like(best)
    index = torch.empty(n, dtype=torch.int32, device=x.device)
    block_m = max(16, min(128, triton.next_power_of_2(min(tile_n, max(n, 1)))))
    block_n = max(16, min(128, triton.next_power_of_2(tile_k)))
    block_d = max(16, min(64, triton.next_power_of_2(dim)))
    if n:
        # Triton launches on the current CUDA device, not the tensors' one: without this guard a
        # tensor on cuda:1 would be read by a kernel running on cuda:0.
        with torch.cuda.device(x.device):
            _launch(xl, cl, cn, best, second, index, n, num_codes, dim, block_m, block_n, block_d, low)
    index = index.long()
    # Error bound of each approximate distance (module docstring); sums of D products accumulate
    # fp32 rounding too, so the bound grows with D.
    u = _UNIT_ROUNDOFF[low]
    x_norm = x.norm(dim=-1)
    c_max = float(c.norm(dim=-1).max()) if num_codes else 0.0
    acc_err = dim * 2.0**-22
    margin = (4 * u + acc_err) * x_norm * c_max + acc_err * c_max * c_max + 1e-30
    near_tie = (second - best) <= 2 * margin
    rows = near_tie.nonzero().squeeze(1)
    if rows.numel():
        from .nearest import _search_top1

        index[rows] = _search_top1(x[rows], c, cn, 1024, 4096)[1][:, 0]
    # The winner's distance again in fp32 (O(N D)), so returned distances do not carry tf32/bf16 error.
    best = cn[index] - 2.0 * (x * c[index]).sum(-1)
    return best, index
