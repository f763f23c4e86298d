"""audio tokenizer, audio metrics and the Asterisk loader: shapes, lengths, bitrate, training signal, checkpoints."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.data import create_dataset
from vqtok.data.audio import ASTERISK_APT, ASTERISK_DIR, is_test_file, read_wav
from vqtok.layers.audio_losses import MultiScaleSpectralLoss, snr_loss
from vqtok.metrics.audio import mel_filterbank, multiscale_mel_distance, si_snr, stoi
from vqtok.testing.configs import TINY_AUDIO
from vqtok.tokenizers import AudioConfig, AudioTokenizer, Tokenizer, create_tokenizer, list_tokenizers

TINY = {**TINY_AUDIO, "quantizer_kwargs": {"dim": 8, "codebook_size": 16, "num_levels": 3, "quantizer_dropout": 0.5}}


def _tiny(**kw) -> AudioTokenizer:
    torch.manual_seed(0)
    return create_tokenizer("audio", **{**TINY, **kw})  # type: ignore[return-value]


def _tones(n: int = 4, length: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 8000
    freq = 200 + 1500 * torch.rand(n, 1, 1, generator=g)
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def test_registered_with_rvq_default() -> None:
    assert "audio" in list_tokenizers()
    cfg = AudioConfig()
    assert cfg.quantizer == "rvq" and cfg.quantizer_kwargs["quantizer_dropout"] > 0
    assert cfg.hop == 320


def test_lengths_padding_and_round_trip() -> None:
    model = _tiny().eval()
    x = _tones(length=250)  # not a multiple of the hop (4)
    out = model(x)
    assert out.recon.shape == x.shape
    indices = model.encode(x)
    assert indices.shape == (4, math.ceil(250 / 4), 3) and indices.dtype == torch.int64
    assert model.decode(indices).shape == (4, 1, 252)
    torch.testing.assert_close(model.decode(indices, length=250), out.recon)
    with pytest.raises(ValueError, match="does not fit"):
        model.decode(indices, length=100)


def test_fewer_levels_decode_and_lower_bitrate() -> None:
    model = _tiny().eval()
    x = _tones()
    full = model.encode(x)
    one = model.encode(x, num_levels=1)
    assert one.shape == (*full.shape[:-1], 1)
    torch.testing.assert_close(one[..., 0], full[..., 0])
    assert model.decode(one).shape == (4, 1, 256)
    assert model.bitrate_kbps(1) < model.bitrate_kbps(2) < model.bitrate_kbps()
    # 8000 / 4 frames/s * 3 levels * 4 bits = 24 kbps.
    assert model.bitrate_kbps() == pytest.approx(24.0)
    assert model.bitrate_kbps(1) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        model.encode(x, num_levels=4)
    with pytest.raises(ValueError):
        model.bitrate_kbps(0)


def test_default_bitrate_matches_encodec_layout() -> None:
    # 24 kHz / 320 = 75 frames/s; 8 levels x 10 bits -> 6 kbps.
    assert AudioTokenizer.bitrate_kbps(create_tokenizer("audio", channels=2, res_dilations=(1,)), 8) == 6.0


@pytest.mark.parametrize(
    "shape", [(4, 256), (4, 2, 256), (4, 1, 0), (1, 1, 2, 8)], ids=["no-channel", "stereo", "empty", "4d"]
)
def test_bad_shapes_raise(shape) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        model(torch.zeros(shape))
    with pytest.raises(ValueError):
        model.encode(torch.zeros(shape))


def test_bad_indices_raise() -> None:
    model = _tiny().eval()
    with pytest.raises(ValueError):
        model.decode(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        model.decode(torch.full((1, 5, 3), 16))


def test_loss_falls() -> None:
    model = _tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = _tones(8)
    losses = []
    for _ in range(25):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses


def test_save_load_identical_indices(tmp_path: Path) -> None:
    model = _tiny()
    model.train()
    model(_tones())  # k-means init and EMA updates change buffers that must be saved too
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = Tokenizer.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, AudioTokenizer)
    x = _tones(seed=1)
    assert torch.equal(model.encode(x), loaded.encode(x))
    assert torch.equal(model.encode(x, num_levels=2), loaded.encode(x, num_levels=2))
    # The mel filterbanks are rebuilt, not stored.
    assert not any(k.startswith("spectral_loss") for k in model.state_dict())


def test_snake_activation_learns_and_elu_keeps_old_parameter_names() -> None:
    elu, snake = _tiny(), _tiny(activation="snake")
    # ELU adds no parameters, so checkpoints saved before the option load into the default model unchanged.
    assert not any("alpha" in k for k in elu.state_dict())
    alphas = [p for k, p in snake.named_parameters() if k.endswith("alpha")]
    assert alphas and set(elu.state_dict()) <= set(snake.state_dict())
    snake.train()
    snake(_tones()).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in alphas)
    with pytest.raises(ValueError, match="activation"):
        AudioConfig(**TINY, activation="gelu")


# ------------------------------------------------------------------------------------------ metrics
def test_si_snr_properties() -> None:
    x = _tones()
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert (si_snr(x, x) > 60).all()
    torch.testing.assert_close(si_snr(3.0 * (x + noise), x), si_snr(x + noise, x), rtol=1e-4, atol=1e-4)
    assert (si_snr(x + noise, x) > si_snr(x + 4 * noise, x)).all()
    with pytest.raises(ValueError):
        si_snr(x, x[:, :, :10])


def test_mel_filterbank_and_distance() -> None:
    fb = mel_filterbank(256, 32, 8000)
    assert fb.shape == (32, 129) and (fb >= 0).all() and fb.max() <= 1.0
    assert (fb.sum(1) > 0).all()
    x = _tones()
    assert torch.allclose(multiscale_mel_distance(x, x, 8000), torch.zeros(4))
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert (multiscale_mel_distance(noisy, x, 8000) > 0).all()
    terms = MultiScaleSpectralLoss(8000, (32, 64))(noisy, x)
    assert set(terms) == {"stft", "mel"} and all(float(v) > 0 for v in terms.values())


def test_snr_loss_pools_the_batch() -> None:
    x = _tones()
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    # -10 log10(signal energy / noise energy), both summed over the batch.
    expected = -10 * math.log10(float(x.pow(2).sum()) / float(noise.pow(2).sum()))
    assert float(snr_loss(x + noise, x)) == pytest.approx(expected, rel=1e-4)
    assert float(snr_loss(x + 2 * noise, x)) == pytest.approx(expected + 20 * math.log10(2), rel=1e-4)
    # A silent example leaves the loss and its gradient finite: energies are pooled over the batch.
    silent = torch.cat([x[:1], torch.zeros_like(x[:1])])
    recon = (silent + noise[:2]).requires_grad_()
    loss = snr_loss(recon, silent)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(recon.grad).all()
    with pytest.raises(ValueError):
        snr_loss(x, x[:, :, :10])


def test_snr_weight_adds_the_term() -> None:
    x = _tones()
    base = _tiny().eval()
    assert "neg_snr_db" not in base(x).losses
    weighted = _tiny(snr_weight=0.5).eval()
    out_base, out = base(x), weighted(x)
    assert "neg_snr_db" in out.losses
    torch.testing.assert_close(out.losses["neg_snr_db"], snr_loss(out.recon, x))
    torch.testing.assert_close(out.loss, out_base.loss + 0.5 * out.losses["neg_snr_db"])


def test_stoi_when_available() -> None:
    pytest.importorskip("pystoi")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 8000, generator=g) * torch.sin(torch.linspace(0, 20, 8000)).abs()
    clean = stoi(x, x, 8000)
    noisy = stoi(x + 0.5 * torch.randn(x.shape, generator=g), x, 8000)
    assert clean.shape == (1,) and float(clean[0]) > float(noisy[0])


# --------------------------------------------------------------------------------------------- data
def _write_wav(path: Path, samples: np.ndarray, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2").tobytes())


def test_wav_reader_and_segments(tmp_path: Path) -> None:
    names = [f"prompt-{i}.wav" for i in range(40)]
    for i, name in enumerate(names):
        _write_wav(tmp_path / name, (np.arange(3000 + 100 * i) % 200 - 100) * 100)
    wav, rate = read_wav(tmp_path / names[0])
    assert rate == 8000 and wav.shape == (1, 3000) and wav.abs().max() < 1
    train = create_dataset("asterisk_en", "train", root=str(tmp_path), segment_seconds=0.25)
    test = create_dataset("asterisk_en", "test", root=str(tmp_path), segment_seconds=0.25)
    assert set(train.names).isdisjoint(test.names) and len(train.names) + len(test.names) == 40
    assert sorted(test.names) == sorted(n for n in names if is_test_file(n))
    assert train[0].shape == (1, 2000) and len(train) > len(train.names)


def test_missing_prompts_name_the_apt_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=ASTERISK_APT):
        create_dataset("asterisk_en", "train", root=str(tmp_path / "nothing"))


@pytest.mark.skipif(not Path(ASTERISK_DIR).is_dir(), reason="asterisk-core-sounds-en-wav not installed")
def test_asterisk_split_is_about_ten_percent() -> None:
    files = sorted(p.name for p in Path(ASTERISK_DIR).glob("*.wav"))
    held = [f for f in files if is_test_file(f)]
    assert 0.05 < len(held) / len(files) < 0.15


def test_training_losses_moved_out_of_metrics() -> None:
    import vqtok.metrics.audio as audio_metrics

    for name, obj in (("MultiScaleSpectralLoss", MultiScaleSpectralLoss), ("snr_loss", snr_loss)):
        assert name not in audio_metrics.__all__
        with pytest.warns(FutureWarning, match="vqtok.layers.audio_losses"):
            assert getattr(audio_metrics, name) is obj
