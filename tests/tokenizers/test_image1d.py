"""image1d (TiTok-style) tokenizer: token layout, prefix decoding, nested dropout, checkpoints, input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vqtok.data import create_dataset
from vqtok.tokenizers import Image1dConfig, Image1dTokenizer, Tokenizer, create_tokenizer, list_tokenizers

TINY = {
    "in_channels": 1,
    "image_size": (8, 8),
    "patch_size": 2,
    "num_tokens": 8,
    "width": 32,
    "encoder_depth": 1,
    "decoder_depth": 1,
    "heads": 2,
    "mlp_ratio": 2.0,
    "quantizer": "fsq",
    "quantizer_kwargs": {"levels": (8, 5, 5)},
}


def _tiny(**kw) -> Image1dTokenizer:
    torch.manual_seed(0)
    return create_tokenizer("image1d", **{**TINY, **kw})  # type: ignore[return-value]


def _images(n: int = 64, split: str = "train") -> torch.Tensor:
    return create_dataset("synthetic", split, num_examples=n, image_size=8)[:n]


def test_registered_and_config_checks() -> None:
    assert "image1d" in list_tokenizers()
    with pytest.raises(ValueError, match="divisible"):
        Image1dConfig(image_size=(10, 8), patch_size=4)
    with pytest.raises(ValueError, match="heads"):
        Image1dConfig(width=30, heads=4)


def test_tokens_and_round_trip() -> None:
    model = _tiny().eval()
    x = _images(4)
    indices = model.encode(x)
    assert indices.shape == (4, 8) and indices.dtype == torch.int64
    assert model.tokens_per_example == 8
    torch.testing.assert_close(model.decode(indices), model(x).recon)


def test_every_prefix_decodes() -> None:
    model = _tiny().eval()
    indices = model.encode(_images(3))
    for k in range(1, 9):
        assert model.decode(indices[:, :k]).shape == (3, 1, 8, 8)
    for bad in (indices[:, :0], torch.cat([indices, indices[:, :1]], 1), indices[0]):
        with pytest.raises(ValueError, match="1 <= k <= 8"):
            model.decode(bad)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 1, 16, 16), (2, 8, 8)], ids=["channels", "size", "3d"])
def test_bad_shapes_raise(shape) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(shape))
    with pytest.raises(ValueError):
        model.encode(torch.rand(shape))


def test_training_shortens_prefixes_and_longer_prefixes_reconstruct_better() -> None:
    # A small ViT sits on a mean-image plateau for ~100 steps before its attention specializes.
    model = _tiny(prefix_dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x = _images(16)
    losses = []
    for _ in range(200):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.losses["recon_l2"]))
    assert min(losses[-5:]) < 0.5 * losses[0], losses
    model.eval()
    with torch.no_grad():
        indices = model.encode(x)
        errors = {k: float((model.decode(indices[:, :k]) - x).pow(2).mean()) for k in (1, 4, 8)}
    assert errors[8] < 0.97 * errors[1] and errors[4] < 0.97 * errors[1], errors


def test_save_load_identical_indices(tmp_path: Path) -> None:
    model = _tiny(quantizer="vq", quantizer_kwargs={"dim": 8, "codebook_size": 32})
    model(_images(16))  # k-means init in training mode
    model.eval().save_pretrained(tmp_path / "m")
    loaded = Tokenizer.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, Image1dTokenizer)
    x = _images(8, "test")
    assert torch.equal(model.encode(x), loaded.encode(x))
    torch.testing.assert_close(model.decode(model.encode(x)[:, :3]), loaded.decode(loaded.encode(x)[:, :3]))
