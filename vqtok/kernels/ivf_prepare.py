"""The per-query part of an IVF-PQ search in one compiled call per thread: probe and lookup tables.

:func:`ivf_prepare` returns what :func:`vqtok.kernels.adc_scan.ivf_adc_scan` / ``ivf_fastscan`` take: the probed
lists, their per-probe constants and the per-query PQ tables in distance form (see ``_cpu_ivf_prepare.cpp``). Torch
would do the same in a dozen small operations per query batch, each an OpenMP region when torch runs several
threads; on a busy machine every region waits for its slowest thread, so 2-thread search was slower than 1-thread.
Here the queries are split into ranges, one per ``torch.get_num_threads()`` thread of the kernels' pool, and each
range is one C++ call (ctypes releases the GIL).

Built and cached like the other kernels (:func:`vqtok.kernels._cpu_ext.build_library`); :func:`prepare_available`
is ``False`` without a compiler or with ``VQTOK_DISABLE_CPU_EXT=1``, and callers keep their torch path.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from ._cpu_ext import LazyLibrary, thread_pool

__all__ = ["ivf_prepare", "prepare_available"]

_SOURCE = Path(__file__).with_name("_cpu_ivf_prepare.cpp")
_I64, _I32, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_ARGTYPES = [_PTR, _I64, _I64, _I32, _PTR, _I64, _I32, _I32, _PTR, _I32, _I32, _PTR, _PTR, _PTR]
# Queries per thread below which another thread costs more than it saves.
_MIN_QUERIES_PER_THREAD = 16


def _setup(lib: ctypes.CDLL) -> None:
    lib.vqtok_ivf_prepare.argtypes, lib.vqtok_ivf_prepare.restype = _ARGTYPES, _I32


_LIB = LazyLibrary(_SOURCE, "vqtok_cpu_ivf_prepare.so", "IVF preparation", _setup)


def prepare_available() -> bool:
    """Whether the compiled preparation kernel can be used (builds it on first call)."""
    return _LIB.get() is not None


def ivf_prepare(
    queries: Tensor, coarse: Tensor | None, nprobe: int, metric: str, codebooks: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Probe and PQ tables of ``queries`` in distance form (smaller is better).

    Args:
        queries: ``(Q, D)`` fp32 queries (already rotated / normalised).
        coarse: ``(L, D)`` fp32 coarse centroids, or ``None`` (one list).
        nprobe: Lists per query (clipped to ``L``).
        metric: ``"l2"`` or ``"ip"``.
        codebooks: ``(M, K, D / M)`` fp32 PQ codebooks.

    Returns:
        ``(lists (Q, P) int64, qterm (Q, P) fp32, qlut (Q, M, K) fp32)``: lists by increasing
        ``||q - c||^2`` (L2) or ``-<q, c>`` (ties: lowest list), that value as qterm (``||q||^2`` or 0 without
        centroids), and ``-2 <q_m, C_m[j]>`` (L2) or ``-<q_m, C_m[j]>``.

    Raises:
        RuntimeError: When the kernel is unavailable or fails.
        ValueError: On malformed operands.
    """
    lib = _LIB.require()
    qn, dim = queries.shape
    m, k, dsub = codebooks.shape
    if metric not in ("l2", "ip") or m * dsub != dim or (coarse is not None and coarse.shape[1:] != (dim,)):
        raise ValueError(f"ivf_prepare: queries {tuple(queries.shape)}, codebooks {tuple(codebooks.shape)}, {metric}")
    # No torch arithmetic here (norms and transposes are done in C++): at several threads each torch operation on
    # more than a few thousand elements is an OpenMP region (see the module docstring).
    queries, codebooks = queries.float().contiguous(), codebooks.float().contiguous()
    p = 1 if coarse is None else min(nprobe, coarse.shape[0])
    coarse = None if coarse is None else coarse.float().contiguous()
    lists = torch.empty(qn, p, dtype=torch.long)
    qterm = torch.empty(qn, p)
    qlut = torch.empty(qn, m, k)
    if qn == 0:
        return lists, qterm, qlut

    def run(bounds: tuple[int, int]) -> int:
        return lib.vqtok_ivf_prepare(
            queries.data_ptr(), *bounds, dim, None if coarse is None else coarse.data_ptr(),
            0 if coarse is None else coarse.shape[0], p, int(metric == "ip"), codebooks.data_ptr(), m, k,
            lists.data_ptr(), qterm.data_ptr(), qlut.data_ptr(),
        )  # fmt: skip

    threads = max(1, min(torch.get_num_threads(), qn // _MIN_QUERIES_PER_THREAD))
    step = (qn + threads - 1) // threads
    ranges = [(q0, min(qn, q0 + step)) for q0 in range(0, qn, step)]
    status = [run(ranges[0])] if len(ranges) == 1 else list(thread_pool(len(ranges)).map(run, ranges))
    if any(status):
        raise RuntimeError(f"the IVF preparation kernel failed (codes {status}) for Q={qn}, D={dim}, M={m}")
    return lists, qterm, qlut
