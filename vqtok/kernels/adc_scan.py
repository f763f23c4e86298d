"""Inverted-file ADC scan kernels: exact float tables (``_cpu_scan.cpp``) and 4-bit fast scan (``_cpu_fastscan.cpp``).

:func:`ivf_adc_scan` sums float lookup-table entries over packed codes of any width into a running top-k per query.
:func:`ivf_fastscan` is faiss's "fast scan" idea for 4-bit PQ: per (query, list) the tables are quantized to uint8,
32 rows are summed at once with byte shuffles and 16-bit adds, and the ``cand`` best approximate candidates of each
query are re-scored exactly (see the source for the details and the approximation).

Built, cached and loaded like the nearest-code kernel (:func:`vqtok.kernels._cpu_ext.build_library`); without a
compiler or with ``VQTOK_DISABLE_CPU_EXT=1`` :func:`scan_available` is ``False`` and callers use their torch path
(:func:`vqtok.vectors.index.scan.scan_lists` does).

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ._cpu_ext import LazyLibrary, thread_pool

__all__ = ["fastscan_available", "fastscan_pack", "ivf_adc_scan", "ivf_fastscan", "rerank_rows", "scan_available"]


_FASTSCAN = Path(__file__).with_name("_cpu_fastscan.cpp")
_SOURCES = {
    "scan": (Path(__file__).with_name("_cpu_scan.cpp"), "vqtok_cpu_scan.so", "vqtok_ivf_adc_scan", ()),
    "fastscan": (_FASTSCAN, "vqtok_cpu_fastscan.so", "vqtok_ivf_fastscan", ()),
    # The portable path of the same source (the one used without AVX2), built on request to test it against SIMD.
    "fastscan_scalar": (_FASTSCAN, "vqtok_cpu_fastscan_scalar.so", "vqtok_ivf_fastscan", ("-DVQTOK_FASTSCAN_SCALAR",)),
}
_I64, _I32, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_ARGTYPES = {
    "scan": [
        _PTR,
        _PTR,
        _PTR,
        _PTR,
        _I64,
        _I64,
        _I32,
        _PTR,
        _I32,
        _PTR,
        _PTR,
        _I64,
        _I32,
        _I32,
        _I32,
        _PTR,
        _PTR,
        _PTR,
    ],
    "fastscan": [
        *(_PTR, _PTR, _PTR, _PTR, _I64, _I64, _I32, _PTR, _PTR, _PTR, _I32, _PTR, _I64, _I32, _I32, _I32, _PTR, _PTR)
    ],
    "pack": [_PTR, _I32, _PTR, _I64, _PTR, _PTR],
    "rerank": [_PTR, _I64, _I64, _I32, _PTR, _I32, _PTR, _PTR, _PTR, _PTR, _I32, _I32, _PTR, _PTR],
}
# Queries per thread below which another thread costs more than it saves.
_MIN_QUERIES_PER_THREAD = 16


def _setup(which: str) -> Callable[[ctypes.CDLL], None]:
    def setup(lib: ctypes.CDLL) -> None:
        fn = getattr(lib, _SOURCES[which][2])
        fn.argtypes, fn.restype = _ARGTYPES[which.split("_")[0]], _I32
        if which == "scan":
            lib.vqtok_rerank.argtypes, lib.vqtok_rerank.restype = _ARGTYPES["rerank"], _I32
        else:
            lib.vqtok_fastscan_pack.argtypes, lib.vqtok_fastscan_pack.restype = _ARGTYPES["pack"], _I32

    return setup


_LIBS = {
    which: LazyLibrary(source, name, "ADC scan" if which == "scan" else "fast-scan", _setup(which), flags)
    for which, (source, name, _, flags) in _SOURCES.items()
}


def scan_available() -> bool:
    """Whether the compiled exact scan kernel can be used (builds it on first call)."""
    return _LIBS["scan"].get() is not None


def fastscan_available() -> bool:
    """Whether the compiled 4-bit fast-scan kernel can be used (builds it on first call)."""
    return _LIBS["fastscan"].get() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def ivf_adc_scan(
    qlut: Tensor,
    llut: Tensor | None,
    qterm: Tensor,
    lists: Tensor,
    codes: Tensor,
    norms: Tensor | None,
    offsets: Tensor,
    nbits: int,
    k: int,
) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest ``qterm[q, p] + sum_m lut[m, code_m] (+ norms[row])`` over the probed lists.

    ``lut = qlut[q] + llut[lists[q, p]]`` (or ``qlut[q]`` when ``llut`` is ``None``).

    Args:
        qlut: ``(Q, M, 2**nbits)`` fp32 per-query tables.
        llut: ``(L, M, 2**nbits)`` fp32 per-list tables, or ``None``.
        qterm: ``(Q, P)`` fp32 per-probe constant.
        lists: ``(Q, P)`` int64 probed lists (``-1``: skip).
        codes: ``(N, code_size)`` uint8 codes packed as :mod:`vqtok.vectors.packing`, rows grouped by list.
        norms: ``(N,)`` fp32 per-row term, or ``None``.
        offsets: ``(L + 1,)`` int64 CSR offsets of the lists.
        nbits: Bits per index (1 to 16).
        k: Results per query.

    Returns:
        ``(Q, k)`` fp32 distances ascending (exact ties: lowest row first) and ``(Q, k)`` int64 rows; ``inf`` and
        ``-1`` where fewer than ``k`` rows were scanned.

    Raises:
        RuntimeError: When the kernel is unavailable or fails.
        ValueError: On operands of the wrong dtype, layout or shape.
    """
    lib = _LIBS["scan"].require()
    _check(qlut, llut, qterm, lists, codes, norms, offsets, nbits, k)
    qn, m, ksub = qlut.shape
    nlist, p = offsets.shape[0] - 1, lists.shape[1]

    def run(q0: int, q1: int, out_d: Tensor, out_r: Tensor) -> int:
        scratch = torch.empty(m * ksub, dtype=torch.float32)
        return lib.vqtok_ivf_adc_scan(
            qlut.data_ptr(), _ptr(llut), qterm.data_ptr(), lists.data_ptr(), q0, q1, p, codes.data_ptr(),
            codes.shape[1], _ptr(norms), offsets.data_ptr(), nlist, m, nbits, k, scratch.data_ptr(),
            out_d.data_ptr(), out_r.data_ptr(),
        )  # fmt: skip

    return _run_threads(run, qn, k, f"Q={qn}, M={m}, nbits={nbits}, k={k}")


