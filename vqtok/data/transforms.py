"""Seeded transforms that bring one decoded example to the model's shape.

Every random choice draws from a generator made by :func:`sample_generator` from ``(seed, key...)`` (the key
names the example and its epoch or step), so a crop depends only on the run's seed and the example's position
in the data order: the same in any DataLoader worker, on any rank, and after a resume.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..modalities.audio import to_audio_channels

__all__ = ["IMAGE_MODES", "AudioTransform", "ImageTransform", "VideoTransform", "sample_generator"]

IMAGE_MODES = ("none", "resize", "center_crop", "random_resized_crop")


def sample_generator(seed: int, *key: int) -> torch.Generator:
    """A generator seeded from ``(seed, *key)`` (non-negative integers) by NumPy's ``SeedSequence`` mixing."""
    state = np.random.SeedSequence([int(seed) % 2**63, *(int(k) % 2**63 for k in key)]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)


class ImageTransform:
    """Brings a ``(C, h, w)`` image to ``(C, H, W)`` = ``size``.

    Args:
        size: Target ``(H, W)`` (the model's ``image_size``).
        mode: ``"none"`` (the image must already be ``size``), ``"resize"`` (aspect ratio not kept),
            ``"center_crop"`` (shorter side resized to fit, centre cut out) or ``"random_resized_crop"``
            (a random box of ``scale`` of the area and aspect ratio in ``ratio``, resized; seeded).
        scale: Area fraction range of the random crop.
        ratio: Aspect-ratio range (width / height) of the random crop.
    """

    def __init__(
        self,
        size: tuple[int, int],
        mode: str = "random_resized_crop",
        scale: tuple[float, float] = (0.35, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if mode not in IMAGE_MODES:
            raise ValueError(f"data.transform must be one of {', '.join(IMAGE_MODES)}, got {mode!r}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"data.crop_scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.size = (int(size[0]), int(size[1]))
        self.mode, self.scale, self.ratio = mode, scale, ratio

    def __call__(self, x: Tensor, generator: torch.Generator | None = None, source: str = "image") -> Tensor:
        h, w = x.shape[-2:]
        if self.mode == "none":
            if (h, w) != self.size:
                raise ValueError(
                    f"{source}: image of size {h}x{w}, the model takes {self.size[0]}x{self.size[1]}; the folder "
                    "holds mixed sizes, so choose data.transform=resize, center_crop or random_resized_crop"
                )
            return x
        if self.mode == "resize":
            return _resize(x, self.size)
        if self.mode == "center_crop":
            th, tw = self.size
            s = max(th / h, tw / w)
            x = _resize(x, (max(th, round(h * s)), max(tw, round(w * s))))
            top, left = (x.shape[-2] - th) // 2, (x.shape[-1] - tw) // 2
            return x[:, top : top + th, left : left + tw].contiguous()
        top, left, ch, cw = self._box(h, w, generator)
        return _resize(x[:, top : top + ch, left : left + cw], self.size)

    def _box(self, h: int, w: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
            target = area * (self.scale[0] + u[0] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_lo + u[1] * (log_hi - log_lo))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                return int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1)), ch, cw
        side = min(h, w)  # no box fitted in ten draws (extreme aspect ratio): the centre square
        return (h - side) // 2, (w - side) // 2, side, side


class VideoTransform:
    """Brings a ``(C, t, h, w)`` clip to ``(C, frames, H, W)``: a temporal window, then one spatial transform.

    Time: a clip longer than ``frames`` gives a seeded random window of ``frames`` consecutive frames (the first
    ``frames`` when no generator is given); a shorter one is padded by repeating its last frame (the tokenizer's
    ``repeat_last`` rule). Space: every frame of the clip gets the same :class:`ImageTransform` box (one draw per
    clip), so a crop never jitters between frames.

    Args:
        size: Target ``(H, W)`` (the model's ``image_size``).
        frames: Frames per example (the model's ``frames``: ``1 + ft*k``, or any count with ``repeat_last``).
        mode, scale, ratio: As for :class:`ImageTransform`.
    """

    def __init__(
        self,
        size: tuple[int, int],
        frames: int,
        mode: str = "random_resized_crop",
        scale: tuple[float, float] = (0.35, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if int(frames) < 1:
            raise ValueError(f"a video model trained on files needs model.frames >= 1 (clip length), got {frames}")
        self.frames = int(frames)
        self.image = ImageTransform(size, mode, scale, ratio)

    def window_start(self, t: int, generator: torch.Generator | None) -> int:
        """First frame of the window in a ``t``-frame clip (draws once from ``generator`` when ``t > frames``).

        A decoder that reads only the window (:func:`vqtok.modalities.read_video` ``start_of``) calls this first;
        the clip it passes on then has ``frames`` frames and the call draws no second time, so the crop is the
        same as for a whole clip.
        """
        if t <= self.frames or generator is None:
            return 0
        return int(torch.randint(0, t - self.frames + 1, (1,), generator=generator))

    def __call__(self, x: Tensor, generator: torch.Generator | None = None, source: str = "clip") -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"{source}: a clip must be (C, T, H, W), got shape {tuple(x.shape)}")
        c, t, h, w = x.shape
        if t < self.frames:
            x = torch.cat([x, x[:, -1:].expand(c, self.frames - t, h, w)], dim=1)
        elif t > self.frames:
            start = self.window_start(t, generator)
            x = x[:, start : start + self.frames]
        # Frames folded into channels: one box and one resize for the whole clip.
        y = self.image(x.reshape(c * self.frames, h, w), generator, source)
        return y.reshape(c, self.frames, *y.shape[-2:]).contiguous()


class AudioTransform:
    """Brings a ``(C, T)`` waveform at any rate to ``(channels, segment)`` at ``sample_rate``.

    Channels: ``channel`` picks one channel of the file; then the audio modality's channel rule applies (a
    mono model takes the mean of all channels, mono is copied to every channel, other mismatches are errors).
    Resampling is ``soxr`` (high quality). A longer signal gives a seeded random ``segment`` (the start when no
    generator is given); a shorter one is zero-padded at the end.

    Args:
        sample_rate: The model's rate in Hz.
        channels: The model's channel count.
        segment: Samples per example at ``sample_rate`` (``None``: the whole signal).
        channel: Index of the file channel to keep (``None``: mix down).
    """

    def __init__(self, sample_rate: int, channels: int = 1, segment: int | None = None, channel: int | None = None):
        self.sample_rate, self.channels, self.segment, self.channel = int(sample_rate), channels, segment, channel

    def __call__(
        self, wav: Tensor, rate: int, generator: torch.Generator | None = None, source: str = "audio"
    ) -> Tensor:
        if wav.ndim == 1:
            wav = wav[None]
        if self.channel is not None:
            if not -wav.shape[0] <= self.channel < wav.shape[0]:
                raise ValueError(f"{source}: data.channel={self.channel}, but the file has {wav.shape[0]} channel(s)")
            wav = wav[self.channel : self.channel + 1 if self.channel != -1 else None]
        wav = to_audio_channels(wav, self.channels, source)
        if rate != self.sample_rate:
            import soxr

            out = soxr.resample(wav.T.numpy().astype(np.float32), rate, self.sample_rate, quality="HQ")
            wav = torch.from_numpy(np.ascontiguousarray(out.reshape(out.shape[0], -1).T))
        wav = wav.float()
        if self.segment is None:
            return wav.contiguous()
        n = wav.shape[-1]
        if n < self.segment:
            return F.pad(wav, (0, self.segment - n))
        start = int(torch.randint(0, n - self.segment + 1, (1,), generator=generator)) if generator is not None else 0
        return wav[:, start : start + self.segment].contiguous()
