"""Beam search for additive and residual codes.

Given latents ``x`` ``(N, D)`` and K codebooks ``(K, V, D)`` of V codes each, finds indices
``(N, K)`` that make ``||x - sum_k C_k[i_k]||^2`` small. Exact minimisation is NP-hard for additive
codes (Babenko & Lempitsky, "Additive Quantization for Extreme Vector Compression", CVPR 2014,
section 3.1), so this is the usual approximation:

1. **Sequential beam** (RQ order). Codebooks are visited in order ``0 .. K-1``. Each live beam
   holds a partial sum and its residual; it is expanded with its ``candidates`` nearest codes of
   the next codebook (exact top-k from :func:`vqtok.kernels.nearest`, never a dense
   ``N x B x V`` table). The full error of every one of the ``B * candidates`` children is recomputed
   directly as ``||residual - code||^2`` (not from the ``-2xc + ||c||^2`` expansion, which cancels
   badly), and the best ``beam_width`` children survive. With ``candidates >= beam_width`` (the
   default) this keeps exactly the same beams as expanding every code of the codebook, because the
   best B children overall contain at most B children of any single parent.
2. **Optional ICM refinement** (``refine_passes``). For additive codes the order matters, so after
   the beam each codebook's index is re-optimised in turn given all the others (iterated
   conditional modes, as in LSQ: Martinez et al., "Revisiting Additive Quantization", ECCV 2016).
   A change is kept only if it lowers the exact error, so refinement never makes a row worse.

``beam_width=1`` without refinement is greedy residual encoding, i.e. residual VQ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .nearest import nearest

__all__ = ["beam_search", "decode_sum", "icm_refine"]

# Floats of scratch per row chunk for the (rows, B, candidates, D) children tensor (64 MiB).
_SCRATCH_FLOATS = 1 << 24


@torch.no_grad()
def beam_search(
    latents: Tensor,
    codebooks: Tensor,
    beam_width: int = 1,
    candidates: int | None = None,
    refine_passes: int = 0,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Encodes latents with a sum of one code per codebook by beam search.

    Args:
        latents: ``(N, D)`` queries.
        codebooks: ``(K, V, D)``: K codebooks of V codes each; the reconstruction is the sum of one
            code from each.
        beam_width: Number of partial solutions (B) kept after each codebook; 1 is greedy.
        candidates: Codes of the next codebook tried per beam; defaults to ``beam_width``, which
            already gives the same beams as trying every code. Clipped to V.
        refine_passes: Rounds of ICM refinement after the beam (each re-optimises every codebook's
            index given the others, once).
        chunk_size: Rows processed at a time; defaults to what fits a 64 MiB scratch budget.

    Returns:
        ``(errors, indices)``: ``(N,)`` fp32 squared errors of the returned reconstruction, computed as
        ``||x - sum_k codebooks[k, indices[:, k]]||^2`` summed in codebook order, and ``(N, K)`` int64
        indices.

    Raises:
        ValueError: On mismatched shapes, a non-positive beam width, candidate count or chunk size, or
            a negative number of refinement passes.
    """
    if latents.ndim != 2 or codebooks.ndim != 3 or latents.shape[1] != codebooks.shape[2]:
        raise ValueError(
            f"beam_search expects latents (N, D) and codebooks (K, V, D), got {tuple(latents.shape)} and "
            f"{tuple(codebooks.shape)}"
        )
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if refine_passes < 0:
        raise ValueError(f"refine_passes must be >= 0, got {refine_passes}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    n, dim = latents.shape
    num_books, book_size = codebooks.shape[:2]
    x = latents.float()
    books = codebooks.float()
    per_beam = min(candidates if candidates is not None else beam_width, book_size)
    rows = chunk_size or max(1, _SCRATCH_FLOATS // (beam_width * per_beam * max(dim, 1)))

    indices = torch.empty(n, num_books, dtype=torch.long, device=x.device)
    for r0 in range(0, n, rows):
        indices[r0 : r0 + rows] = _beam_chunk(x[r0 : r0 + rows], books, beam_width, per_beam)
    if refine_passes:
        _, indices = icm_refine(x, books, indices, refine_passes)
    errors = (x - decode_sum(books, indices)).square().sum(-1)
    return errors, indices


def decode_sum(codebooks: Tensor, indices: Tensor) -> Tensor:
    """Sum of the selected codes, accumulated in codebook order.

    Args:
        codebooks: ``(K, V, D)``.
        indices: ``(N, K)`` int64.

    Returns:
        ``(N, D)`` reconstruction ``sum_k codebooks[k, indices[:, k]]``.
    """
    # A fixed left-to-right sum keeps results bitwise independent of how rows are batched.
    out = codebooks[0][indices[:, 0]]
    for k in range(1, codebooks.shape[0]):
        out = out + codebooks[k][indices[:, k]]
    return out


def _beam_chunk(x: Tensor, books: Tensor, beam_width: int, per_beam: int) -> Tensor:
    """Sequential beam over codebooks for one row chunk; returns the best beam's ``(n, K)`` indices."""
    n, dim = x.shape
    residual = x[:, None, :]  # (n, b, D) with b live beams; b grows to beam_width
    chosen = torch.empty(n, 1, 0, dtype=torch.long, device=x.device)  # (n, b, k so far)
    for k in range(books.shape[0]):
        b = residual.shape[1]
        _, cand = nearest(residual.reshape(n * b, dim), books[k], k=per_beam)
        cand = cand.reshape(n, b, per_beam)
        children = residual[:, :, None, :] - books[k][cand]  # (n, b, c, D)
        errors = children.square().sum(-1).reshape(n, b * per_beam)
        keep = min(beam_width, b * per_beam)
        _, best = torch.topk(errors, keep, dim=1, largest=False, sorted=True)  # (n, keep)
        parent = best // per_beam
        residual = children.reshape(n, b * per_beam, dim).gather(1, best[:, :, None].expand(n, keep, dim))
        prefix = chosen.gather(1, parent[:, :, None].expand(n, keep, chosen.shape[2]))
        code = cand.reshape(n, b * per_beam).gather(1, best)
        chosen = torch.cat([prefix, code[:, :, None]], 2)
    return chosen[:, 0]


@torch.no_grad()
def icm_refine(x: Tensor, codebooks: Tensor, indices: Tensor, passes: int = 1) -> tuple[Tensor, Tensor]:
    """Iterated conditional modes: re-chooses each codebook's index given the others, keeping strict gains.

    Args:
        x: ``(N, D)`` vectors.
        codebooks: ``(M, K, D)``.
        indices: ``(N, M)`` starting indices.
        passes: Sweeps over the ``M`` codebooks.

    Returns:
        ``(errors (N,), indices (N, M))``: the running squared errors and the refined indices; no row's
        error increases.
    """
    indices = indices.clone()
    recon = decode_sum(codebooks, indices)
    error = (x - recon).square().sum(-1)
    for _ in range(passes):
        for m in range(codebooks.shape[0]):
            others = recon - codebooks[m][indices[:, m]]
            _, new = nearest(x - others, codebooks[m])
            new_recon = others + codebooks[m][new]
            new_error = (x - new_recon).square().sum(-1)
            better = new_error < error
            indices[:, m] = torch.where(better, new, indices[:, m])
            recon = torch.where(better[:, None], new_recon, recon)
            error = torch.where(better, new_error, error)
    return error, indices
