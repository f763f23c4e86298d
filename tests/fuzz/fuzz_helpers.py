"""Strategies and assertions shared by the fuzz tests."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

#: Exceptions vqtok documents for bad input (``CheckpointError`` is a ``ValueError``).
DOCUMENTED = (ValueError, TypeError)

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
OTHER_DTYPES = (torch.int64, torch.uint8, torch.bool, torch.complex64)


def assert_documented(err: BaseException) -> None:
    """A raised error is acceptable when it is documented and says something."""
    assert isinstance(err, DOCUMENTED), f"undocumented {type(err).__name__}: {err}"
    assert len(str(err).strip()) > 8, f"{type(err).__name__} without a useful message: {err!r}"


@st.composite
def hostile_tensors(draw, shape: tuple[int, ...], extremes: bool = False) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """A tensor of ``shape`` with a drawn dtype and values: normal, zeros, huge, tiny, NaN or Inf."""
    dtype = draw(st.sampled_from(FLOAT_DTYPES + (OTHER_DTYPES if draw(st.booleans()) else ())))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["normal", "zeros", "scaled", "nan", "inf"]))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "scaled":
        limit = 300 if extremes else 3
        x = x * 10.0 ** draw(st.integers(-limit, limit))
    elif kind in ("nan", "inf") and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = math.nan if kind == "nan" else -math.inf
    if dtype.is_complex:
        return x.to(dtype)
    if dtype == torch.bool:
        return x > 0
    if not dtype.is_floating_point:
        if dtype == torch.int64 and draw(st.booleans()):
            # Small non-negative integers: valid node ids for graph tokenizers, raw pixels for image ones.
            return torch.randint(0, 40, shape, generator=g)
        info = torch.iinfo(dtype)
        return x.nan_to_num(0, 0, 0).clamp(info.min, info.max).to(dtype)
    return x.to(dtype)


@st.composite
def extreme_tensors(draw, shape: tuple[int, ...]) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Normal values with a few entries at the edge of fp32/fp64 (the magnitudes of issue 17)."""
    dtype = draw(st.sampled_from((torch.float32, torch.float64)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    for _ in range(draw(st.integers(1, 3))):
        if x.numel():
            value = draw(st.sampled_from([1e300, -1e300, 3e38, -3e38, 1e38, 1e30, -1e30, 1e20]))
            x.view(-1)[draw(st.integers(0, x.numel() - 1))] = value
    return x.to(dtype)
