"""Own video data: the seeded clip transform, decoding MP4/GIF/.npy/tar clips, and the GIF rule by modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _files import clips, gif_bytes, mp4_bytes, photos

from vqtok.data.decoders import suffixes_of
from vqtok.data.own import BadRecord, Decoder, OwnDataset, open_records
from vqtok.data.records import Record
from vqtok.data.transforms import VideoTransform, sample_generator
from vqtok.modalities import IMAGE, VIDEO, ReadOptions, modality_for_suffix, read_video

pytest.importorskip("av")


def _ramp(t: int = 10, h: int = 12, w: int = 14) -> torch.Tensor:
    """(1, t, h, w): frame j is the constant j / t, so a window's first frame tells where it starts."""
    return (torch.arange(t, dtype=torch.float32) / t)[None, :, None, None].expand(1, t, h, w).clone()


@pytest.mark.parametrize("mode", ["resize", "center_crop", "random_resized_crop"])
def test_clip_transform_shape_window_and_seed(mode) -> None:
    x = _ramp()
    tf = VideoTransform((8, 8), 5, mode)
    a, b = tf(x, sample_generator(0, 1, 2)), tf(x, sample_generator(0, 1, 2))
    assert a.shape == (1, 5, 8, 8) and torch.equal(a, b)  # same key, same clip
    starts = {round(float(tf(x, sample_generator(0, k))[0, 0, 0, 0]) * 10) for k in range(40)}
    assert starts == set(range(6))  # every window of 5 of 10 frames is drawn, consecutive frames
    out = tf(x, sample_generator(0, 3))
    s = round(float(out[0, 0, 0, 0]) * 10)
    assert torch.allclose(out[0, :, 0, 0], torch.arange(s, s + 5) / 10)
    assert torch.allclose(tf(x, None)[0, :, 0, 0], x[0, :5, 0, 0])  # no generator: the first frames


def test_clip_transform_crops_every_frame_identically_and_pads_short_clips() -> None:
    frame = torch.rand(3, 20, 30)
    x = frame[:, None].expand(3, 3, 20, 30).clone()  # 3 identical frames
    out = VideoTransform((8, 8), 5, "random_resized_crop")(x, sample_generator(7))
    assert out.shape == (3, 5, 8, 8)
    for j in range(1, 5):  # one box for the clip (a per-frame box would differ); frames 3, 4 repeat frame 2
        assert torch.equal(out[:, j], out[:, 0])
    with pytest.raises(ValueError, match="model.frames"):
        VideoTransform((8, 8), 0)
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        VideoTransform((8, 8), 5)(torch.rand(3, 8, 8))


def test_decoder_reads_mp4_gif_and_npy_clips(tmp_path) -> None:
    paths = clips(tmp_path / "c", 2, frames=9)
    decoder = Decoder("video", 3, video=VideoTransform((16, 16), 5, "center_crop"))
    x = decoder(Record(paths[0].read_bytes(), ".mp4", "clip0"), sample_generator(0))
    assert x.shape == (3, 5, 16, 16) and 0 <= x.min() and x.max() <= 1 and x.max() > 0.7  # the bright square
    frames = np.random.default_rng(0).integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)
    assert decoder(Record(gif_bytes(frames), ".gif", "anim.gif"), None).shape == (3, 5, 16, 16)
    arr = np.random.default_rng(1).integers(0, 256, (7, 16, 16), dtype=np.uint8)  # one (T, H, W) grey clip
    y = decoder(Record(arr, "", "row 0"), None)
    assert y.shape == (3, 5, 16, 16) and torch.allclose(y[0], torch.from_numpy(arr[:5] / 255).float())
    with pytest.raises(ValueError, match="model takes video"):
        decoder(Record(b"RIFF", ".wav", "a.wav"), None)


