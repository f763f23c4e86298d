"""Plumbing shared by the composite quantizers (residual, grouped, multi-scale).

The one rule for combining the outputs of the parts (levels, groups, scales) of a composite:

* **Losses** are per-element means inside every part, so each part's loss is weighted by the
  fraction of the latent's channels it quantizes. A residual level sees all D channels (weight 1:
  level losses are *summed*, as in SoundStream and DAC); a group sees ``D / G`` of them (weight
  ``1 / G``: group losses are *averaged*, so a grouped quantizer's loss has the scale of one
  ungrouped quantizer of the same width). ``loss``, and every combined key of ``losses``, follow
  this rule; ``losses`` also keeps each part's own terms under ``level{i}/...`` or ``group{g}/...``.
* **Metrics** are statistics of one index entry, so they are *averaged* over parts (perplexity,
  usage, ...), except counts (``restarted_codes``), which are summed; each part's own metrics are
  kept under the same prefixes.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._registry import create
from .base import Quantizer, QuantizerOutput

__all__ = ["build_parts", "check_count", "combine", "renamed", "shared_projection"]

#: Metrics that count events and therefore add up over parts instead of averaging.
SUMMED_METRICS = frozenset({"restarted_codes"})


def build_parts(
    quantizer: str | Sequence[Quantizer],
    count: int | None,
    kwargs: dict[str, Any] | None,
    dim: int | None,
    owner: str,
) -> list[Quantizer]:
    """The parts of a composite: ``count`` fresh ``create(quantizer, dim=dim, **kwargs)`` or the given instances.

    Raises:
        ValueError: On a bad count, kwargs given with instances, or parts that disagree on ``dim``,
            ``codebook_size`` or ``index_shape``, or use ``channel_first`` (the composite owns the layout).
    """
    if isinstance(quantizer, str):
        count = check_count(count, f"{owner} count")
        cfg = dict(kwargs or {})
        if dim is not None:
            cfg.setdefault("dim", dim)
        parts = [create(quantizer, **cfg) for _ in range(count)]
    else:
        parts = list(quantizer)
        if kwargs:
            raise ValueError(f"{owner}: quantizer_kwargs only apply when the quantizer is given by name")
        if not parts or not all(isinstance(p, Quantizer) for p in parts):
            raise ValueError(f"{owner}: expected a registered name or a non-empty list of Quantizer instances")
        if count is not None and count != len(parts):
            raise ValueError(f"{owner}: count {count} does not match the {len(parts)} quantizers given")
    first = parts[0]
    for p in parts:
        if p.channel_first:
            raise ValueError(f"{owner}: parts must be channels-last; set channel_first on the composite instead")
        if (p.dim, p.codebook_size, tuple(p.index_shape)) != (first.dim, first.codebook_size, tuple(first.index_shape)):
            raise ValueError(
                f"{owner}: every part needs the same dim, codebook_size and index_shape; got "
                f"{(first.dim, first.codebook_size, tuple(first.index_shape))} and "
                f"{(p.dim, p.codebook_size, tuple(p.index_shape))}"
            )
        if dim is not None and p.dim != dim:
            raise ValueError(f"{owner}: a part has dim {p.dim}, expected {dim}")
    return parts


def shared_projection(dim: int | None, inner: int, shared_codebook_dim: int | None) -> tuple[int, nn.Module, nn.Module]:
    """``(dim, project_in, project_out)`` around parts of total width ``inner``.

    Identities and ``dim = inner`` without ``shared_codebook_dim``; otherwise learned ``dim -> inner`` and
    ``inner -> dim`` projections, which need the outer width ``dim``.
    """
    if shared_codebook_dim is None:
        return inner, nn.Identity(), nn.Identity()
    if dim is None:
        raise ValueError("shared_codebook_dim needs dim, the latent width around the projection")
    return int(dim), nn.Linear(int(dim), inner), nn.Linear(inner, int(dim))


def combine(outs: Sequence[QuantizerOutput], prefix: str, weight: float, like: Tensor) -> QuantizerOutput:
    """Loss, losses and metrics of parts combined by the module's rule; ``quantized``/``indices`` left empty.

    Args:
        outs: The parts' outputs, in order.
        prefix: ``"level"`` or ``"group"``; part ``i``'s own terms are kept as ``f"{prefix}{i}/{key}"``.
        weight: Loss weight of every part (1 for residual levels, ``1 / G`` for groups).
        like: Any tensor on the right device, for the zero loss.
    """
    loss = like.new_zeros(())
    losses: dict[str, Tensor] = {}
    metrics: dict[str, Tensor] = {}
    gathered: dict[str, list[Tensor]] = {}
    for i, out in enumerate(outs):
        loss = loss + weight * out.loss
        for key, value in out.losses.items():
            losses[f"{prefix}{i}/{key}"] = value
            if "/" not in key:
                losses[key] = losses.get(key, 0.0) + weight * value
        for key, value in out.metrics.items():
            metrics[f"{prefix}{i}/{key}"] = value
            if "/" not in key:
                gathered.setdefault(key, []).append(value)
    for key, values in gathered.items():
        stacked = torch.stack([v.float() for v in values])
        metrics[key] = stacked.sum() if key in SUMMED_METRICS else stacked.mean()
    return QuantizerOutput(like.new_zeros(0), like.new_zeros(0, dtype=torch.long), loss, losses, metrics)


def check_count(value: Any, name: str, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; bools, floats and strings are refused."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {'in ' if high is not None else ''}{bound}, got {number}")
    return number


def renamed(kwargs: dict[str, Any], old: str, new: str, current: Any, default: Any, owner: str) -> Any:
    """Resolves a deprecated keyword ``old`` (popped from ``kwargs``) into ``new``, with a FutureWarning.

    Saved configs that use ``old`` keep loading; giving both names with different values is an error.
    """
    if old not in kwargs:
        return current
    value = kwargs.pop(old)
    warnings.warn(f"{owner}: {old}= is deprecated, use {new}= (same meaning)", FutureWarning, stacklevel=3)
    if current is not default and current != value:
        raise ValueError(f"{owner}: got both {new}={current!r} and its deprecated alias {old}={value!r}")
    return value
