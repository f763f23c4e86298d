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
    "quantizer, kwargs",
    [
        ("fsq", {"levels": (8, 5, 5)}),
        ("vq", {"dim": 8, "codebook_size": 32}),
        ("rvq", {"dim": 8, "codebook_size": 16, "num_levels": 3}),
    ],
    ids=["fsq", "vq", "rvq"],
)
@pytest.mark.parametrize(
    "arch",
    [{}, {"conv_layers": 0, "mlp_layers": 0}, {"conv_layers": 0, "mlp_layers": 1, "linear_path": True}],
    ids=["conv-mlp", "linear", "mlp+linear-path"],
)
def test_chunk_layout_and_round_trip(quantizer, kwargs, arch) -> None:
    model = _tiny(quantizer=quantizer, quantizer_kwargs=kwargs, **arch)
    x = _series(4, 24)
    model(x)  # k-means init of VQ codebooks happens in training mode
    model.eval()
    indices = model.encode(x)
    levels = tuple(model.quantizer.index_shape)
    assert indices.shape == (4, 3, 2, *levels) and indices.dtype == torch.int64  # (B, T / H, N, *index_shape)
    assert model.tokens_per_chunk == 2
    recon = model.decode(indices)
    assert recon.shape == x.shape
    torch.testing.assert_close(recon, model(x).recon)


def test_linear_architecture_is_affine() -> None:
    # conv_layers=0, mlp_layers=0: the encoder is one affine map, so it commutes with affine combinations.
    model = _tiny(conv_layers=0, mlp_layers=0).eval()
    x1, x2 = _series(2, 8), _series(2, 8, "test")
    enc = model._encode_latents
    torch.testing.assert_close(enc(0.3 * x1 + 0.7 * x2), 0.3 * enc(x1) + 0.7 * enc(x2), atol=1e-5, rtol=1e-5)


def test_linear_path_adds_a_linear_map() -> None:
    plain, with_path = _tiny(conv_layers=0, mlp_layers=1), _tiny(conv_layers=0, mlp_layers=1, linear_path=True)
    extra = set(with_path.state_dict()) - set(plain.state_dict())
    assert extra == {"encoder.linear.weight", "encoder.linear.bias", "decoder.linear.weight", "decoder.linear.bias"}
    # With the MLP's output layer zeroed, only the linear path is left: the encoder becomes affine.
    with torch.no_grad():
        with_path.encoder.mlp[-1].weight.zero_()
        with_path.encoder.mlp[-1].bias.zero_()
    x1, x2 = _series(2, 8), _series(2, 8, "test")
    enc = with_path._encode_latents
    torch.testing.assert_close(enc(x1 + x2) + enc(torch.zeros_like(x1)), enc(x1) + enc(x2), atol=1e-5, rtol=1e-5)


def test_empty_batch_round_trip() -> None:
    model = _tiny().eval()
    indices = model.encode(torch.zeros(0, 3, 16))
    assert indices.shape == (0, 2, 2)
    assert model.decode(indices).shape == (0, 3, 16)


@pytest.mark.parametrize("bad", [{"mlp_layers": -1}, {"conv_layers": -1}, {"tokens_per_chunk": 0}])
def test_bad_config_raises(bad) -> None:
    with pytest.raises(ValueError):
        _tiny(**bad)


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


MALFORMED = {
    "out-of-range": lambda ok: torch.full_like(ok, 10_000),
    "negative": lambda ok: torch.full_like(ok, -1),
    "too-many-tokens": lambda ok: torch.cat([ok, ok[:, :, :1]], 2),
    "too-few-tokens": lambda ok: ok[:, :, :1],
    "no-chunks": lambda ok: ok[:, :0],
    "missing-chunk-axis": lambda ok: ok[:, 0],
    "extra-axis": lambda ok: ok[..., None],
    "float": lambda ok: ok.float(),
    "bool": lambda ok: ok.bool(),
    "list": lambda ok: ok.tolist(),
}


@pytest.mark.parametrize("bad", sorted(MALFORMED))
@pytest.mark.parametrize(
    "quantizer, kwargs",
    [("fsq", {"levels": (8, 5, 5)}), ("rvq", {"dim": 8, "codebook_size": 16, "num_levels": 3})],
    ids=["fsq", "rvq"],
)
def test_malformed_indices_raise(bad, quantizer, kwargs) -> None:
    model = _tiny(quantizer=quantizer, quantizer_kwargs=kwargs).eval()
    ok = model.encode(_series(2, 16))
    assert model.decode(ok).shape == (2, 3, 16)
    with pytest.raises(ValueError):
        model.decode(MALFORMED[bad](ok))


def test_rvq_level_prefix_decodes_and_too_many_levels_raise() -> None:
    model = _tiny(quantizer="rvq", quantizer_kwargs={"dim": 8, "codebook_size": 16, "num_levels": 3}).eval()
    x = _series(2, 16)
    model(x)
    prefix = model.encode(x, num_levels=2)
    assert prefix.shape == (2, 2, 2, 2)
    assert model.decode(prefix).shape == x.shape
    with pytest.raises(ValueError):
        model.decode(torch.zeros(2, 2, 2, 4, dtype=torch.long))


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
