"""Bit-packing of codebook indices: ``M`` indices of ``nbits`` each become ``ceil(M * nbits / 8)`` bytes.

The bit stream is little-endian within and across indices (index ``m`` occupies bits
``m * nbits`` to ``(m + 1) * nbits - 1``), so ``M=8, nbits=8`` is plain ``uint8`` storage and
``M=16, nbits=4`` puts two indices in each byte.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["code_size", "pack_indices", "unpack_indices"]


def code_size(num_codebooks: int, nbits: int) -> int:
    """Bytes per vector for ``num_codebooks`` indices of ``nbits`` bits each."""
    return (num_codebooks * nbits + 7) // 8


def pack_indices(indices: Tensor, nbits: int) -> Tensor:
    """Packs indices into bytes.

    Args:
        indices: ``(N, M)`` integer ids in ``[0, 2**nbits)``.
        nbits: Bits per index, 1 to 32.

    Returns:
        ``(N, ceil(M * nbits / 8))`` uint8 on the CPU.

    Raises:
        ValueError: On a bad shape, ``nbits`` out of range or an index that does not fit in ``nbits``.
    """
    if indices.ndim != 2:
        raise ValueError(f"pack_indices expects (N, M) indices, got shape {tuple(indices.shape)}")
    if not 1 <= nbits <= 32:
        raise ValueError(f"nbits must be in [1, 32], got {nbits}")
    idx = indices.detach().cpu().numpy().astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= (1 << nbits)):
        raise ValueError(f"indices must lie in [0, {1 << nbits}) for nbits={nbits}")
    n, m = idx.shape
    shifts = np.arange(nbits, dtype=np.int64)
    bits = ((idx[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(n, m * nbits)
    return torch.from_numpy(np.packbits(bits, axis=1, bitorder="little"))


def unpack_indices(packed: Tensor, num_codebooks: int, nbits: int) -> Tensor:
    """Inverse of :func:`pack_indices`.

    Args:
        packed: ``(N, ceil(M * nbits / 8))`` uint8.
        num_codebooks: ``M``.
        nbits: Bits per index.

    Returns:
        ``(N, M)`` int64 indices on the CPU.

    Raises:
        ValueError: If ``packed`` has the wrong dtype or width.
    """
    width = code_size(num_codebooks, nbits)
    if packed.ndim != 2 or packed.dtype != torch.uint8 or packed.shape[1] != width:
        raise ValueError(f"expected (N, {width}) uint8 packed codes, got {tuple(packed.shape)} {packed.dtype}")
    n = packed.shape[0]
    bits = np.unpackbits(packed.cpu().numpy(), axis=1, bitorder="little", count=num_codebooks * nbits)
    bits = bits.reshape(n, num_codebooks, nbits).astype(np.int64)
    idx = (bits << np.arange(nbits, dtype=np.int64)).sum(-1)
    return torch.from_numpy(idx)
