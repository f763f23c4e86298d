"""Waveform discriminators of neural audio codecs: multi-period (MPD) and multi-scale STFT (MS-STFT).

* MPD: Kong et al., "HiFi-GAN", arXiv:2010.05646, section 2.2: the waveform folded into ``(T / p, p)`` so
  that 2-D convolutions with kernels ``(k, 1)`` look at every ``p``-th sample, exposing periodic structure
  (pitch) that an L1/STFT loss averages away.
* MS-STFT: Défossez et al., "High Fidelity Neural Audio Compression" (EnCodec), arXiv:2210.13438, section 3.4:
  2-D convolutions over the real and imaginary parts of complex STFTs at several resolutions.

Each sub-discriminator returns its logits and the feature maps of its hidden layers (for the feature-matching
loss). :class:`AudioDiscriminator` puts both families together; ``forward`` returns the list of logit maps (what
the adversarial losses take), :meth:`AudioDiscriminator.features` returns ``(logits, features)``. Written for
vqtok; no code was copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AudioDiscriminator", "PeriodDiscriminator", "STFTDiscriminator"]


def _run_convs(convs: nn.ModuleList, out: nn.Module, x: Tensor, slope: float) -> tuple[Tensor, list[Tensor]]:
    """Leaky-ReLU conv stack: the output conv's logits and every hidden activation (for feature matching)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        feats.append(x)
    return out(x), feats


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's sub-discriminator for one period ``p``: ``(B, 1, T)`` -> logits ``(B, 1, T', p)``.

    Args:
        period: Fold width p.
        channels: Width of the first layer; each next layer doubles it (at most 8x).
        num_layers: Strided ``(5, 1)`` layers.
    """

    def __init__(self, period: int, channels: int = 16, num_layers: int = 3) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [channels * min(2**i, 8) for i in range(num_layers)]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, (5, 1), stride=(3, 1), padding=(2, 0)) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.out = nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        x = F.pad(x, (0, -t % self.period), mode="reflect" if t > self.period else "constant")
        return _run_convs(self.convs, self.out, x.reshape(b, c, -1, self.period), 0.1)


class STFTDiscriminator(nn.Module):
    """EnCodec's sub-discriminator for one FFT size: ``(B, 1, T)`` -> logits over (frames, frequencies).

    Args:
        n_fft: FFT size (hop ``n_fft / 4``, Hann window).
        channels: Width of the hidden layers.
        num_layers: Layers that halve the frequency axis, with time dilations 1, 2, 4, ...
    """

    def __init__(self, n_fft: int, channels: int = 16, num_layers: int = 3) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [nn.Conv2d(2, channels, (3, 9), padding=(1, 4))]
        for i in range(num_layers):
            d = 2**i
            layers.append(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
        self.convs = nn.ModuleList(layers)
        self.out = nn.Conv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = torch.stft(
            x.float().reshape(-1, x.shape[-1]),
            self.n_fft,
            self.n_fft // 4,
            window=self.window,
            return_complex=True,
        )  # (B, F, frames)
        z = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, frames, F)
        return _run_convs(self.convs, self.out, z, 0.2)


class AudioDiscriminator(nn.Module):
    """Multi-period plus multi-scale STFT discriminator of mono waveforms ``(B, 1, T)``.

    Args:
        periods: One :class:`PeriodDiscriminator` per period (HiFi-GAN uses 2, 3, 5, 7, 11).
        fft_sizes: One :class:`STFTDiscriminator` per FFT size.
        channels: Width of every sub-discriminator.
        num_layers: Hidden layers of every sub-discriminator.
    """

    def __init__(
        self,
        periods: tuple[int, ...] = (2, 3, 5, 7, 11),
        fft_sizes: tuple[int, ...] = (256, 512, 1024),
        channels: int = 16,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        if not periods and not fft_sizes:
            raise ValueError("AudioDiscriminator needs at least one period or FFT size")
        subs: list[nn.Module] = [PeriodDiscriminator(p, channels, num_layers) for p in periods]
        subs += [STFTDiscriminator(n, channels, num_layers) for n in fft_sizes]
        self.subs = nn.ModuleList(subs)

    def features(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """``(B, C, T)`` (channels folded into the batch) -> (logit maps, feature maps) per sub-discriminator."""
        x = x.reshape(-1, 1, x.shape[-1])
        logits, feats = [], []
        for sub in self.subs:
            out, f = sub(x)
            logits.append(out)
            feats.append(f)
        return logits, feats

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.features(x)[0]


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """Mean over layers of ``|D_l(x) - D_l(G(z))| / mean|D_l(x)|`` (EnCodec's relative feature loss).

    ``real`` features are treated as constants.
    """
    terms = [
        F.l1_loss(f, r.detach()) / (r.detach().abs().mean() + 1e-8)
        for rs, fs in zip(real, fake, strict=True)
        for r, f in zip(rs, fs, strict=True)
    ]
    return torch.stack(terms).mean()
