"""Export sources read files through the modality descriptors: suffixes, value rules and errors naming the file."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.data.sources import ArraySource, FolderSource, ParquetSource, open_source
from vqtok.modalities import get_modality

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _wav(n: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.arange(n) * 100).astype("<i2").tobytes())
    return buf.getvalue()


def test_folder_reads_only_the_modality_files(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(_wav(16))
    (tmp_path / "b.png").write_bytes(b"not read by an audio source")
    src = FolderSource(tmp_path, channels=1, sample_rate=8000, modality="audio")
    assert src.files == ["a.wav"] and src.load(0).shape == (1, 16)
    (tmp_path / "c.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"c\.wav.*empty"):
        FolderSource(tmp_path, channels=1, modality="audio").load(1)
    (tmp_path / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="no image files"):
        FolderSource(tmp_path)


def test_parquet_number_columns_follow_the_value_rule(tmp_path: Path) -> None:
    pixels = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    table = pa.table(
        {
            "signal": pa.array([pixels.ravel().tolist()] * 2, pa.list_(pa.uint8())),
            "wide": pa.array([pixels.ravel().astype(np.int64).tolist()] * 2, pa.list_(pa.int64())),
            "shape": [[1, 8, 8], [2, 8, 8]],
        }
    )
    pq.write_table(table, tmp_path / "n.parquet")
    src = ParquetSource(tmp_path / "n.parquet", channels=1)
    assert torch.equal(src.load(0), torch.from_numpy(pixels).float() / 255)
    with pytest.raises(ValueError, match=r"row 1: shape \[2, 8, 8\] does not fit 64 values"):
        src.load(1)
    with pytest.raises(TypeError, match=r"n\.parquet' row 0: integer dtype int64"):
        ParquetSource(tmp_path / "n.parquet", column="wide").load(0)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(ValueError, match=r"bad\.parquet.*not a readable Parquet"):
        open_source(str(tmp_path / "bad.parquet"))


def test_array_source_rules(tmp_path: Path) -> None:
    np.save(tmp_path / "series.npy", np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4))
    src = ArraySource(tmp_path / "series.npy", modality="timeseries")
    assert torch.equal(src.load(1), torch.arange(12, 24, dtype=torch.float32).reshape(3, 4))
    np.save(tmp_path / "c.npy", np.ones((2, 1, 4, 4), np.complex64))
    with pytest.raises(TypeError, match=r"c\.npy.*complex"):
        ArraySource(tmp_path / "c.npy")
    np.save(tmp_path / "e.npy", np.zeros((0, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"e\.npy.*non-empty"):
        ArraySource(tmp_path / "e.npy")
    np.save(tmp_path / "g.npy", np.zeros((3, 4, 4), np.uint8))  # grey images without a channel axis
    assert ArraySource(tmp_path / "g.npy", modality="image").load(0).shape == (1, 4, 4)
    np.save(tmp_path / "f.npy", np.full((2, 3, 4), -5.0))  # read by the exporter's tokenizer, not as images
    unbound = ArraySource(tmp_path / "f.npy")
    unbound.bind_modality(get_modality("timeseries"))
    assert torch.equal(unbound.load(0), torch.full((3, 4), -5.0))
