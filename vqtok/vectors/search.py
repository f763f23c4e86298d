"""Asymmetric distance computation (ADC) k-NN search over encoded vectors.

Queries stay in float; database vectors are known only by their indices. Each query gets a
``(M, K)`` lookup table (see :meth:`VectorCodec.lookup_tables`), so the distance to a database vector
is ``M`` table lookups, with no decoding (Jégou et al., TPAMI 2011, section 4). Additive codecs also
need ``||x_hat||^2`` per database vector; :class:`ADCIndex` keeps it as one float32 per vector (as faiss's
``ST_norm_float``), computed once when vectors are added.

:class:`ADCIndex` stores the packed codes only (``code_size`` bytes per vector, plus 4 for additive codecs);
:func:`adc_search_packed` unpacks them a chunk of the database at a time during the scan.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import VectorCodec

__all__ = ["ADCIndex", "adc_distances", "adc_search", "adc_search_packed", "database_term", "unpack_chunk"]

# Database vectors unpacked and scored at a time (bounds the int64 scratch to rows * M * 8 bytes).
_SCAN_ROWS = 1 << 15


def database_term(codec: VectorCodec, indices: Tensor, batch_size: int = 16384) -> Tensor:
    """``||decode(indices)||^2`` per row for additive codecs, zeros for product codecs: ``(N,)`` float32."""
    if not codec.additive:
        return torch.zeros(indices.shape[0], device=indices.device)
    parts = [codec.decode(indices[i : i + batch_size]).square().sum(-1) for i in range(0, indices.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, device=indices.device)


def unpack_chunk(codec: VectorCodec, packed: Tensor) -> Tensor:
    """``(n, code_size)`` uint8 codes -> ``(n, M)`` int64 indices on the codec's device (8-bit codes: a cast)."""
    if codec.codebook_bits == 8:
        return packed.to(codec.device, torch.long)
    return codec.unpack(packed)


@torch.no_grad()
def adc_distances(lut: Tensor, indices: Tensor) -> Tensor:
    """Sums lookup-table entries: ``out[q, n] = sum_m lut[q, m, indices[n, m]]``.

    Args:
        lut: ``(Q, M, K)``.
        indices: ``(N, M)`` int64.

    Returns:
        ``(Q, N)`` float32.
    """
    q, m, _ = lut.shape
    out = torch.zeros(q, indices.shape[0], device=lut.device)
    for j in range(m):
        out += lut[:, j, indices[:, j]]
    return out


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return k


@torch.no_grad()
def adc_search(
    codec: VectorCodec,
    indices: Tensor,
    queries: Tensor | np.ndarray,
    k: int = 10,
    database_term: Tensor | None = None,
    query_batch: int = 256,
) -> tuple[Tensor, Tensor]:
    """Exhaustive ADC k-NN in squared L2 over unpacked indices.

    Args:
        codec: A fitted codec.
        indices: ``(N, M)`` database indices.
        queries: ``(Q, D)`` float queries (``Q = 0`` gives ``(0, k)`` results).
        k: Neighbours per query (clipped to ``N``).
        database_term: Optional precomputed ``(N,)`` additive term (``||x_hat||^2`` for additive codecs).
        query_batch: Queries per chunk (bounds the ``(chunk, N)`` scratch).

    Returns:
        ``(distances, ids)``, each ``(Q, k)``: estimated squared L2 distances, ascending, and int64 row
        positions in ``indices``.

    Raises:
        ValueError: If ``k < 1`` or the database is empty.
    """
    indices = codec.check_indices(indices)
    _check_k(k)
    if indices.shape[0] == 0:
        raise ValueError(f"need a non-empty database, got {indices.shape[0]} vectors")
    queries = codec.check_vectors(queries)
    k = min(k, indices.shape[0])
    db = globals()["database_term"](codec, indices) if database_term is None else database_term.to(indices.device)
    lut, qterm = codec.lookup_tables(queries)
    dists, ids = [torch.zeros(0, k, device=lut.device)], [torch.zeros(0, k, dtype=torch.long, device=lut.device)]
    for i in range(0, lut.shape[0], query_batch):
        d = adc_distances(lut[i : i + query_batch], indices) + db[None] + qterm[i : i + query_batch, None]
        dd, ii = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(dd)
        ids.append(ii)
    return torch.cat(dists), torch.cat(ids)


