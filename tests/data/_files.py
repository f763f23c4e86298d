"""Small generated folders, tables and shards for the own-data tests (photos from scikit-image, synthetic audio)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np


def photos(folder: Path, n: int = 12, seed: int = 0, suffixes: tuple[str, ...] = (".jpg", ".png")) -> list[Path]:
    """``n`` RGB crops of mixed sizes cut from scikit-image's bundled photos."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea()]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        top, left = int(rng.integers(0, img.shape[0] - h)), int(rng.integers(0, img.shape[1] - w))
        sub = folder / f"part{i % 2}"
        sub.mkdir(exist_ok=True)
        path = sub / f"photo_{i:03d}{suffixes[i % len(suffixes)]}"
        Image.fromarray(img[top : top + h, left : left + w]).save(path)
        out.append(path)
    return out


def recordings(folder: Path, n: int = 6, rate: int = 44100, channels: int = 2, seconds: float = 0.6) -> list[Path]:
    """``n`` stereo tones with noise at ``rate`` Hz, alternately WAV (16-bit) and FLAC."""
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    out = []
    for i in range(n):
        wav = np.stack([0.4 * np.sin(2 * np.pi * (220 + 50 * i + 30 * c) * t) for c in range(channels)], axis=1)
        wav += 0.01 * rng.standard_normal(wav.shape)
        path = folder / f"rec_{i:02d}{'.wav' if i % 2 == 0 else '.flac'}"
        soundfile.write(path, wav.astype(np.float32), rate, subtype="PCM_16")
        out.append(path)
    return out


def png_bytes(value: int, size: int = 8) -> bytes:
    """An 8-bit grey PNG filled with ``value`` (so a decoded sample names its id: ``round(pixel * 255)``)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def id_shards(folder: Path, num_shards: int, per_shard: int, size: int = 8) -> list[Path]:
    """``num_shards`` tars of ``per_shard`` grey PNG samples whose pixel value is the sample id (0, 1, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    out, sid = [], 0
    for s in range(num_shards):
        path = folder / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for _ in range(per_shard):
                for ext, data in (("png", png_bytes(sid, size)), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{sid:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                sid += 1
        out.append(path)
    return out


def mp4_bytes(frames: np.ndarray, fps: int = 8) -> bytes:
    """An MP4 (MPEG-4 part 2, yuv420p) of ``(T, H, W, 3)`` uint8 frames, encoded by PyAV in memory."""

    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def gif_bytes(frames: np.ndarray) -> bytes:
    """An animated GIF of ``(T, H, W, 3)`` uint8 frames (Pillow)."""

    from PIL import Image

    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def clips(folder: Path, n: int = 4, frames: int = 12, size: tuple[int, int] = (24, 32), seed: int = 0) -> list[Path]:
    """``n`` MP4 clips of a bright square moving over a dark background (varying length and size per clip)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        t, (h, w) = frames + i, (size[0] + 8 * (i % 2), size[1])
        x = np.full((t, h, w, 3), 30, np.uint8)
        for j in range(t):
            top, left = (2 * j) % (h - 6), (3 * j + int(rng.integers(0, 4))) % (w - 6)
            x[j, top : top + 6, left : left + 6] = 220
        path = folder / f"clip{i}.mp4"
        path.write_bytes(mp4_bytes(x))
        out.append(path)
    return out
