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

``scoring="dense"`` ranks all ``B * K`` children instead (the offline vector codecs, ``K <= 4096``): from
lookup tables when the pair table of :func:`vqtok.kernels.local_search.pair_table` is small, as faiss's
``ResidualQuantizer`` does with its beam LUT (the error of appending code ``k`` of codebook ``m`` to a beam with
codes ``i_j`` and error ``e`` is ``e + ||C_m[k]||^2 - 2 x.C_m[k] + sum_{j<m} 2 C_j[i_j].C_m[k]``: no residual is
formed), otherwise by :func:`beam_step` on carried residuals, which beam-aware training also calls per stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .nearest import nearest

__all__ = ["beam_search", "beam_step", "decode_sum", "icm_refine"]

# Floats of scratch per row chunk for the (rows, B, candidates, D) children tensor (64 MiB).
_SCRATCH_FLOATS = 1 << 24
# Floats in one (rows, B, K) table chunk of dense scoring (32 MiB).
_TABLE_FLOATS = 1 << 23


@torch.no_grad()
def beam_search(
    latents: Tensor,
    codebooks: Tensor,
    beam_width: int = 1,
    candidates: int | None = None,
    refine_passes: int = 0,
    chunk_size: int | None = None,
    scoring: str = "nearest",
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
        scoring: How children are scored. ``"nearest"``: each beam's ``candidates`` nearest codes by
            :func:`nearest` (for large codebooks: never an ``N x B x V`` table). ``"dense"``: every child of
            every beam, ranked exactly as faiss's ``ResidualQuantizer`` does, from lookup tables when the pair
            table is small, otherwise by :func:`beam_step` (for the offline codecs' ``V <= 4096``);
            ``candidates`` is then unused.

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
    if scoring not in ("nearest", "dense"):
        raise ValueError(f"scoring must be 'nearest' or 'dense', got {scoring!r}")

    n, dim = latents.shape
    num_books, book_size = codebooks.shape[:2]
    x = latents.float()
    books = codebooks.float()
    per_beam = min(candidates if candidates is not None else beam_width, book_size)
    rows = chunk_size or max(1, _SCRATCH_FLOATS // (beam_width * per_beam * max(dim, 1)))

    indices = torch.empty(n, num_books, dtype=torch.long, device=x.device)
    if scoring == "dense":
        indices = _dense_beam(x, books, beam_width, chunk_size or 4096)
    else:
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


@torch.no_grad()
def beam_step(residual: Tensor, codes: Tensor, book: Tensor, beam_width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Extends every beam by one code of ``book`` and keeps the ``beam_width`` best children per row.

    Args:
        residual: ``(N, B, D)`` residuals of the live beams.
        codes: ``(N, B, m)`` int64 codes chosen so far.
        book: ``(K, D)`` codebook of the next stage.
        beam_width: Beams kept per row.

    Returns:
        ``(residual, codes, errors)``: ``(N, B', D)``, ``(N, B', m + 1)`` and ``(N, B')`` squared
        errors, ``B' = min(beam_width, B * K)``, beams sorted best first.
    """
    n, b, d = residual.shape
    k = book.shape[0]
    keep = min(beam_width, b * k)
    norms = book.square().sum(1)
    rows = max(1, _TABLE_FLOATS // (b * k))
    out_res = residual.new_empty(n, keep, d)
    out_codes = codes.new_empty(n, keep, codes.shape[2] + 1)
    out_err = residual.new_empty(n, keep)
    for r0 in range(0, n, rows):
        r = residual[r0 : r0 + rows]
        c = codes[r0 : r0 + rows]
        nr = r.shape[0]
        # ||r - c||^2 for all B * K children; cancellation only perturbs near-ties, and the kept residuals
        # are recomputed exactly below.
        table = (r.square().sum(-1, keepdim=True) + norms) - 2 * (r @ book.T)
        err, best = torch.topk(table.reshape(nr, b * k), keep, dim=1, largest=False, sorted=True)
        parent, code = best // k, best % k
        out_res[r0 : r0 + rows] = r.gather(1, parent[:, :, None].expand(nr, keep, d)) - book[code]
        prefix = c.gather(1, parent[:, :, None].expand(nr, keep, c.shape[2]))
        out_codes[r0 : r0 + rows] = torch.cat([prefix, code[:, :, None]], 2)
        out_err[r0 : r0 + rows] = err
    return out_res, out_codes, out_err


def _dense_beam(x: Tensor, codebooks: Tensor, beam_width: int, batch_size: int) -> Tensor:
    """``scoring="dense"``: every child of every beam ranked; returns ``(N, M)`` indices of the best beam."""
    # local_search builds on this module (decode_sum, icm_refine), so its pair table is imported here.
    from .local_search import pair_table

    n = x.shape[0]
    num_books, k = codebooks.shape[:2]
    idx = torch.empty(n, num_books, dtype=torch.long, device=x.device)
    table = pair_table(codebooks)
    if table is not None:
        norms = codebooks.square().sum(-1)  # (M, K)
        offsets = torch.arange(num_books, device=x.device) * k
        rows = max(1, min(batch_size, _TABLE_FLOATS // (beam_width * k)))
        for r0 in range(0, n, rows):
            idx[r0 : r0 + rows] = _beam_lut(x[r0 : r0 + rows], codebooks, norms, table, offsets, beam_width)
        return idx
    for r0 in range(0, n, batch_size):
        res = x[r0 : r0 + batch_size, None, :]
        codes = torch.empty(res.shape[0], 1, 0, dtype=torch.long, device=x.device)
        for m in range(num_books):
            res, codes, _ = beam_step(res, codes, codebooks[m], beam_width)
        idx[r0 : r0 + batch_size] = codes[:, 0]
    return idx


def _beam_lut(x: Tensor, books: Tensor, norms: Tensor, table: Tensor, offsets: Tensor, beam_width: int) -> Tensor:
    """Beam search for one row chunk, children scored from lookup tables; returns ``(n, M)`` indices."""
    n = x.shape[0]
    num_books, k = books.shape[:2]
    unary = norms - 2 * torch.einsum("nd,mkd->nmk", x, books)  # (n, M, K)
    err = x.square().sum(-1, keepdim=True)  # (n, B) errors of the live beams
    codes = torch.empty(n, 1, 0, dtype=torch.long, device=x.device)
    for m in range(num_books):
        b = codes.shape[1]
        if m:
            prefix = (codes + offsets[:m]).reshape(n * b, m)
            scores = F.embedding_bag(prefix, table[m], mode="sum").view(n, b, k)
            scores.add_(unary[:, None, m]).add_(err[:, :, None])  # in place: this (n, b, K) add is memory-bound
        else:
            scores = err[:, :, None] + unary[:, None, m]  # (n, 1, K)
        keep = min(beam_width, b * k)
        err, best = torch.topk(scores.reshape(n, b * k), keep, dim=1, largest=False, sorted=True)
        parent, code = best // k, best % k
        codes = torch.cat([codes.gather(1, parent[:, :, None].expand(n, keep, m)), code[:, :, None]], 2)
    return codes[:, 0]
