"""Reading ``.npy`` files and checking raw arrays, with errors that name the file.

The dtype rules of the modalities are built from :func:`scale_integers_and_check_floats`, so every modality
states its rule in one line of its module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_npy", "scale_integers_and_check_floats", "real_array"]


def load_npy(path: str | os.PathLike[str], mmap: bool = False) -> np.ndarray:
    """Loads a numeric ``.npy`` array without pickles.

    Raises:
        FileNotFoundError: When ``path`` is missing.
        ValueError: On a folder, an empty, truncated or non-``.npy`` file, or an object array.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a .npy file")
    if not path.is_file():
        raise FileNotFoundError(f"input {str(path)!r} not found")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{str(path)!r}: the file is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
    except Exception as err:  # noqa: BLE001 - numpy's header parser raises SyntaxError, TokenError, ... on junk
        raise ValueError(f"{str(path)!r} is not a .npy file ({type(err).__name__}: {err})") from err
    if dtype.hasobject:
        raise ValueError(f"{str(path)!r} holds Python objects (pickles are never loaded); save a numeric array")
    # Check the header's promise before numpy allocates it: a corrupt shape must not become a huge allocation.
    expected = math.prod(shape) * dtype.itemsize
    if expected > size - offset:
        raise ValueError(
            f"{str(path)!r} is truncated or corrupt: its header promises {expected} bytes of {dtype} {shape}, "
            f"the file holds {size - offset}"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        # numpy says "Cannot load file containing pickled data" or "EOF: reading array data" without the path.
        raise ValueError(f"{str(path)!r} is not a readable .npy array: {err}") from err


def real_array(arr: np.ndarray, source: str) -> np.ndarray:
    """Returns ``arr`` when it holds real numbers (bool, integer or float).

    Raises:
        TypeError: On complex, string, structured or object arrays.
    """
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(
            f"{source}: complex array ({arr.dtype}); vqtok reads real signals only, pass the real part or "
            "magnitude explicitly"
        )
    if kind not in "biuf" or arr.dtype.names is not None:
        raise TypeError(f"{source}: dtype {arr.dtype} is not numeric; expected integer or floating point values")
    return arr


def scale_integers_and_check_floats(
    arr: np.ndarray,
    source: str,
    integer_scales: Mapping[str, tuple[float, float]],
    float_range: tuple[float, float] | None,
) -> Tensor:
    """Applies a modality's dtype rule and returns float32.

    Args:
        arr: Raw values.
        source: Names the file in errors.
        integer_scales: Integer dtype name (``"uint8"``) -> ``(offset, scale)``: ``(x - offset) / scale``.
            Integer dtypes not listed are rejected.
        float_range: Floats must lie in this closed range (``None``: any finite value).

    Raises:
        TypeError: On a dtype the rule does not accept.
        ValueError: On NaN/Inf or floats outside ``float_range``.
    """
    arr = real_array(np.asarray(arr), source)
    if arr.dtype.kind in "biu":
        name = arr.dtype.name
        if name not in integer_scales:
            floats = f"floats in [{float_range[0]:g}, {float_range[1]:g}]" if float_range else "floats"
            accepted = ", ".join([*integer_scales, floats])
            raise TypeError(
                f"{source}: integer dtype {name} has no defined scale here; convert it to one of: {accepted}"
            )
        offset, scale = integer_scales[name]
        if offset == 0 and arr.dtype.itemsize <= 2:
            # 8/16-bit values are exact in float32 and IEEE division rounds correctly, so this equals the float64
            # path bit for bit (checked for every uint8/uint16 value) at half the cost per decoded image.
            return torch.from_numpy(np.asarray(arr, dtype=np.float32) / np.float32(scale))
        return torch.from_numpy(np.asarray((np.asarray(arr, dtype=np.float64) - offset) / scale)).float()
    x = np.asarray(arr, dtype=np.float64) if arr.dtype.itemsize > 4 else np.asarray(arr)
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{source}: the array holds NaN or infinite values")
    if float_range is not None and x.size:
        lo, hi = float(x.min()), float(x.max())
        if lo < float_range[0] or hi > float_range[1]:
            raise ValueError(
                f"{source}: float values span [{lo:g}, {hi:g}], outside the accepted range "
                f"[{float_range[0]:g}, {float_range[1]:g}] (rescale them, or store integers such as uint8)"
            )
    out = torch.from_numpy(np.array(x, dtype=np.float32))  # a copy: the input may be a read-only memory map
    if out.numel() and not torch.isfinite(out).all():
        raise ValueError(f"{source}: values beyond the float32 range (about 3.4e38)")
    return out
