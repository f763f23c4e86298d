"""The result every quantizer's ``forward`` returns (re-exported by :mod:`vqtok.quantizers.base`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["QuantizerOutput"]


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns, whatever its options.

    Attributes:
        quantized: ``(..., D)``, same shape and dtype as the latents; straight-through in training.
        indices: ``(..., *index_shape)`` int64 codebook ids.
        loss: Scalar, already weighted; ``zeros(())`` when the method has no auxiliary loss.
        losses: Unweighted loss terms, for logging.
        metrics: Detached statistics (perplexity, usage, ...).
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)
