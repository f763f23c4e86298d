"""Round-to-nearest (RTN) per-group integer weight quantization: the baseline for :mod:`vqtok.weights`.

Each row of ``W`` is split into groups of ``group_size`` input weights; each group gets an
asymmetric ``bits``-bit grid from its min and max (fp16 scale and zero point), and weights are rounded
to the nearest grid point. Storage: ``bits + 32 / group_size`` bits per weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["quantize_model_rtn", "rtn_quantize"]


@torch.no_grad()
def rtn_quantize(weight: Tensor, bits: int, group_size: int = 128) -> Tensor:
    """Fake-quantizes a weight with per-group asymmetric round-to-nearest.

    Args:
        weight: ``(out, in)``, ``in`` divisible by ``group_size``.
        bits: Integer bits per weight, 2 to 8.
        group_size: Input weights per (scale, zero) pair.

    Returns:
        ``(out, in)`` dequantized weight, same dtype as ``weight``.

    Raises:
        ValueError: On a bad shape, bit width or group size.
    """
    if weight.ndim != 2 or weight.shape[1] % group_size:
        raise ValueError(f"need (out, in) weight with in divisible by {group_size}, got {tuple(weight.shape)}")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits}")
    w = weight.float().reshape(weight.shape[0], -1, group_size)
    lo = w.amin(-1, keepdim=True)
    hi = w.amax(-1, keepdim=True)
    qmax = (1 << bits) - 1
    # Scale and zero are stored in fp16, so round them the same way here.
    scale = ((hi - lo) / qmax).clamp_min(1e-8).half().float()
    zero = torch.round(-lo / scale).clamp(0, qmax)
    q = torch.clamp(torch.round(w / scale) + zero, 0, qmax)
    return ((q - zero) * scale).reshape(weight.shape).to(weight.dtype)


@torch.no_grad()
def quantize_model_rtn(model: nn.Module, bits: int, group_size: int = 128) -> float:
    """Replaces, in place, every ``nn.Linear`` weight whose input size is a multiple of ``group_size``.

    Args:
        model: Any module.
        bits: Integer bits per weight.
        group_size: Group size.

    Returns:
        Average storage bits per quantized weight (``bits + 32 / group_size``).
    """
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.in_features % group_size == 0:
            module.weight.copy_(rtn_quantize(module.weight, bits, group_size))
    return bits + 32 / group_size