def fastscan_pack(codes: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """The fast-scan layout of 4-bit codes: each list's rows transposed into zero-padded blocks of 32 rows.

    Args:
        codes: ``(N, cs)`` uint8 packed 4-bit codes, rows grouped by list.
        offsets: ``(L + 1,)`` int64 CSR offsets of the lists.

    Returns:
        ``(blocks (B * 32 * cs,) uint8, block_start (L + 1,) int64)``: list ``l`` owns blocks
        ``block_start[l]:block_start[l + 1]``; byte ``j`` of the rows of a block is 32 contiguous bytes.

    Raises:
        RuntimeError: When the kernel is unavailable.
        ValueError: On malformed operands.
    """
    lib = _LIBS["fastscan"].require()
    for name, t, dtype in (("codes", codes, torch.uint8), ("offsets", offsets, torch.long)):
        if t.dtype != dtype or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"fastscan_pack: {name} must be a contiguous CPU {dtype} tensor, got {t.dtype}")
    if codes.ndim != 2 or offsets.ndim != 1 or offsets.shape[0] < 2 or int(offsets[-1]) > codes.shape[0]:
        raise ValueError(f"fastscan_pack: codes {tuple(codes.shape)} / offsets {tuple(offsets.shape)} do not fit")
    nlist = offsets.shape[0] - 1
    block_start = torch.empty(nlist + 1, dtype=torch.long)
    args = (codes.data_ptr(), codes.shape[1], offsets.data_ptr(), nlist, block_start.data_ptr())
    if lib.vqtok_fastscan_pack(*args, None):
        raise ValueError("fastscan_pack: offsets must be non-decreasing")
    blocks = torch.empty(int(block_start[-1]) * 32 * codes.shape[1], dtype=torch.uint8)
    lib.vqtok_fastscan_pack(*args, blocks.data_ptr())
    return blocks, block_start


