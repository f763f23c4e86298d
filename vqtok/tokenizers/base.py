"""The tokenizer contract: any modality, any registered quantizer.

A tokenizer is ``encoder -> quantizer -> decoder``. Subclasses implement three layout-aware pieces:

* ``_encode_latents(signal)``: signal -> channels-last latents ``(B, ..., D)`` (the quantizer's layout);
* ``_decode_latents(quantized)``: ``(B, ..., D)`` -> reconstructed signal in the input layout;
* ``_reconstruction_losses(signal, recon)``: -> ``(weighted loss, unweighted terms)``.

Everything else (the ``forward``/``encode``/``decode`` symmetry, loss bookkeeping, checkpoints) lives
here, so the trainer and CLI never need to know the modality. Training-only parts that have their own
optimizer (a GAN discriminator) are built by :meth:`Tokenizer.build_discriminator` and owned by the
trainer, so release checkpoints never contain them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..quantizers import Quantizer, QuantizerOutput
from ..quantizers import create as create_quantizer
from ._config import TokenizerConfig, config_from_dict
from ._pretrained import (
    CheckpointError,
    read_checkpoint_config,
    read_checkpoint_weights,
    write_checkpoint,
)

__all__ = ["Tokenizer", "TokenizerConfig", "TokenizerOutput", "CheckpointError"]

T = TypeVar("T", bound="Tokenizer")


@dataclass
class TokenizerOutput:
    """What every tokenizer's ``forward`` returns.

    Attributes:
        recon: Reconstruction, same layout as the input signal (e.g. ``(B, C, H, W)``).
        quantizer_output: The nested :class:`QuantizerOutput` (channels-last latents and indices).
        loss: Scalar total to minimise: weighted reconstruction terms plus the quantizer's loss.
        losses: Unweighted terms for logging (``recon_l1``, ``recon_l2``, quantizer terms as ``q_*``).
        metrics: Detached statistics (quantizer metrics as ``q_*``).
    """

    recon: Tensor
    quantizer_output: QuantizerOutput
    loss: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Tokenizer(nn.Module, ABC):
    """Base class of all tokenizers.

    Args:
        config: The family's config dataclass (a :class:`TokenizerConfig` subclass).
    """

    #: The family's config dataclass; subclasses override.
    config_class: ClassVar[type[TokenizerConfig]] = TokenizerConfig
    #: Registry name of the family, set by ``@register_tokenizer``.
    architecture: ClassVar[str] = ""
    #: Name of the registered modality descriptor (:mod:`vqtok.modalities`: ``"image"``, ``"audio"`` ...), which
    #: gives the file readers, evaluation metrics and report panels.
    modality: ClassVar[str] = ""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.quantizer: Quantizer = create_quantizer(config.quantizer, **config.quantizer_kwargs)

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls: type[T], config: TokenizerConfig | dict[str, Any]) -> T:
        """Builds the tokenizer from a config object or a (possibly partial) dict of config fields.

        Raises:
            ValueError: On unknown keys.
        """
        if isinstance(config, dict):
            config = config_from_dict(cls.config_class, config)
        return cls(config)

    # ------------------------------------------------------------------------- subclass interface
    @abstractmethod
    def _encode_latents(self, signal: Tensor) -> Tensor:
        """Signal -> channels-last latents ``(B, ..., D)``."""

    @abstractmethod
    def _decode_latents(self, quantized: Tensor) -> Tensor:
        """Channels-last quantized latents ``(B, ..., D)`` -> signal in the input layout."""

    @abstractmethod
    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns ``(weighted total, unweighted terms)``."""

    def check_signal(self, signal: Tensor) -> None:
        """Raises ``ValueError`` when ``signal`` has the wrong layout; subclasses extend."""
        if not isinstance(signal, Tensor) or not signal.is_floating_point():
            got = signal.dtype if isinstance(signal, Tensor) else type(signal).__name__
            raise ValueError(
                f"{type(self).__name__} expects a floating point tensor, got {got} (scale raw values first, "
                "e.g. uint8 images / 255)"
            )

    def build_discriminator(self) -> nn.Module | None:
        """A discriminator for adversarial training, or ``None`` (default) when the config has none."""
        return None

    @property
    def adversarial_weight(self) -> float:
        """Weight of the generator's adversarial term; 0 disables it."""
        return 0.0

    @property
    def adversarial_start_step(self) -> int:
        """Step at which the adversarial terms switch on (the autoencoder warms up first)."""
        return 0

    # ----------------------------------------------------------------------------- public methods
    @property
    def tokens_per_example(self) -> int | None:
        """Tokens produced per example when fixed by the config (images), else ``None``."""
        return None

    def forward(self, signal: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """Encodes, quantizes and decodes ``signal``.

        Args:
            signal: Input in the family's layout (e.g. ``(B, C, H, W)``).
            mask: Optional boolean token mask ``(B, ...)`` in the latent grid; ``False`` marks padding.

        Returns:
            A :class:`TokenizerOutput`.
        """
        self.check_signal(signal)
        signal = self._cast_signal(signal)
        latents = self._encode_latents(signal)
        qout = self.quantizer(latents, mask=mask)
        recon = self._decode_latents(qout.quantized)
        rec_loss, losses = self._reconstruction_losses(signal, recon)
        losses = {**losses, **{f"q_{k}": v.detach() for k, v in qout.losses.items()}}
        metrics = {f"q_{k}": v for k, v in qout.metrics.items()}
        return TokenizerOutput(
            recon=recon, quantizer_output=qout, loss=rec_loss + qout.loss, losses=losses, metrics=metrics
        )

    @torch.no_grad()
    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """Maps a signal to int64 indices ``(B, ..., *index_shape)`` without changing any state.

        dtype rule (the quantizers' rule): any floating point signal (fp16, bf16, fp32, fp64) is cast to the
        model's parameter dtype before the encoder runs; integer, bool and complex tensors are rejected with
        ``ValueError`` (scale raw pixels or samples first, e.g. ``uint8 / 255``; the file readers of
        :mod:`vqtok.modalities` do this by each modality's stated rule). ``options`` go to the quantizer's
        ``encode`` (e.g. ``num_levels`` for residual VQ).
        """
        self.check_signal(signal)
        return self.quantizer.encode(self._encode_latents(self._cast_signal(signal)), **options)

    def _cast_signal(self, signal: Tensor) -> Tensor:
        """Casts a floating point ``signal`` to the parameters' dtype (the conv layers need one dtype).

        Runs after :meth:`check_signal`, so a family's own layout message comes first.
        """
        if signal.ndim > 2 and 0 in signal.shape[2:]:
            raise ValueError(f"{type(self).__name__}: signal of shape {tuple(signal.shape)} has an empty axis")
        param = next(self.parameters(), None)
        return signal.to(param.dtype) if param is not None and signal.dtype != param.dtype else signal

    def decode(self, indices: Tensor) -> Tensor:
        """Maps indices ``(B, ..., *index_shape)`` back to a signal; equals eval-mode ``forward(x).recon``.

        Raises:
            ValueError: On non-integer or out-of-range indices, or a grid the decoder cannot take.
        """
        from einops import EinopsError

        quantized = self.quantizer.decode(indices)
        param = next(self.parameters(), None)
        if param is not None:
            quantized = quantized.to(param.dtype)
        try:
            return self._decode_latents(quantized)
        except EinopsError as err:
            # A wrong number of grid axes fails inside a rearrange; say what was passed instead.
            raise ValueError(
                f"{type(self).__name__} cannot decode indices of shape {tuple(indices.shape)}: wrong number of "
                f"token-grid axes for this model (index_shape {tuple(self.quantizer.index_shape)})"
            ) from err

    # -------------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``config.json`` and ``model.safetensors`` (weights only) into ``directory``, atomically.

        Returns:
            The directory.
        """
        from ..version import __version__

        if not self.architecture:
            raise ValueError(f"{type(self).__name__} is not registered; use @register_tokenizer")
        return write_checkpoint(directory, self.architecture, self.config.to_dict(), self.state_dict(), __version__)

    @classmethod
    def from_pretrained(cls: type[T], directory: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> T:
        """Loads a checkpoint written by :meth:`save_pretrained`.

        Called on :class:`Tokenizer` itself, the family is taken from the checkpoint; called on a
        family class, the checkpoint must be of that family.

        Raises:
            CheckpointError: When files are missing, truncated, corrupt, of another family, or when
                the weights do not fit the model built from the config.
        """
        from ._registry import tokenizer_class

        payload = read_checkpoint_config(directory)
        arch = payload["architecture"]
        try:
            family = tokenizer_class(arch)
        except ValueError as err:
            raise CheckpointError(f"checkpoint {str(directory)!r}: {err}") from err
        if cls is not Tokenizer and not issubclass(family, cls):
            raise CheckpointError(f"checkpoint {str(directory)!r} holds a {arch!r} tokenizer, not a {cls.__name__}")
        try:
            model = family.from_config(payload["config"])
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint {str(directory)!r} has an invalid config: {err}") from err
        state = read_checkpoint_weights(directory, payload)
        model.load_checked_state_dict(state, source=str(directory))
        return model.to(map_location)  # type: ignore[return-value]

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
