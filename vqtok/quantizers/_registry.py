"""Name -> quantizer class registry, so configs and tests can refer to quantizers by string."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .base import Quantizer

__all__ = ["create", "list_quantizers", "register_quantizer", "example_config"]

Q = TypeVar("Q", bound=type[Quantizer])


@dataclass(frozen=True)
class _Entry:
    cls: type[Quantizer]
    #: Small constructor kwargs used by the generated contract tests and the docs.
    example: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def register_quantizer(name: str, example: dict[str, Any] | None = None) -> Callable[[Q], Q]:
    """Class decorator that registers a quantizer under ``name``.

    Args:
        name: Registry key, e.g. ``"vq"``.
        example: Small constructor kwargs that build a fast instance; the contract tests run on it.
    """

    def wrap(cls: Q) -> Q:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"quantizer name {name!r} is already registered to {_REGISTRY[name].cls.__name__}")
        _REGISTRY[name] = _Entry(cls, dict(example or {}))
        return cls

    return wrap


def list_quantizers() -> list[str]:
    """Names of all registered quantizers, sorted."""
    return sorted(_REGISTRY)


def example_config(name: str) -> dict[str, Any]:
    """The small example kwargs registered with ``name``."""
    return dict(_lookup(name).example)


def create(name: str, channel_first: bool = False, **cfg: Any) -> Quantizer:
    """Builds the quantizer registered as ``name`` with constructor kwargs ``cfg``.

    Args:
        name: Registry key.
        channel_first: Take and return ``(B, D, ...)`` latents (see :class:`Quantizer`); works for every
            quantizer because the base class handles the layout.
        **cfg: Constructor kwargs.

    Raises:
        ValueError: If ``name`` is not registered or ``cfg`` has keys the class does not accept.
    """
    entry = _lookup(name)
    try:
        quantizer = entry.cls(**cfg)
    except TypeError as err:
        raise ValueError(f"bad config for quantizer {name!r} ({entry.cls.__name__}): {err}") from err
    quantizer.channel_first = bool(channel_first)
    return quantizer


def _lookup(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown quantizer {name!r}; registered: {', '.join(list_quantizers())}")
    return _REGISTRY[name]
