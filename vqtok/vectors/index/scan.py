"""The search kernels of :class:`vqtok.vectors.index.Index`: probe lists, score codes from lookup tables, re-rank.

Everything is expressed as a distance where smaller is better: squared L2, or the negated inner product for the
``"ip"`` and ``"cosine"`` metrics (the index negates back before returning). For a probed list with centroid ``c``:

* L2: ``||q - c - r_hat||^2 = ||q - c||^2 + sum_m (-2 <q, C_m[i_m]> + T_c[m, i_m]) (+ ||r_hat||^2)``, where
  ``||q - c||^2`` comes with the probe, ``<q, C>`` is one inner-product table per query shared by all its lists, and
  ``T_c = 2 <c, C> + ||C||^2 (PQ)`` is one table per list computed once (faiss's "precomputed tables"); additive
  codecs add the stored float32 norm ``||r_hat||^2`` instead of ``||C||^2``;
* inner product: ``-<q, c> - sum_m iplut(q)[m, i_m]``, one table per query shared by all its lists.

With the compiled kernel (:mod:`vqtok.kernels.adc_scan`) each query walks its probed lists summing table entries
over the packed codes into a running top-k heap, as faiss does. Without it (no compiler, or
``VQTOK_DISABLE_CPU_EXT=1``) lists are visited one at a time with all the queries that probe them, so every
operation is a batched torch gather; both give the same distances and, but for exact ties, the same rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...kernels import nearest
from ...kernels.adc_scan import (
    fastscan_available,
    fastscan_pack,
    ivf_adc_scan,
    ivf_fastscan,
    rerank_rows,
    scan_available,
)
from ...kernels.ivf_prepare import ivf_prepare, prepare_available
from ..pq import PQ
from ..search import unpack_chunk
from .refine import exact_scores

__all__ = ["probe", "rerank", "scan_lists"]

# Queries scanned together (their (M, K) tables are built at once).
_QUERY_BATCH = 256
# Search probes of at most this many (query, centroid) pairs are scored with one GEMM (64 MiB of distances).
_PROBE_GEMM = 1 << 24
# Fast scan: approximate candidates re-scored exactly per requested neighbour.
FASTSCAN_CANDIDATES = 2


def probe(queries: Tensor, coarse: Tensor | None, nprobe: int, metric: str) -> tuple[Tensor, Tensor]:
    """The ``nprobe`` best lists per query: ``(coarse distances (Q, P), lists (Q, P))``; one list without IVF."""
    if coarse is None:
        return torch.zeros(queries.shape[0], 1), torch.zeros(queries.shape[0], 1, dtype=torch.long)
    p = min(nprobe, coarse.shape[0])
    if queries.shape[0] * coarse.shape[0] <= _PROBE_GEMM:
        # A few hundred queries against the centroids is one small GEMM: BLAS is several times faster here than the
        # fused nearest-code kernel, which is built for many latents against small codes.
        ip = queries @ coarse.T
        if metric == "l2":
            d = (queries.square().sum(1, keepdim=True) + coarse.square().sum(1)[None] - 2 * ip).clamp_min_(0)
        else:
            d = -ip
        return torch.topk(d, p, dim=1, largest=False, sorted=True)
    d, lists = nearest(queries, coarse, "l2" if metric == "l2" else "ip", k=p)
    return d.view(-1, p), lists.view(-1, p)


def _tables(index, q: Tensor, coarse_d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(per-query tables (Q, M, K), per-list tables (L, M, K), qterm (Q, P))`` in distance form."""
    ip = index.codec.inner_product_tables(q).cpu()
    if index.metric != "l2":
        return -ip, torch.zeros(1, 1, 1), coarse_d  # nearest's "ip" distance is -<q, c>
    qterm = coarse_d if index.coarse is not None else q.square().sum(-1, keepdim=True)  # ||q - c||^2
    return -2 * ip, index.residual_tables(), qterm


