"""Own-data sources: what each kind of path becomes, the value/channel rules, transforms and bad data."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from _files import photos, recordings
from PIL import Image

from vqtok.data.decoders import array_values, decode_audio, decode_image
from vqtok.data.own import BadDataCounter, BadRecord, Decoder, OwnDataset, collate_own, open_records
from vqtok.data.records import ArrayRecords, FolderRecords, TableRecords
from vqtok.data.transforms import AudioTransform, ImageTransform, sample_generator


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image_decoder(channels=3, size=(16, 16), mode="random_resized_crop") -> Decoder:
    return Decoder("image", channels, image=ImageTransform(size, mode))


def test_folder_of_photos_is_read_recursively_and_cropped_to_the_model(tmp_path) -> None:
    files = photos(tmp_path / "p", 6)
    (tmp_path / "p" / "notes.txt").write_text("not an image")
    records = open_records(str(tmp_path / "p"), "image")
    assert isinstance(records, FolderRecords) and len(records) == 6
    assert sorted(records.files) == sorted(p.relative_to(tmp_path / "p").as_posix() for p in files)
    ds = OwnDataset(records, _image_decoder(), seed=1)
    x = ds[(0, 5)]
    assert x.shape == (3, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, ds[(0, 5)])  # seeded by (seed, step, index): the same crop in any worker
    assert not torch.equal(x, ds[(0, 6)])  # another step, another crop
    grey = OwnDataset(records, _image_decoder(channels=1, mode="center_crop"))[0]
    assert grey.shape == (1, 16, 16)


@pytest.mark.parametrize("mode", ["resize", "center_crop", "random_resized_crop"])
def test_image_transforms_give_the_model_size(mode) -> None:
    x = torch.rand(3, 37, 61)
    out = ImageTransform((20, 24), mode)(x, sample_generator(0, 1))
    assert out.shape == (3, 20, 24) and float(out.min()) >= 0 and float(out.max()) <= 1
    a = ImageTransform((20, 24), mode)(x, sample_generator(0, 1))
    assert torch.equal(a, out)


def test_mixed_sizes_without_a_transform_is_a_clear_error(tmp_path) -> None:
    photos(tmp_path / "p", 3)
    ds = OwnDataset(open_records(str(tmp_path / "p"), "image"), _image_decoder(mode="none"))
    item = ds[0]
    assert isinstance(item, BadRecord) and "data.transform=resize" in item.reason
    with pytest.raises(ValueError, match="data.transform"):
        ImageTransform((8, 8), "stretch")
    with pytest.raises(ValueError, match="mixed sizes"):
        collate_own([torch.zeros(1, 4, 4), torch.zeros(1, 5, 5)])


def test_empty_folder_and_no_readable_suffix_are_clear_errors(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files.*no files at all"):
        open_records(str(tmp_path / "empty"), "image")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "b.csv").write_text("x")
    with pytest.raises(ValueError, match=r"holds no audio files.*only \.csv, \.txt"):
        open_records(str(tmp_path / "docs"), "audio")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_records(str(tmp_path / "missing"), "image")
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(ValueError, match="got a .csv file"):
        open_records(str(tmp_path / "a.csv"), "image")


def test_sixteen_bit_png_is_scaled_by_its_full_range_never_clipped() -> None:
    arr = np.array([[0, 4096], [40000, 65535]], dtype=np.uint16)
    x = decode_image(_png(Image.fromarray(arr)), "deep.png", 1)
    assert torch.allclose(x[0], torch.from_numpy(arr.astype(np.float32) / 65535.0))
    assert float(x.max()) == 1.0 and float(x[0, 0, 1]) > 0.06  # 4096 is not saturated to 1 nor crushed


def test_channel_rule_for_palette_grey_alpha_and_colour() -> None:
    rgb = Image.fromarray(np.full((4, 4, 3), (255, 0, 0), np.uint8))
    grey = decode_image(_png(rgb), "red.png", 1)
    assert torch.allclose(grey, torch.full((1, 4, 4), 0.299), atol=2e-3)  # BT.601 luma
    la = Image.fromarray(np.full((4, 4, 2), (128, 64), np.uint8), mode="LA")
    assert decode_image(_png(la), "la.png", 4)[3].max() == pytest.approx(64 / 255)  # alpha kept
    assert decode_image(_png(la), "la.png", 3).shape == (3, 4, 4)  # grey copied, alpha dropped
    pal = rgb.convert("P")
    assert torch.allclose(decode_image(_png(pal), "p.png", 3), decode_image(_png(rgb), "rgb.png", 3))


def test_integer_float_complex_and_object_arrays_follow_one_rule(tmp_path) -> None:
    u8 = np.array([[0, 255]], np.uint8)
    assert torch.equal(array_values(u8, "a"), torch.tensor([[0.0, 1.0]]))
    assert torch.equal(array_values(np.array([[0.25]], np.float64), "a"), torch.tensor([[0.25]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        array_values(np.array([[2.0]]), "floats.npy")
    with pytest.raises(TypeError, match="int64"):
        array_values(np.array([[0, 255]], np.int64), "ints.npy")
    with pytest.raises(TypeError, match="complex"):
        array_values(np.zeros((2, 2), np.complex64), "c.npy")
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        ArrayRecords(tmp_path / "obj.npy")
    np.save(tmp_path / "imgs.npy", np.random.default_rng(0).integers(0, 256, (5, 12, 12), dtype=np.uint8))
    ds = OwnDataset(open_records(str(tmp_path / "imgs.npy"), "image"), _image_decoder(channels=1, size=(12, 12)))
    assert len(ds) == 5 and ds[2].shape == (1, 12, 12)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4, 4), np.float32), b=np.ones((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="data.column"):
        ArrayRecords(tmp_path / "two.npz")
    assert len(ArrayRecords(tmp_path / "two.npz", column="b")) == 3


def test_parquet_and_saved_hf_datasets_with_image_and_numeric_columns(tmp_path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = photos(tmp_path / "p", 4)
    images = [{"bytes": p.read_bytes(), "path": p.name} for p in files]
    pq.write_table(pa.table({"image": images, "label": [0, 1, 2, 3]}), tmp_path / "imgs.parquet")
    ds = OwnDataset(open_records(str(tmp_path / "imgs.parquet"), "image"), _image_decoder())
    assert len(ds) == 4 and ds[3].shape == (3, 16, 16)
    rows = [np.full(16, i / 10, np.float32).tolist() for i in range(3)]
    pq.write_table(pa.table({"pixels": rows, "shape": [[1, 4, 4]] * 3}), tmp_path / "nums.parquet")
    nums = OwnDataset(open_records(str(tmp_path / "nums.parquet"), "image"), _image_decoder(1, (4, 4), "none"))
    assert torch.allclose(nums[2], torch.full((1, 4, 4), 0.2))
    with pytest.raises(ValueError, match="data.column"):
        TableRecords(pa.table({"a": [1], "b": [2]}), "t")
    hf = datasets.Dataset.from_dict({"image": [str(p) for p in files]}).cast_column("image", datasets.Image())
    hf.save_to_disk(str(tmp_path / "hf"))
    ds = OwnDataset(open_records(str(tmp_path / "hf"), "image"), _image_decoder())
    assert len(ds) == 4 and ds[0].shape == (3, 16, 16)


def test_audio_any_rate_is_resampled_mixed_down_and_cropped(tmp_path) -> None:
    files = recordings(tmp_path / "a", 2, rate=44100, channels=2, seconds=0.6)
    wav, rate = decode_audio(files[1].read_bytes(), "rec.flac")
    assert rate == 44100 and wav.shape == (2, int(44100 * 0.6))
    ds = OwnDataset(
        open_records(str(tmp_path / "a"), "audio"), Decoder("audio", 1, audio=AudioTransform(8000, 1, 4000))
    )
    x = ds[(0, 3)]
    assert x.shape == (1, 4000) and torch.equal(x, ds[(0, 3)])
    # soxr keeps the tone: the spectrum of a 1 kHz sine resampled 44.1 kHz -> 8 kHz peaks at 1 kHz.
    t = torch.arange(44100) / 44100
    sine = torch.sin(2 * torch.pi * 1000 * t)[None].repeat(2, 1)
    out = AudioTransform(8000, 1, None)(sine, 44100)
    assert out.shape == (1, 8000) and int(torch.fft.rfft(out[0]).abs().argmax()) == 1000
    right = AudioTransform(8000, 1, None, channel=1)(torch.stack([torch.zeros(800), torch.ones(800)]), 8000)
    assert torch.equal(right, torch.ones(1, 800))
    with pytest.raises(ValueError, match="data.channel=3"):
        AudioTransform(8000, 1, None, channel=3)(sine, 44100, source="x.wav")
    short = AudioTransform(8000, 1, 4000)(torch.ones(1, 100), 8000)
    assert short.shape == (1, 4000) and float(short[0, 100:].abs().sum()) == 0  # zero-padded at the end


def test_unreadable_files_are_skipped_named_counted_and_stop_the_run_beyond_the_limit(tmp_path, caplog) -> None:
    photos(tmp_path / "p", 8)
    (tmp_path / "p" / "zero.png").write_bytes(b"")
    (tmp_path / "p" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"junk" * 10)
    records = open_records(str(tmp_path / "p"), "image")
    ds = OwnDataset(records, _image_decoder())
    batch = collate_own([ds[i] for i in range(len(ds))])
    assert batch["signal"].shape == (8, 3, 16, 16) and batch["seen"] == 10
    assert sorted(s for s, _ in batch["bad"]) == ["corrupt.jpg", "zero.png"]
    assert "0 bytes" in dict(batch["bad"])["zero.png"]
    lenient = BadDataCounter(max_fraction=0.25, total=len(ds))
    with caplog.at_level(logging.WARNING):
        lenient.update(batch["seen"], batch["bad"])
    assert lenient.bad == 2 and "zero.png" in caplog.text and "corrupt.jpg" in caplog.text
    with pytest.raises(ValueError, match=r"2 of 10 examples are unreadable.*zero.png"):
        BadDataCounter(max_fraction=0.01, total=len(ds)).update(batch["seen"], batch["bad"])
    stream = BadDataCounter(max_fraction=0.01, total=0, min_seen=200)
    stream.update(100, [("a", "bad")])  # too early to judge a stream
    with pytest.raises(ValueError, match="3 of 200"):
        stream.update(100, [("b", "bad"), ("c", "bad")])


def test_mp3_by_soundfile_and_aac_by_pyav_are_decoded() -> None:
    soundfile = pytest.importorskip("soundfile")
    av = pytest.importorskip("av")
    t = np.arange(22050) / 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mp3 = io.BytesIO()
    soundfile.write(mp3, np.stack([tone, tone], 1), 22050, format="MP3")
    wav, rate = decode_audio(mp3.getvalue(), "song.mp3")
    assert rate == 22050 and wav.shape[0] == 2 and abs(float(wav.abs().max()) - 0.3) < 0.05
    m4a = io.BytesIO()  # AAC in MP4: libsndfile cannot read it, PyAV does
    with av.open(m4a, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=22050, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = 22050
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    wav, rate = decode_audio(m4a.getvalue(), "clip.m4a")
    assert rate == 22050 and wav.shape[0] == 2 and wav.shape[1] >= 22050
    assert abs(float(wav.abs().max()) - 0.3) < 0.05
    with pytest.raises(ValueError, match="junk.ogg: not a readable audio file"):
        decode_audio(b"OggS" + b"\0" * 100, "junk.ogg")


def test_the_value_rule_fast_path_equals_the_float64_rule_for_every_8_and_16_bit_value() -> None:
    for dtype, scale in ((np.uint8, 255.0), (np.uint16, 65535.0)):
        values = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
        reference = torch.from_numpy(values.astype(np.float64) / scale).float()
        assert torch.equal(array_values(values, "all.npy"), reference)
