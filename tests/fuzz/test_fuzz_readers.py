"""Fuzz every file reader of every registered modality, the ``.npy`` loader and the array value rules.

Inputs are valid files mutated (truncated, bytes overwritten, junk prepended), random bytes and random
arrays of every dtype. A reader either raises ``ValueError``/``TypeError`` naming the file, or returns a
finite float32 example in the modality's layout and value range.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_helpers import assert_documented
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vqtok.modalities import ReadOptions, batch_from_array, get_modality, list_modalities, load_npy

PIL = pytest.importorskip("PIL.Image")
SOURCE = "'fuzzed-file'"


def _image_seed(suffix: str, mode: str) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    img = (
        PIL.fromarray(arr, "RGBA").convert(mode)
        if mode != "I;16"
        else PIL.fromarray(arr[..., 0].astype(np.uint16) * 257)
    )
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix[1:].upper())
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        img = img.convert("RGB")
    if fmt not in ("PNG", "TIFF") and mode == "I;16":
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _wav_seed(width: int, channels: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(np.random.default_rng(0).integers(0, 256, 40 * width * channels, dtype=np.uint8).tobytes())
    return buf.getvalue()


def _seeds(modality: str, suffix: str) -> list[bytes]:
    if modality == "image":
        return [_image_seed(suffix, mode) for mode in ("L", "RGB", "RGBA", "P", "I;16")]
    if suffix == ".wav":
        return [_wav_seed(width, channels) for width in (1, 2, 3, 4) for channels in (1, 2)]
    return []


FORMATS = [(m, s) for m in list_modalities() for s in get_modality(m).suffixes]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(["valid", "truncate", "overwrite", "prepend", "random", "empty"]))
    if kind == "random" or not seeds:
        return draw(st.binary(max_size=256))
    data = bytearray(draw(st.sampled_from(seeds)))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "overwrite":
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "prepend":
        data[:0] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "empty":
        return b""
    return bytes(data)


def _check_example(modality_name: str, x: torch.Tensor, channels: int | None) -> None:
    m = get_modality(modality_name)
    # Signals are float32; graph node ids stay int64.
    assert isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.int64)
    assert x.ndim == m.example_ndim, f"example of shape {tuple(x.shape)}"
    assert channels is None or m.example_ndim == 0 or x.shape[0] == channels
    assert torch.isfinite(x).all()
    if m.value_range is not None and x.numel():
        assert m.value_range[0] <= float(x.min()) and float(x.max()) <= m.value_range[1], (x.min(), x.max())


@pytest.fixture(autouse=True)
def _small_images(monkeypatch: pytest.MonkeyPatch) -> None:
    # A flipped size field must fail as a decompression bomb, not allocate gigabytes on the test machine.
    monkeypatch.setattr(PIL, "MAX_IMAGE_PIXELS", 1 << 16)


@pytest.mark.parametrize("modality,suffix", FORMATS, ids=[f"{m}{s}" for m, s in FORMATS])
@given(data=st.data())
def test_file_readers(modality: str, suffix: str, data: st.DataObject) -> None:
    m = get_modality(modality)
    raw = data.draw(mutated(_seeds(modality, suffix)), label="bytes")
    channels = data.draw(st.sampled_from([None, 1, 2, 3, 4]), label="channels")
    rate = data.draw(st.sampled_from([None, 8000, 16000]), label="rate")
    by_name = data.draw(st.booleans(), label="by_suffix")
    try:
        x = m.read_bytes(raw, SOURCE, ReadOptions(channels=channels, sample_rate=rate), suffix if by_name else "")
    except Exception as err:  # noqa: BLE001 - the assertion is the point
        assert_documented(err)
        assert SOURCE in str(err), f"error does not name the file: {err}"
        assert "BytesIO" not in str(err)
        return
    _check_example(modality, x, channels)


_DTYPES = st.sampled_from(
    [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
    + [np.float16, np.float32, np.float64, np.complex64, "U3", "S2", "M8[s]", [("a", "f4"), ("b", "i2")]]
)


@st.composite
def arrays(draw) -> np.ndarray:  # type: ignore[no-untyped-def]
    dtype = np.dtype(draw(_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
    if dtype.kind in "biufc":
        elements = None
        if dtype.kind in "fc":
            elements = st.one_of(st.floats(0, 1, width=16), st.floats(allow_nan=True, allow_infinity=True, width=16))
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("modality", list_modalities())
@given(arr=arrays(), channels=st.sampled_from([None, 1, 2, 3]), mutate=st.integers(-1, 200), value=st.integers(0, 255))
def test_npy_arrays(tmp_path_factory: pytest.TempPathFactory, modality: str, arr, channels, mutate, value) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("npy") / "a.npy"
    np.save(path, arr)
    if mutate >= 0:
        raw = bytearray(path.read_bytes())
        raw[mutate % len(raw)] = value
        path.write_bytes(bytes(raw))
    try:
        x = batch_from_array(get_modality(modality), load_npy(path), repr(str(path)), channels)
    except Exception as err:  # noqa: BLE001
        assert_documented(err)
        assert "a.npy" in str(err), f"error does not name the file: {err}"
        return
    assert x.ndim == get_modality(modality).example_ndim + 1 and x.shape[0] >= 1
    for example in x:
        _check_example(modality, example, channels)


def test_npy_header_lies_are_caught(tmp_path: Path) -> None:
    """A header promising more data than the file holds fails before numpy allocates it."""
    big = tmp_path / "huge.npy"
    with open(big, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(b"\0" * 64)
    with pytest.raises(ValueError, match="huge.npy.*promises"):
        load_npy(big)
