"""Evaluation reports: the modality decides what is written next to metrics.json and the histogram."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import torch

from vqtok.metrics.report import save_wav
from vqtok.modalities import get_modality


def _read_wav(path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as f:
        rate, channels, frames = f.getframerate(), f.getnchannels(), f.getnframes()
        assert f.getsampwidth() == 2
        data = np.frombuffer(f.readframes(frames), dtype="<i2").reshape(frames, channels).T
    return rate, data


def test_save_wav_round_trips_within_one_lsb(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    wav = torch.rand(2, 321, generator=g) * 2 - 1
    wav[0, 0] = 3.0  # overshoot is clipped, never wrapped around
    rate, data = _read_wav(save_wav(wav, 16_000, tmp_path / "x.wav"))
    assert rate == 16_000 and data.shape == (2, 321)
    assert data[0, 0] == 32767
    back = torch.from_numpy(data.astype(np.float32) / 32767)
    assert (back[:, 1:] - wav[:, 1:]).abs().max() <= 1 / 32767 + 1e-6


def test_save_wav_rejects_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\(C, T\)"):
        save_wav(torch.zeros(10), 8000, tmp_path / "a.wav")
    with pytest.raises(ValueError, match="sample_rate"):
        save_wav(torch.zeros(1, 10), 0, tmp_path / "a.wav")


def test_audio_report_has_before_after_players(tmp_path) -> None:
    originals = torch.sin(torch.linspace(0, 200, 800)).repeat(5, 1, 1) * 0.5
    recons = originals * 0.9
    counts = torch.tensor([3.0, 0.0, 5.0, 1.0])
    page = get_modality("audio").write_report(
        tmp_path, {"si_snr": 20.0}, originals, recons, counts, sample_rate=8000, audio_examples=3
    )
    names = sorted(p.name for p in (tmp_path / "audio").iterdir())
    assert names == [f"{k}_{i}.wav" for k in ("original", "recon") for i in range(3)]
    rate, data = _read_wav(tmp_path / "audio" / "recon_1.wav")
    assert rate == 8000 and data.shape == (1, 800)
    assert np.allclose(data[0] / 32767, recons[1, 0].numpy(), atol=1 / 32767 + 1e-6)
    text = page.read_text()
    assert text.count("<audio controls") == 6 and "audio/original_2.wav" in text
    assert "codebook_usage.png" in text and not (tmp_path / "recon_grid.png").exists()
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"si_snr": 20.0}


def test_timeseries_report_plots_curves(tmp_path) -> None:
    originals = torch.randn(6, 3, 40, generator=torch.Generator().manual_seed(1))
    page = get_modality("timeseries").write_report(tmp_path, {"mse": 0.1}, originals, originals + 0.1)
    assert (tmp_path / "recon_series.png").stat().st_size > 1000
    assert "recon_series.png" in page.read_text()
    assert not (tmp_path / "audio").exists()
