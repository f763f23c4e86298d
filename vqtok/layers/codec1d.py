"""SEANet-style 1-D convolutional encoder and decoder of the audio codec, centred or causal, streamable.

The layout follows SoundStream / EnCodec (arXiv:2107.03312, arXiv:2210.13438): residual units of dilated
kernel-7 convolutions before each strided stage, widths doubling as time shrinks, and a mirrored decoder of
kernel-``2s`` transposed convolutions. With ``causal=True`` every convolution pads on the left only, so the
encoder emits frame ``t`` as soon as its ``hop`` samples have arrived and the decoder turns frame ``t`` into
its ``hop`` samples at once: algorithmic latency is one hop. ``step`` runs the same network on the next piece
of a stream (see :mod:`vqtok.layers.conv1d`). Written for vqtok; no code was copied.
"""

from __future__ import annotations

from torch import Tensor, nn

from .conv1d import PaddedConv1d, PaddedConvTranspose1d, StreamCache, stream_step
from .snake import activation1d

__all__ = ["ConvDecoder1d", "ConvEncoder1d", "ResUnit1d"]


class ResUnit1d(nn.Module):
    """``x + conv1x1(act(conv7_dilated(act(x))))``; same length, same width (``act``: ELU or Snake)."""

    def __init__(self, channels: int, dilation: int, causal: bool = False, activation: str = "elu") -> None:
        super().__init__()
        self.act1 = activation1d(activation, channels)
        self.conv = PaddedConv1d(channels, channels, 7, dilation=dilation, causal=causal)
        self.act2 = activation1d(activation, channels)
        self.proj = PaddedConv1d(channels, channels, 1, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(self.act2(self.conv(self.act1(x))))

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        # A causal stride-1 conv returns one output per input sample, so the skip path stays aligned.
        return x + self.proj.step(self.act2(self.conv.step(self.act1(x), cache)), cache)


class _Down(nn.Module):
    """Activation then a strided conv of kernel ``2s``: ``(B, C, T) -> (B, C', T / s)``."""

    def __init__(self, c_in: int, c_out: int, stride: int, causal: bool, activation: str = "elu") -> None:
        super().__init__()
        self.act = activation1d(activation, c_in)
        self.conv = PaddedConv1d(c_in, c_out, 2 * stride, stride=stride, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(x))

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        return self.conv.step(self.act(x), cache)


class _Up(nn.Module):
    """Activation then a transposed conv of kernel ``2s``: ``(B, C, L) -> (B, C', L * s)``."""

    def __init__(self, c_in: int, c_out: int, stride: int, causal: bool, activation: str = "elu") -> None:
        super().__init__()
        self.act = activation1d(activation, c_in)
        self.conv = PaddedConvTranspose1d(c_in, c_out, stride, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(x))

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        return self.conv.step(self.act(x), cache)


class ConvEncoder1d(nn.Module):
    """``(B, C, T) -> (B, D, T / hop)`` for ``T`` divisible by ``hop = prod(strides)``.

    Args:
        in_channels: Audio channels C.
        channels: Width of the first stage; each strided stage doubles it.
        strides: Downsampling per stage.
        res_dilations: Dilations of the residual units before each strided stage.
        out_dim: Latent width D.
        causal: Left-only padding (streamable).
        activation: ``"elu"`` or ``"snake"`` (:class:`vqtok.layers.snake.Snake1d`, learned per channel).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        strides: tuple[int, ...],
        res_dilations: tuple[int, ...],
        out_dim: int,
        causal: bool = False,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        c = channels
        layers: list[nn.Module] = [PaddedConv1d(in_channels, c, 7, causal=causal)]
        for stride in strides:
            layers += [ResUnit1d(c, d, causal, activation) for d in res_dilations]
            layers.append(_Down(c, 2 * c, stride, causal, activation))
            c *= 2
        layers += [activation1d(activation, c), PaddedConv1d(c, out_dim, 3, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        """Next ``n`` samples ``(B, C, n)`` -> the frames they complete ``(B, D, m)``."""
        return stream_step(self.net, x, cache)


class ConvDecoder1d(nn.Module):
    """``(B, D, L) -> (B, C, L * hop)``, the mirror of :class:`ConvEncoder1d` (same arguments)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        strides: tuple[int, ...],
        res_dilations: tuple[int, ...],
        in_dim: int,
        causal: bool = False,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        c = channels * 2 ** len(strides)
        layers: list[nn.Module] = [PaddedConv1d(in_dim, c, 7, causal=causal)]
        for stride in reversed(strides):
            layers.append(_Up(c, c // 2, stride, causal, activation))
            c //= 2
            layers += [ResUnit1d(c, d, causal, activation) for d in res_dilations]
        layers += [activation1d(activation, c), PaddedConv1d(c, in_channels, 7, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def step(self, z: Tensor, cache: StreamCache) -> Tensor:
        """Next ``n`` frames ``(B, D, n)`` -> their ``(B, C, n * hop)`` samples."""
        return stream_step(self.net, z, cache)
