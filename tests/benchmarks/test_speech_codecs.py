"""benchmarks/speech_codecs.py: delay alignment, the held-out rule, and one small end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.data.audio import is_test_file
from vqtok.tokenizers import create_tokenizer

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("speech_codecs", ROOT / "benchmarks" / "speech_codecs.py")
speech_codecs = importlib.util.module_from_spec(spec)
sys.modules["speech_codecs"] = speech_codecs
spec.loader.exec_module(speech_codecs)


@pytest.mark.parametrize("lag", [0, 7, -13, 120])
def test_align_recovers_the_delay(lag: int) -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000)
    deg = np.concatenate([np.zeros(lag), ref])[:4000] if lag >= 0 else ref[-lag:]
    a, b, found = speech_codecs.align(ref, 0.5 * deg)
    assert found == lag
    np.testing.assert_allclose(b, 0.5 * a)


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    # A voiced vowel-like buzz with a slowly moving pitch and amplitude: PESQ needs something speech-like.
    rng = np.random.default_rng(seed)
    t = np.arange(int(8000 * seconds)) / 8000
    f0 = 120 + 30 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f0) / 8000
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * math.pi * 2 * t) ** 2)
    return 0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)


def test_small_run_writes_table_and_json(tmp_path: Path) -> None:
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    names = [n for n in (f"p{i}.wav" for i in range(200)) if is_test_file(n)][:2]
    for i, name in enumerate(names):
        pcm = (_speech_like(1.0, i) * 32767).astype("<i2")
        with wave.open(str(sounds / ("digits" if i else "") / name), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(8000)
            f.writeframes(pcm.tobytes())
    (sounds / "train_only.wav").write_bytes(b"")  # a training file: never opened
    assert not is_test_file("train_only.wav")
    torch.manual_seed(0)
    model = create_tokenizer(
        "audio", sample_rate=8000, strides=(5, 8), channels=4, res_dilations=(1,), causal=True,
        quantizer_kwargs={"dim": 8, "codebook_size": 16, "num_levels": 2},
    )  # fmt: skip
    model.save_pretrained(tmp_path / "m")
    reference = shutil.which("c2enc") and shutil.which("opusenc")
    argv = ["--root", str(sounds), "--model", f"{tmp_path / 'm'}=tiny", "--levels", "1,2", "--out", str(tmp_path / "r")]
    some = ["--codec2-modes", "700C,3200", "--opus-kbps", "8"]  # a subset keeps the test short
    assert speech_codecs.main(argv + (some if reference else ["--no-reference"])) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["files"] == 2
    codecs = [r["codec"] for r in result["rows"]]
    assert codecs[-2:] == ["vqtok tiny, 1 level", "vqtok tiny, 2 levels"]
    if reference:
        assert codecs[:3] == ["codec2 700C", "codec2 3200", "Opus 8 kbps"]
        c2 = next(r for r in result["rows"] if r["codec"] == "codec2 3200")
        assert abs(c2["actual_kbps"] - 3.2) < 0.3 and 0.3 < c2["stoi"] <= 1
    tiny = result["rows"][-1]
    assert tiny["nominal_kbps"] == pytest.approx(200 * 2 * 4 / 1000) and tiny["causal"] is True
    assert "| codec | nominal kbps |" in (tmp_path / "r.md").read_text()
