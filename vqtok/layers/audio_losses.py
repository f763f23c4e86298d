"""Audio training losses: multi-scale STFT + mel magnitude L1, and the batch-pooled negative SNR.

* Multi-scale spectral losses: Engel et al., "DDSP", arXiv:2001.04643 (linear + log magnitude over several
  FFT sizes), and the multi-scale mel loss of Kumar et al., "High-Fidelity Audio Compression with Improved
  RVQGAN", arXiv:2306.06546, section 3.4.

They are parts of the audio codec's objective (:class:`vqtok.tokenizers.AudioTokenizer`), so they live with the
other building blocks rather than among the evaluation metrics (:mod:`vqtok.metrics.audio`, whose STFT and mel
helpers they share). Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .spectral import default_num_mels, mel_filterbank, stft_magnitude

__all__ = ["MultiScaleSpectralLoss", "snr_loss"]


def snr_loss(recon: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Negative signal-to-noise ratio in dB of a whole batch, pooled: ``-10 log10(sum t^2 / sum (r - t)^2)``.

    A training loss for waveform fidelity. Energies are summed over the whole batch rather than taken per
    example: a silent training crop would otherwise have a near-zero denominator and a gradient that grows
    like ``1 / |recon|``. The gradient is the squared error's, normalised by the current error energy, so
    its scale does not shrink as the codec improves (unlike a plain L1 or L2 term).

    Args:
        recon: ``(B, C, T)``.
        target: ``(B, C, T)``.
        eps: Guards an all-silent batch.

    Returns:
        Scalar float32 (lower is better).

    Raises:
        ValueError: On mismatched or non-``(B, C, T)`` shapes.
    """
    if recon.shape != target.shape or recon.ndim != 3:
        raise ValueError(
            f"expected recon and target of one shape (B, C, T), got {tuple(recon.shape)} and {tuple(target.shape)}"
        )
    r, t = recon.float(), target.float()
    return 10 * torch.log10((r - t).pow(2).sum() + eps) - 10 * torch.log10(t.pow(2).sum() + eps)


class MultiScaleSpectralLoss(nn.Module):
    """Multi-scale STFT (linear + log magnitude L1) and log-mel L1 losses, averaged over FFT sizes.

    The mel filterbanks are non-persistent buffers: they follow ``.to(device)`` but never enter checkpoints.

    Args:
        sample_rate: Hz, for the mel filters.
        fft_sizes: Window lengths; hop is ``n_fft // 4``.
        max_mels: Upper bound on the mel filters of one scale (``max(5, min(max_mels, n_fft // 8))``).
        eps: Floor inside the logs.
    """

    def __init__(
        self,
        sample_rate: float,
        fft_sizes: Sequence[int] = (64, 128, 256, 512, 1024),
        max_mels: int = 80,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if not fft_sizes or min(fft_sizes) < 8:
            raise ValueError(f"fft_sizes must be non-empty and >= 8, got {tuple(fft_sizes)}")
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        self.eps = eps
        for n_fft in self.fft_sizes:
            fb = mel_filterbank(n_fft, default_num_mels(n_fft, max_mels), sample_rate)
            self.register_buffer(f"mel_{n_fft}", fb, persistent=False)

    def forward(self, recon: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Returns unweighted scalar terms ``stft`` and ``mel`` for ``(B, C, T)`` waveforms (fp32)."""
        stft_terms, mel_terms = [], []
        for n_fft in self.fft_sizes:
            a = stft_magnitude(recon, n_fft, n_fft // 4)
            b = stft_magnitude(target, n_fft, n_fft // 4)
            log_a, log_b = a.clamp_min(self.eps).log(), b.clamp_min(self.eps).log()
            stft_terms.append((a - b).abs().mean() + (log_a - log_b).abs().mean())
            fb = getattr(self, f"mel_{n_fft}")
            mel_a = torch.einsum("mf,bcft->bcmt", fb, a).clamp_min(self.eps).log()
            mel_b = torch.einsum("mf,bcft->bcmt", fb, b).clamp_min(self.eps).log()
            mel_terms.append((mel_a - mel_b).abs().mean())
        n = len(self.fft_sizes)
        return {"stft": sum(stft_terms) / n, "mel": sum(mel_terms) / n}  # type: ignore[dict-item]
