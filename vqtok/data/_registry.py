"""Name -> dataset factory registry, so configs and the CLI can refer to data sets by string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch.utils.data import Dataset

__all__ = ["check_split", "create_dataset", "list_datasets", "register_dataset"]

F = TypeVar("F", bound=Callable[..., Dataset])

_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str) -> Callable[[F], F]:
    """Registers a factory ``fn(split: str, **kwargs) -> Dataset`` under ``name``."""

    def wrap(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"dataset name {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def check_split(split: str) -> None:
    """Raises ``ValueError`` unless ``split`` is ``"train"`` or ``"test"``, the splits every data set has."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def create_dataset(name: str, split: str = "train", **kwargs: Any) -> Dataset:
    """Builds data set ``name`` for ``split`` (``"train"`` or ``"test"``).

    Raises:
        ValueError: On an unknown name or split.
        FileNotFoundError: When the data files are not installed (the message says how to get them).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(list_datasets())}")
    check_split(split)
    return _REGISTRY[name](split, **kwargs)
