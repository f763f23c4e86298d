"""JPEG/WebP baselines: payload parsing, quality bisection to a budget, rows, and the photos demo end to end."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
from PIL import Image

from vqtok.data import create_dataset
from vqtok.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, find_photos
from vqtok.metrics.codecs import CODECS, codec_rows, encode_at_budget, jpeg_payload_bytes, webp_payload_bytes


def _crop(seed: int = 0) -> np.ndarray:
    return create_dataset("photos", "test", num_examples=4, crop=48, seed=seed).images[1].permute(1, 2, 0).numpy()


def test_payload_parsing() -> None:
    pixels = _crop()
    for q in (10, 90):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=q)
        data = buf.getvalue()
        sos = data.index(b"\xff\xda")
        header = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
        assert jpeg_payload_bytes(data) == len(data) - header - 2  # minus the EOI marker
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="WEBP", quality=q)
        data = buf.getvalue()
        assert webp_payload_bytes(data) == len(data) - 30  # RIFF 12 + chunk 8 + frame header 10
    with pytest.raises(ValueError, match="JPEG"):
        jpeg_payload_bytes(b"nope")
    with pytest.raises(ValueError, match="WebP"):
        webp_payload_bytes(b"RIFF0000WAVE")


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("headers", [True, False])
def test_bisection_picks_the_best_quality_within_budget(codec, headers) -> None:
    pixels = _crop()
    code, (lo, hi) = CODECS[codec]
    data, payload = code(pixels, 60)
    budget = 8 * (len(data) if headers else payload)
    out = encode_at_budget(pixels, codec, budget, headers)
    assert out.fits and out.bits <= budget and out.quality >= 60
    if out.quality < hi:
        nxt_data, nxt_payload = code(pixels, out.quality + 1)
        assert 8 * (len(nxt_data) if headers else nxt_payload) > budget
    assert out.decoded.shape == pixels.shape and out.decoded.dtype == np.uint8
    tiny = encode_at_budget(pixels, codec, 8, headers)
    assert not tiny.fits and tiny.quality == lo and tiny.bits > 8
    with pytest.raises(ValueError, match="unknown codec"):
        encode_at_budget(pixels, "png", 100)


def test_codec_rows_report_both_countings() -> None:
    images = np.stack([_crop(s) for s in range(3)])
    rows = codec_rows(images, 2000)
    assert [(r["codec"], r["headers"]) for r in rows] == [
        ("jpeg", "counted"), ("jpeg", "excluded"), ("webp", "counted"), ("webp", "excluded"),
    ]  # fmt: skip
    for r in rows:
        assert 0 <= r["fits"] <= 1 and r["psnr"] > 10 and 0 < r["ssim"] <= 1
        if r["fits"] == 1:
            assert r["bits"] <= 2000
    # JPEG's tables alone exceed 2,000 bits: counted, it cannot fit; excluded, it can.
    assert rows[0]["fits"] == 0 and rows[1]["fits"] == 1


def test_photos_are_disjoint_and_seeded() -> None:
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert not set(find_photos("train")) & set(find_photos("test"))
    a = create_dataset("photos", "train", num_examples=16, crop=32)
    b = create_dataset("photos", "train", num_examples=16, crop=32)
    c = create_dataset("photos", "test", num_examples=16, crop=32)
    assert a.images.shape == (16, 3, 32, 32)
    assert (a.images == b.images).all() and not (a.images == c.images).all()
    with pytest.raises(ValueError, match="split"):
        find_photos("val")


def test_photos_demo_end_to_end(tmp_path, capsys) -> None:
    from vqtok.cli.demo import run

    args = argparse.Namespace(
        overrides=["photos", "steps=2", "batch_size=4", "data.kwargs.num_examples=16", "model.channels=[8, 8, 8]",
                   f"run_dir={tmp_path / 'run'}"],
        config=None, force=False, no_progress=True, threads=None, test_crops=8,
    )  # fmt: skip
    assert run(args) == 0
    text = capsys.readouterr().out
    assert "webp" in text and "headers" in text and "bits_per_pixel" in text
    # The closing line gives training wall time, total wall time and the process CPU time.
    last = text.strip().splitlines()[-1]
    assert last.startswith("time: training") and "s wall" in last and "s CPU" in last
    codecs = json.loads((tmp_path / "run" / "eval" / "codecs.json").read_text())
    assert codecs["budget_bits"] == 1024 and len(codecs["rows"]) == 4
    demo = json.loads((tmp_path / "run" / "eval" / "demo.json").read_text())
    assert demo["examples"] == 8 and demo["tokens_per_example"] == 256
