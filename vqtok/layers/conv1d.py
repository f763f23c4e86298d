"""1-D convolutions that pad themselves (centred or causal) and can run as a stateful stream.

A causal layer pads on the left only, so output sample ``t`` never depends on input after ``t``; that is what
makes chunked encoding possible (SoundStream, arXiv:2107.03312, section 3.1; EnCodec's ``SConv1d``,
arXiv:2210.13438). Streaming keeps, per layer, the input samples the next output still needs and computes
exactly the windows the whole-signal pass computes, from the same zero left context, so any chunking
gives the same numbers (PyTorch's CPU convolutions compute each output window independently of the input's
length; the property tests in ``tests/tokenizers/test_audio_stream.py`` check bit equality).

Stream state is a plain ``dict`` owned by the caller (one per stream), keyed by the layer, so a model can
serve several streams at once and holds no hidden state. Written for vqtok; no code was copied.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PaddedConv1d", "PaddedConvTranspose1d", "StreamCache", "stream_step"]

#: Per-stream state: layer -> what it buffered between calls.
StreamCache = dict[nn.Module, Any]


def _pair(total: int, causal: bool) -> tuple[int, int]:
    # Centred padding puts the odd sample on the left, as the original non-causal codec did.
    return (total, 0) if causal else ((total + 1) // 2, total // 2)


class PaddedConv1d(nn.Conv1d):
    """``nn.Conv1d`` with "same / stride" padding: ``(B, C, T) -> (B, C', T / stride)`` for ``T`` divisible by
    the stride. Parameters are named as in ``nn.Conv1d``, so checkpoints of plain convolutions load.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Taps.
        stride: Downsampling factor.
        dilation: Tap spacing.
        causal: Pad ``(kernel - 1) * dilation - (stride - 1)`` zeros on the left only (streamable);
            ``False`` splits them between both sides.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.causal = causal
        self.total_padding = (kernel_size - 1) * dilation - (stride - 1)
        if self.total_padding < 0:
            raise ValueError(f"kernel {kernel_size} (dilation {dilation}) is shorter than its stride {stride}")

    @property
    def receptive(self) -> int:
        """Input samples one output reads."""
        return (self.kernel_size[0] - 1) * self.dilation[0] + 1

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, _pair(self.total_padding, self.causal)))

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        """Streams ``x`` ``(B, C, n)``: returns every output whose window is now complete (causal only)."""
        if not self.causal:
            raise ValueError("streaming needs causal convolutions (config causal: true)")
        buf = cache.get(self)
        if buf is None:
            buf = x.new_zeros(x.shape[0], x.shape[1], self.total_padding)
        buf = torch.cat([buf, x], dim=-1)
        s = self.stride[0]
        n = (buf.shape[-1] - self.receptive) // s + 1 if buf.shape[-1] >= self.receptive else 0
        if n <= 0:
            cache[self] = buf
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        y = super().forward(buf[..., : (n - 1) * s + self.receptive])
        cache[self] = buf[..., n * s :]
        return y


class PaddedConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with kernel ``2 * stride`` cropped to exactly ``L * stride`` outputs.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Upsampling factor.
        causal: Crop the kernel's overhang on the right only, so output frame ``t`` reads input frames
            ``t`` and ``t - 1`` (streamable); ``False`` crops it on both sides.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, causal: bool = False) -> None:
        super().__init__(in_channels, out_channels, 2 * stride, stride=stride)
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride[0]
        if self.causal:
            # One zero frame of left context, the state a fresh stream starts from (see step).
            return self._with_context(x.new_zeros(*x.shape[:2], 1), x)
        y = super().forward(x)  # (B, C', L * s + s)
        return y[..., (s + 1) // 2 : y.shape[-1] - s // 2]

    def _with_context(self, prev: Tensor, x: Tensor) -> Tensor:
        s = self.stride[0]
        y = super().forward(torch.cat([prev, x], dim=-1))  # (B, C', (L + 1) * s + s)
        return y[..., s : s + x.shape[-1] * s]

    def step(self, x: Tensor, cache: StreamCache) -> Tensor:
        """Streams ``x`` ``(B, C, n)`` frames: returns their ``n * stride`` output samples (causal only)."""
        if not self.causal:
            raise ValueError("streaming needs causal convolutions (config causal: true)")
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        prev = cache.get(self)
        if prev is None:
            prev = x.new_zeros(*x.shape[:2], 1)
        cache[self] = x[..., -1:]
        return self._with_context(prev, x)


def stream_step(module: nn.Module, x: Tensor, cache: StreamCache) -> Tensor:
    """Runs ``module`` on the next piece ``x`` of a stream, ``(B, C, n) -> (B, C', m)``.

    Layers with a ``step`` method stream themselves, ``nn.Sequential`` chains its children, and element-wise
    activations apply as is.

    Raises:
        TypeError: For a layer that cannot stream (it would need future samples or hidden state).
    """
    step = getattr(module, "step", None)
    if step is not None:
        return step(x, cache)
    if isinstance(module, nn.Sequential):
        for child in module:
            x = stream_step(child, x, cache)
        return x
    if isinstance(module, (nn.ELU, nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.Identity)):
        return module(x)
    raise TypeError(f"{type(module).__name__} cannot run as a stream")
