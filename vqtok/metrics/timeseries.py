"""Time-series / action reconstruction metrics for ``(B, C, T)`` signals."""

from __future__ import annotations

from torch import Tensor

__all__ = ["mse_per_channel", "timeseries_metrics"]


def mse_per_channel(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each channel over the batch and time.

    Args:
        recon: ``(B, C, T)``.
        target: ``(B, C, T)``.

    Returns:
        ``(C,)`` float32.

    Raises:
        ValueError: On mismatched or non-``(B, C, T)`` shapes.
    """
    if recon.shape != target.shape or recon.ndim != 3:
        shapes = f"{tuple(recon.shape)} and {tuple(target.shape)}"
        raise ValueError(f"expected two (B, C, T) tensors of one shape, got {shapes}")
    return (recon.float() - target.float()).pow(2).mean((0, 2))


def timeseries_metrics(recon: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-example, per-channel MSE ``mse_ch{i}`` ``(B,)`` for generic evaluation."""
    err = (recon.float() - target.float()).pow(2).mean(-1)  # (B, C)
    return {f"mse_ch{i}": err[:, i] for i in range(err.shape[1])}
