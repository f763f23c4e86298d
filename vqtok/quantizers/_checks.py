"""The numerical rule every quantizer follows (see :mod:`vqtok.quantizers.base`): its errors, its checks, its switch.

Kept apart from the base class so that the composites (:mod:`~vqtok.quantizers.residual`,
:mod:`~vqtok.quantizers.grouped`) and the base share one switch: :func:`skip_input_checks` turns the checks off for
the levels or groups of a composite whose latents were already checked once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = [
    "EncodeOptionError",
    "NonFiniteError",
    "check_finite",
    "check_index_tensor",
    "check_latents",
    "check_mask",
    "checks_enabled",
    "fp32_region",
    "require_finite",
    "skip_input_checks",
]

_CHECKS_ENABLED = True


@contextlib.contextmanager
def skip_input_checks() -> Iterator[None]:
    """Turns off the NaN/Inf and index-range checks, which each cost one host sync.

    Shape and dtype checks stay on: they are free.
    """
    global _CHECKS_ENABLED
    previous = _CHECKS_ENABLED
    _CHECKS_ENABLED = False
    try:
        yield
    finally:
        _CHECKS_ENABLED = previous


def checks_enabled() -> bool:
    """False inside :func:`skip_input_checks`."""
    return _CHECKS_ENABLED


class NonFiniteError(ValueError):
    """NaN/Inf latents (after the cast to fp32), parameters or buffers, or an fp32 overflow inside a quantizer."""


class EncodeOptionError(TypeError, ValueError):
    """An ``encode`` keyword argument the quantizer does not accept.

    A ``TypeError`` like any unexpected keyword argument; also a ``ValueError`` because some quantizers
    raised that before the rule was shared.
    """


def check_finite(
    owner: str, state: list[tuple[str, Tensor]], latents32: Tensor | None, original: Tensor | None
) -> None:
    """Raises :class:`NonFiniteError` if the fp32 latents or any of the named float tensors is not finite.

    One host sync for everything: the min and max of each tensor (no temporary the size of the input) are
    stacked and tested at once; NaN propagates through both and Inf shows in one.

    Args:
        owner: The quantizer's class name, for the message.
        state: ``(name, tensor)`` of the quantizer's float parameters and buffers.
        latents32: The latents after the cast to fp32, or ``None`` (decode checks the state only).
        original: The latents before the cast, to report the first offending value as given.
    """
    if not _CHECKS_ENABLED:
        return
    tensors = [t for _, t in state]
    if latents32 is not None and latents32.numel():
        tensors.append(latents32)
    if not tensors:
        return
    extremes = torch.stack([torch.stack(torch.aminmax(t.detach())).float() for t in tensors])
    if bool(torch.isfinite(extremes).all()):
        return
    for name, t in state:
        if not bool(torch.isfinite(t.detach()).all()):
            bad = int((~torch.isfinite(t.detach())).sum())
            raise NonFiniteError(
                f"{owner} {name!r} holds {bad} NaN/Inf value(s) (corrupt or diverged weights); refusing to quantize "
                "with it"
            )
    assert latents32 is not None and original is not None
    bad_mask = ~torch.isfinite(latents32)
    first = original[bad_mask][0].item()
    raise NonFiniteError(
        f"{owner} got latents with {int(bad_mask.sum())} value(s) that are not finite in float32 "
        f"(NaN, Inf, or magnitude above {torch.finfo(torch.float32).max:.3g}); first offending value: {first!r}"
    )


def require_finite(owner: str, tensor: Tensor, what: str, latents: Tensor | None = None) -> None:
    """Raises :class:`NonFiniteError` if ``tensor`` (an intermediate computed from finite latents) holds NaN/Inf."""
    if not _CHECKS_ENABLED or tensor.numel() == 0 or bool(torch.isfinite(tensor.detach()).all()):
        return
    peak = f" (largest |latent| {abs_max(latents):.3g})" if latents is not None and latents.numel() else ""
    raise NonFiniteError(f"{owner} overflowed float32 computing {what} from finite latents{peak}; rescale the latents")


def abs_max(t: Tensor) -> float:
    """Largest magnitude of ``t`` without a temporary of its size."""
    return max(float(t.detach().amax()), -float(t.detach().amin()))


@contextlib.contextmanager
def fp32_region(reference: Tensor) -> Iterator[None]:
    """Disables autocast so that distances and statistics are computed in fp32."""
    device_type = reference.device.type if reference.device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def check_latents(owner: str, latents: Tensor, dim: int) -> None:
    """Raises ``ValueError`` unless ``latents`` is a floating-point tensor ``(..., dim)``."""
    if not isinstance(latents, Tensor):
        raise ValueError(f"latents must be a torch.Tensor, got {type(latents).__name__}")
    if not latents.is_floating_point():
        raise ValueError(f"latents must be floating point, got dtype {latents.dtype}")
    if latents.ndim < 1 or latents.shape[-1] != dim:
        raise ValueError(f"{owner} expects channels-last latents (..., {dim}), got shape {tuple(latents.shape)}")


def check_mask(mask: Tensor, lead: torch.Size) -> Tensor:
    """Returns ``mask`` if it is a bool tensor of the latents' leading shape ``lead``; raises ``ValueError`` if not."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor, got {got}")
    if mask.shape != lead:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the latents' leading shape {tuple(lead)}")
    return mask


def check_index_tensor(owner: str, indices: Tensor, trailing: tuple[int, ...]) -> Tensor:
    """Checks dtype and trailing shape ``(..., *trailing)`` (not the range); returns int64 indices."""
    if not isinstance(indices, Tensor):
        raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
    if indices.ndim < len(trailing) or tuple(indices.shape[indices.ndim - len(trailing) :]) != trailing:
        expected = "(..., " + ", ".join(map(str, trailing)) + ")" if trailing else "(...)"
        raise ValueError(f"{owner} expects indices of shape {expected}, got {tuple(indices.shape)}")
    return indices.long()