def ivf_fastscan(
    qlut: Tensor,
    llut: Tensor | None,
    qterm: Tensor,
    lists: Tensor,
    codes: Tensor,
    offsets: Tensor,
    k: int,
    cand: int,
    packed: tuple[Tensor, Tensor] | None = None,
    simd: bool = True,
) -> tuple[Tensor, Tensor]:
    """4-bit fast scan: :func:`ivf_adc_scan`'s result for ``nbits=4`` and no norms, up to the candidate selection.

    The ``cand >= k`` best rows of each query under uint8-quantized tables are re-scored with the float tables;
    the returned distances are exact, a true top-k row is missed only if ``cand`` rows beat it after quantization.

    Args:
        qlut, llut, qterm, lists, codes, offsets: As for :func:`ivf_adc_scan` (``2**nbits = 16``, ``M <= 256``).
        k: Results per query.
        cand: Approximate candidates per query re-scored exactly.
        packed: :func:`fastscan_pack` of ``codes`` (built here when ``None``; callers that search repeatedly keep it).
        simd: ``False`` runs the portable scalar build of the kernel (same results; for tests).

    Returns:
        As :func:`ivf_adc_scan`.

    Raises:
        RuntimeError: When the kernel is unavailable or fails.
        ValueError: On malformed operands or ``cand < k``.
    """
    which = "fastscan" if simd else "fastscan_scalar"
    lib = _LIBS[which].require()
    _check(qlut, llut, qterm, lists, codes, None, offsets, 4, k)
    qn, m, _ = qlut.shape
    if cand < k or m > 256:
        raise ValueError(f"ivf_fastscan needs cand >= k and M <= 256, got cand={cand}, k={k}, M={m}")
    nlist, p = offsets.shape[0] - 1, lists.shape[1]
    blocks, block_start = fastscan_pack(codes, offsets) if packed is None else packed
    if block_start.shape != offsets.shape or blocks.numel() != int(block_start[-1]) * 32 * codes.shape[1]:
        raise ValueError("ivf_fastscan: packed blocks do not match codes / offsets (stale fastscan_pack?)")

    def run(q0: int, q1: int, out_d: Tensor, out_r: Tensor) -> int:
        return lib.vqtok_ivf_fastscan(
            qlut.data_ptr(), _ptr(llut), qterm.data_ptr(), lists.data_ptr(), q0, q1, p, codes.data_ptr(),
            blocks.data_ptr(), block_start.data_ptr(), codes.shape[1], offsets.data_ptr(), nlist, m, k, cand,
            out_d.data_ptr(), out_r.data_ptr(),
        )  # fmt: skip

    return _run_threads(run, qn, k, f"Q={qn}, M={m}, k={k}, cand={cand}")


