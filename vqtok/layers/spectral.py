"""Spectral transforms shared by model losses (``layers``) and fidelity metrics (``metrics``): STFT magnitudes and
mel filterbanks, computed in the signal's dtype and device."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["default_num_mels", "hz_to_mel", "mel_filterbank", "mel_spectrogram", "mel_to_hz", "stft_magnitude"]


def hz_to_mel(hz: Tensor) -> Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def _mel_filterbank_cpu(n_fft: int, n_mels: int, sample_rate: float, f_min: float, f_max: float) -> Tensor:
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(
        torch.linspace(
            float(hz_to_mel(torch.tensor(f_min))), float(hz_to_mel(torch.tensor(f_max))), n_mels + 2
        ).double()
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()  # (n_mels, n_fft // 2 + 1)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: float, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular mel filters on the HTK scale.

    Filters narrower than one FFT bin (low frequencies at small ``n_fft``) can be all zero; they then
    contribute nothing to the mel losses and distances.

    Args:
        n_fft: FFT size; the filters act on its ``n_fft // 2 + 1`` magnitude bins.
        n_mels: Number of filters.
        sample_rate: Hz.
        f_min: Lowest edge, Hz.
        f_max: Highest edge, Hz (``None``: Nyquist).

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32 (a fresh copy; callers may move it).

    Raises:
        ValueError: On a non-positive size or an empty band.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_fft < 2 or n_mels < 1 or not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"bad mel filterbank: n_fft={n_fft}, n_mels={n_mels}, band=[{f_min}, {f_max}] Hz")
    return _mel_filterbank_cpu(int(n_fft), int(n_mels), float(sample_rate), float(f_min), float(f_max)).clone()


def stft_magnitude(wav: Tensor, n_fft: int, hop: int) -> Tensor:
    """``(B, C, T) -> (B, C, n_fft // 2 + 1, frames)`` magnitudes with a periodic Hann window."""
    flat = wav.float().reshape(-1, wav.shape[-1])
    if flat.shape[-1] < n_fft:
        # torch.stft with center=True needs at least n_fft // 2 + 1 samples for its reflection padding.
        flat = F.pad(flat, (0, n_fft - flat.shape[-1]))
    window = torch.hann_window(n_fft, device=wav.device, dtype=torch.float32)
    spec = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    mag = spec.abs()
    return mag.reshape(*wav.shape[:-1], *mag.shape[-2:])


def mel_spectrogram(wav: Tensor, sample_rate: float, n_fft: int, n_mels: int, hop: int | None = None) -> Tensor:
    """Mel magnitude spectrogram.

    Args:
        wav: ``(B, C, T)``.
        sample_rate: Hz.
        n_fft: FFT size (also the window length).
        n_mels: Mel filters.
        hop: Frame hop; ``n_fft // 4`` by default.

    Returns:
        ``(B, C, n_mels, frames)`` float32.
    """
    mag = stft_magnitude(wav, n_fft, hop or n_fft // 4)
    fb = mel_filterbank(n_fft, n_mels, sample_rate).to(mag.device)
    return torch.einsum("mf,bcft->bcmt", fb, mag)


def default_num_mels(n_fft: int, max_mels: int = 80) -> int:
    """Mel filters of one FFT size: ``max(5, min(max_mels, n_fft // 8))``."""
    # Fewer filters at small FFT sizes, where wide filters would otherwise all cover the same few bins.
    return max(5, min(max_mels, n_fft // 8))
