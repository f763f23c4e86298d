"""Audio fidelity and rate: SI-SNR, multi-scale mel distance, STOI, bitrate (and the mel/STFT helpers they share).

* SI-SNR: Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019, arXiv:1811.02508.
* Multi-scale mel distance: after the multi-scale mel loss of Kumar et al., "High-Fidelity Audio Compression
  with Improved RVQGAN", arXiv:2306.06546, section 3.4. The training losses built on the same helpers
  (``MultiScaleSpectralLoss``, ``snr_loss``) live in :mod:`vqtok.layers.audio_losses`.
* STOI: Taal et al., "An Algorithm for Intelligibility Prediction of Time-Frequency Weighted Noisy Speech",
  IEEE TASLP 2011, through the optional ``pystoi`` package.

The mel filterbank is built here (HTK mel scale, triangular filters, Slaney-style area normalisation off), so
nothing beyond torch is needed. Written for vqtok; no code was copied from other implementations.

Every function takes waveforms ``(B, C, T)`` and returns one value per example ``(B,)`` (channels averaged).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "audio_metrics",
    "bitrate_kbps",
    "frames_per_second",
    "hz_to_mel",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_hz",
    "multiscale_mel_distance",
    "si_snr",
    "default_num_mels",
    "stft_magnitude",
    "stoi",
]

# The training losses moved to the layers package; the old names resolve there with a FutureWarning.
_MOVED = {"MultiScaleSpectralLoss", "snr_loss"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import warnings

        from ..layers import audio_losses

        warnings.warn(f"vqtok.metrics.audio.{name} moved to vqtok.layers.audio_losses", FutureWarning, stacklevel=2)
        return getattr(audio_losses, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_pair(recon: Tensor, target: Tensor) -> None:
    if recon.shape != target.shape or recon.ndim != 3:
        raise ValueError(
            f"expected recon and target of one shape (B, C, T), got {tuple(recon.shape)} and {tuple(target.shape)}"
        )


def si_snr(recon: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-noise ratio in dB, per channel, averaged over channels.

    Both signals are made zero-mean; the target is scaled by the projection of ``recon`` onto it, so gain
    errors do not count.

    Args:
        recon: ``(B, C, T)``.
        target: ``(B, C, T)``.
        eps: Guards silent channels.

    Returns:
        ``(B,)`` float32 dB.

    Raises:
        ValueError: On mismatched or non-``(B, C, T)`` shapes.
    """
    _check_pair(recon, target)
    r = recon.float() - recon.float().mean(-1, keepdim=True)
    t = target.float() - target.float().mean(-1, keepdim=True)
    scale = (r * t).sum(-1, keepdim=True) / (t.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * t
    noise = r - projection
    ratio = (projection.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return (10 * torch.log10(ratio)).mean(-1)


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


def multiscale_mel_distance(
    recon: Tensor,
    target: Tensor,
    sample_rate: float,
    fft_sizes: Sequence[int] = (64, 128, 256, 512, 1024),
    eps: float = 1e-5,
) -> Tensor:
    """Mean absolute difference of ``log10`` mel spectrograms, averaged over FFT sizes (lower is better).

    Args:
        recon: ``(B, C, T)``.
        target: ``(B, C, T)``.
        sample_rate: Hz.
        fft_sizes: Window lengths; each uses ``max(5, min(80, n_fft // 8))`` mel filters and hop ``n_fft // 4``.
        eps: Floor inside the log, so silence does not dominate.

    Returns:
        ``(B,)`` float32.
    """
    _check_pair(recon, target)
    terms = []
    for n_fft in fft_sizes:
        n_mels = default_num_mels(n_fft)
        a = mel_spectrogram(recon, sample_rate, n_fft, n_mels).clamp_min(eps).log10()
        b = mel_spectrogram(target, sample_rate, n_fft, n_mels).clamp_min(eps).log10()
        terms.append((a - b).abs().flatten(1).mean(1))
    return torch.stack(terms).mean(0)


def stoi(recon: Tensor, target: Tensor, sample_rate: int, extended: bool = False) -> Tensor:
    """Short-time objective intelligibility (0..1, higher is better) of the first channel, via ``pystoi``.

    pystoi resamples to 10 kHz internally; clips shorter than ~0.4 s of speech score 1e-5.

    Args:
        recon: ``(B, C, T)``.
        target: ``(B, C, T)``.
        sample_rate: Hz.
        extended: ESTOI instead of STOI.

    Returns:
        ``(B,)`` float32.

    Raises:
        ImportError: When ``pystoi`` is not installed (``pip install 'vqtok[data]'``).
    """
    _check_pair(recon, target)
    try:
        from pystoi import stoi as _stoi
    except ImportError as err:
        raise ImportError("STOI needs the optional pystoi package: pip install 'vqtok[data]'") from err
    r = recon[:, 0].detach().double().cpu().numpy()
    t = target[:, 0].detach().double().cpu().numpy()
    return torch.tensor([_stoi(ti, ri, sample_rate, extended=extended) for ti, ri in zip(t, r, strict=True)]).float()


def bitrate_kbps(frames_per_second: float, bits_per_frame: float) -> float:
    """Fixed-length-code bitrate: ``frames/s * bits/frame / 1000``."""
    return frames_per_second * bits_per_frame / 1000.0


def audio_metrics(recon: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-example ``si_snr`` (dB) of ``(B, C, T)`` waveforms; sample-rate free, for generic evaluation."""
    return {"si_snr": si_snr(recon, target)}


def frames_per_second(sample_rate: float, hop: int) -> float:
    """Token frames per second of a codec with hop ``hop`` samples."""
    if hop < 1:
        raise ValueError(f"hop must be >= 1, got {hop}")
    return sample_rate / hop
