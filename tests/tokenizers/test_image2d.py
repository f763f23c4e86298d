"""image2d tokenizer: contract, training signal, checkpoints and their failure modes."""

from __future__ import annotations

import json

import pytest
import torch

import vqtok
from vqtok.quantizers import example_config, list_quantizers
from vqtok.tokenizers import CheckpointError, Image2dConfig, Tokenizer, create_tokenizer, list_tokenizers

TINY = {"in_channels": 1, "image_size": (8, 8), "downsample": 2, "channels": (8, 16)}
VQ = {"quantizer": "vq", "quantizer_kwargs": {"dim": 8, "codebook_size": 32}}


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _tiny(**kw) -> Tokenizer:
    torch.manual_seed(0)
    return create_tokenizer("image2d", **{**TINY, **VQ, **kw})


def test_registry() -> None:
    assert "image2d" in list_tokenizers()
    assert list_tokenizers("image*") == [n for n in list_tokenizers() if n.startswith("image")]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        create_tokenizer("nope")
    with pytest.raises(ValueError, match="unknown key"):
        create_tokenizer("image2d", widht=3)


@pytest.mark.parametrize("name", list_quantizers())
def test_every_quantizer_fits(name: str) -> None:
    """Any registered quantizer plugs in: forward, backward, and eval-mode decode(encode(x)) == forward(x).recon."""
    torch.manual_seed(0)
    model = create_tokenizer("image2d", **TINY, quantizer=name, quantizer_kwargs=example_config(name))
    x = _images()
    out = model(x)
    assert out.recon.shape == x.shape
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), "no gradient reached the encoder"
    model.eval()
    indices = model.encode(x)
    assert indices.dtype == torch.int64
    assert indices.shape[:3] == (6, 4, 4)
    torch.testing.assert_close(model.decode(indices), model(x).recon)


def test_shapes_and_layout_errors() -> None:
    model = _tiny()
    assert model.tokens_per_example == 16
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.rand(2, 1, 9, 8))
    with pytest.raises(ValueError, match="channels"):
        Image2dConfig(downsample=4, channels=(8, 16))


@pytest.mark.slow
def test_loss_falls() -> None:
    model = _tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = _images(32)
    losses = []
    for _ in range(30):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.losses["recon_l2"]))
    assert losses[-1] < 0.5 * losses[0], losses


def test_config_round_trip() -> None:
    cfg = Image2dConfig(**TINY, recon_loss="l1+l2", **VQ)
    assert Image2dConfig.from_json(cfg.to_json()) == cfg
    assert Image2dConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="newer"):
        Image2dConfig.from_dict({**cfg.to_dict(), "version": cfg.version + 1})


def test_save_load_round_trip(tmp_path) -> None:
    model = _tiny()
    model(_images(32))  # one training forward initialises the codebook (k-means) and EMA buffers
    model.eval()
    x = _images(seed=1)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    for cls in (Tokenizer, vqtok.tokenizers.Image2dTokenizer):
        loaded = cls.from_pretrained(tmp_path / "m").eval()
        assert torch.equal(loaded.encode(x), model.encode(x))
        torch.testing.assert_close(loaded.decode(model.encode(x)), model.decode(model.encode(x)), rtol=0, atol=0)
    payload = json.loads((tmp_path / "m" / "config.json").read_text())
    assert payload["architecture"] == "image2d" and payload["vqtok_version"] == vqtok.__version__


def test_checkpoint_errors(tmp_path) -> None:
    model = _tiny()
    good = tmp_path / "good"
    model.save_pretrained(good)

    with pytest.raises(CheckpointError, match="does not exist"):
        Tokenizer.from_pretrained(tmp_path / "missing")

    # Truncated weights.
    trunc = tmp_path / "trunc"
    model.save_pretrained(trunc)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Tokenizer.from_pretrained(trunc)

    # Garbage weights.
    (trunc / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Tokenizer.from_pretrained(trunc)

    # Missing weights and truncated config.
    nowt = tmp_path / "nowt"
    model.save_pretrained(nowt)
    (nowt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        Tokenizer.from_pretrained(nowt)
    text = (good / "config.json").read_text()
    badcfg = tmp_path / "badcfg"
    model.save_pretrained(badcfg)
    (badcfg / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Tokenizer.from_pretrained(badcfg)

    # Weights of another model next to this config: caught by the config digest.
    other = tmp_path / "other"
    _tiny(quantizer_kwargs={"dim": 8, "codebook_size": 64}).save_pretrained(other)
    mixed = tmp_path / "mixed"
    model.save_pretrained(mixed)
    (mixed / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="changed after saving"):
        Tokenizer.from_pretrained(mixed)  # the per-file SHA-256 catches it first
    with pytest.raises(CheckpointError, match="do not belong together"):
        Tokenizer.from_pretrained(mixed, verify=False)

    # A state dict that does not fit (e.g. converted weights without a digest): keys and shapes are listed.
    state = _tiny(quantizer_kwargs={"dim": 8, "codebook_size": 64}).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches"):
        model.load_checked_state_dict(state)
    state.pop(next(iter(state)))
    with pytest.raises(CheckpointError, match="missing keys"):
        model.load_checked_state_dict(state)

    # Family mismatch and unknown architecture.
    payload = json.loads(text)
    payload["architecture"] = "nonexistent"
    arch = tmp_path / "arch"
    model.save_pretrained(arch)
    (arch / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="unknown tokenizer family"):
        Tokenizer.from_pretrained(arch)


def test_atomic_save_keeps_old_files(tmp_path, monkeypatch) -> None:
    """A crash while writing leaves the previous checkpoint intact and no temp files behind."""
    model = _tiny()
    model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        _tiny(recon_loss="l1").save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    Tokenizer.from_pretrained(tmp_path)
