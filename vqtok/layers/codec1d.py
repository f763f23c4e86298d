"""SEANet-style 1-D convolutional encoder and decoder of the audio codec, centred or causal, streamable.

The layout follows SoundStream / EnCodec (arXiv:2107.03312, arXiv:2210.13438): residual units of dilated
kernel-7 convolutions before each strided stage, widths doubling as time shrinks, and a mirrored decoder of
kernel-``2s`` transposed convolutions. With ``causal=True`` every convolution pads on the left only, so the
encoder emits frame ``t`` as soon as its ``hop`` samples have arrived and the decoder turns frame ``t`` into
its ``hop`` samples at once: algorithmic latency is one hop. ``step`` runs the same network on the next piece
of a stream (see :mod:`vqtok.layers.conv1d`). Written for vqtok; no code was copied.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .conv1d import PaddedConv1d, PaddedConvTranspose1d, StreamCache, stream_step
from .snake import activation1d

__all__ = ["Codec1dSpec", "ConvDecoder1d", "ConvEncoder1d", "ResUnit1d"]


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


@dataclass(frozen=True)
class Codec1dSpec:
    """The shape of an encoder/decoder pair, given to both so that they mirror each other.

    Attributes:
        in_channels: Audio channels C.
        channels: Width of the first encoder stage; each strided stage doubles it.
        strides: Downsampling per encoder stage (the decoder upsamples in reverse order).
        res_dilations: Dilations of the residual units of each stage.
        latent_dim: Latent width D.
        causal: Left-only padding (streamable).
        activation: ``"elu"`` or ``"snake"`` (:class:`vqtok.layers.snake.Snake1d`, learned per channel).
    """

    in_channels: int
    channels: int
    strides: tuple[int, ...]
    res_dilations: tuple[int, ...]
    latent_dim: int
    causal: bool = False
    activation: str = "elu"


class _ConvStack1d(nn.Module):
    """Shared by the encoder and the decoder: ``net`` is the subclass's :meth:`layers`, run in order."""

    def __init__(self, spec: Codec1dSpec) -> None:
        super().__init__()
        self.net = nn.Sequential(*self.layers(spec))

    @staticmethod
    def layers(spec: Codec1dSpec) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        """The next piece of a stream through ``net`` (see :func:`vqtok.layers.conv1d.stream_step`)."""
        return stream_step(self.net, x, cache)


class ConvEncoder1d(_ConvStack1d):
    """``(B, C, T) -> (B, D, T / hop)`` for ``T`` divisible by ``hop = prod(strides)``; ``step`` takes the next
    ``n`` samples ``(B, C, n)`` and returns the frames they complete ``(B, D, m)``.

    Args:
        spec: Channels, strides, dilations, latent width and causality.
    """

    @staticmethod
    def layers(spec: Codec1dSpec) -> list[nn.Module]:
        c = spec.channels
        layers: list[nn.Module] = [PaddedConv1d(spec.in_channels, c, 7, causal=spec.causal)]
        for stride in spec.strides:
            layers += [ResUnit1d(c, d, spec.causal, spec.activation) for d in spec.res_dilations]
            layers.append(_Down(c, 2 * c, stride, spec.causal, spec.activation))
            c *= 2
        return [*layers, activation1d(spec.activation, c), PaddedConv1d(c, spec.latent_dim, 3, causal=spec.causal)]


class ConvDecoder1d(_ConvStack1d):
    """``(B, D, L) -> (B, C, L * hop)``, the mirror of :class:`ConvEncoder1d` built from the same spec; ``step``
    turns the next ``n`` frames ``(B, D, n)`` into their ``(B, C, n * hop)`` samples.

    Args:
        spec: Channels, strides, dilations, latent width and causality.
    """

    @staticmethod
    def layers(spec: Codec1dSpec) -> list[nn.Module]:
        c = spec.channels * 2 ** len(spec.strides)
        layers: list[nn.Module] = [PaddedConv1d(spec.latent_dim, c, 7, causal=spec.causal)]
        for stride in reversed(spec.strides):
            layers.append(_Up(c, c // 2, stride, spec.causal, spec.activation))
            c //= 2
            layers += [ResUnit1d(c, d, spec.causal, spec.activation) for d in spec.res_dilations]
        return [*layers, activation1d(spec.activation, c), PaddedConv1d(c, spec.in_channels, 7, causal=spec.causal)]
