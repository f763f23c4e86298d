"""The video modality descriptor: PyAV readers, value and channel rules, .npy clips, metrics, report GIF, CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.modalities import ReadOptions, batch_from_array, get_modality, modality_for_suffix
from vqtok.modalities.video import VIDEO, read_video

av = pytest.importorskip("av")


def _clip(t: int = 5, size: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth moving square, uint8 (T, H, W): codecs keep it nearly exact at high quality."""
    out = np.zeros((t, size, size), np.uint8)
    for i in range(t):
        out[i, 8 : 8 + 12, 2 + 3 * i : 14 + 3 * i] = 200
    return out


def _encode(clip: np.ndarray, fmt: str, codec: str, pix: str, options: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=8)
        s.width, s.height, s.pix_fmt = clip.shape[2], clip.shape[1], pix
        s.options = options or {}
        for f in clip:
            for p in s.encode(av.VideoFrame.from_ndarray(np.repeat(f[..., None], 3, -1), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "codec", "pix", "options", "suffix"),
    [
        ("mp4", "libx264", "yuv420p", {"qp": "0"}, ".mp4"),
        ("webm", "libvpx-vp9", "yuv420p", {"lossless": "1"}, ".webm"),
        ("gif", "gif", "rgb8", {}, ".gif"),
    ],
)
def test_files_decode_to_clips(fmt: str, codec: str, pix: str, options: dict, suffix: str) -> None:
    clip = _clip()
    data = _encode(clip, fmt, codec, pix, options)
    grey = read_video(data, "clip" + suffix, ReadOptions(channels=1))
    assert grey.shape == (1, 5, 32, 32) and grey.dtype == torch.float32
    assert 0 <= grey.min() and grey.max() <= 1
    assert (grey[0] - torch.from_numpy(clip) / 255).abs().mean() < 0.03, "decoded frames differ from the clip"
    rgb = read_video(data, "clip" + suffix, ReadOptions(channels=3))
    assert rgb.shape == (3, 5, 32, 32)
    assert read_video(data, "x", ReadOptions(channels=4)).shape == (4, 5, 32, 32)
    if suffix != ".gif":  # GIF is the image modality's suffix (first frame); read_video reads it as a clip
        assert modality_for_suffix(suffix) is VIDEO
        assert VIDEO.read_bytes(data, "x", ReadOptions(channels=1), suffix="").shape == (1, 5, 32, 32)  # sniffed


def test_bad_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad.mp4: not a readable video"):
        read_video(b"\x00\x00\x00\x18ftypmp42 garbage" * 4, "bad.mp4", ReadOptions(channels=1))
    with pytest.raises(ValueError, match="empty"):
        VIDEO.read_bytes(b"", "empty.mp4")
    with pytest.raises(ValueError, match="5 channels"):
        read_video(_encode(_clip(), "mp4", "libx264", "yuv420p"), "x.mp4", ReadOptions(channels=5))
    (tmp_path / "a.mp4").write_bytes(_encode(_clip(), "mp4", "libx264", "yuv420p")[:200])
    with pytest.raises(ValueError, match="a.mp4"):
        VIDEO.read_file(tmp_path / "a.mp4", ReadOptions(channels=1))


def test_arrays_follow_the_value_and_layout_rules() -> None:
    clips = np.stack([_clip()[None], _clip(seed=1)[None]])  # (N, C, T, H, W) uint8
    x = batch_from_array(VIDEO, clips, "clips.npy", channels=1)
    assert x.shape == (2, 1, 5, 32, 32) and float(x.max()) == pytest.approx(200 / 255)
    assert batch_from_array(VIDEO, _clip(), "frames.npy", channels=1).shape == (1, 1, 5, 32, 32)
    with pytest.raises((ValueError, TypeError), match="clips.npy"):
        batch_from_array(VIDEO, clips.astype(np.int64), "clips.npy", channels=1)
    bad = clips.astype(np.float32) / 255
    bad[0, 0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="clips.npy"):
        batch_from_array(VIDEO, bad, "clips.npy", channels=1)


def test_metrics_and_report(tmp_path: Path) -> None:
    assert get_modality("video") is VIDEO and VIDEO.example_ndim == 4
    x = torch.from_numpy(np.stack([_clip()[None]] * 2)).float() / 255
    m = VIDEO.metrics(x, x)
    assert set(m) == {"psnr", "ssim", "temporal_error"}
    page = VIDEO.write_report(tmp_path / "report", {"psnr": 30.0}, x, (x * 0.9), None, "video")
    assert (tmp_path / "report" / "clips.gif").is_file() and "clips.gif" in page.read_text()
    from PIL import Image

    gif = Image.open(tmp_path / "report" / "clips.gif")
    assert gif.n_frames == 5 and gif.size == (2 * 32, 2 * 32)


def test_cli_encode_export_and_eval_take_videos(tmp_path: Path) -> None:
    """`vqtok encode` on MP4 files, `vqtok export` of a folder, `vqtok eval` with per-frame metrics and the GIF."""
    from vqtok.cli.__main__ import main
    from vqtok.data import create_dataset
    from vqtok.tokenizers import create_tokenizer

    try:
        create_dataset("fashion_mnist", "test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST (apt dataset-fashion-mnist) not installed")
    torch.manual_seed(0)
    model = tmp_path / "model"
    create_tokenizer(
        "video", in_channels=1, frames=16, image_size=(64, 64), channels=(4, 8, 8), frame_padding="repeat_last",
        quantizer_kwargs={"levels": (5, 5, 5)},
    ).save_pretrained(model)  # fmt: skip
    clips = tmp_path / "clips"
    clips.mkdir()
    data = create_dataset("moving_fashion_mnist", "test", num_clips=2)
    for k in range(2):
        rgb = np.repeat(data.clip(k)[..., None], 3, -1)
        (clips / f"c{k}.mp4").write_bytes(_encode(rgb[..., 0], "mp4", "libx264", "yuv420p", {"qp": "0"}))
    out = tmp_path / "idx.npy"
    assert main(["encode", "--model", str(model), str(clips / "c0.mp4"), str(clips / "c1.mp4"), "-o", str(out)]) == 0
    assert np.load(out).shape == (2, 5, 8, 8)
    assert main(["export", str(clips), "-o", str(tmp_path / "export"), "--model", str(model), "--no-progress"]) == 0
    args = ["eval", "--model", str(model), "--data", "moving_fashion_mnist", "--max-examples", "4", "-o"]
    assert main([*args, str(tmp_path / "eval"), "--batch-size", "2"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"psnr", "ssim", "temporal_error"} <= set(metrics) and metrics["tokens_per_example"] == 320
    assert (tmp_path / "eval" / "report" / "clips.gif").is_file()
