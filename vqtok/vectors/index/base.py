"""A vector index people deploy: optional rotation, optional IVF, codes per list, optional re-ranking.

:class:`Index` composes, in faiss's order: an optional learned rotation (``OPQ`` pre-transform), an optional
inverted file (``IVF``: a coarse k-means quantizer trained with :func:`vqtok.kernels.kmeans.kmeans`, each vector
stored in the list of its nearest centroid, and searched in the ``nprobe`` nearest lists), the vector payload
(codes of a fitted PQ/RQ/LSQ codec of the residual to the list centroid, or the float32 vectors themselves), and an
optional re-ranking payload (``Refine``: exact float32 vectors or SQ8 codes) that re-scores ``k_factor * k``
candidates. Build one with :func:`vqtok.vectors.index.index_factory`.

Metrics: ``"l2"`` (squared distances, ascending), ``"ip"`` (inner products, descending) and ``"cosine"``
(vectors and queries normalised, then inner product). ``search`` with ``k`` larger than what the probed lists
hold pads as faiss does: id ``-1`` with distance ``inf`` (L2) or ``-inf`` (ip / cosine).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...kernels import nearest
from ...kernels.kmeans import kmeans
from ..base import VectorCodec
from ..opq import OPQ
from ..search import database_term
from .lists import InvertedLists
from .refine import SQ8
from .scan import probe, rerank, scan_lists

__all__ = ["Index"]

METRICS = ("l2", "ip", "cosine")
REFINES = (None, "flat", "sq8")


class Index:
    """Rotation -> IVF -> codes -> re-ranking, each stage optional (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        codec: VectorCodec | None = None,
        nlist: int = 0,
        metric: str = "l2",
        refine: str | None = None,
        rotation: Tensor | None = None,
        opq: int = 0,
        opq_iters: int = 50,
        nprobe: int = 1,
        k_factor: int = 4,
        seed: int = 0,
        fast_scan: bool = False,
    ) -> None:
        """Args:
        dim: Vector dimension ``D``.
        codec: Codec of the (residual) vectors, fitted or not (``train`` fits it); ``None`` stores float32.
        nlist: Number of IVF lists; 0 for no inverted file (a flat scan).
        metric: ``"l2"``, ``"ip"`` or ``"cosine"``.
        refine: ``None``, ``"flat"`` (exact re-ranking) or ``"sq8"``.
        rotation: Optional ``(D, D)`` orthogonal matrix applied as ``x @ rotation`` before the IVF and the codes
            (not before re-ranking, which sees the vectors as given, as in faiss).
        opq: If > 0 and ``rotation`` is ``None``, ``train`` learns the rotation of an ``OPQ(dim, opq)`` codec.
        opq_iters: Alternations of that OPQ fit (faiss's ``OPQMatrix`` runs 50).
        nprobe: Lists searched per query (the default of :meth:`search`).
        k_factor: Candidates re-ranked per requested neighbour when ``refine`` is set.
        seed: Seed of the coarse k-means.
        fast_scan: Search 4-bit PQ codes with the compiled fast-scan kernel (uint8 tables, exact re-ranking of
            the best candidates; :func:`vqtok.kernels.adc_scan.ivf_fastscan`). Needs a 4-bit PQ codec; without a
            compiler the exact scan is used. faiss's ``PQ<m>x4fs``.
        """
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if refine not in REFINES:
            raise ValueError(f"refine must be one of {REFINES}, got {refine!r}")
        if nlist < 0 or nprobe < 1 or k_factor < 1 or dim < 1:
            raise ValueError(
                f"need dim >= 1, nlist >= 0, nprobe >= 1, k_factor >= 1; got {dim}, {nlist}, {nprobe}, {k_factor}"
            )
        if codec is not None and codec.dim != dim:
            raise ValueError(f"codec dim {codec.dim} does not match index dim {dim}")
        if fast_scan and (codec is None or codec.additive or codec.codebook_bits != 4):
            raise ValueError(f"fast_scan needs a 4-bit PQ codec, got {codec!r}")
        if rotation is not None and tuple(rotation.shape) != (dim, dim):
            raise ValueError(f"rotation must be ({dim}, {dim}), got {tuple(rotation.shape)}")
        self.dim, self.codec, self.nlist, self.metric = dim, codec, nlist, metric
        self.refine, self.nprobe, self.k_factor, self.seed = refine, nprobe, k_factor, seed
        self.opq, self.opq_iters, self.fast_scan = opq, opq_iters, bool(fast_scan)
        self.rotation = None if rotation is None else rotation.float().cpu()
        self.coarse: Tensor | None = None
        self.sq8: SQ8 | None = None
        self.is_trained = codec is None and nlist == 0 and refine != "sq8" and not (opq and rotation is None)
        self.lists = InvertedLists(max(nlist, 1), self._empty_payloads())

    # ------------------------------------------------------------------ properties
    @property
    def ntotal(self) -> int:
        """Number of stored vectors."""
        return len(self.lists)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector: code (or float32 vector), norm (additive L2), refine payload and 8-byte id."""
        return self.lists.bytes_per_vector()

    def __repr__(self) -> str:
        return (
            f"Index(dim={self.dim}, codec={self.codec!r}, nlist={self.nlist}, metric={self.metric!r}, "
            f"refine={self.refine!r}, rotation={self.rotation is not None}, ntotal={self.ntotal})"
        )

    # ------------------------------------------------------------------ build
    def train(self, x: Tensor | np.ndarray) -> Index:
        """Fits the coarse quantizer, the residual codec (unless already fitted) and the SQ8 ranges.

        Args:
            x: ``(N, D)`` training vectors; ``N >= nlist`` and enough for the codec.

        Returns:
            ``self``.
        """
        raw = self._prepare(x, "training vectors")
        if self.opq and self.rotation is None:
            opq = OPQ(self.dim, self.opq, 8, opq_iters=self.opq_iters, seed=self.seed, device="cpu", progress=False)
            self.rotation = opq.fit(raw).rotation.cpu()
        x = self._rotate(raw)
        if self.nlist:
            if x.shape[0] < self.nlist:
                raise ValueError(f"IVF{self.nlist} needs at least {self.nlist} training vectors, got {x.shape[0]}")
            # faiss's coarse clustering (10 iterations, only empty clusters split). Splitting one-point clusters
            # too (the codecs' default) balances the lists: on MiniLM's word-piece table, IVF128 scans ~30 % fewer
            # vectors at equal nprobe and finds the nearest neighbour's list less often (0.30 vs 0.34 at
            # nprobe=1), about equal at equal vectors scanned; equal nprobe then means equal work (docs/vectors.md).
            self.coarse = kmeans(x, self.nlist, iters=10, seed=self.seed, min_points=0)
        if self.codec is not None and not self.codec.is_fitted:
            self.codec.fit(self._residuals(x, self._assign(x)))
        if self.refine == "sq8":
            self.sq8 = SQ8.fit(raw)
        self.is_trained = True
        return self

    def add(self, x: Tensor | np.ndarray) -> Tensor:
        """Adds vectors with ids continuing after the largest stored id; returns the ``(N,)`` ids given."""
        start = int(self.lists.ids.max()) + 1 if self.ntotal else 0
        n = torch.as_tensor(x).shape[0] if torch.as_tensor(x).ndim else 0
        ids = torch.arange(start, start + n)
        self.add_with_ids(x, ids)
        return ids

    def add_with_ids(self, x: Tensor | np.ndarray, ids: Tensor | np.ndarray) -> None:
        """Adds vectors under caller-chosen int64 ids.

        Raises:
            ValueError: On a wrong shape, NaN/Inf, an untrained index, ids that are not unique integers, or ids
                already stored.
        """
        self._require_trained()
        raw = self._prepare(x, "vectors")
        x = self._rotate(raw)
        ids = torch.as_tensor(ids)
        if ids.ndim != 1 or ids.shape[0] != x.shape[0] or ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(f"ids must be ({x.shape[0]},) integers, got {tuple(ids.shape)} {ids.dtype}")
        ids = ids.long().cpu()
        if torch.unique(ids).numel() != ids.numel():
            raise ValueError("ids passed to add_with_ids contain duplicates")
        clash = ids[torch.isin(ids, self.lists.ids)]
        if clash.numel():
            raise ValueError(f"ids already in the index: {clash[:10].tolist()}")
        lists = self._assign(x)
        payloads: dict[str, Tensor] = {"ids": ids}
        if self.codec is None:
            payloads["codes"] = x
        else:
            indices = self.codec.encode(self._residuals(x, lists))
            payloads["codes"] = self.codec.pack(indices)
            if "norms" in self.lists.payloads:
                payloads["norms"] = database_term(self.codec, indices).cpu()
        if self.refine is not None:
            payloads["refine"] = self.sq8.encode(raw) if self.sq8 is not None else raw
        self.lists.append(lists, payloads)

    def remove_ids(self, ids: Tensor | np.ndarray) -> int:
        """Removes vectors by id; returns how many were removed.

        Raises:
            ValueError: If an id is not in the index (nothing is removed then).
        """
        ids = torch.as_tensor(ids).reshape(-1)
        if ids.is_floating_point():
            raise ValueError(f"ids must be integers, got {ids.dtype}")
        ids = ids.long().cpu()
        unknown = ids[~torch.isin(ids, self.lists.ids)]
        if unknown.numel():
            raise ValueError(f"ids not in the index: {unknown[:10].tolist()}")
        self.lists.keep(~torch.isin(self.lists.ids, ids))
        return int(torch.unique(ids).numel())

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def search(self, queries: Tensor | np.ndarray, k: int = 10, nprobe: int | None = None) -> tuple[Tensor, Tensor]:
        """k nearest neighbours.

        Args:
            queries: ``(Q, D)``; ``Q = 0`` gives ``(0, k)`` results.
            k: Neighbours per query; beyond what the probed lists hold, results are padded (see the module).
            nprobe: Lists searched (default ``self.nprobe``).

        Returns:
            ``(distances, ids)``, each ``(Q, k)``: squared L2 ascending, or inner products descending.

        Raises:
            ValueError: On malformed queries, ``k < 1``, ``nprobe < 1``, or an empty index.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        nprobe = self.nprobe if nprobe is None else nprobe
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        raw = self._prepare(queries, "queries")
        q = self._rotate(raw)
        if q.shape[0] and self.ntotal == 0:
            raise ValueError("the index is empty: add vectors before searching")
        want = k * self.k_factor if self.refine else k
        if q.shape[0] == 0:
            d, rows = torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        elif self.codec is None and self.nlist == 0:
            kk = min(want, self.ntotal)
            d, rows = nearest(q, self.lists.payloads["codes"], "l2" if self.metric == "l2" else "ip", k=kk)
            d, rows = d.view(-1, kk), rows.view(-1, kk)
        else:
            d, rows = scan_lists(self, q, want, nprobe)
        if self.refine and q.shape[0]:
            d, rows = rerank(self, raw, rows, k)
        d, rows = d[:, :k], rows[:, :k]
        if d.shape[1] < k:
            d = torch.cat([d, torch.full((d.shape[0], k - d.shape[1]), float("inf"))], 1)
            rows = torch.cat([rows, torch.full((rows.shape[0], k - rows.shape[1]), -1, dtype=torch.long)], 1)
        rows = torch.where(torch.isinf(d), torch.full_like(rows, -1), rows)
        ids = torch.where(rows >= 0, self.lists.ids[rows.clamp_min(0)] if self.ntotal else rows, rows)
        return (d if self.metric == "l2" else -d), ids

    def residual_tables(self) -> Tensor:
        """``(L, M, K)`` per-list L2 tables ``2 <c_l, C_m[k]> + ||C_m[k]||^2`` (PQ) or ``2 <c_l, C_m[k]>`` (additive).

        With them, ``||q - c_l - r_hat||^2 = ||q - c_l||^2 + sum_m (T[l, m, i_m] - 2 <q, C_m[i_m]>)`` (+ the stored
        norm for additive codecs). Cached until the coarse centroids or the codec change.
        """
        key = (id(self.coarse), id(self.codec), self.codec.state_dict()["codebooks"].data_ptr())
        if getattr(self, "_tables_key", None) != key:
            lut0, _ = self.codec.lookup_tables(torch.zeros(1, self.dim))  # ||C||^2 per code for PQ, 0 for additive
            tables = lut0.cpu() if not self.codec.additive else torch.zeros_like(lut0.cpu())
            if self.coarse is not None:
                tables = tables + 2 * self.codec.inner_product_tables(self.coarse).cpu()
            # Contiguous once here: the scan kernels read it raw, and a per-search copy would be a parallel op.
            self._tables, self._tables_key = tables.contiguous(), key
        return self._tables

    # ------------------------------------------------------------------ helpers
    def _require_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError("the index is not trained; call train() first")

    def _prepare(self, x: Tensor | np.ndarray, what: str) -> Tensor:
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} must be (N, {self.dim}), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{what} must be floating point, got {x.dtype}")
        x = x.detach().cpu().float()
        # numpy, not torch: with several torch threads, torch.isfinite on a query batch is an OpenMP region, which
        # on a busy machine waits for a descheduled thread (tens of ms per search; docs/vectors.md).
        if not np.isfinite(x.numpy()).all():
            raise ValueError(f"{what} contain NaN or Inf")
        return F.normalize(x, dim=-1) if self.metric == "cosine" else x

    def _rotate(self, x: Tensor) -> Tensor:
        return x if self.rotation is None else x @ self.rotation

    def _assign(self, x: Tensor) -> Tensor:
        return probe(x, self.coarse, 1, self.metric)[1][:, 0]

    def _residuals(self, x: Tensor, lists: Tensor) -> Tensor:
        return x if self.coarse is None else x - self.coarse[lists]

    def _empty_payloads(self) -> dict[str, Tensor]:
        p = {"ids": torch.zeros(0, dtype=torch.long)}
        if self.codec is None:
            p["codes"] = torch.zeros(0, self.dim)
        else:
            p["codes"] = torch.zeros(0, self.codec.code_size, dtype=torch.uint8)
            if self.codec.additive and self.metric == "l2":
                p["norms"] = torch.zeros(0)
        if self.refine is not None:
            p["refine"] = torch.zeros(0, self.dim, dtype=torch.uint8 if self.refine == "sq8" else torch.float32)
        return p