def rerank_rows(
    queries: Tensor, rows: Tensor, k: int, metric: str, flat: Tensor | None = None, sq8: tuple | None = None
) -> tuple[Tensor, Tensor]:
    """Re-scores candidate ``rows`` against stored vectors and keeps the ``k`` best (smallest distance) per query.

    Args:
        queries: ``(Q, D)`` fp32.
        rows: ``(Q, C)`` int64 candidate rows, ``-1`` for none.
        k: Results per query.
        metric: ``"l2"`` (squared distance) or ``"ip"`` (negated inner product).
        flat: ``(N, D)`` fp32 stored vectors, or
        sq8: ``(codes (N, D) uint8, scale (D,), offset (D,))``: vectors decoded as ``offset + code * scale``.

    Returns:
        As :func:`ivf_adc_scan`.

    Raises:
        RuntimeError: When the kernel is unavailable.
        ValueError: On malformed operands.
    """
    lib = _LIBS["scan"].require()
    if (flat is None) == (sq8 is None) or metric not in ("l2", "ip"):
        raise ValueError(f"rerank_rows needs exactly one of flat / sq8 and metric l2 or ip, got {metric!r}")
    store = flat if flat is not None else sq8[0]
    qn, dim = queries.shape
    tensors = {"queries": (queries, torch.float32), "rows": (rows, torch.long), "store": (store, store.dtype)}
    if sq8 is not None:
        tensors.update({"scale": (sq8[1], torch.float32), "offset": (sq8[2], torch.float32)})
    for name, (t, dtype) in tensors.items():
        if t.dtype != dtype or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"rerank_rows: {name} must be a contiguous CPU {dtype} tensor, got {t.dtype}")
    if rows.ndim != 2 or rows.shape[0] != qn or store.shape[1:] != (dim,) or (rows >= store.shape[0]).any():
        raise ValueError(f"rerank_rows: rows {tuple(rows.shape)} / store {tuple(store.shape)} do not fit")
    cands = rows.shape[1]
    scale, offset = (None, None) if sq8 is None else (sq8[1], sq8[2])

    def run(q0: int, q1: int, out_d: Tensor, out_r: Tensor) -> int:
        if cands == 0:
            out_d[q0:q1], out_r[q0:q1] = float("inf"), -1
            return 0
        return lib.vqtok_rerank(
            queries.data_ptr(), q0, q1, dim, rows.data_ptr(), cands, _ptr(flat), _ptr(sq8 and sq8[0]),
            _ptr(scale), _ptr(offset), int(metric == "ip"), k, out_d.data_ptr(), out_r.data_ptr(),
        )  # fmt: skip

    return _run_threads(run, qn, k, f"rerank Q={qn}, C={cands}, k={k}")


def _check(qlut, llut, qterm, lists, codes, norms, offsets, nbits: int, k: int) -> None:
    qn, m, ksub = qlut.shape
    nlist = offsets.shape[0] - 1
    p = lists.shape[1]
    expect = {
        "qlut": (qlut, torch.float32, (qn, m, 1 << nbits)),
        "qterm": (qterm, torch.float32, (qn, p)),
        "lists": (lists, torch.long, (qn, p)),
        "codes": (codes, torch.uint8, (codes.shape[0], (m * nbits + 7) // 8)),
        "offsets": (offsets, torch.long, (nlist + 1,)),
    }
    if llut is not None:
        expect["llut"] = (llut, torch.float32, (nlist, m, ksub))
    if norms is not None:
        expect["norms"] = (norms, torch.float32, (codes.shape[0],))
    for name, (t, dtype, shape) in expect.items():
        if t.dtype != dtype or t.device.type != "cpu" or not t.is_contiguous() or tuple(t.shape) != shape:
            raise ValueError(
                f"ivf_adc_scan: {name} must be a contiguous CPU {dtype} tensor of shape {shape}, "
                f"got {t.dtype} {tuple(t.shape)} on {t.device}"
            )
    if k < 1 or not 1 <= nbits <= 16:
        raise ValueError(f"ivf_adc_scan needs k >= 1 and 1 <= nbits <= 16, got k={k}, nbits={nbits}")
    if int(offsets[-1]) > codes.shape[0]:
        raise ValueError(f"ivf_adc_scan: offsets end at {int(offsets[-1])} but there are {codes.shape[0]} codes")


def _run_threads(run, qn: int, k: int, what: str) -> tuple[Tensor, Tensor]:
    """Runs ``run(q0, q1, out_d, out_r)`` on query ranges, one per thread (ctypes releases the GIL)."""
    out_d = torch.empty(qn, k, dtype=torch.float32)
    out_r = torch.empty(qn, k, dtype=torch.long)
    if qn == 0:
        return out_d, out_r
    threads = max(1, min(torch.get_num_threads(), qn // _MIN_QUERIES_PER_THREAD))
    step = (qn + threads - 1) // threads
    bounds = [(q0, min(qn, q0 + step)) for q0 in range(0, qn, step)]
    if len(bounds) == 1:
        status = [run(0, qn, out_d, out_r)]
    else:
        status = list(thread_pool(len(bounds)).map(lambda b: run(*b, out_d, out_r), bounds))
    if any(status):
        raise RuntimeError(f"the ADC scan kernel failed (codes {status}) for {what}")
    return out_d, out_r
