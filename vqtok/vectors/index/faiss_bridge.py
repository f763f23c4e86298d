"""Conversion to and from faiss indexes, with identical codes, ids and search results.

Supported (both ways): ``Flat``, ``PQ``, ``RQ``, ``LSQ``, each optionally behind an ``OPQ`` rotation
(``IndexPreTransform`` with a square ``LinearTransform`` / ``OPQMatrix``) and optionally inside an inverted file
(``IndexIVFFlat``, ``IndexIVFPQ``, ``IndexIVFResidualQuantizer``, ``IndexIVFLocalSearchQuantizer``), for the L2 and
inner-product metrics. Flat-scan indexes whose ids are not ``0 .. n-1`` are wrapped in ``IndexIDMap``.

Layouts: faiss's PQ centroids are ``(M, K, dsub)`` and its additive codebooks ``(M * K, D)``; codes of every kind
are the same little-endian bit stream as :func:`vqtok.vectors.pack_indices`. Additive codes for L2 carry the float32
``||r_hat||^2`` (``ST_norm_float``), which faiss appends to the same bit stream right after the ``M * nbits`` code
bits; :func:`from_faiss` recomputes it from the codes. Search results agree up to the order of exactly tied
distances (vectors with identical codes). A ``"cosine"`` index becomes an inner-product faiss index:
normalise the queries (``faiss.normalize_L2``) before searching it. ``Refine`` stages are not converted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..lsq import LSQ
from ..pq import PQ
from ..rq import RQ
from ..search import database_term
from .base import Index
from .lists import InvertedLists

__all__ = ["from_faiss", "to_faiss"]


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("to_faiss / from_faiss need faiss: pip install faiss-cpu") from err
    return faiss


def _codes(index: Index, rows: slice | None = None) -> np.ndarray:
    """faiss code bytes of the stored vectors: packed codes, plus faiss's float32 norm for additive L2 codecs."""
    store = index.lists.payloads
    codes = store["codes"].numpy()
    if index.codec is None:
        return np.ascontiguousarray(codes).view(np.uint8)
    if "norms" not in store:
        return np.ascontiguousarray(codes)
    norms = store["norms"].numpy().astype(np.float32)
    # faiss appends the norm's 32 bits to the same bit stream, right after the M * nbits code bits.
    nbits = index.codec.num_codebooks * index.codec.codebook_bits
    bits = np.unpackbits(codes, axis=1, bitorder="little", count=nbits)
    norm_bits = np.unpackbits(norms[:, None].view(np.uint8), axis=1, bitorder="little")
    return np.ascontiguousarray(np.packbits(np.concatenate([bits, norm_bits], 1), axis=1, bitorder="little"))


def _take_codes(raw: np.ndarray, codec: PQ | RQ | LSQ | None) -> np.ndarray:
    """The first ``M * nbits`` bits of faiss code rows, repacked to vqtok's ``code_size`` bytes."""
    if codec is None:
        return raw
    nbits = codec.num_codebooks * codec.codebook_bits
    bits = np.unpackbits(raw, axis=1, bitorder="little", count=nbits)
    return np.packbits(bits, axis=1, bitorder="little")


