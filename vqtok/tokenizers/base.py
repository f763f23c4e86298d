"""The tokenizer contract: any modality, any registered quantizer.

A tokenizer is ``encoder -> quantizer -> decoder``. Subclasses implement three layout-aware pieces:

* ``_encode_latents(signal)``: signal -> channels-last latents ``(B, ..., D)`` (the quantizer's layout);
* ``_decode_latents(quantized)``: ``(B, ..., D)`` -> reconstructed signal in the input layout;
* ``_reconstruction_losses(signal, recon)``: -> ``(weighted loss, unweighted terms)``.

Everything else (the ``forward``/``encode``/``decode`` symmetry, loss bookkeeping) lives here, and the
registry/checkpoint contract shared with the fitted tokenizers lives in :class:`~.contract.BaseTokenizer`, so the
trainer and CLI never need to know the modality. Training-only parts (a GAN discriminator and its settings) are
composed by the trainer (:mod:`vqtok.train.adversarial`), so neither the model nor its release checkpoints carry
them.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._io import CheckpointError
from ..quantizers import Quantizer, QuantizerOutput
from ..quantizers import create as create_quantizer
from ._config import TokenizerConfig
from .contract import BaseTokenizer

__all__ = ["Tokenizer", "TokenizerConfig", "TokenizerOutput", "CheckpointError"]


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


class Tokenizer(BaseTokenizer):
    """Base class of the neural ``encoder -> quantizer -> decoder`` tokenizers.

    Args:
        config: The family's config dataclass (a :class:`TokenizerConfig` subclass).
    """

    #: The family's config dataclass; subclasses override.
    config_class: ClassVar[type[TokenizerConfig]] = TokenizerConfig
    config: TokenizerConfig

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__(config)
        self.quantizer: Quantizer = create_quantizer(config.quantizer, **config.quantizer_kwargs)

    @property
    def codebook_size(self) -> int:
        """The quantizer's ``codebook_size``."""
        return int(self.quantizer.codebook_size)

    @property
    def index_shape(self) -> tuple[int, ...]:
        """The quantizer's ``index_shape``."""
        return tuple(int(s) for s in self.quantizer.index_shape)

    @property
    def bits_per_token(self) -> float:
        """The quantizer's ``bits_per_token`` (its entries may have different ranges, e.g. ``anchor``)."""
        return float(self.quantizer.bits_per_token)

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

    def export_onnx(self, path: str | os.PathLike[str], part: str = "encoder", **options: Any) -> Path:
        """Writes the ``"encoder"`` (signal -> indices) or ``"decoder"`` (indices -> signal) as ONNX.

        See :func:`vqtok.tokenizers.onnx.export_onnx` for the options and the checks.
        """
        from .onnx import export_onnx

        return export_onnx(self, path, part=part, **options)
