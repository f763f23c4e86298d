"""Inverted lists: every per-vector payload in one CSR layout, rows grouped by list.

Each payload is one tensor whose first dimension is the number of stored vectors ``N``: ``ids`` (int64),
``codes`` (packed uint8 codes, or float32 vectors for an uncompressed index), optionally ``norms`` (float32
``||x_hat||^2`` of additive codecs, as faiss's ``ST_norm_float``) and ``refine`` (uint8 SQ8 codes or float32
vectors). ``offsets[l]:offsets[l + 1]`` are the rows of list ``l``. Nothing else is stored per vector, so the
memory per vector is the sum of the payloads' row sizes, plus what :meth:`InvertedLists.derived` caches for
search (the fast-scan block layout: a second copy of the codes, padded to 32 rows per list, as faiss stores them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["InvertedLists"]


class InvertedLists:
    """CSR storage of per-vector payloads grouped into ``nlist`` lists."""

    def __init__(self, nlist: int, payloads: dict[str, Tensor], offsets: Tensor | None = None) -> None:
        """Args:
        nlist: Number of lists.
        payloads: Name -> ``(N, ...)`` tensor; must include ``"ids"``.
        offsets: ``(nlist + 1,)`` int64 row offsets (``None``: every row in list 0).
        """
        self.nlist = nlist
        self.payloads = payloads
        n = payloads["ids"].shape[0]
        if offsets is None:
            offsets = torch.zeros(nlist + 1, dtype=torch.long)
            offsets[1:] = n
        self.offsets = offsets
        self._derived: dict[str, Any] = {}

    def derived(self, name: str, build: Callable[[InvertedLists], Any]) -> Any:
        """``build(self)``, cached under ``name`` until the rows change (:meth:`append`, :meth:`keep`)."""
        if name not in self._derived:
            self._derived[name] = build(self)
        return self._derived[name]

    def __len__(self) -> int:
        return self.payloads["ids"].shape[0]

    @property
    def ids(self) -> Tensor:
        return self.payloads["ids"]

    def bytes_per_vector(self) -> int:
        """Stored bytes per vector over all payloads (ids included)."""
        return sum(t[:1].numel() * t.element_size() if t.ndim > 1 else t.element_size() for t in self.payloads.values())

    def list_rows(self, lst: int) -> tuple[int, int]:
        """``(start, end)`` rows of list ``lst``."""
        return int(self.offsets[lst]), int(self.offsets[lst + 1])

    def sizes(self) -> Tensor:
        """``(nlist,)`` int64 vectors per list."""
        return self.offsets[1:] - self.offsets[:-1]

    def append(self, lists: Tensor, payloads: dict[str, Tensor]) -> None:
        """Adds rows; ``lists`` ``(n,)`` int64 gives each row's list. Existing rows keep their relative order."""
        if set(payloads) != set(self.payloads):
            raise ValueError(f"payloads {sorted(payloads)} do not match the stored {sorted(self.payloads)}")
        old = torch.repeat_interleave(torch.arange(self.nlist), self.sizes())
        which = torch.cat([old, lists.cpu().long()])
        # A stable sort by list keeps rows in insertion order within each list (faiss's order too).
        order = torch.sort(which, stable=True).indices
        self.payloads = {k: torch.cat([v, payloads[k].to(v.device, v.dtype)])[order] for k, v in self.payloads.items()}
        counts = torch.bincount(which, minlength=self.nlist)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self._derived.clear()

    def keep(self, mask: Tensor) -> None:
        """Keeps only the rows where ``mask`` ``(N,)`` is true."""
        which = torch.repeat_interleave(torch.arange(self.nlist), self.sizes())[mask]
        self.payloads = {k: v[mask] for k, v in self.payloads.items()}
        counts = torch.bincount(which, minlength=self.nlist)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self._derived.clear()
