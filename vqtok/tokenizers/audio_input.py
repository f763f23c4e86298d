"""Turning what callers actually hold (int16 PCM, stereo, 44.1 kHz, numpy) into the codec's ``(B, C, T)`` input.

:meth:`AudioTokenizer.encode` and ``forward`` accept only finite float waveforms of the model's channel count
and refuse anything else with a message that says what to do. :func:`to_waveform` is the documented
conversion in one place:

* integer PCM is scaled to ``[-1, 1)``: ``int16 / 32768``, ``int32 / 2**31``, ``uint8 (x - 128) / 128``;
  float64 becomes float32; float values are taken as already in ``[-1, 1]``;
* ``(T,)`` becomes ``(1, 1, T)`` and ``(C, T)`` becomes ``(1, C, T)``;
* more channels than the model has are averaged to mono (for a mono model), never silently dropped;
  a mono input is repeated for a multi-channel model;
* another sample rate is resampled with ``soxr`` (VHQ), the same resampler the 16/24 kHz data use.

NaN/inf samples and empty signals are errors, never converted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_waveform", "resample", "to_waveform"]

_INT_SCALE = {torch.int16: 32768.0, torch.int32: 2.0**31}


def check_waveform(signal: Any, channels: int, name: str = "signal") -> None:
    """Raises a ``ValueError`` naming the problem unless ``signal`` is a finite float ``(B, C, T)``.

    Args:
        signal: The candidate waveform batch.
        channels: The model's channel count C.
        name: What to call it in messages.
    """
    if not isinstance(signal, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (B, {channels}, T); convert with to_waveform()")
    if not signal.is_floating_point():
        raise ValueError(
            f"{name} has dtype {signal.dtype}; the codec takes floating point waveforms in [-1, 1] "
            "(int16 PCM: divide by 32768, or use vqtok.tokenizers.audio_input.to_waveform)"
        )
    if signal.ndim != 3 or signal.shape[1] != channels:
        raise ValueError(
            f"{name} must be waveforms (B, {channels}, T) with T >= 1, got {tuple(signal.shape)}"
            + ("; average the channels or use to_waveform()" if signal.ndim == 3 else "")
        )
    if signal.shape[-1] < 1:
        raise ValueError(f"{name} must be waveforms (B, {channels}, T) with T >= 1, got an empty signal")
    if not bool(torch.isfinite(signal).all()):
        raise ValueError(f"{name} holds NaN or infinite samples")


def resample(signal: Tensor, from_rate: int, to_rate: int) -> Tensor:
    """Resamples ``(..., T)`` float audio with ``soxr`` (very high quality).

    Raises:
        ImportError: When ``soxr`` is missing (``pip install soxr``).
    """
    if from_rate == to_rate:
        return signal
    try:
        import soxr
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"resampling {from_rate} Hz to {to_rate} Hz needs soxr: pip install soxr") from err
    flat = signal.detach().reshape(-1, signal.shape[-1]).to(torch.float32).cpu().numpy()
    # soxr takes (frames, channels).
    out = soxr.resample(np.ascontiguousarray(flat.T), from_rate, to_rate, quality="VHQ")
    out = torch.from_numpy(np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, flat.shape[0]).T))
    return out.reshape(*signal.shape[:-1], out.shape[-1])


def to_waveform(audio: Any, sample_rate: int, *, target_rate: int, channels: int = 1) -> Tensor:
    """Converts audio to a float32 ``(B, channels, T)`` batch at ``target_rate`` (rules in the module docs).

    Args:
        audio: Tensor or numpy array ``(T,)``, ``(C, T)`` or ``(B, C, T)``; float or integer PCM.
        sample_rate: Rate of ``audio`` in Hz.
        target_rate: The model's rate.
        channels: The model's channel count.

    Raises:
        TypeError: On an unsupported dtype.
        ValueError: On an empty signal, NaN/inf samples, a non-positive rate or an unsupported layout.
    """
    x = torch.from_numpy(np.ascontiguousarray(audio)) if isinstance(audio, np.ndarray) else audio
    if not isinstance(x, Tensor):
        raise TypeError(f"audio must be a tensor or numpy array, got {type(audio).__name__}")
    if sample_rate < 1 or target_rate < 1:
        raise ValueError(f"sample rates must be positive, got {sample_rate} and {target_rate}")
    if x.dtype in _INT_SCALE:
        x = x.to(torch.float32) / _INT_SCALE[x.dtype]
    elif x.dtype == torch.uint8:
        x = (x.to(torch.float32) - 128.0) / 128.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise TypeError(f"audio has unsupported dtype {x.dtype}; use float, int16, int32 or uint8 PCM")
    if x.ndim == 1:
        x = x[None, None]
    elif x.ndim == 2:
        x = x[None]
    elif x.ndim != 3:
        raise ValueError(f"audio must be (T,), (C, T) or (B, C, T), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError("audio is empty (0 samples)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("audio holds NaN or infinite samples")
    if x.shape[1] != channels:
        if channels == 1:
            x = x.mean(dim=1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1)
        else:
            raise ValueError(f"cannot map {x.shape[1]} channels onto a {channels}-channel model")
    return resample(x, sample_rate, target_rate).contiguous()
