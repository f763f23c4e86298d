"""Adversarial training composed by the trainer: settings from the model config, discriminators by modality,
gradient routing of the two hinge terms, and the trainer's typed step result."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from vqtok.layers import PatchDiscriminator2d
from vqtok.tokenizers import Tokenizer, create_tokenizer
from vqtok.train import DataConfig, TrainConfig, Trainer, load_config
from vqtok.train.adversarial import AdversarialSettings, Adversary, build_adversary
from vqtok.train.losses import hinge_d_loss, hinge_g_loss
from vqtok.train.trainer import StepResult

TINY = {"in_channels": 1, "image_size": (8, 8), "downsample": 2, "channels": (8, 16)}
VQ = {"quantizer": "vq", "quantizer_kwargs": {"dim": 8, "codebook_size": 32}}


def _tiny(**kw) -> Tokenizer:
    torch.manual_seed(0)
    return create_tokenizer("image2d", **{**TINY, **VQ, **kw})


def test_the_model_contract_has_no_training_parts() -> None:
    model = _tiny(gan_weight=0.1)
    for name in ("build_discriminator", "adversarial_weight", "adversarial_start_step"):
        assert not hasattr(model, name), name


def test_settings_and_discriminator_come_from_the_model_config() -> None:
    assert build_adversary(_tiny()) is None
    model = _tiny(gan_weight=0.25, gan_start_step=3, disc_channels=8, disc_layers=2)
    adversary = build_adversary(model)
    assert adversary is not None
    assert adversary.settings == AdversarialSettings(weight=0.25, start_step=3, disc_channels=8, disc_layers=2)
    assert isinstance(adversary.discriminator, PatchDiscriminator2d)
    assert not adversary.active(2) and adversary.active(3)
    logits = adversary.discriminator(torch.rand(6, 1, 8, 8))
    assert logits.shape[:2] == (6, 1)
    # The discriminator is trainer-owned: release checkpoints never contain it.
    assert not any(k.startswith("disc") for k in model.state_dict())
    # Configs without adversarial keys (audio, action, ...) train without a discriminator.
    assert build_adversary(create_tokenizer("audio", strides=(2, 2), channels=4)) is None


def test_a_modality_without_a_discriminator_fails_clearly() -> None:
    fake = SimpleNamespace(modality="hologram", config=SimpleNamespace(gan_weight=0.1))
    with pytest.raises(ValueError, match="no discriminator is registered for modality 'hologram'"):
        build_adversary(fake)


def test_generator_term_reaches_the_generator_only() -> None:
    adversary = build_adversary(_tiny(gan_weight=0.1, disc_channels=8))
    assert adversary is not None
    recon = torch.rand(4, 1, 8, 8, requires_grad=True)
    g = adversary.generator_loss(recon)
    torch.testing.assert_close(g, hinge_g_loss(adversary.discriminator(recon)))
    g.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in adversary.discriminator.parameters())
    assert all(p.requires_grad for p in adversary.discriminator.parameters()), "weights are unfrozen again"

    real = torch.rand(4, 1, 8, 8)
    d = Adversary.discriminator_loss(adversary.discriminator, real, recon)
    expected = hinge_d_loss(adversary.discriminator(real), adversary.discriminator(recon.detach()))
    torch.testing.assert_close(d, expected)
    recon.grad = None
    d.backward()
    assert recon.grad is None, "the discriminator's loss must not reach the generator"


def test_step_result_keeps_indices_out_of_the_float_log(tmp_path, monkeypatch) -> None:
    model = {**TINY, **VQ, "gan_weight": 0.1, "disc_channels": 8}
    cfg = TrainConfig(tokenizer="image2d", model=model, data=DataConfig(name="synthetic"), device="cpu", steps=2,
                      batch_size=4, log_every=1, run_dir=str(tmp_path / "run"))  # fmt: skip
    trainer = Trainer(cfg, progress=False)
    results: list[StepResult] = []
    step = trainer._train_step

    def spy(*args, **kwargs):
        results.append(step(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(trainer, "_train_step", spy)
    trainer.fit()
    assert len(results) == 2
    for r in results:
        assert isinstance(r, StepResult)
        assert r.indices.dtype == torch.int64 and r.indices.shape == (4, 4, 4)
        assert all(isinstance(v, float) for v in r.logs.values()) and "_indices" not in r.logs
        assert "d_loss" in r.logs and "g_adv" in r.logs
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("usage" in row and "_indices" not in row for row in logged)


def test_fitted_tokenizers_are_not_trained_by_gradient(tmp_path) -> None:
    cfg = load_config(None, ["tokenizer=fast", "model.channels=2", "model.chunk_size=4", f"run_dir={tmp_path}"])
    with pytest.raises(ValueError, match="fitted tokenizer"):
        Trainer(cfg, progress=False).fit()
