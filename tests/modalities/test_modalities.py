"""Modality descriptors: registry, readers per format, value and channel rules, report panels, layering."""

from __future__ import annotations

import ast
import io
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

import vqtok
from vqtok.modalities import (
    AUDIO,
    IMAGE,
    TIMESERIES,
    Modality,
    ReadOptions,
    batch_from_array,
    get_modality,
    list_modalities,
    modality_for_suffix,
    read_wav,
    register_modality,
)
from vqtok.modalities import _registry as registry
from vqtok.tokenizers import list_tokenizers, tokenizer_class

Image = pytest.importorskip("PIL.Image")
ROOT = Path(vqtok.__file__).parent


def _img_bytes(img, fmt: str, **kw) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _wav(samples: np.ndarray, width: int, channels: int = 1, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def test_registry_and_every_tokenizer_family_has_a_descriptor() -> None:
    assert {"image", "audio", "timeseries"} <= set(list_modalities())
    for name in list_modalities():
        m = get_modality(name)
        assert m.name == name and m.example_ndim >= 0
        for suffix in m.suffixes:
            assert suffix.startswith(".") and suffix == suffix.lower() and modality_for_suffix(suffix) is m
    for name in list_tokenizers():
        try:
            family = tokenizer_class(name)
        except ValueError:  # a variant, not a family
            continue
        if family.modality:
            get_modality(family.modality)  # raises on a tokenizer whose modality has no descriptor
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        get_modality("smell")
    with pytest.raises(ValueError, match="already registered"):
        register_modality(Modality("image", 3, {}, IMAGE.from_array))
    with pytest.raises(ValueError, match="already belong"):
        register_modality(Modality("photo", 3, {".png": IMAGE.readers[".png"]}, IMAGE.from_array))


def test_adding_a_modality_is_one_registration(tmp_path: Path) -> None:
    depth = Modality(
        "depth_test",
        3,
        {
            ".depth": lambda data, source, options: torch.frombuffer(bytearray(data), dtype=torch.uint8).float()[
                None, None
            ]
        },
        IMAGE.from_array,
    )
    try:
        assert register_modality(depth) is depth
        assert modality_for_suffix(".DEPTH") is depth and "depth_test" in list_modalities()
        (tmp_path / "a.depth").write_bytes(bytes([1, 2, 3]))
        assert depth.read_file(tmp_path / "a.depth").shape == (1, 1, 3)
        page = depth.write_report(tmp_path / "r", {"mse": 0.5}, torch.zeros(1, 1, 1, 3), torch.zeros(1, 1, 1, 3))
        assert "mse" in page.read_text()
    finally:
        registry._REGISTRY.pop("depth_test", None)


# -------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("WEBP", ".webp")])
def test_lossless_formats_round_trip(fmt: str, suffix: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = _img_bytes(Image.fromarray(rgb), fmt, **kw)
    x = IMAGE.read_bytes(data, f"a{suffix}", ReadOptions(channels=3), suffix)
    assert x.shape == (3, 6, 5) and torch.equal(x, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    # Content sniffing finds the format without a trustworthy name.
    assert torch.equal(IMAGE.read_bytes(data, "blob", ReadOptions(channels=3)), x)


def test_jpeg_and_gif_read() -> None:
    grey = np.full((8, 8), 128, np.uint8)
    x = IMAGE.read_bytes(_img_bytes(Image.fromarray(grey), "JPEG"), "a.jpg", ReadOptions(channels=1), ".jpg")
    assert x.shape == (1, 8, 8) and (x - 128 / 255).abs().max() < 0.02
    x = IMAGE.read_bytes(_img_bytes(Image.fromarray(grey), "GIF"), "a.gif", ReadOptions(channels=3), ".gif")
    assert x.shape == (3, 8, 8)


def test_channel_rule_for_every_mode() -> None:
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    rgb = torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).double() / 255
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).float()
    src = Image.fromarray(rgba, "RGBA")
    read = {c: IMAGE.read_bytes(_img_bytes(src, "PNG"), "a.png", ReadOptions(channels=c)) for c in (1, 2, 3, 4)}
    assert torch.allclose(read[1][0], luma, atol=1e-6)  # colour -> BT.601 luma, alpha dropped
    assert torch.allclose(read[2][1], torch.from_numpy(rgba[..., 3]).float() / 255)  # alpha kept
    assert torch.allclose(read[3].double(), rgb, atol=1e-7)  # alpha dropped, not composited
    assert read[4].shape == (4, 4, 4)
    grey = Image.fromarray(rgba[..., 0], "L")
    g3 = IMAGE.read_bytes(_img_bytes(grey, "PNG"), "g.png", ReadOptions(channels=3))
    assert torch.equal(g3[0], g3[1]) and torch.equal(g3[0], g3[2])  # grey copied
    g4 = IMAGE.read_bytes(_img_bytes(grey, "PNG"), "g.png", ReadOptions(channels=4))
    assert torch.equal(g4[3], torch.ones(4, 4))  # missing alpha is opaque
    for mode in ("P", "LA", "1", "CMYK"):
        img = src.convert(mode)
        fmt = "TIFF" if mode == "CMYK" else "PNG"
        x = IMAGE.read_bytes(_img_bytes(img, fmt), f"m.{fmt.lower()}", ReadOptions(channels=3))
        assert x.shape == (3, 4, 4) and 0 <= float(x.min()) and float(x.max()) <= 1, mode
    with pytest.raises(ValueError, match="5 channels"):
        IMAGE.read_bytes(_img_bytes(src, "PNG"), "a.png", ReadOptions(channels=5))


def test_sixteen_bit_and_float_images() -> None:
    ramp = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    for fmt in ("PNG", "TIFF"):
        x = IMAGE.read_bytes(_img_bytes(Image.fromarray(ramp), fmt), f"r.{fmt}", ReadOptions(channels=1))
        assert torch.allclose(x[0].double(), torch.from_numpy(ramp / 65535.0), atol=1e-7), fmt
    floats = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    x = IMAGE.read_bytes(_img_bytes(Image.fromarray(floats), "TIFF"), "f.tif", ReadOptions(channels=1))
    assert torch.equal(x[0], torch.from_numpy(floats))
    with pytest.raises(ValueError, match=r"f2\.tif.*\[0, 1\]"):
        IMAGE.read_bytes(_img_bytes(Image.fromarray(floats * 255), "TIFF"), "f2.tif", ReadOptions(channels=1))


def test_image_value_rule_on_arrays() -> None:
    assert torch.equal(IMAGE.from_array(np.array([0, 255], np.uint8), "a"), torch.tensor([0.0, 1.0]))
    assert torch.equal(IMAGE.from_array(np.array([0, 65535], np.uint16), "a"), torch.tensor([0.0, 1.0]))
    assert torch.equal(IMAGE.from_array(np.array([0.25], np.float16), "a"), torch.tensor([0.25]))
    for arr, words in (
        (np.array([0, 255], np.int64), "int64"),
        (np.array([True]), "bool"),
        (np.array([0.0, 255.0]), r"\[0, 1\]"),
        (np.array([1 + 1j]), "complex"),
        (np.array([np.inf]), "infinite"),
        (np.array(["x"]), "not numeric"),
    ):
        with pytest.raises((ValueError, TypeError), match=words):
            IMAGE.from_array(arr, "'x.npy'")


def test_batch_from_array_shapes() -> None:
    one = np.zeros((8, 8), np.uint8)
    assert batch_from_array(IMAGE, one, "a", 1).shape == (1, 1, 8, 8)
    assert batch_from_array(IMAGE, np.zeros((5, 8, 8), np.uint8), "a", 1).shape == (5, 1, 8, 8)
    assert batch_from_array(IMAGE, np.zeros((3, 8, 8), np.uint8), "a", 3).shape == (1, 3, 8, 8)
    assert batch_from_array(IMAGE, np.zeros((2, 3, 8, 8), np.uint8), "a", 3).shape == (2, 3, 8, 8)
    assert batch_from_array(AUDIO, np.zeros(100, np.int16), "a", 1).shape == (1, 1, 100)
    assert batch_from_array(TIMESERIES, np.zeros((4, 7, 16), np.int32), "a", 7).shape == (4, 7, 16)
    with pytest.raises(ValueError, match="2 channel"):
        batch_from_array(IMAGE, np.zeros((2, 3, 8, 8), np.uint8), "a.npy", 2)
    with pytest.raises(ValueError, match="empty"):
        batch_from_array(IMAGE, np.zeros((0, 1, 8, 8), np.uint8), "a.npy", 1)
    with pytest.raises(ValueError, match="shape"):
        batch_from_array(IMAGE, np.zeros((1, 1, 1, 8, 8), np.uint8), "a.npy", 1)


# --------------------------------------------------------------------------------------------- audio
def test_wav_widths_and_channel_rule() -> None:
    ramp = np.linspace(-1 + 2**-15, 1 - 2**-15, 50)  # symmetric: -x stays in int16
    pcm16 = np.round(ramp * 32768).astype("<i2")
    ref, rate = read_wav(_wav(pcm16, 2))
    assert rate == 8000 and ref.shape == (1, 50)
    assert torch.equal(ref[0], torch.from_numpy(pcm16 / 32768.0).float())
    u8 = np.clip(np.round(ramp * 128 + 128), 0, 255).astype(np.uint8)
    assert torch.allclose(read_wav(_wav(u8, 1))[0], ref, atol=1 / 128)
    i32 = pcm16.astype("<i4") << 16
    assert torch.equal(read_wav(_wav(i32, 4))[0], ref)
    i24 = b"".join(int(v << 8).to_bytes(3, "little", signed=True) for v in pcm16.tolist())
    assert torch.equal(read_wav(_wav(np.frombuffer(i24, np.uint8), 3))[0], ref)
    stereo = np.stack([pcm16, -pcm16], 1).astype("<i2")
    x = AUDIO.read_bytes(_wav(stereo, 2, channels=2), "s.wav", ReadOptions(channels=1, sample_rate=8000))
    assert x.shape == (1, 50) and x.abs().max() == 0  # mean of x and -x
    assert AUDIO.read_bytes(_wav(pcm16, 2), "m.wav", ReadOptions(channels=2)).shape == (2, 50)
    with pytest.raises(ValueError, match="2 audio channels"):
        AUDIO.read_bytes(_wav(stereo, 2, channels=2), "s.wav", ReadOptions(channels=3))
    with pytest.raises(ValueError, match=r"t\.wav.*truncated"):
        read_wav(_wav(pcm16, 2)[:-10], "t.wav")
    with pytest.raises(ValueError, match="empty"):
        read_wav(b"", "e.wav")
    assert torch.equal(AUDIO.from_array(np.array([-32768, 0], np.int16), "a"), torch.tensor([-1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        AUDIO.from_array(np.array([2.0]), "a")


# ------------------------------------------------------------------------------------- report panels
def test_each_modality_writes_its_panels(tmp_path: Path) -> None:
    image = IMAGE.write_report(tmp_path / "i", {"psnr": 20.0}, torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8))
    assert "recon_grid.png" in image.read_text() and (tmp_path / "i" / "recon_grid.png").is_file()
    series = TIMESERIES.write_report(tmp_path / "t", {"mse": 1.0}, torch.randn(2, 3, 20), torch.randn(2, 3, 20))
    assert "recon_series.png" in series.read_text()
    sound = AUDIO.write_report(tmp_path / "a", {}, torch.zeros(2, 1, 80), torch.zeros(2, 1, 80), sample_rate=8000)
    assert sound.read_text().count("<audio controls") == 4


# ------------------------------------------------------------------------------------------ layering
def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vqtok."):
            found.add(node.module.split(".")[1])
    return found


def test_layering_and_no_modality_branches_elsewhere() -> None:
    for path in (ROOT / "modalities").glob("*.py"):
        bad = _imports(path) & {"train", "cli", "data", "vocab", "tokenizers", "weights", "vectors"}
        assert not bad, f"{path.name} imports {bad}"
    # No code outside the descriptors compares a modality with a literal name.
    for path in ROOT.rglob("*.py"):
        if "modalities" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = [n for n in ast.walk(node) if isinstance(n, ast.Name | ast.Attribute)]
                text = ast.unparse(node)
                if any("modality" in ast.unparse(n) for n in names):
                    assert not any(w in text for w in ('"image"', '"audio"', '"timeseries"')), f"{path}: {text}"
