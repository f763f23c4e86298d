"""The VQGAN recipe composed by the trainer: the GPU configs run on CPU at tiny sizes with stand-in LPIPS weights,
GAN variants, the adaptive weight, LeCam and EMA, and an exact resume of discriminator, anchors and EMA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vqtok.layers.perceptual import _NETS
from vqtok.tokenizers import create_tokenizer
from vqtok.train import Trainer, load_config
from vqtok.train.adversarial import build_adversary
from vqtok.train.checkpoint import load_training_checkpoint
from vqtok.train.losses import lecam_regularizer, non_saturating_d_loss, non_saturating_g_loss

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def stand_in_lpips(tmp: Path, net: str = "vgg") -> tuple[Path, Path]:
    """Random backbone (torchvision layout) and positive heads (lpips layout) written as local files."""
    torch.manual_seed(0)
    features = _NETS[net].build()
    backbone, head = tmp / f"{net}_backbone.pth", tmp / f"{net}_head.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, backbone)
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(_NETS[net].channels)}
    torch.save(heads, head)
    return backbone, head


def _tiny_overrides(tmp: Path, run: str, steps: int = 2) -> list[str]:
    backbone, head = stand_in_lpips(tmp)
    return [
        "device=cpu", "precision=fp32", "compile=false", f"steps={steps}", "batch_size=2", "log_every=1",
        "ckpt_every=0", "data.name=synthetic", "data.num_workers=0",
        "data.kwargs={num_examples: 8, image_size: 32, channels: 3}",
        "model.image_size=[32, 32]", "model.base_channels=4", "model.num_res_blocks=1",
        "model.quantizer_kwargs={dim: 8, codebook_size: 64, codebook_dim: 4, metric: cosine, ema_decay: null}",
        "model.gan_start_step=1", "model.disc_channels=4", "model.disc_layers=2",
        f"model.perceptual_backbone={backbone}", f"model.perceptual_head={head}", f"run_dir={tmp / run}",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["imagenet256_vqgan_gpu.yaml", "imagenet256_vqgan_f8_gpu.yaml"])
def test_gpu_recipe_runs_two_steps_on_cpu(tmp_path, name) -> None:
    full = load_config(CONFIGS / name)
    assert full.model["image_size"] == [256, 256] and full.model["quantizer_kwargs"]["codebook_size"] == 16384
    assert full.precision == "bf16" and full.compile and full.ema_decay > 0
    cfg = load_config(CONFIGS / name, _tiny_overrides(tmp_path, "run"))
    result = Trainer(cfg, progress=False).fit()
    assert result.step == 2 and result.model_dir is not None
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "perceptual" in lines[0] and "d_loss" not in lines[0], "GAN starts at step 1"
    assert {"perceptual", "d_loss", "d_adv", "lecam", "g_adv", "g_weight"} <= set(lines[1])
    assert all(torch.isfinite(torch.tensor(v)) for v in lines[1].values())
    # The release checkpoint holds neither the discriminator nor LPIPS.
    model = create_tokenizer(cfg.tokenizer, **cfg.model)
    assert set(model.state_dict()) == set(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"])


def test_missing_perceptual_weights_name_the_file(tmp_path) -> None:
    overrides = _tiny_overrides(tmp_path, "run")
    overrides = [o for o in overrides if not o.startswith("model.perceptual_backbone")]
    cfg = load_config(CONFIGS / "imagenet256_vqgan_gpu.yaml", [*overrides, "model.perceptual_backbone=/no/vgg16.pth"])
    with pytest.raises(FileNotFoundError, match="/no/vgg16.pth"):
        Trainer(cfg, progress=False).fit()


def test_resume_restores_discriminator_lecam_and_ema_exactly(tmp_path) -> None:
    extra = ["ema_decay=0.9"]
    straight = load_config(CONFIGS / "imagenet256_vqgan_gpu.yaml", [*_tiny_overrides(tmp_path, "a", 4), *extra])
    Trainer(straight, progress=False).fit()
    split = load_config(CONFIGS / "imagenet256_vqgan_gpu.yaml", [*_tiny_overrides(tmp_path, "b", 4), *extra])
    Trainer(split, progress=False).fit(until_step=2)
    Trainer(split, resume=True, progress=False).fit()
    a = load_training_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_training_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for part in ("model", "discriminator", "adversary", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    assert float(a["adversary"]["ema_real"]) != 0.0, "LeCam anchors moved"
    # The released model is the EMA, not the raw weights.
    released = create_tokenizer(straight.tokenizer, **straight.model)
    released.load_state_dict(a["ema"])
    saved = type(released).from_pretrained(tmp_path / "a" / "model")
    for k, v in saved.state_dict().items():
        torch.testing.assert_close(v, released.state_dict()[k], rtol=0, atol=0)


def test_adaptive_weight_is_the_gradient_norm_ratio() -> None:
    torch.manual_seed(0)
    model = create_tokenizer(
        "image2d", in_channels=3, image_size=(8, 8), downsample=2, channels=(8, 8), gan_weight=0.5,
        gan_adaptive_weight=True, disc_channels=4, quantizer="fsq", quantizer_kwargs={"levels": (5, 5)},
    )  # fmt: skip
    adversary = build_adversary(model)
    out = model(torch.rand(2, 3, 8, 8))
    g = adversary.generator_loss(out.recon)
    w = adversary.adaptive_weight(out.loss, g, model.last_layer)
    a = torch.autograd.grad(out.loss, model.last_layer, retain_graph=True)[0].norm()
    b = torch.autograd.grad(g, model.last_layer, retain_graph=True)[0].norm()
    torch.testing.assert_close(w, 0.5 * a / (b + 1e-4))
    assert not w.requires_grad


def test_non_saturating_and_lecam_formulas() -> None:
    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    sp = torch.nn.functional.softplus
    torch.testing.assert_close(non_saturating_d_loss(real, fake), sp(-real).mean() + sp(fake).mean())
    torch.testing.assert_close(non_saturating_g_loss(fake), sp(-fake).mean())
    ar, af = torch.tensor(0.3), torch.tensor(-0.2)
    expected = (real - af).clamp(min=0).pow(2).mean() + (ar - fake).clamp(min=0).pow(2).mean()
    torch.testing.assert_close(lecam_regularizer(real, fake, ar, af), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_recipe_with_bf16_and_compile(tmp_path) -> None:
    cpu_only = ("device=", "precision=", "compile=")
    overrides = [o for o in _tiny_overrides(tmp_path, "run", 3) if not o.startswith(cpu_only)]
    cfg = load_config(CONFIGS / "imagenet256_vqgan_gpu.yaml", [*overrides, "device=cuda", "model.checkpointing=true"])
    assert cfg.precision == "bf16" and cfg.compile
    result = Trainer(cfg, progress=False).fit()
    assert result.step == 3 and all(torch.isfinite(torch.tensor(v)) for v in result.last_metrics.values())
