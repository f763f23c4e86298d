"""Issue 17: every CLI user error ends in one line naming the file or argument, with a non-zero exit.

Each test is the regression test of one reported case; models are tiny untrained tokenizers saved to disk.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.cli.__main__ import main
from vqtok.testing.configs import TINY_AUDIO, TINY_IMAGE2D
from vqtok.tokenizers import create_tokenizer

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    image = create_tokenizer("image2d", **TINY_IMAGE2D)
    image.save_pretrained(root / "image")
    audio = create_tokenizer("audio", **TINY_AUDIO)
    audio.save_pretrained(root / "audio")
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Runs the CLI in-process; returns ``(exit status, stderr)`` whether it returned or exited."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, *names: str) -> None:
    assert rc != 0, err
    assert "Traceback" not in err and "BytesIO" not in err, err
    last = err.strip().splitlines()[-1]
    assert "error:" in last, err
    for name in names:
        assert name in last, f"{name!r} not in {last!r}"


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def encode(models: Path, kind: str, *inputs: Path, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["encode", "--model", models / kind, *inputs, "-o", out, *extra]


# ------------------------------------------------------------------------------------------- decode
def test_decode_rejects_float_indices_from_npy_and_parquet(models: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "f.npy", np.full((2, 4, 4), 3.7))
    rc, err = run(["decode", "--model", models / "image", tmp_path / "f.npy", "-o", tmp_path / "r.npy"], capsys)
    assert_one_line_error(rc, err, "f.npy", "integers")
    table = pa.table({"shape": [[4, 4]] * 2, "indices": [[1.5] * 16] * 2})
    pq.write_table(table, tmp_path / "f.parquet")
    rc, err = run(["decode", "--model", models / "image", tmp_path / "f.parquet", "-o", tmp_path / "r.npy"], capsys)
    assert_one_line_error(rc, err, "f.parquet", "integers")
    assert not (tmp_path / "r.npy").exists()


def test_decode_wrong_shapes_empty_and_missing_columns(models: Path, tmp_path: Path, capsys) -> None:
    cases = {
        "wrong_shape.npy": np.zeros((2, 3, 5, 7), np.int64),  # one axis too many for (N, h, w)
        "empty.npy": np.zeros((0, 7, 7), np.int64),
        "scalar.npy": np.array(3),
        "out_of_range.npy": np.full((1, 4, 4), 99, np.int64),
    }
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        rc, err = run(["decode", "--model", models / "image", tmp_path / name, "-o", tmp_path / "r.npy"], capsys)
        assert_one_line_error(rc, err, name)
        assert "EinopsError" not in err and "torch.cat" not in err
    pq.write_table(pa.table({"indices": [[1] * 16]}), tmp_path / "noshape.parquet")
    rc, err = run(
        ["decode", "--model", models / "image", tmp_path / "noshape.parquet", "-o", tmp_path / "r.npy"], capsys
    )
    assert_one_line_error(rc, err, "noshape.parquet", "'shape'")


def test_decode_round_trip_still_works(models: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "idx.npy", np.arange(32).reshape(2, 4, 4))
    rc, err = run(["decode", "--model", models / "image", tmp_path / "idx.npy", "-o", tmp_path / "r.npy"], capsys)
    assert rc == 0, err
    recon = np.load(tmp_path / "r.npy")
    assert recon.shape == (2, 1, 8, 8) and np.isfinite(recon).all()


# ------------------------------------------------------------------------------------------ values
def test_16_bit_png_is_scaled_by_its_range(models: Path, tmp_path: Path, capsys) -> None:
    grey16 = (np.random.default_rng(0).random((8, 8)) * 65535).astype(np.uint16)
    (tmp_path / "a.png").write_bytes(png_bytes(grey16))
    np.save(tmp_path / "a.npy", (grey16 / 65535.0).astype(np.float32))
    for src in ("a.png", "a.npy"):
        rc, err = run(encode(models, "image", tmp_path / src, out=tmp_path / f"{src}.idx.npy"), capsys)
        assert rc == 0, err
    assert np.array_equal(np.load(tmp_path / "a.png.idx.npy"), np.load(tmp_path / "a.npy.idx.npy"))
    from vqtok.modalities import IMAGE, ReadOptions

    x = IMAGE.read_file(tmp_path / "a.png", ReadOptions(channels=1))
    assert torch.allclose(x[0].double(), torch.from_numpy(grey16 / 65535.0), atol=1e-6)
    assert float((x >= 1).float().mean()) < 0.05  # not clipped: the old reader put 99.6 % of pixels at 1


def test_array_value_rule(models: Path, tmp_path: Path, capsys) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (3, 8, 8))
    np.save(tmp_path / "u8.npy", pixels.astype(np.uint8))
    np.save(tmp_path / "unit.npy", (pixels / 255.0).astype(np.float64))
    ok = {}
    for name in ("u8.npy", "unit.npy"):
        rc, err = run(encode(models, "image", tmp_path / name, out=tmp_path / f"{name}.idx.npy"), capsys)
        assert rc == 0, err
        ok[name] = np.load(tmp_path / f"{name}.idx.npy")
    assert np.array_equal(ok["u8.npy"], ok["unit.npy"])
    bad = {
        "i64.npy": (pixels.astype(np.int64), "int64"),
        "f255.npy": (pixels.astype(np.float32), "[0, 1]"),
        "complex.npy": (pixels.astype(np.complex64), "complex"),
        "nan.npy": (np.full((1, 8, 8), np.nan), "NaN"),
        "text.npy": (np.array([["a"] * 8] * 8), "not numeric"),
        "struct.npy": (np.zeros((2, 8), dtype=[("a", "f4"), ("b", "i4")]), "not numeric"),
        "empty.npy": (np.zeros((0, 1, 8, 8), np.uint8), "empty"),
    }
    for name, (arr, words) in bad.items():
        np.save(tmp_path / name, arr)
        rc, err = run(encode(models, "image", tmp_path / name, out=tmp_path / "o.npy"), capsys)
        assert_one_line_error(rc, err, name, words)
    (tmp_path / "zero.npy").write_bytes(b"")
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    for name in ("zero.npy", "junk.npy"):
        rc, err = run(encode(models, "image", tmp_path / name, out=tmp_path / "o.npy"), capsys)
        assert_one_line_error(rc, err, name)
    assert not (tmp_path / "o.npy").exists()


# ------------------------------------------------------------------------------------------- files
def test_corrupt_media_files_are_named(models: Path, tmp_path: Path, capsys) -> None:
    good_png = png_bytes(np.zeros((8, 8), np.uint8))
    good_wav = wav_bytes(np.zeros(64, np.int16))
    files = {
        "zero.png": b"",
        "garbage.png": b"\x00\x01not a png" * 10,
        "truncated.png": good_png[: len(good_png) // 2],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        rc, err = run(encode(models, "image", tmp_path / name, out=tmp_path / "o.npy"), capsys)
        assert_one_line_error(rc, err, name)
    wavs = {"zero.wav": b"", "garbage.wav": b"RIFF....WAVEjunk", "truncated.wav": good_wav[: len(good_wav) - 40]}
    for name, data in wavs.items():
        (tmp_path / name).write_bytes(data)
        rc, err = run(encode(models, "audio", tmp_path / name, out=tmp_path / "o.npy"), capsys)
        assert_one_line_error(rc, err, name)
        # Read as audio, never handed to PIL.
        assert "image" not in err.lower()
    # The same files inside a folder given to `vqtok export`.
    for kind, names in (("image", files), ("audio", wavs)):
        for name in names:
            folder = tmp_path / f"dir-{name}"
            folder.mkdir()
            (folder / name).write_bytes((tmp_path / name).read_bytes())
            rc, err = run(["export", folder, "-o", tmp_path / f"exp-{name}", "--model", models / kind], capsys)
            assert_one_line_error(rc, err, name)


def test_wav_with_audio_model_and_wrong_rate(models: Path, tmp_path: Path, capsys) -> None:
    samples = (np.sin(np.arange(400) / 5) * 10000).astype(np.int16)
    (tmp_path / "a.wav").write_bytes(wav_bytes(samples))
    (tmp_path / "b.wav").write_bytes(wav_bytes(samples, rate=16000))
    rc, err = run(encode(models, "audio", tmp_path / "a.wav", out=tmp_path / "a.npy"), capsys)
    assert rc == 0, err
    assert np.load(tmp_path / "a.npy").shape == (1, 100, 2)  # 400 samples at hop 4, two residual levels
    rc, err = run(encode(models, "audio", tmp_path / "b.wav", out=tmp_path / "b.npy"), capsys)
    assert_one_line_error(rc, err, "b.wav", "16000 Hz")


def test_mixed_image_sizes(models: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "small.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    (tmp_path / "big.png").write_bytes(png_bytes(np.zeros((16, 16), np.uint8)))
    (tmp_path / "odd.png").write_bytes(png_bytes(np.zeros((9, 9), np.uint8)))
    rc, err = run(encode(models, "image", tmp_path / "small.png", tmp_path / "big.png", out=tmp_path / "o.npy"), capsys)
    # The model reads only its image_size (8, 8), so the 16x16 file is refused by name before sizes are compared.
    assert_one_line_error(rc, err, "big.png", "image_size (8, 8)")
    rc, err = run(encode(models, "image", tmp_path / "odd.png", out=tmp_path / "o.npy"), capsys)
    assert_one_line_error(rc, err, "odd.png", "divisible")


def test_outputs_and_folders(models: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "in.npy", np.zeros((1, 8, 8), np.uint8))
    (tmp_path / "dir.npy").mkdir()
    rc, err = run(encode(models, "image", tmp_path / "in.npy", out=tmp_path / "dir.npy", extra=("-f",)), capsys)
    assert_one_line_error(rc, err, "dir.npy", "folder")
    (tmp_path / "file").write_text("x")
    rc, err = run(["export", tmp_path / "in.npy", "-o", tmp_path / "file", "--model", models / "image"], capsys)
    assert_one_line_error(rc, err, "file", "not a folder")
    (tmp_path / "images").mkdir()
    rc, err = run(encode(models, "image", tmp_path / "images", out=tmp_path / "o.npy"), capsys)
    assert_one_line_error(rc, err, "images", "folder")
    assert "not found" not in err
    rc, err = run(encode(models, "image", tmp_path / "missing.png", out=tmp_path / "o.npy"), capsys)
    assert_one_line_error(rc, err, "missing.png", "not found")


@pytest.mark.parametrize("flag", ["--batch-size"])
@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_counts_must_be_positive(models: Path, tmp_path: Path, capsys, flag: str, value: str) -> None:
    np.save(tmp_path / "in.npy", np.zeros((1, 8, 8), np.uint8))
    rc, err = run([*encode(models, "image", tmp_path / "in.npy", out=tmp_path / "o.npy"), flag, value], capsys)
    assert_one_line_error(rc, err, flag)
    rc, err = run(
        ["decode", "--model", models / "image", tmp_path / "in.npy", "-o", tmp_path / "r.npy", flag, value], capsys
    )
    assert_one_line_error(rc, err, flag)


@pytest.mark.parametrize("value", ["0", "-5"])
def test_eval_max_examples_must_be_positive(models: Path, tmp_path: Path, capsys, value: str) -> None:
    argv = ["eval", "--model", models / "image", "--data", "synthetic", "-o", tmp_path / "ev", "--max-examples", value]
    rc, err = run(argv, capsys)
    assert_one_line_error(rc, err, "--max-examples")
    assert not (tmp_path / "ev").exists()


def test_debug_shows_the_traceback(models: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "f.npy", np.zeros((1, 4, 4)))
    argv = ["decode", "--model", models / "image", tmp_path / "f.npy", "-o", tmp_path / "r.npy"]
    assert run(argv, capsys)[0] == 2
    with pytest.raises(ValueError, match="f.npy"):
        main(["--debug", *map(str, argv)])


def test_corrupt_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{not json")
    np.save(tmp_path / "in.npy", np.zeros((1, 8, 8), np.uint8))
    rc, err = run(["encode", "--model", tmp_path / "model", tmp_path / "in.npy", "-o", tmp_path / "o.npy"], capsys)
    assert_one_line_error(rc, err, "model")
