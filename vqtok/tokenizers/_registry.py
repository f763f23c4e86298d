"""Name -> tokenizer registry and factory (timm ``register_model``/``create_model`` style).

A registered name is either a tokenizer family (the class itself, e.g. ``"image2d"``) or a variant: a
function returning a tokenizer with preset config values (e.g. ``"image2d_f4_vq1024"``). Every family is a
:class:`~vqtok.tokenizers.BaseTokenizer`: neural (``image2d``, ``audio``, ...) or fitted (``fast``, ``nodepiece``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .contract import BaseTokenizer

__all__ = ["create_tokenizer", "list_tokenizers", "register_tokenizer", "tokenizer_class"]

T = TypeVar("T")

_REGISTRY: dict[str, Callable[..., BaseTokenizer]] = {}
_FAMILIES: dict[str, type[BaseTokenizer]] = {}


def register_tokenizer(name: str) -> Callable[[T], T]:
    """Registers a :class:`~vqtok.tokenizers.BaseTokenizer` subclass (a family) or a variant function under ``name``.

    A class gets ``name`` as its ``architecture``, which ``save_pretrained`` writes and
    ``from_pretrained`` uses to pick the class back.
    """

    def wrap(obj: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not obj:
            raise ValueError(f"tokenizer name {name!r} is already registered")
        if isinstance(obj, type):
            from .contract import BaseTokenizer

            if not issubclass(obj, BaseTokenizer):
                raise TypeError(f"tokenizer family {name!r} must subclass BaseTokenizer, got {obj.__name__}")
            obj.architecture = name  # type: ignore[attr-defined]
            _FAMILIES[name] = obj  # type: ignore[assignment]
        _REGISTRY[name] = obj  # type: ignore[assignment]
        return obj

    return wrap


def list_tokenizers(filter: str = "") -> list[str]:
    """Registered tokenizer names, sorted, optionally filtered by an ``fnmatch`` pattern."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, filter)] if filter else names


def tokenizer_class(name: str) -> type[BaseTokenizer]:
    """The class of family ``name`` (as stored in a checkpoint's ``architecture``).

    Raises:
        ValueError: If no family of that name is registered.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown tokenizer family {name!r}; registered families: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def create_tokenizer(name: str, **cfg: Any) -> BaseTokenizer:
    """Builds the tokenizer registered as ``name``.

    Args:
        name: A family (``"image2d"``) or a variant name from :func:`list_tokenizers`.
        **cfg: Config fields, overriding the family defaults or the variant's presets. ``None``
            values are dropped so that callers can pass optional settings through unchanged.

    Raises:
        ValueError: On an unknown name or unknown config keys.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown tokenizer {name!r}; registered: {', '.join(list_tokenizers())}")
    cfg = {k: v for k, v in cfg.items() if v is not None}
    entry = _REGISTRY[name]
    if isinstance(entry, type):
        return entry.from_config(cfg)
    return entry(**cfg)
