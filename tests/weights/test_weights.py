"""Weight quantization: VQLinear decode, calibration-weighted VQ, RTN baseline, swapped-model training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vqtok.weights import (
    VQLinear,
    finetune_quantized,
    quantize_linear,
    quantize_model,
    quantize_model_rtn,
    rtn_quantize,
    stage_sizes,
)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64), nn.GELU(), nn.Linear(64, 8, bias=False))


def _calib() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    # Non-uniform channel scales, so that importance weighting matters.
    scales = torch.logspace(-1, 1, 64)
    return [torch.randn(32, 64, generator=g) * scales for _ in range(4)]


def test_stage_sizes() -> None:
    assert stage_sizes(2, 4) == [256]
    assert stage_sizes(3, 4) == [256, 16]
    assert stage_sizes(4, 4) == [256, 256]
    assert stage_sizes(2, 2) == [16]


def test_vq_linear_equals_f_linear_with_decoded_weight() -> None:
    layer = nn.Linear(64, 128)
    vq = quantize_linear(layer, None, bits=2, vector_len=4, outlier_frac=0.05, kmeans_iters=5)
    assert isinstance(vq, VQLinear) and vq.num_outliers == 3
    x = torch.randn(5, 7, 64)
    torch.testing.assert_close(vq(x), F.linear(x, vq.weight(), vq.bias))
    assert vq.weight().shape == layer.weight.shape
    # 2 index bits + codebook (256*4*16 / 8192) + row scales (16/64) + outliers (3 * (16 + 6) / 64).
    assert vq.bits_per_weight() == pytest.approx(2 + 2 + 0.25 + 3 * 22 / 64)


def test_more_bits_lower_error_and_importance_helps() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(128, 256)
    x = torch.cat(_calib())[:, :64].repeat(1, 2)
    h = (x * x).mean(0)

    def out_err(vq: VQLinear) -> float:
        return float((F.linear(x, vq.weight()) - F.linear(x, layer.weight)).square().mean().detach())

    errs = [out_err(quantize_linear(layer, h, bits=b, vector_len=4, kmeans_iters=8)) for b in (2, 3, 4)]
    assert errs[0] > errs[1] > errs[2]
    assert out_err(quantize_linear(layer, None, bits=2, vector_len=4, kmeans_iters=8)) > errs[0]


def test_swapped_model_runs_forward_and_backward() -> None:
    model = _mlp()
    x = torch.cat(_calib())
    ref = model(x).detach()
    report = quantize_model(model, [(b,) for b in _calib()], bits=3, vector_len=4, kmeans_iters=5, progress=False)
    assert list(report.layers) == ["0", "2"]  # the 8-row head has too few vectors for 256 codes
    assert "4" in report.skipped
    assert isinstance(model[0], VQLinear) and isinstance(model[4], nn.Linear)
    out = model(x)
    assert out.shape == ref.shape and F.cosine_similarity(out, ref, dim=-1).mean() > 0.9
    xg = x.clone().requires_grad_(True)
    model(xg).square().mean().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    assert model[0].codebooks[0].grad is not None and model[0].row_scale.grad is not None


def test_finetune_lowers_held_out_error_and_keeps_storage() -> None:
    calib = _calib()
    held_out = torch.randn(64, 64, generator=torch.Generator().manual_seed(7)) * torch.logspace(-1, 1, 64)
    ref = _mlp()
    target = ref(held_out).detach()
    errs, models = [], []
    for steps in (0, 60):
        model = _mlp()
        report = quantize_model(
            model, [(b,) for b in calib], bits=2, vector_len=4, kmeans_iters=5, finetune_steps=steps, progress=False
        )
        errs.append(float((model(held_out) - target).square().mean().detach()))
        models.append(model)
        assert len(report.finetune_losses) == steps
    plain, tuned = models
    assert errs[1] < 0.8 * errs[0]
    assert report.finetune_losses[-1] < report.finetune_losses[0]
    # Indices are frozen (same storage), continuous parameters moved and are back in fp16.
    assert torch.equal(plain[0].indices, tuned[0].indices)
    assert tuned[0].codebooks[0].dtype == torch.float16 and tuned[0].row_scale.dtype == torch.float16
    assert not torch.equal(plain[0].codebooks[0], tuned[0].codebooks[0])
    assert tuned[0].bits_per_weight() == plain[0].bits_per_weight()
    # The unquantized head stays frozen.
    torch.testing.assert_close(tuned[4].weight, ref[4].weight)


def test_bf16_codebooks() -> None:
    vq = quantize_linear(nn.Linear(64, 128), None, bits=2, vector_len=4, codebook_dtype=torch.bfloat16, kmeans_iters=3)
    assert vq.codebooks[0].dtype == torch.bfloat16
    assert vq(torch.randn(2, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_rtn_baseline() -> None:
    w = torch.randn(16, 256)
    q4, q3 = rtn_quantize(w, 4), rtn_quantize(w, 3)
    assert (q4 - w).square().mean() < (q3 - w).square().mean() < 0.05
    assert all(len(torch.unique(g)) <= 8 for g in q3.reshape(-1, 128))
    model = nn.Sequential(nn.Linear(128, 16), nn.Linear(16, 4))
    before = model[1].weight.clone()
    assert quantize_model_rtn(model, 3) == pytest.approx(3.25)
    assert torch.equal(model[1].weight, before)  # in_features 16 is not a multiple of the group size


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="divisible"):
        quantize_linear(nn.Linear(30, 64), None, bits=2, vector_len=4)
    with pytest.raises(ValueError, match="fewer"):
        quantize_linear(nn.Linear(16, 8), None, bits=2, vector_len=4)
    bad = torch.ones(64)
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        quantize_linear(nn.Linear(64, 128), bad, bits=2, vector_len=4)
    with pytest.raises(ValueError, match="calibration batches"):
        finetune_quantized(_mlp(), _mlp(), [], steps=1)
    with pytest.raises(ValueError, match="divisible by 128"):
        rtn_quantize(torch.randn(4, 100), 4)


def test_quantize_model_rejects_an_unknown_layer_setting_before_calibrating():
    def batches():
        raise AssertionError("calibration ran")
        yield

    with pytest.raises(TypeError, match="bitz"):
        quantize_model(nn.Sequential(nn.Linear(16, 8)), batches(), bitz=2)