@torch.no_grad()
def adc_search_packed(
    codec: VectorCodec,
    packed: Tensor,
    lut: Tensor,
    k: int,
    db_term: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` smallest ``sum_m lut[q, m, i_m] + db_term`` over packed codes, unpacking a chunk at a time.

    Args:
        codec: The codec that wrote ``packed``.
        packed: ``(N, code_size)`` uint8 codes (CPU or the codec's device).
        lut: ``(Q, M, K)`` lookup tables (query terms not included).
        k: Neighbours per query, ``1 <= k <= N``.
        db_term: Optional ``(N,)`` per-vector term.

    Returns:
        ``(distances, rows)``, each ``(Q, k)``, ascending; rows index ``packed``.
    """
    q = lut.shape[0]
    best_d = torch.full((q, 0), float("inf"), device=lut.device)
    best_i = torch.zeros(q, 0, dtype=torch.long, device=lut.device)
    for r0 in range(0, packed.shape[0], _SCAN_ROWS):
        idx = unpack_chunk(codec, packed[r0 : r0 + _SCAN_ROWS])
        d = adc_distances(lut, idx)
        if db_term is not None:
            d += db_term[r0 : r0 + _SCAN_ROWS].to(d.device)[None]
        kk = min(k, d.shape[1])
        dd, ii = torch.topk(d, kk, dim=1, largest=False, sorted=True)
        best_d, order = torch.topk(torch.cat([best_d, dd], 1), min(k, best_d.shape[1] + kk), 1, largest=False)
        best_i = torch.cat([best_i, ii + r0], 1).gather(1, order)
    return best_d, best_i


class ADCIndex:
    """A flat (exhaustive) ADC index: stores packed codes only, searches with lookup tables.

    Example:
        >>> index = ADCIndex(PQ(384, 8).fit(train))
        >>> index.add(database)
        >>> distances, ids = index.search(queries, k=10)
    """

    def __init__(self, codec: VectorCodec) -> None:
        """Args:
        codec: A fitted codec.
        """
        codec.require_fitted()
        self.codec = codec
        self.packed = torch.zeros(0, codec.code_size, dtype=torch.uint8)
        # ||x_hat||^2 of additive codecs (4 bytes per vector, like faiss's ST_norm_float); empty for PQ/OPQ.
        self._db_term = torch.zeros(0, device=codec.device)

    def __len__(self) -> int:
        return self.packed.shape[0]

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector: the packed code, plus a float32 norm for additive codecs."""
        return self.codec.code_size + (4 if self.codec.additive else 0)

    def add(self, x: Tensor | np.ndarray) -> None:
        """Encodes and appends vectors; their ids continue from ``len(self)``.

        Args:
            x: ``(N, D)`` vectors.
        """
        self.add_indices(self.codec.encode(x))

    def add_indices(self, indices: Tensor) -> None:
        """Appends already-encoded vectors.

        Args:
            indices: ``(N, M)`` indices.
        """
        indices = self.codec.check_indices(indices)
        self.packed = torch.cat([self.packed, self.codec.pack(indices)])
        if self.codec.additive:
            self._db_term = torch.cat([self._db_term, database_term(self.codec, indices)])

    def search(self, queries: Tensor | np.ndarray, k: int = 10) -> tuple[Tensor, Tensor]:
        """Exhaustive ADC k-NN in squared L2.

        Args:
            queries: ``(Q, D)``; ``Q = 0`` returns ``(0, k)`` results.
            k: Neighbours per query (clipped to ``len(self)``).

        Returns:
            ``(distances, ids)``, each ``(Q, k)``, ascending.

        Raises:
            ValueError: If ``k < 1``, the index is empty, or the queries are malformed.
        """
        _check_k(k)
        queries = self.codec.check_vectors(queries)
        if len(self) == 0:
            raise ValueError("the index is empty: add vectors before searching")
        k = min(k, len(self))
        lut, qterm = self.codec.lookup_tables(queries)
        d, ids = adc_search_packed(self.codec, self.packed, lut, k, self._db_term if self.codec.additive else None)
        return d + qterm[:, None], ids
