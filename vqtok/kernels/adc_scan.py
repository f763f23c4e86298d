"""Inverted-file ADC scan kernel (``_cpu_scan.cpp``): lookup-table sums over packed codes with a running top-k.

Built, cached and loaded like the nearest-code kernel (:func:`vqtok.kernels._cpu_ext.build_library`); without a
compiler or with ``VQTOK_DISABLE_CPU_EXT=1`` :func:`scan_available` is ``False`` and callers use their torch path
(:func:`vqtok.vectors.index.scan.scan_lists` does).

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import torch
from torch import Tensor

from ._cpu_ext import build_library, thread_pool

__all__ = ["ivf_adc_scan", "scan_available"]

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("_cpu_scan.cpp")
_LIB_NAME = "vqtok_cpu_scan.so"
# Queries per thread below which another thread costs more than it saves.
_MIN_QUERIES_PER_THREAD = 16

_lock = threading.Lock()
_state: dict[str, object] = {}


def _load() -> ctypes.CDLL | None:
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            lib, reason = build_library(_SOURCE, _LIB_NAME)
            if lib is not None:
                i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
                lib.vqtok_ivf_adc_scan.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i32, ptr, i32, ptr, ptr, i64]
                lib.vqtok_ivf_adc_scan.argtypes += [i32, i32, i32, ptr, ptr, ptr]
                lib.vqtok_ivf_adc_scan.restype = i32
            else:
                logger.info("vqtok ADC scan kernel unavailable (%s); using the torch path", reason)
            _state["reason"] = reason
            _state["lib"] = lib
    return _state["lib"]  # type: ignore[return-value]


def scan_available() -> bool:
    """Whether the compiled scan kernel can be used (builds it on first call)."""
    return _load() is not None


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
    lib = _load()
    if lib is None:
        raise RuntimeError(f"the ADC scan kernel is unavailable: {_state.get('reason')}")
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
    if codes.shape[0] and int(offsets[-1]) > codes.shape[0]:
        raise ValueError(f"ivf_adc_scan: offsets end at {int(offsets[-1])} but there are {codes.shape[0]} codes")
    out_d = torch.empty(qn, k, dtype=torch.float32)
    out_r = torch.empty(qn, k, dtype=torch.long)
    if qn == 0:
        return out_d, out_r

    def run(q0: int, q1: int) -> int:
        scratch = torch.empty(m * ksub, dtype=torch.float32)
        return lib.vqtok_ivf_adc_scan(
            qlut.data_ptr(), _ptr(llut), qterm.data_ptr(), lists.data_ptr(), q0, q1, p, codes.data_ptr(),
            codes.shape[1], _ptr(norms), offsets.data_ptr(), nlist, m, nbits, k, scratch.data_ptr(),
            out_d.data_ptr(), out_r.data_ptr(),
        )  # fmt: skip

    threads = max(1, min(torch.get_num_threads(), qn // _MIN_QUERIES_PER_THREAD))
    if threads == 1:
        status = [run(0, qn)]
    else:
        step = (qn + threads - 1) // threads
        bounds = [(q0, min(qn, q0 + step)) for q0 in range(0, qn, step)]
        status = list(thread_pool(len(bounds)).map(lambda b: run(*b), bounds))
    if any(status):
        raise RuntimeError(f"the ADC scan kernel failed (codes {status}) for Q={qn}, M={m}, nbits={nbits}, k={k}")
    return out_d, out_r
