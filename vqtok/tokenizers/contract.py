"""The contract every registered tokenizer follows, neural or not.

:class:`BaseTokenizer` is what the CLI (``vqtok encode|decode|eval|export``), :class:`~vqtok.vocab.MultimodalVocab`
and the exporter rely on:

* a registry name (``architecture``, set by ``@register_tokenizer``) and a ``modality`` (``"image"``, ``"audio"``,
  ``"action"``, ``"graph"``, ...);
* a dataclass ``config`` that round-trips through JSON (:meth:`BaseTokenizer.from_config`);
* ``encode(signal) -> indices`` (int64 ``(B, *grid, *index_shape)``) and ``decode(indices) -> signal``, with
  ``codebook_size`` (ids lie in ``[0, codebook_size)``) and ``index_shape`` (trailing entries per token);
* ``save_pretrained``/``from_pretrained`` through one checkpoint folder format (``config.json`` +
  ``model.safetensors``, see :mod:`vqtok.tokenizers._pretrained`). Whatever a tokenizer learned, weights or fitted
  tables (BPE merges, graph anchors), is a tensor in its ``state_dict``, so the same folder holds it.

Tokenizers whose sequences differ in length per example (FAST's BPE) set ``pad_index`` and right-pad a batch with
it; :meth:`BaseTokenizer.unbatch` gives each example's indices without the padding.

The neural ``encoder -> quantizer -> decoder`` tokenizers add ``forward`` and losses on top
(:class:`vqtok.tokenizers.Tokenizer`); fitted tokenizers (:class:`~vqtok.tokenizers.FASTTokenizer`,
:class:`~vqtok.tokenizers.NodePieceTokenizer`) implement only this contract.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ._config import config_from_dict, config_to_dict
from ._pretrained import CheckpointError, read_checkpoint_config, read_checkpoint_weights, write_checkpoint

__all__ = ["BaseTokenizer"]

T = TypeVar("T", bound="BaseTokenizer")


class BaseTokenizer(nn.Module, ABC):
    """Base class of every registered tokenizer (see the module docstring).

    Args:
        config: An instance of the family's ``config_class`` (a dataclass).
    """

    #: The family's config dataclass; subclasses override.
    config_class: ClassVar[type[Any]]
    #: Registry name of the family, set by ``@register_tokenizer``.
    architecture: ClassVar[str] = ""
    #: Signal kind (``"image"``, ``"audio"``, ``"timeseries"``, ``"action"``, ``"graph"``, ...).
    modality: ClassVar[str] = ""
    #: Padding id of variable-length tokenizers (never a real id); ``None`` when every example has one length.
    pad_index: ClassVar[int | None] = None

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls: type[T], config: Any) -> T:
        """Builds the tokenizer from a config object or a (possibly partial) dict of config fields.

        Raises:
            ValueError: On unknown keys.
        """
        if isinstance(config, dict):
            config = config_from_dict(cls.config_class, config)
        return cls(config)

    # --------------------------------------------------------------------------------- the contract
    @abstractmethod
    def encode(self, signal: Any, **options: Any) -> Tensor:
        """Maps a batch of signals to int64 indices ``(B, *grid, *index_shape)``."""

    @abstractmethod
    def decode(self, indices: Tensor) -> Tensor:
        """Maps indices from :meth:`encode` back to a batch of signals."""

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Number of distinct ids: every index lies in ``[0, codebook_size)``."""

    @property
    def index_shape(self) -> tuple[int, ...]:
        """Trailing shape of one token's indices (``()``: one id per token)."""
        return ()

    @property
    def bits_per_token(self) -> float:
        """Bits of one token's indices with a fixed-length code: ``prod(index_shape) * log2(codebook_size)``."""
        return math.prod(self.index_shape) * math.log2(self.codebook_size)

    def check_signal(self, signal: Any) -> None:
        """Raises ``ValueError`` when ``signal`` is not a batch this tokenizer reads; subclasses extend."""
        if not isinstance(signal, Tensor):
            raise ValueError(f"{type(self).__name__} expects a tensor, got {type(signal).__name__}")

    def unbatch(self, indices: Tensor) -> list[Tensor]:
        """Splits ``(B, ...)`` indices into one tensor per example, without ``pad_index`` padding.

        Padding is only ever trailing along the first grid axis (a sequence), so it is cut there.
        """
        rows = list(indices)
        if self.pad_index is None:
            return rows
        out = []
        for row in rows:
            if row.ndim == 0:
                out.append(row)
                continue
            real = (row != self.pad_index).reshape(row.shape[0], -1).any(-1)
            out.append(row[: int(real.nonzero().max()) + 1] if bool(real.any()) else row[:0])
        return out

    # -------------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``config.json`` and ``model.safetensors`` (the ``state_dict``) into ``directory``, atomically.

        The folder is built beside ``directory`` and swapped in at once, so a kill leaves the old or the new
        checkpoint; ``config.json`` records the SHA-256 of the weights, checked by :meth:`from_pretrained`.

        Returns:
            The directory.
        """
        from ..version import __version__

        if not self.architecture:
            raise ValueError(f"{type(self).__name__} is not registered; use @register_tokenizer")
        return write_checkpoint(
            directory, self.architecture, config_to_dict(self.config), self.state_dict(), __version__
        )

    @classmethod
    def from_pretrained(
        cls: type[T],
        directory: str | os.PathLike[str],
        map_location: str | torch.device = "cpu",
        verify: bool = True,
    ) -> T:
        """Loads a checkpoint written by :meth:`save_pretrained`.

        Called on :class:`BaseTokenizer` itself, the family is taken from the checkpoint; called on a family
        class (or on :class:`~vqtok.tokenizers.Tokenizer`), the checkpoint must be of that kind.
        ``"hf:<repo id or folder>"`` loads a Hugging Face model behind its adapter (see :mod:`vqtok.adapters`).

        Args:
            directory: The checkpoint directory.
            map_location: Device to move the model to.
            verify: Check the SHA-256 recorded for each file and refuse NaN/inf weights (off: load as is).

        Raises:
            CheckpointError: When files are missing, truncated, corrupt, of another family, hold non-finite
                weights, or when the state does not fit the model built from the config.
        """
        from ._registry import tokenizer_class

        if isinstance(directory, str) and directory.startswith("hf:"):
            return _load_hf(cls, directory, map_location)
        payload = read_checkpoint_config(directory)
        arch = payload["architecture"]
        if isinstance(arch, str) and arch.startswith("hf_"):
            from .. import adapters  # noqa: F401  (registers the adapter families, which need transformers)
        try:
            family = tokenizer_class(arch)
        except ValueError as err:
            raise CheckpointError(f"checkpoint {str(directory)!r}: {err}") from err
        if not issubclass(family, cls):
            raise CheckpointError(f"checkpoint {str(directory)!r} holds a {arch!r} tokenizer, not a {cls.__name__}")
        state = read_checkpoint_weights(directory, payload, verify=verify)
        model = family._from_checkpoint(payload["config"], state, str(directory))
        return model.to(map_location)  # type: ignore[return-value]

    @classmethod
    def _from_checkpoint(cls: type[T], config: dict[str, Any], state: dict[str, Tensor], source: str) -> T:
        """Builds the model from a checkpoint's config and loads its state; fitted families override this
        when their tensor shapes are only known from the state.

        Raises:
            CheckpointError: On an invalid config or a state that does not fit.
        """
        try:
            model = cls.from_config(config)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint {source!r} has an invalid config: {err}") from err
        model.load_checked_state_dict(state, source=source)
        return model

    def load_checked_state_dict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Strict ``load_state_dict`` with one readable error listing missing, unexpected and mis-shaped keys.

        Raises:
            CheckpointError: When ``state`` does not match this model exactly.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in sorted(set(own) & set(state))
            if state[k].shape != own[k].shape
        ]
        if missing or unexpected or shapes:
            parts = []
            if missing:
                parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
            if shapes:
                parts.append(f"shape mismatches {shapes[:8]}{' ...' if len(shapes) > 8 else ''}")
            raise CheckpointError(f"{source} does not match {type(self).__name__}: " + "; ".join(parts))
        self.load_state_dict(state, strict=True)


def _load_hf(cls: type[T], source: str, map_location: str | torch.device) -> T:
    """``hf:`` sources go through the adapters (imported lazily: they need ``transformers``)."""
    from ..adapters import load_hf

    model = load_hf(source[3:], map_location=map_location)
    if not isinstance(model, cls):
        raise CheckpointError(f"{source!r} holds a {type(model).__name__}, not a {cls.__name__}")
    return model
