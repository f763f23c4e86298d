"""Token export: deterministic shards, torchrun equivalence, resume, sources and Hugging Face loading."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.data.export import (
    ArraySource,
    FolderSource,
    ParquetSource,
    export_tokens,
    open_source,
    sha256_file,
)
from vqtok.modalities import AUDIO, ReadOptions, read_wav
from vqtok.testing.configs import TINY_IMAGE2D
from vqtok.tokenizers import Tokenizer, create_tokenizer

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

NUM_IMAGES = 50
SHARD = 8  # 7 shards, the last one short


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Tokenizer]:
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    rvq = {"quantizer": "rvq", "quantizer_kwargs": {"dim": 8, "codebook_size": 16, "num_levels": 2}}
    tok = create_tokenizer("image2d", **{**TINY_IMAGE2D, **rvq}).eval()
    tok.save_pretrained(root / "model")
    images = np.random.default_rng(0).integers(0, 256, size=(NUM_IMAGES, 1, 8, 8), dtype=np.uint8)
    np.save(root / "images.npy", images)
    return root, root / "images.npy", tok


def _export(setup, out: Path, **kw):
    _, npy, tok = setup
    return export_tokens(ArraySource(npy), tok, out, shard_size=SHARD, batch_size=5, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    result = _export(setup, out)
    assert result.complete and result.written == list(range(7)) and result.items == NUM_IMAGES
    return out


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*.parquet"))}


def test_shards_hold_the_tokenizer_indices(setup, reference: Path) -> None:
    _, npy, tok = setup
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["num_shards"] == 7 and manifest["num_items"] == NUM_IMAGES
    assert manifest["num_tokens"] == NUM_IMAGES * 4 * 4 * 2
    for shard in manifest["shards"]:
        assert sha256_file(reference / shard["file"]) == shard["sha256"]
    table = pa.concat_tables([pq.read_table(reference / s["file"]) for s in manifest["shards"]])
    assert table.column_names == ["key", "ids", "length", "shape"]
    assert table.column("key").to_pylist()[:2] == ["images.npy:0", "images.npy:1"]
    expected = tok.encode(torch.from_numpy(np.load(npy)).float() / 255)
    ids = np.stack(table.column("ids").to_numpy(zero_copy_only=False))
    assert np.array_equal(ids, expected.reshape(NUM_IMAGES, -1).numpy())
    assert set(table.column("length").to_pylist()) == {32}
    assert table.column("shape")[0].as_py() == [4, 4, 2]


def test_deterministic_rewrite_and_rank_split(setup, reference: Path, tmp_path: Path) -> None:
    again = _export(setup, tmp_path / "again")
    assert _shard_bytes(again.out_dir) == _shard_bytes(reference)
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    # Rank 1 of 3 owns shards 1 and 4, whatever the others do.
    part = _export(setup, tmp_path / "ranked", rank=1, world_size=3)
    assert part.written == [1, 4] and not part.complete
    names = sorted(_shard_bytes(tmp_path / "ranked"))
    assert names == ["train-00001-of-00007.parquet", "train-00004-of-00007.parquet"]


def test_torchrun_two_processes_match_one(setup, reference: Path, tmp_path: Path) -> None:
    root, npy, _ = setup
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 2000),
        "-m",
        "vqtok.cli",
        "export",
        str(npy),
        "-o",
        str(out),
        "--model",
        str(root / "model"),
        "--shard-size",
        str(SHARD),
        "--batch-size",
        "5",
        "--no-progress",
        "--threads",
        "1",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    assert _shard_bytes(out) == _shard_bytes(reference)


def test_resume_skips_complete_shards(setup, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    first = _export(setup, out, max_shards=3)
    assert first.written == [0, 1, 2] and not first.complete and not (out / "manifest.json").exists()
    # What a kill can leave behind: a shard whose record was never written, a temporary file, and
    # (by disk damage or a hand edit) a recorded shard whose bytes no longer match its checksum.
    (out / ".progress" / "00002.json").unlink()
    (out / "data" / ".train-00003-of-00007.parquet.x.tmp").write_bytes(b"partial")
    shard1 = out / "data" / "train-00001-of-00007.parquet"
    shard1.write_bytes(shard1.read_bytes()[:-10])
    second = _export(setup, out)
    assert second.skipped == [0] and second.written == [1, 2, 3, 4, 5, 6] and second.complete
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    assert _shard_bytes(out) == _shard_bytes(reference)
    third = _export(setup, out)
    assert third.written == [] and third.skipped == list(range(7)) and third.complete


def test_other_settings_need_force(setup, reference: Path, tmp_path: Path) -> None:
    _, npy, tok = setup
    out = tmp_path / "f"
    _export(setup, out, max_shards=1)
    with pytest.raises(ValueError, match="other settings"):
        export_tokens(ArraySource(npy), tok, out, shard_size=SHARD + 1, progress=False)
    result = export_tokens(ArraySource(npy), tok, out, shard_size=25, progress=False, force=True)
    assert result.complete and result.num_shards == 2
    assert sorted(_shard_bytes(out)) == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]


def test_hugging_face_datasets_loads_the_shards(reference: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(
        "parquet", data_files=str(reference / "data" / "*.parquet"), split="train", cache_dir=str(tmp_path)
    )
    table = pa.concat_tables([pq.read_table(p) for p in sorted((reference / "data").glob("*.parquet"))])
    assert ds.num_rows == NUM_IMAGES
    assert ds[7]["ids"] == table.column("ids")[7].as_py() and ds[7]["key"] == "images.npy:7"
    by_dir = datasets.load_dataset(str(reference), split="train", cache_dir=str(tmp_path / "d"))
    assert by_dir.num_rows == NUM_IMAGES


def test_vocab_export_writes_whole_segments(setup, tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    from vqtok.vocab import MultimodalVocab, train_bpe

    _, npy, tok = setup
    vocab = MultimodalVocab(train_bpe(["some text for a tiny bpe"] * 4, 260), {"image": tok}, max_grid_size=16)
    result = export_tokens(ArraySource(npy), vocab, tmp_path / "v", shard_size=32, progress=False)
    table = pq.read_table(tmp_path / "v" / "data" / "train-00000-of-00002.parquet")
    ids = table.column("ids")[3].as_py()
    assert result.complete and len(ids) == table.column("length")[3].as_py() == 2 + 2 + 32 + 1 - 1
    (segment,) = vocab.split(ids)
    image = torch.from_numpy(np.load(npy)[3:4]).float() / 255
    assert torch.equal(segment.indices, tok.encode(image)[0])


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_parquet_and_dataset_sources(setup, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    _, npy, tok = setup
    images = np.load(npy)[:3, 0]
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for i, img in enumerate(images):
        (tmp_path / "imgs" / ("sub" if i == 2 else "") / f"{i}.png").write_bytes(_png(img))
    folder = open_source(str(tmp_path / "imgs"), channels=1)
    assert isinstance(folder, FolderSource) and [folder.key(i) for i in range(3)] == ["0.png", "1.png", "sub/2.png"]
    assert torch.equal(folder.load(1), torch.from_numpy(images[1:2]).float() / 255)

    # Hugging Face's Image feature stores {"bytes", "path"} structs.
    column = pa.array([{"bytes": _png(img), "path": None} for img in images])
    pq.write_table(pa.table({"image": column, "key": ["a", "b", "c"]}), tmp_path / "in.parquet")
    src = open_source(str(tmp_path / "in.parquet"), column="image", channels=1)
    assert isinstance(src, ParquetSource) and src.key(2) == "c"
    assert torch.equal(src.load(2), folder.load(2))
    out = export_tokens(src, tok, tmp_path / "pq", progress=False)
    assert out.complete and out.items == 3

    synthetic = open_source("synthetic", split="test")
    assert len(synthetic) == 512 and synthetic.key(5) == "synthetic/test/5"
    with pytest.raises(ValueError, match="built-in data set"):
        open_source(str(tmp_path / "missing"))


def test_read_wav(tmp_path: Path) -> None:
    samples = (np.sin(np.linspace(0, 20, 200)) * 20000).astype("<i2")
    stereo = np.stack([samples, -samples], 1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo.tobytes())
    x, rate = read_wav(buf.getvalue())
    assert rate == 16000 and x.shape == (2, 200)
    assert torch.allclose(x[0], torch.from_numpy(samples / 32768.0).float())
    assert torch.equal(AUDIO.read_bytes(buf.getvalue(), "a.wav", ReadOptions(sample_rate=16000)), x)
    with pytest.raises(ValueError, match="24000 Hz"):
        AUDIO.read_bytes(buf.getvalue(), "a.wav", ReadOptions(sample_rate=24000))
