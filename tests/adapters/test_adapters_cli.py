"""The CLI with ``--model hf:...``: export of WAV files to Parquet shards (read by ``datasets``), encode,
decode and eval through an adapter. Weights are tiny random models saved in the test."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch
from _hf_references import REFERENCES

from vqtok.cli.__main__ import main
from vqtok.tokenizers import from_pretrained


def _write_wav(path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())


def test_export_wav_folder_through_hf_encodec(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    torch.manual_seed(0)
    ref = REFERENCES["encodec"][0]()
    ref.save_pretrained(tmp_path / "encodec")
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    lengths = {"a.wav": 800, "b.wav": 1200, "c.wav": 800}
    for name, n in lengths.items():
        _write_wav(wavs / name, 0.3 * np.sin(np.arange(n) * rng.uniform(0.01, 0.3)), 8000)
    out = tmp_path / "tokens"
    assert main(["export", str(wavs), "-o", str(out), "--model", f"hf:{tmp_path / 'encodec'}", "--no-progress"]) == 0
    files = str(out / "data" / "*.parquet")
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "c"))
    assert ds.num_rows == 3
    tok = from_pretrained(f"hf:{tmp_path / 'encodec'}")
    from vqtok.modalities import AUDIO, ReadOptions

    for row in ds:
        name = row["key"].rsplit("/", 1)[-1]
        wav = AUDIO.read_bytes((wavs / name).read_bytes(), name, ReadOptions(sample_rate=8000))
        expected = tok.encode(wav[None])[0]
        assert row["shape"] == list(expected.shape) == [lengths[name] // 8, 4]
        assert row["ids"] == expected.flatten().tolist()


def test_encode_decode_eval_through_hf_janus(tmp_path) -> None:
    torch.manual_seed(0)
    ref = REFERENCES["janus_vqgan"][0]()
    ref.save_pretrained(tmp_path / "janus")
    model = f"hf:{tmp_path / 'janus'}"
    images = torch.rand(5, 1, 8, 8)
    np.save(tmp_path / "x.npy", images.numpy())
    assert main(["encode", "--model", model, str(tmp_path / "x.npy"), "-o", str(tmp_path / "i.npy")]) == 0
    assert main(["decode", "--model", model, str(tmp_path / "i.npy"), "-o", str(tmp_path / "r.npy")]) == 0
    tok = from_pretrained(model)
    indices = tok.encode(images)
    assert np.array_equal(np.load(tmp_path / "i.npy"), indices.numpy())
    assert np.array_equal(np.load(tmp_path / "r.npy"), tok.decode(indices).numpy())
    # eval on sklearn's 8x8 digits writes metrics and a report.
    pytest.importorskip("sklearn")
    out = tmp_path / "report"
    assert main(["eval", "--model", model, "--data", "digits", "--max-examples", "16", "-o", str(out)]) == 0
    assert (out / "metrics.json").is_file() and (out / "report" / "index.html").is_file()


def test_cli_error_for_missing_repo(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    code = main(["encode", "--model", "hf:nobody/nothing", str(tmp_path / "x.npy"), "-o", str(tmp_path / "i.npy")])
    assert code == 2 and "hf download nobody/nothing" in capsys.readouterr().err