def test_npy_of_clips_and_mp4_tar_samples(tmp_path) -> None:
    clips_arr = np.random.default_rng(0).random((3, 1, 6, 8, 8)).astype(np.float32)  # (N, C, T, H, W)
    np.save(tmp_path / "clips.npy", clips_arr)
    data = OwnDataset(
        open_records(str(tmp_path / "clips.npy"), "video"), Decoder("video", 1, video=VideoTransform((8, 8), 5, "none"))
    )
    assert len(data) == 3 and all(data[i].shape == (1, 5, 8, 8) for i in range(3))
    video = np.zeros((5, 16, 16, 3), np.uint8)
    parts = {"mp4": mp4_bytes(video), "json": b"{}"}
    out = Decoder("video", 1, video=VideoTransform((8, 8), 5, "resize")).tar_sample(
        "k", parts, "s.tar:k", sample_generator(0)
    )
    assert out.shape == (1, 5, 8, 8)


def test_gif_rule_clip_for_video_models_first_frame_for_image_models(tmp_path) -> None:
    """``.gif`` is registered to images (suffix dispatch); a video model's folder lists GIFs as clips."""
    frames = np.stack([np.full((10, 12, 3), v, np.uint8) for v in (0, 128, 255)])
    (tmp_path / "anim.gif").write_bytes(gif_bytes(frames))
    clips(tmp_path, 1)
    photos(tmp_path, 1, suffixes=(".png",))
    assert modality_for_suffix(".gif") is IMAGE and ".gif" not in VIDEO.suffixes and ".gif" in suffixes_of("video")
    video = open_records(str(tmp_path), "video")
    assert sorted(video.files) == ["anim.gif", "clip0.mp4"]
    image = open_records(str(tmp_path), "image")
    assert ".gif" in {f[-4:] for f in image.files} and "clip0.mp4" not in image.files
    gif = video.files.index("anim.gif")
    clip = Decoder("video", 1)(video.get(gif), None)  # no transform: the GIF's own frames
    assert clip.shape == (1, 3, 10, 12) and torch.allclose(
        clip[0, :, 0, 0], torch.tensor([0, 128, 255]) / 255, atol=0.02
    )
    first = Decoder("image", 1)(image.get(image.files.index("anim.gif")), None)
    assert first.shape == (1, 10, 12) and float(first.max()) < 0.02  # the image reader keeps frame 0 only


def test_corrupt_clip_is_a_bad_record_naming_the_file(tmp_path) -> None:
    clips(tmp_path, 1)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    (tmp_path / "empty.webm").write_bytes(b"")
    data = OwnDataset(open_records(str(tmp_path), "video"), Decoder("video", 1, video=VideoTransform((8, 8), 5)))
    results = {data.records.key(i): data[i] for i in range(len(data))}
    assert isinstance(results["broken.mp4"], BadRecord) and "broken.mp4" in results["broken.mp4"].source
    assert isinstance(results["empty.webm"], BadRecord) and "empty" in results["empty.webm"].reason
    assert results["clip0.mp4"].shape == (1, 5, 8, 8)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_windowed_decoding_equals_decoding_the_whole_clip(tmp_path, suffix) -> None:
    """The decoder reads only the window's frames; the clip and its crop equal transforming the whole clip."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    data = mp4_bytes(frames) if suffix == ".mp4" else gif_bytes(frames)
    whole = read_video(data, "clip", ReadOptions(channels=1))
    assert whole.shape == (1, 12, 16, 16)
    part = read_video(data, "clip", ReadOptions(channels=1), count=5, start_of=lambda total: 4 if total == 12 else -1)
    assert torch.equal(part, whole[:, 4:9])  # the container's frame count is right, the window exact
    tf = VideoTransform((8, 8), 5, "random_resized_crop")
    decoder = Decoder("video", 1, video=tf)
    for key in range(6):
        expected = tf(whole, sample_generator(0, key))
        assert torch.equal(decoder(Record(data, suffix, "clip"), sample_generator(0, key)), expected)
