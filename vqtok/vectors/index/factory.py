"""``index_factory``: faiss-style description strings -> an untrained :class:`Index`.

Grammar (comma-separated, in this order, each part optional except the payload)::

    [OPQ<m>,] [IVF<nlist>,] (Flat | PQ<m>[x<bits>] | RQ<m>x<bits> | LSQ<m>x<bits>) [,Refine(Flat) | ,Refine(SQ8)]

Examples: ``"Flat"``, ``"PQ16"``, ``"OPQ16,PQ16"``, ``"OPQ16,IVF1024,PQ16"``, ``"IVF4096,RQ8x8,Refine(SQ8)"``,
``"IVF256,PQ32x4"``. ``PQ<m>`` means 8-bit codes, as in faiss. With ``IVF`` the codes encode the residual to the
list centroid, as faiss's ``IndexIVFPQ`` (``by_residual``).
"""

from __future__ import annotations

import re
from typing import Any

from ..lsq import LSQ
from ..pq import PQ
from ..rq import RQ
from .base import Index

__all__ = ["index_factory"]

_CODECS = {"PQ": PQ, "RQ": RQ, "LSQ": LSQ}
_PAYLOAD = re.compile(r"^(PQ|RQ|LSQ)(\d+)(?:x(\d+))?$")


def index_factory(dim: int, description: str, metric: str = "l2", **options: Any) -> Index:
    """Builds an untrained index from a description string.

    Args:
        dim: Vector dimension.
        description: See the module docstring.
        metric: ``"l2"``, ``"ip"`` or ``"cosine"``.
        **options: Passed to :class:`Index` (``nprobe``, ``k_factor``, ``seed``, ``opq_iters``) and, under
            ``codec_options``, to the codec constructor (e.g. ``{"device": "cpu", "progress": False}``).

    Returns:
        An :class:`Index`; call ``train`` then ``add``.

    Raises:
        ValueError: Naming the part of ``description`` that is not understood or out of order.
    """
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"index description must be a non-empty string, got {description!r}")
    codec_options = {"device": "cpu", "progress": False, **options.pop("codec_options", {})}
    parts = [p.strip() for p in description.split(",")]
    kwargs: dict[str, Any] = {}
    codec = None
    payload_seen = False
    for i, part in enumerate(parts):
        where = f"in index description {description!r}: part {i + 1} {part!r}"
        if payload_seen:
            m = re.fullmatch(r"Refine\((Flat|SQ8)\)|RFlat", part)
            if m is None or "refine" in kwargs:
                raise ValueError(f"{where}: only Refine(Flat) or Refine(SQ8) may follow the codes")
            kwargs["refine"] = "flat" if part == "RFlat" or m.group(1) == "Flat" else "sq8"
            continue
        if (m := re.fullmatch(r"OPQ(\d+)", part)) is not None:
            if i != 0:
                raise ValueError(f"{where}: OPQ must come first")
            kwargs["opq"] = _positive(m.group(1), where)
        elif (m := re.fullmatch(r"IVF(\d+)", part)) is not None:
            if "nlist" in kwargs:
                raise ValueError(f"{where}: only one IVF part is allowed")
            kwargs["nlist"] = _positive(m.group(1), where)
        elif part == "Flat":
            payload_seen = True
        elif (m := _PAYLOAD.fullmatch(part)) is not None:
            name, books = m.group(1), _positive(m.group(2), where)
            if name != "PQ" and m.group(3) is None:
                raise ValueError(f"{where}: write {name}<codebooks>x<bits>, e.g. {name}8x8")
            bits = 8 if m.group(3) is None else _positive(m.group(3), where)
            try:
                codec = _CODECS[name](dim, books, bits, **codec_options)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from err
            payload_seen = True
        else:
            raise ValueError(
                f"{where} is not understood; expected [OPQ<m>,][IVF<n>,](Flat|PQ<m>[x<b>]|RQ<m>x<b>|LSQ<m>x<b>)"
                f"[,Refine(Flat|SQ8)]"
            )
    if not payload_seen:
        raise ValueError(f"index description {description!r} names no payload (Flat, PQ, RQ or LSQ)")
    return Index(dim, codec=codec, metric=metric, **kwargs, **options)


def _positive(text: str, where: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{where}: numbers must be positive")
    return value
