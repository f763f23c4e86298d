"""action tokenizer and time-series data: chunk layout, training signal, checkpoints, input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vqtok.data import create_dataset
from vqtok.tokenizers import ActionTokenizer, Tokenizer, create_tokenizer, list_tokenizers

TINY = {"channels": 3, "chunk_size": 8, "tokens_per_chunk": 2, "width": 32, "conv_layers": 1}


def _tiny(**kw) -> ActionTokenizer:
    torch.manual_seed(0)
    return create_tokenizer("action", **{**TINY, **kw})  # type: ignore[return-value]


def _series(n: int = 32, length: int = 16, split: str = "train") -> torch.Tensor:
    ds = create_dataset("synthetic_motions", split, num_series=n, channels=3, length=length)
    return torch.stack([ds[i] for i in range(len(ds))])


def test_registered() -> None:
    assert "action" in list_tokenizers()


@pytest.mark.parametrize(
    "quantizer, kwargs", [("fsq", {"levels": (8, 5, 5)}), ("vq", {"dim": 8, "codebook_size": 32})], ids=["fsq", "vq"]
)
def test_chunk_layout_and_round_trip(quantizer, kwargs) -> None:
    model = _tiny(quantizer=quantizer, quantizer_kwargs=kwargs).eval()
    x = _series(4, 24)
    indices = model.encode(x)
    assert indices.shape == (4, 3, 2) and indices.dtype == torch.int64  # (B, T / H, N)
    assert model.tokens_per_chunk == 2
    recon = model.decode(indices)
    assert recon.shape == x.shape
    torch.testing.assert_close(recon, model(x).recon)


def test_chunks_are_independent() -> None:
    model = _tiny().eval()
    x = _series(2, 16)
    both = model.encode(x)
    assert torch.equal(both[:, :1], model.encode(x[..., :8]))
    assert torch.equal(both[:, 1:], model.encode(x[..., 8:]))


@pytest.mark.parametrize(
    "shape", [(2, 3, 12), (2, 4, 16), (2, 16), (2, 3, 0)], ids=["ragged-T", "channels", "2d", "empty"]
)
def test_bad_shapes_raise(shape) -> None:
    model = _tiny()
    with pytest.raises(ValueError):
        model(torch.zeros(shape))
    with pytest.raises(ValueError):
        model.encode(torch.zeros(shape))


def test_bad_indices_raise() -> None:
    model = _tiny().eval()
    with pytest.raises(ValueError):
        model.decode(torch.zeros(2, 1, 3, dtype=torch.long))  # 3 tokens per chunk, model has 2
    with pytest.raises(ValueError):
        model.decode(torch.full((2, 1, 2), 10_000))


def test_loss_falls() -> None:
    model = _tiny(quantizer_kwargs={"levels": (8, 5, 5)})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = _series(32, 16)
    losses = []
    for _ in range(40):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.losses["recon_l2"]))
    assert min(losses[-5:]) < 0.6 * losses[0], losses


def test_save_load_identical_indices(tmp_path: Path) -> None:
    model = _tiny(quantizer="vq", quantizer_kwargs={"dim": 8, "codebook_size": 32})
    model(_series(8, 16))  # k-means init happens in training mode
    model.eval().save_pretrained(tmp_path / "m")
    loaded = Tokenizer.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, ActionTokenizer)
    x = _series(8, 16, "test")
    assert torch.equal(model.encode(x), loaded.encode(x))


def test_synthetic_data_windows() -> None:
    ds = create_dataset("synthetic_motions", "train", num_series=4, channels=2, length=20, window=10, stride=5)
    assert len(ds) == 4 * 3 and ds[0].shape == (2, 10)


def test_sktime_basic_motions() -> None:
    pytest.importorskip("sktime")
    train = create_dataset("basic_motions", "train")
    test = create_dataset("basic_motions", "test")
    assert train[0].shape == (6, 20) and test[0].shape == (6, 20)
    # Standardized with training statistics: each training channel has mean 0 and std 1.
    torch.testing.assert_close(train.series.mean((0, 2)), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.series.std((0, 2), unbiased=False), torch.ones(6), atol=1e-4, rtol=0)
    assert create_dataset("gunpoint", "test")[0].shape == (1, 30)