@torch.no_grad()
def scan_lists(index, queries: Tensor, k: int, nprobe: int, use_kernel: bool | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest distances over the probed lists: ``(distances (Q, k), rows (Q, k))``, rows -1 if fewer.

    ``use_kernel``: ``None`` uses the compiled scan when it is available (codes only), ``False`` the torch path.
    """
    if use_kernel is None:
        fast = getattr(index, "fast_scan", False)
        use_kernel = index.codec is not None and (fastscan_available() if fast else scan_available())
    if use_kernel:
        return _scan_kernel(index, queries, k, nprobe)
    store = index.lists
    out_d, out_r = [], []
    for b0 in range(0, queries.shape[0], _QUERY_BATCH):
        q = queries[b0 : b0 + _QUERY_BATCH]
        coarse_d, lists = probe(q, index.coarse, nprobe, index.metric)
        qn, p = lists.shape
        if index.codec is not None:
            per_query, per_list, qterm = _tables(index, q, coarse_d)
        buf_d = torch.full((qn, p, k), float("inf"))
        buf_r = torch.full((qn, p, k), -1, dtype=torch.long)
        for lst in torch.unique(lists).tolist():
            s, e = store.list_rows(lst)
            if e == s:
                continue
            qi, slot = torch.nonzero(lists == lst, as_tuple=True)
            if index.codec is None:
                x = store.payloads["codes"][s:e]
                d = -(q[qi] @ x.T)
                if index.metric == "l2":
                    d = 2 * d + q[qi].square().sum(-1)[:, None] + x.square().sum(-1)[None]
            else:
                idx = unpack_chunk(index.codec, store.payloads["codes"][s:e]).cpu()  # (n, M)
                sel = per_query[qi] + (per_list[lst] if per_list.shape[0] > 1 else per_list[0])  # (qn, M, K)
                d = sel.gather(2, idx.T[None].expand(len(qi), *idx.T.shape)).sum(1) + qterm[qi, slot][:, None]
                if "norms" in store.payloads:
                    d += store.payloads["norms"][s:e][None]
            kk = min(k, e - s)
            dd, ii = torch.topk(d, kk, dim=1, largest=False, sorted=True)
            buf_d[qi, slot, :kk] = dd
            buf_r[qi, slot, :kk] = ii + s
        best, order = torch.topk(buf_d.view(qn, p * k), min(k, p * k), dim=1, largest=False, sorted=True)
        out_d.append(best)
        out_r.append(buf_r.view(qn, p * k).gather(1, order))
    return torch.cat(out_d), torch.cat(out_r)


def _scan_kernel(index, queries: Tensor, k: int, nprobe: int) -> tuple[Tensor, Tensor]:
    store = index.lists
    norms = store.payloads.get("norms")
    out_d, out_r = [], []
    for b0 in range(0, queries.shape[0], _QUERY_BATCH):
        q = queries[b0 : b0 + _QUERY_BATCH]
        if isinstance(index.codec, PQ) and prepare_available():
            # One compiled call per thread instead of the torch probe and tables (same values, summed in another
            # order): no small multi-threaded torch operations on the search path.
            metric = "l2" if index.metric == "l2" else "ip"
            lists, qterm, per_query = ivf_prepare(q, index.coarse, nprobe, metric, index.codec.codebooks.cpu())
            per_list = index.residual_tables() if metric == "l2" else None
        else:
            coarse_d, lists = probe(q, index.coarse, nprobe, index.metric)
            per_query, per_list, qterm = _tables(index, q, coarse_d)
        operands = (
            per_query.float().contiguous(),
            per_list.float().contiguous() if index.metric == "l2" else None,
            qterm.float().contiguous(),
            lists.contiguous(),
            store.payloads["codes"].contiguous(),
        )
        if getattr(index, "fast_scan", False):
            packed = store.derived("fastscan", lambda s: fastscan_pack(s.payloads["codes"], s.offsets))
            d, r = ivf_fastscan(*operands, store.offsets, k, FASTSCAN_CANDIDATES * k, packed=packed)
        else:
            norms_ = None if norms is None else norms.float().contiguous()
            d, r = ivf_adc_scan(*operands, norms_, store.offsets.contiguous(), index.codec.codebook_bits, k)
        out_d.append(d)
        out_r.append(r)
    return torch.cat(out_d), torch.cat(out_r)


@torch.no_grad()
def rerank(index, queries: Tensor, rows: Tensor, k: int, use_kernel: bool | None = None) -> tuple[Tensor, Tensor]:
    """Re-scores candidate ``rows`` ``(Q, C)`` (-1: none) with the refine payload; keeps the ``k`` best.

    ``use_kernel``: ``None`` uses the compiled loop when available (:func:`vqtok.kernels.adc_scan.rerank_rows`),
    ``False`` the torch path.
    """
    if scan_available() if use_kernel is None else use_kernel:
        metric = "l2" if index.metric == "l2" else "ip"
        stored = index.lists.payloads["refine"].contiguous()
        if index.sq8 is None:
            return rerank_rows(queries.contiguous(), rows.contiguous(), min(k, rows.shape[1]), metric, flat=stored)
        scale = (index.sq8.vdiff / 255).float().contiguous()
        offset = (index.sq8.vmin + 0.5 * scale).float().contiguous()
        sq8 = (stored, scale, offset)
        return rerank_rows(queries.contiguous(), rows.contiguous(), min(k, rows.shape[1]), metric, sq8=sq8)
    stored = index.lists.payloads["refine"][rows.clamp_min(0)]  # (Q, C, D) uint8 or float32
    vectors = index.sq8.decode(stored) if index.sq8 is not None else stored.float()
    d = exact_scores(queries, vectors, index.metric)
    d = d if index.metric == "l2" else -d
    d = torch.where(rows >= 0, d, torch.full_like(d, float("inf")))
    best, order = torch.topk(d, min(k, d.shape[1]), dim=1, largest=False, sorted=True)
    return best, rows.gather(1, order)