def _set_codec(faiss: Any, index: Index, metric: int) -> Any:
    """The faiss quantizer object (or flat index) equivalent to ``index.codec``, filled in."""
    codec, d = index.codec, index.dim
    search = faiss.AdditiveQuantizer.ST_norm_float if index.metric == "l2" else faiss.AdditiveQuantizer.ST_LUT_nonorm
    quantizer = None
    if index.coarse is not None:
        quantizer = faiss.IndexFlatL2(d) if metric == faiss.METRIC_L2 else faiss.IndexFlatIP(d)
        quantizer.add(np.ascontiguousarray(index.coarse.numpy()))
    nl = index.nlist
    if codec is None:
        out = faiss.IndexIVFFlat(quantizer, d, nl, metric) if quantizer else faiss.IndexFlat(d, metric)
    elif type(codec) is PQ:
        if quantizer:
            out = faiss.IndexIVFPQ(quantizer, d, nl, codec.num_codebooks, codec.codebook_bits, metric)
        else:
            out = faiss.IndexPQ(d, codec.num_codebooks, codec.codebook_bits, metric)
        faiss.copy_array_to_vector(codec.codebooks.cpu().numpy().ravel(), out.pq.centroids)
    elif type(codec) in (RQ, LSQ):
        rq = type(codec) is RQ
        m, b = codec.num_codebooks, codec.codebook_bits
        if quantizer:
            cls = faiss.IndexIVFResidualQuantizer if rq else faiss.IndexIVFLocalSearchQuantizer
            out = cls(quantizer, d, nl, m, b, metric, search)
        else:
            cls = faiss.IndexResidualQuantizer if rq else faiss.IndexLocalSearchQuantizer
            out = cls(d, m, b, metric, search)
        aq = out.rq if rq else out.lsq
        faiss.copy_array_to_vector(codec.codebooks.cpu().numpy().ravel(), aq.codebooks)
        aq.is_trained = True
    else:
        raise ValueError(f"to_faiss supports PQ, RQ and LSQ codecs (OPQ via the index rotation), got {codec!r}")
    # faiss's Python constructors keep the wrapped objects (quantizer, inner index, transform) referenced.
    out.is_trained = True
    if quantizer and type(codec) is PQ:
        out.precompute_table()
    return out


def to_faiss(index: Index) -> Any:
    """A faiss index holding the same codes, ids and settings (``nprobe`` included).

    Raises:
        ValueError: For a ``Refine`` stage or an ``OPQ`` codec inside the index (use the factory's ``OPQ`` rotation).
    """
    faiss = _faiss()
    if index.refine is not None:
        raise ValueError("to_faiss does not convert Refine stages; build the index without Refine to hand it over")
    metric = faiss.METRIC_L2 if index.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    out = _set_codec(faiss, index, metric)
    ids = index.lists.ids.numpy().astype(np.int64)
    codes = _codes(index)
    if index.coarse is not None:
        out.nprobe = index.nprobe
        for lst in range(index.nlist):
            s, e = index.lists.list_rows(lst)
            if e > s:
                out.invlists.add_entries(
                    lst, e - s, faiss.swig_ptr(np.ascontiguousarray(ids[s:e])), faiss.swig_ptr(codes[s:e])
                )
        out.ntotal = len(ids)
    else:
        inner = out
        if not np.array_equal(ids, np.arange(len(ids))):
            # IndexIDMap must wrap an empty index; the codes go into the inner index afterwards.
            out = faiss.IndexIDMap(inner)
        if index.codec is None:
            inner.add(np.ascontiguousarray(codes.view(np.float32)))
        else:
            faiss.copy_array_to_vector(codes.ravel(), inner.codes)
            inner.ntotal = len(ids)
        if out is not inner:
            faiss.copy_array_to_vector(ids, out.id_map)
            out.ntotal = len(ids)
    if index.rotation is not None:
        transform = faiss.LinearTransform(index.dim, index.dim, False)
        faiss.copy_array_to_vector(np.ascontiguousarray(index.rotation.numpy().T).ravel(), transform.A)
        transform.is_trained = True
        inner = out
        out = faiss.IndexPreTransform(transform, inner)
    return out


