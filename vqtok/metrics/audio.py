"""Audio fidelity and rate: SI-SNR, multi-scale mel distance, STOI, bitrate (and the mel/STFT helpers they share).

* SI-SNR: Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019, arXiv:1811.02508.
* Multi-scale mel distance: after the multi-scale mel loss of Kumar et al., "High-Fidelity Audio Compression
  with Improved RVQGAN", arXiv:2306.06546, section 3.4. The training losses built on the same helpers
  (``MultiScaleSpectralLoss``, ``snr_loss``) live in :mod:`vqtok.layers.audio_losses`.
* STOI: Taal et al., "An Algorithm for Intelligibility Prediction of Time-Frequency Weighted Noisy Speech",
  IEEE TASLP 2011, through the optional ``pystoi`` package.
* PESQ: ITU-T P.862 (narrow band) and P.862.2 (wide band), through the optional ``pesq`` package.
* Streaming real-time factor: seconds of compute per second of audio of ``encode_stream`` + ``decode_stream``.

The mel filterbank is built here (HTK mel scale, triangular filters, Slaney-style area normalisation off), so
nothing beyond torch is needed. Written for vqtok; no code was copied from other implementations.

Every function takes waveforms ``(B, C, T)`` and returns one value per example ``(B,)`` (channels averaged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..layers.spectral import (
    default_num_mels,
    hz_to_mel,
    mel_filterbank,
    mel_spectrogram,
    mel_to_hz,
    stft_magnitude,
)

__all__ = [
    "audio_metrics",
    "pesq",
    "speech_metrics",
    "streaming_rtf",
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


def pesq(recon: Tensor, target: Tensor, sample_rate: int, mode: str = "nb") -> Tensor:
    """PESQ MOS-LQO of the first channel (``"nb"``: -0.5..4.5, ``"wb"``: 1..4.6), via ``pesq``.

    Narrow band runs at 8 kHz (16 kHz input is used as is), wide band at 16 kHz; other rates are resampled with
    ``soxr``. Clips in which PESQ finds no speech (silence) score NaN: average with ``nanmean``.

    Raises:
        ImportError: When ``pesq`` (or ``soxr`` for resampling) is missing (``pip install 'vqtok[data]'``).
        ValueError: On a bad ``mode`` or mismatched shapes.
    """
    _check_pair(recon, target)
    if mode not in ("nb", "wb"):
        raise ValueError(f"mode must be 'nb' or 'wb', got {mode!r}")
    try:
        from pesq import pesq as _pesq
    except ImportError as err:
        raise ImportError("PESQ needs the optional pesq package: pip install 'vqtok[data]'") from err
    rate = 16000 if mode == "wb" or sample_rate == 16000 else 8000
    r, t = recon[:, 0].detach().double().cpu().numpy(), target[:, 0].detach().double().cpu().numpy()
    if rate != sample_rate:
        import soxr

        r = soxr.resample(r.T, sample_rate, rate).T
        t = soxr.resample(t.T, sample_rate, rate).T
    import numpy as np

    out = []
    for ti, ri in zip(t, r, strict=True):
        try:
            with np.errstate(all="ignore"):  # pesq divides by the peak, which is 0 for silence
                out.append(_pesq(rate, ti, ri, mode))
        except Exception:  # noqa: BLE001 - NoUtterancesError / BufferTooShortError of the pesq package
            out.append(float("nan"))
    return torch.tensor(out, dtype=torch.float32)


def speech_metrics(recon: Tensor, target: Tensor, sample_rate: int) -> dict[str, Tensor]:
    """Per-example speech scores of ``(B, C, T)`` waveforms: ``mel_distance``, and where the optional packages
    are installed ``stoi``, ``pesq_nb`` and (sample rates of 16 kHz and more) ``pesq_wb``; PESQ may hold NaN."""
    out = {"mel_distance": multiscale_mel_distance(recon.float(), target.float(), sample_rate)}
    try:
        out["stoi"] = stoi(recon, target, sample_rate)
    except ImportError:
        pass
    try:
        out["pesq_nb"] = pesq(recon, target, sample_rate, "nb")
        if sample_rate >= 16000:
            out["pesq_wb"] = pesq(recon, target, sample_rate, "wb")
    except ImportError:
        pass
    return out


def streaming_rtf(model: Any, sample_rate: int, seconds: float = 2.0, chunk: int | None = None) -> float:
    """Real-time factor of streaming: compute seconds per audio second of ``model.encode_stream`` followed by
    ``model.decode_stream`` on ``seconds`` of noise in chunks of ``chunk`` samples (default: the model's hop).

    Run it with ``torch.set_num_threads(1)`` for the one-thread figure; below 1 keeps up with real time.
    """
    import time

    channels = getattr(getattr(model, "config", None), "in_channels", 1)
    n = max(1, int(seconds * sample_rate))
    x = 0.1 * torch.randn(1, channels, n, generator=torch.Generator().manual_seed(0))
    step = chunk or getattr(model, "hop", 1)
    t0 = time.perf_counter()
    for _ in model.decode_stream(model.encode_stream(x.split(step, dim=-1))):
        pass
    return (time.perf_counter() - t0) / (n / sample_rate)
