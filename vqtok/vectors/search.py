"""Asymmetric distance computation (ADC) k-NN search over encoded vectors.

Queries stay in float; database vectors are known only by their indices. Each query gets a
``(M, K)`` lookup table (see :meth:`VectorCodec.lookup_tables`), so the distance to a database vector
is ``M`` table lookups, with no decoding (Jégou et al., TPAMI 2011, section 4). Additive codecs also
need ``||x_hat||^2`` per database vector; it is recomputed from the indices when vectors are added,
so the stored payload is the packed indices alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import VectorCodec

__all__ = ["ADCIndex", "adc_distances", "adc_search"]


def _database_term(codec: VectorCodec, indices: Tensor, batch_size: int = 16384) -> Tensor:
    if not codec.additive:
        return torch.zeros(indices.shape[0], device=indices.device)
    parts = [codec.decode(indices[i : i + batch_size]).square().sum(-1) for i in range(0, indices.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, device=indices.device)


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


@torch.no_grad()
def adc_search(
    codec: VectorCodec,
    indices: Tensor,
    queries: Tensor | np.ndarray,
    k: int = 10,
    database_term: Tensor | None = None,
    query_batch: int = 256,
) -> tuple[Tensor, Tensor]:
    """Exhaustive ADC k-NN in squared L2.

    Args:
        codec: A fitted codec.
        indices: ``(N, M)`` database indices.
        queries: ``(Q, D)`` float queries.
        k: Neighbours per query (clipped to ``N``).
        database_term: Optional precomputed ``(N,)`` additive term (``||x_hat||^2`` for additive codecs).
        query_batch: Queries per chunk (bounds the ``(chunk, N)`` scratch).

    Returns:
        ``(distances, ids)``, each ``(Q, k)``: estimated squared L2 distances, ascending, and int64 row
        positions in ``indices``.

    Raises:
        ValueError: If ``k < 1`` or the database is empty.
    """
    indices = codec._check_indices(indices)
    if k < 1 or indices.shape[0] == 0:
        raise ValueError(f"need k >= 1 and a non-empty database, got k={k} and {indices.shape[0]} vectors")
    k = min(k, indices.shape[0])
    db = _database_term(codec, indices) if database_term is None else database_term.to(indices.device)
    lut, qterm = codec.lookup_tables(queries)
    dists, ids = [], []
    for i in range(0, lut.shape[0], query_batch):
        d = adc_distances(lut[i : i + query_batch], indices) + db[None] + qterm[i : i + query_batch, None]
        dd, ii = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(dd)
        ids.append(ii)
    return torch.cat(dists), torch.cat(ids)


class ADCIndex:
    """A flat (exhaustive) ADC index: stores packed codes, searches with lookup tables.

    Example:
        >>> index = ADCIndex(PQ(384, 8).fit(train))
        >>> index.add(database)
        >>> distances, ids = index.search(queries, k=10)
    """

    def __init__(self, codec: VectorCodec) -> None:
        """Args:
        codec: A fitted codec.
        """
        codec._require_fitted()
        self.codec = codec
        self.packed = torch.zeros(0, codec.code_size, dtype=torch.uint8)
        self._indices = torch.zeros(0, codec.num_codebooks, dtype=torch.long, device=codec.device)
        self._db_term = torch.zeros(0, device=codec.device)

    def __len__(self) -> int:
        return self.packed.shape[0]

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
        indices = self.codec._check_indices(indices)
        self.packed = torch.cat([self.packed, self.codec.pack(indices)])
        # The unpacked indices and the additive norm term are caches derived from the packed codes.
        self._indices = torch.cat([self._indices, indices])
        self._db_term = torch.cat([self._db_term, _database_term(self.codec, indices)])

    def search(self, queries: Tensor | np.ndarray, k: int = 10) -> tuple[Tensor, Tensor]:
        """k-NN search, see :func:`adc_search`.

        Args:
            queries: ``(Q, D)``.
            k: Neighbours per query.

        Returns:
            ``(distances, ids)``, each ``(Q, k)``.
        """
        return adc_search(self.codec, self._indices, queries, k, database_term=self._db_term)
