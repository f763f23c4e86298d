"""Adversarial training of the audio codec: MPD + MS-STFT discriminators, feature matching, hinge/LSGAN, the
balancer, and exact kill/resume of the discriminator through the trainer."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.layers.audio_discriminators import AudioDiscriminator, feature_matching_loss
from vqtok.testing.configs import TINY_AUDIO
from vqtok.tokenizers import create_tokenizer
from vqtok.train import Trainer, load_config
from vqtok.train.adversarial import AdversarialSettings, Adversary, build_adversary
from vqtok.train.losses import lsgan_d_loss, lsgan_g_loss

TINY = TINY_AUDIO
GAN = {"gan_weight": 0.5, "disc_channels": 4, "disc_layers": 2, "disc_periods": (2, 3), "disc_fft_sizes": (64,)}


def test_discriminator_returns_logits_and_features_per_sub() -> None:
    torch.manual_seed(0)
    disc = AudioDiscriminator(periods=(2, 3), fft_sizes=(64, 128), channels=4, num_layers=2)
    logits, feats = disc.features(torch.randn(3, 1, 301))
    assert len(logits) == len(feats) == 4
    assert all(lg.shape[0] == 3 and lg.shape[1] == 1 for lg in logits)
    assert all(len(f) == 2 for f in feats[:2]) and all(len(f) == 3 for f in feats[2:])
    assert [t.shape for t in disc(torch.randn(3, 1, 301))] == [t.shape for t in logits]
    assert float(feature_matching_loss(feats, feats).detach()) == 0.0


def test_lsgan_losses() -> None:
    ones, zeros = torch.ones(4, 1, 5), torch.zeros(4, 1, 5)
    assert float(lsgan_d_loss([ones], [zeros])) == 0.0  # a perfect discriminator
    assert float(lsgan_d_loss([zeros], [ones])) == 2.0
    assert float(lsgan_g_loss([ones])) == 0.0 and float(lsgan_g_loss([zeros])) == 1.0
    with pytest.raises(ValueError, match="gan_loss"):
        AdversarialSettings(loss="wasserstein")


def test_audio_config_builds_the_audio_adversary_and_routes_gradients() -> None:
    model = create_tokenizer("audio", **TINY, **GAN, gan_loss="lsgan", gan_feature_weight=2.0)
    adversary = build_adversary(model)
    assert adversary is not None and isinstance(adversary.discriminator, AudioDiscriminator)
    assert adversary.settings.loss == "lsgan" and adversary.settings.feature_weight == 2.0
    assert not any(k.startswith("disc") for k in model.state_dict())
    real = torch.randn(2, 1, 200)
    recon = torch.randn(2, 1, 200, requires_grad=True)
    g = adversary.generator_loss(recon, real=real)
    logits, fake_feats = adversary.discriminator.features(recon)
    real_feats = adversary.discriminator.features(real)[1]
    torch.testing.assert_close(g, lsgan_g_loss(logits) + 2.0 * feature_matching_loss(real_feats, fake_feats))
    g.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in adversary.discriminator.parameters())
    d = Adversary.discriminator_loss(adversary.discriminator, real, recon, "lsgan")
    recon.grad = None
    d.backward()
    assert recon.grad is None and any(p.grad is not None for p in adversary.discriminator.parameters())


def test_balancer_matches_gradient_norms_on_the_reconstruction() -> None:
    model = create_tokenizer("audio", **TINY, **GAN, gan_balance=True)
    adversary = build_adversary(model)
    assert adversary is not None and adversary.settings.balance
    recon = torch.randn(2, 1, 200, requires_grad=True)
    rec_loss = 37.0 * (recon**2).mean()
    g = adversary.generator_loss(recon, real=torch.randn(2, 1, 200), recon_loss=rec_loss)
    (g_grad,) = torch.autograd.grad(g, recon, retain_graph=True)
    (r_grad,) = torch.autograd.grad(rec_loss, recon)
    torch.testing.assert_close(g_grad.norm(), r_grad.norm(), rtol=1e-4, atol=0)


def _write_wavs(folder: Path, n: int = 12) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(1600) / 8000
    for i in range(n):
        pcm = 0.4 * np.sin(2 * math.pi * (150 + 60 * i) * t) + 0.05 * rng.standard_normal(t.size)
        with wave.open(str(folder / f"clip{i:02d}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(8000)
            f.writeframes((pcm * 32767).astype("<i2").tobytes())


def _cfg(tmp_path: Path, run: str):
    model = {**TINY, **GAN, "causal": True, "gan_start_step": 2, "gan_feature_weight": 1.0, "gan_balance": True}
    return load_config(
        None,
        [
            "tokenizer=audio",
            f"model={json.dumps(model)}",
            "data.name=asterisk_en",
            f"data.kwargs={{root: {tmp_path / 'wavs'}, segment_seconds: 0.05}}",
            "device=cpu",
            "steps=8",
            "batch_size=4",
            "log_every=2",
            "ckpt_every=4",
            "optim.warmup_steps=2",
            f"run_dir={tmp_path / run}",
        ],
    )


def test_gan_resume_after_kill_is_exact(tmp_path, kill_training) -> None:
    """8 GAN steps uninterrupted == killed in step 7 (last checkpoint at 4), then resumed."""
    _write_wavs(tmp_path / "wavs")
    full = Trainer(_cfg(tmp_path, "full"), progress=False)
    full.fit()
    assert full.disc is not None
    log = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert "d_loss" in log[-1] and "g_adv" in log[-1]

    cfg = _cfg(tmp_path, "killed")
    kill_training(Trainer(cfg, progress=False), 7)
    resumed = Trainer(cfg, resume=True, progress=False)
    resumed.fit()
    assert resumed.disc is not None
    for a, b in ((full.model, resumed.model), (full.disc, resumed.disc)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    da, db = full.disc_opt.state_dict()["state"], resumed.disc_opt.state_dict()["state"]
    assert da.keys() == db.keys() and all(torch.equal(da[k]["exp_avg"], db[k]["exp_avg"]) for k in da)
