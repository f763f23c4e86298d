"""Speech metrics of ``vqtok eval``: PESQ (nb/wb), STOI, mel distance, bitrate, latency, streaming RTF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqtok.metrics.audio import pesq, speech_metrics, streaming_rtf
from vqtok.tokenizers import create_tokenizer
from vqtok.train.evaluate import evaluate


def _voiced(rate: int, seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 120 + 30 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20) if k * 150 < rate / 2)
    x = x * (0.5 + 0.5 * np.sin(2 * math.pi * 2 * t) ** 2)
    x = 0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)
    return torch.from_numpy(x).float()[None, None]


def test_pesq_orders_clean_above_noisy_and_nan_on_silence() -> None:
    pytest.importorskip("pesq")
    x = _voiced(8000, 2.0)
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    clean_score, noisy_score = float(pesq(x, x, 8000)[0]), float(pesq(noisy, x, 8000)[0])
    assert clean_score > 4.0 and noisy_score < clean_score - 1.0
    assert math.isnan(float(pesq(torch.zeros(1, 1, 16000), torch.zeros(1, 1, 16000), 8000)[0]))
    with pytest.raises(ValueError, match="mode"):
        pesq(x, x, 8000, mode="xb")


def test_speech_metrics_keys_follow_the_sample_rate() -> None:
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    narrow = speech_metrics(_voiced(8000, 1.5), _voiced(8000, 1.5), 8000)
    assert set(narrow) == {"mel_distance", "stoi", "pesq_nb"}
    pytest.importorskip("soxr")
    wide = speech_metrics(_voiced(24000, 1.5), _voiced(24000, 1.5), 24000)
    assert set(wide) == {"mel_distance", "stoi", "pesq_nb", "pesq_wb"}
    assert float(wide["pesq_wb"][0]) > 4.0 and float(wide["stoi"][0]) > 0.99


def test_eval_reports_rate_latency_and_rtf_for_a_causal_codec() -> None:
    pytest.importorskip("pesq")
    torch.manual_seed(0)
    model = create_tokenizer(
        "audio", sample_rate=8000, strides=(5, 8), channels=4, res_dilations=(1,), causal=True,
        quantizer_kwargs={"dim": 8, "codebook_size": 16, "num_levels": 2},
    )  # fmt: skip
    data = [_voiced(8000, 1.0, seed)[0] for seed in range(2)] + [torch.zeros(1, 8000)]
    metrics = evaluate(model, data, batch_size=3).metrics
    assert metrics["bitrate_kbps"] == pytest.approx(200 * 2 * 4 / 1000)
    assert metrics["algorithmic_latency_ms"] == pytest.approx(5.0)
    assert metrics["stream_rtf_1thread"] > 0
    # The silent clip has no PESQ; the other two still give a finite mean.
    assert math.isfinite(metrics["pesq_nb"]) and 0 <= metrics["stoi"] <= 1 and metrics["mel_distance"] > 0
    assert 0 < streaming_rtf(model, 8000, seconds=0.2)
    centred = create_tokenizer("audio", sample_rate=8000, strides=(5, 8), channels=4, res_dilations=(1,))
    assert "algorithmic_latency_ms" not in evaluate(centred, data[:1]).metrics
