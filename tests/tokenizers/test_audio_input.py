"""Bad and foreign audio input: clear errors from the codec, documented conversions in ``to_waveform``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqtok.testing.configs import TINY_AUDIO
from vqtok.tokenizers import create_tokenizer
from vqtok.tokenizers.audio_input import to_waveform

TINY = TINY_AUDIO


@pytest.fixture(params=[False, True], ids=["centred", "causal"])
def model(request):
    torch.manual_seed(0)
    return create_tokenizer("audio", **TINY, causal=request.param).eval()


def _tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def test_nan_and_inf_are_refused(model) -> None:
    x = torch.zeros(1, 1, 40)
    x[0, 0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.encode(x)
    x[0, 0, 7] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(x)


def test_int16_is_refused_with_the_conversion_named(model) -> None:
    pcm = torch.zeros(1, 1, 40, dtype=torch.int16)
    with pytest.raises(ValueError, match="int16.*32768|32768"):
        model.encode(pcm)


@pytest.mark.parametrize("shape", [(1, 2, 40), (1, 1, 0), (40,)], ids=["stereo", "empty", "1d"])
def test_bad_layouts_are_refused(model, shape) -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        model.encode(torch.zeros(shape))


def test_shorter_than_one_hop_pads_to_one_frame(model) -> None:
    x = torch.full((2, 1, 3), 0.25)  # hop is 4
    indices = model.encode(x)
    assert indices.shape == (2, 1, 2)
    assert model.decode(indices, length=3).shape == (2, 1, 3)
    assert model(x).recon.shape == (2, 1, 3)


def test_int_pcm_scaling() -> None:
    pcm = np.array([-32768, 0, 16384, 32767], dtype=np.int16)
    wav = to_waveform(pcm, 8000, target_rate=8000)
    assert wav.dtype == torch.float32 and wav.shape == (1, 1, 4)
    torch.testing.assert_close(wav[0, 0], torch.tensor([-1.0, 0.0, 0.5, 32767 / 32768]))
    u8 = to_waveform(np.array([0, 128, 255], dtype=np.uint8), 8000, target_rate=8000)
    torch.testing.assert_close(u8[0, 0], torch.tensor([-1.0, 0.0, 127 / 128]))
    with pytest.raises(TypeError, match="dtype"):
        to_waveform(np.array([True, False]), 8000, target_rate=8000)


def test_stereo_is_averaged_for_a_mono_model() -> None:
    left, right = _tone(300, 8000, 0.1), _tone(700, 8000, 0.1)
    wav = to_waveform(np.stack([left, right]), 8000, target_rate=8000, channels=1)
    torch.testing.assert_close(wav[0, 0], torch.from_numpy((left + right) / 2))
    assert to_waveform(left, 8000, target_rate=8000, channels=2).shape == (1, 2, len(left))
    with pytest.raises(ValueError, match="3 channels"):
        to_waveform(np.zeros((3, 10), np.float32), 8000, target_rate=8000, channels=2)


def test_other_sample_rate_is_resampled_keeping_the_pitch() -> None:
    pytest.importorskip("soxr")
    wav = to_waveform(_tone(440, 44100, 0.5), 44100, target_rate=8000)
    assert abs(wav.shape[-1] - 4000) <= 1
    spectrum = torch.fft.rfft(wav[0, 0]).abs()
    peak_hz = float(spectrum.argmax()) * 8000 / wav.shape[-1]
    assert abs(peak_hz - 440) < 5


def test_empty_and_nan_conversions_fail() -> None:
    with pytest.raises(ValueError, match="empty"):
        to_waveform(np.zeros(0, np.float32), 8000, target_rate=8000)
    with pytest.raises(ValueError, match="NaN"):
        to_waveform(np.array([0.0, np.nan], np.float32), 8000, target_rate=8000)
    with pytest.raises(ValueError, match="positive"):
        to_waveform(np.zeros(4, np.float32), 0, target_rate=8000)
