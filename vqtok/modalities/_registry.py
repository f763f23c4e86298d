"""Name -> :class:`~vqtok.modalities.base.Modality` registry."""

from __future__ import annotations

from .base import Modality

__all__ = ["find_modality", "get_modality", "list_modalities", "modality_for_suffix", "register_modality"]

_REGISTRY: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Registers ``modality`` under ``modality.name`` and returns it.

    Raises:
        ValueError: When another descriptor has that name, or claims one of its file suffixes.
    """
    old = _REGISTRY.get(modality.name)
    if old is not None and old is not modality:
        raise ValueError(f"modality {modality.name!r} is already registered")
    for other in _REGISTRY.values():
        shared = set(other.suffixes) & set(modality.suffixes)
        if other is not modality and shared:
            raise ValueError(f"modality {modality.name!r}: suffixes {sorted(shared)} already belong to {other.name!r}")
    _REGISTRY[modality.name] = modality
    return modality


def list_modalities() -> list[str]:
    """Registered modality names, sorted."""
    return sorted(_REGISTRY)


def get_modality(name: str) -> Modality:
    """The descriptor registered as ``name``.

    Raises:
        ValueError: On an unknown name.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown modality {name!r}; registered: {', '.join(list_modalities())}")
    return _REGISTRY[name]


def find_modality(name: str | None) -> Modality | None:
    """The descriptor registered as ``name``, or ``None`` (tokenizers of no registered modality)."""
    return _REGISTRY.get(name) if name else None


def modality_for_suffix(suffix: str) -> Modality | None:
    """The modality that reads files ending in ``suffix`` (case-insensitive), or ``None``."""
    suffix = suffix.lower()
    return next((m for m in _REGISTRY.values() if suffix in m.readers), None)
