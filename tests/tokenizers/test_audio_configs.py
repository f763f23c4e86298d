"""The 8, 16 and 24 kHz audio configs: rate, hop, bitrate, causality, and two GAN steps each on resampled WAVs."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.data import create_dataset
from vqtok.tokenizers import Tokenizer
from vqtok.train import Trainer, load_config

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {  # sample rate, hop, kbps at full depth
    "audio_8k": (8000, 40, 12.8),
    "audio_16k": (16000, 160, 8.0),
    "audio_24k": (24000, 320, 6.0),
}


def _folder(path: Path, rate: int = 22050, files: int = 12) -> Path:
    path.mkdir()
    t = np.arange(int(0.6 * rate)) / rate
    for i in range(files):
        pcm = 0.3 * np.sin(2 * math.pi * (140 + 40 * i) * t) * np.hanning(t.size)
        with wave.open(str(path / f"u{i:02d}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


def test_speech_folder_resamples_and_splits(tmp_path) -> None:
    pytest.importorskip("soxr")
    root = _folder(tmp_path / "w", files=30)
    train = create_dataset("speech_folder", "train", root=str(root), sample_rate=16000, segment_seconds=0.25)
    test = create_dataset("speech_folder", "test", root=str(root), sample_rate=16000, segment_seconds=0.25)
    assert len(train.waveforms) + len(test.waveforms) == 30 and len(test.waveforms) > 0
    assert not set(train.names) & set(test.names)
    assert train.sample_rate == 16000 and abs(train.waveforms[0].shape[-1] - int(0.6 * 16000)) <= 1
    assert train[0].shape == (1, 4000)
    with pytest.raises(FileNotFoundError, match="espeak"):
        create_dataset("speech_folder", "train", root=str(tmp_path / "missing"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_trains_two_gan_steps(tmp_path, name) -> None:
    pytest.importorskip("soxr")
    rate, hop, kbps = EXPECTED[name]
    root = _folder(tmp_path / "w", rate=8000 if name == "audio_8k" else 22050)
    cfg = load_config(
        ROOT / "configs" / f"{name}.yaml",
        [
            f"data.kwargs.root={root}",
            "data.kwargs.segment_seconds=0.1",
            "steps=2",
            "batch_size=2",
            "log_every=1",
            "model.gan_start_step=1",
            "device=cpu",
            f"run_dir={tmp_path / 'run'}",
        ],  # fmt: skip
    )
    trainer = Trainer(cfg, progress=False)
    result = trainer.fit()
    model = trainer.model
    assert model.config.sample_rate == rate and model.hop == hop and model.config.causal
    assert model.bitrate_kbps() == pytest.approx(kbps) and trainer.disc is not None
    assert math.isfinite(result.last_metrics["d_loss"]) and math.isfinite(result.last_metrics["loss"])
    loaded = Tokenizer.from_pretrained(result.model_dir)
    x = 0.1 * torch.randn(1, 1, 3 * hop + 5)
    assert torch.equal(torch.cat(list(loaded.encode_stream(x.split(hop // 2 + 1, dim=-1))), dim=1), loaded.encode(x))