def from_faiss(faiss_index: Any) -> Index:
    """An :class:`Index` with the same codes, ids and settings as a faiss index (see the module for the kinds).

    Raises:
        ValueError: On a faiss index kind this module does not convert.
    """
    faiss = _faiss()
    idx = faiss.downcast_index(faiss_index)
    rotation = None
    if isinstance(idx, faiss.IndexPreTransform):
        if idx.chain.size() != 1:
            raise ValueError("from_faiss converts at most one pre-transform (an OPQ or other square rotation)")
        lt = faiss.downcast_VectorTransform(idx.chain.at(0))
        if not isinstance(lt, faiss.LinearTransform) or lt.d_in != lt.d_out or lt.have_bias:
            raise ValueError(f"from_faiss converts square linear pre-transforms only, got {type(lt).__name__}")
        a = faiss.vector_to_array(lt.A).reshape(lt.d_out, lt.d_in)
        rotation = torch.from_numpy(a.T.copy())
        idx = faiss.downcast_index(idx.index)
    id_map = None
    if isinstance(idx, faiss.IndexIDMap):
        id_map = faiss.vector_to_array(idx.id_map).astype(np.int64)
        idx = faiss.downcast_index(idx.index)
    metric = {faiss.METRIC_L2: "l2", faiss.METRIC_INNER_PRODUCT: "ip"}.get(idx.metric_type)
    if metric is None:
        raise ValueError(f"from_faiss supports the L2 and inner-product metrics, got metric {idx.metric_type}")
    d = idx.d
    ivf = isinstance(idx, faiss.IndexIVF)
    codec = _codec_of(faiss, idx)
    index = Index(d, codec=codec, nlist=idx.nlist if ivf else 0, metric=metric, rotation=rotation)
    if ivf:
        index.nprobe = idx.nprobe
        index.coarse = torch.from_numpy(faiss.downcast_index(idx.quantizer).reconstruct_n(0, idx.nlist).copy())
    index.is_trained = True
    rows_ids, rows_codes, lists = [], [], []
    if ivf:
        invlists = idx.invlists
        for lst in range(idx.nlist):
            n = invlists.list_size(lst)
            if n:
                rows_ids.append(faiss.rev_swig_ptr(invlists.get_ids(lst), n).copy())
                raw = faiss.rev_swig_ptr(invlists.get_codes(lst), n * invlists.code_size).copy()
                rows_codes.append(_take_codes(raw.reshape(n, invlists.code_size), codec))
                lists.append(np.full(n, lst))
    elif idx.ntotal:
        raw = faiss.vector_to_array(idx.codes)
        rows_codes.append(_take_codes(raw.reshape(idx.ntotal, -1), codec))
        rows_ids.append(id_map if id_map is not None else np.arange(idx.ntotal))
        lists.append(np.zeros(idx.ntotal, dtype=np.int64))
    if rows_ids:
        ids = torch.from_numpy(np.concatenate(rows_ids).astype(np.int64))
        codes = torch.from_numpy(np.ascontiguousarray(np.concatenate(rows_codes)))
        payloads = {"ids": ids, "codes": codes if codec is not None else codes.view(torch.float32)}
        if "norms" in index.lists.payloads:
            payloads["norms"] = database_term(codec, codec.unpack(codes)).cpu()
        index.lists = InvertedLists(max(index.nlist, 1), index.lists.payloads)
        index.lists.append(torch.from_numpy(np.concatenate(lists)), payloads)
    return index


def _codec_of(faiss: Any, idx: Any) -> PQ | RQ | LSQ | None:
    common = {"device": "cpu", "progress": False}
    if isinstance(idx, (faiss.IndexFlat, faiss.IndexIVFFlat)):
        return None
    if isinstance(idx, (faiss.IndexPQ, faiss.IndexIVFPQ)):
        pq = idx.pq
        codec = PQ(idx.d, pq.M, pq.nbits, **common)
        books = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
        codec.load_state_dict({"codebooks": torch.from_numpy(books.copy())})
        return codec
    kinds = {
        faiss.IndexResidualQuantizer: ("rq", RQ),
        faiss.IndexIVFResidualQuantizer: ("rq", RQ),
        faiss.IndexLocalSearchQuantizer: ("lsq", LSQ),
        faiss.IndexIVFLocalSearchQuantizer: ("lsq", LSQ),
    }
    for kind, (attr, cls) in kinds.items():
        if isinstance(idx, kind):
            aq = getattr(idx, attr)
            nbits = faiss.vector_to_array(aq.nbits)
            if len(set(nbits.tolist())) != 1:
                raise ValueError(f"from_faiss needs equal codebook sizes, got bits {nbits.tolist()}")
            codec = cls(idx.d, aq.M, int(nbits[0]), **common)
            books = faiss.vector_to_array(aq.codebooks).reshape(aq.M, 1 << int(nbits[0]), idx.d)
            codec.load_state_dict({"codebooks": torch.from_numpy(books.copy())})
            return codec
    raise ValueError(f"from_faiss does not convert {type(idx).__name__} (supported: Flat, PQ, RQ, LSQ, IVF of these)")
