"""LPIPS: the architecture against a direct re-derivation, local weight files only, errors naming the file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqtok.layers.perceptual import _NETS, LPIPS, list_feature_nets, lpips_head_file
from vqtok.metrics.perceptual import lpips_metric


def _files(tmp_path, net: str = "vgg"):
    torch.manual_seed(0)
    features = _NETS[net].build()
    backbone = tmp_path / f"{net}.pth"
    # torchvision's full-model layout: features.* plus a classifier that LPIPS ignores.
    torch.save({**{f"features.{k}": v for k, v in features.state_dict().items()}, "classifier.0.weight": torch.ones(2)},
               backbone)  # fmt: skip
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(_NETS[net].channels)}
    head = tmp_path / f"{net}_head.pth"
    torch.save(heads, head)
    return features, heads, backbone, head


def _reference(features, heads, bounds, x, y) -> torch.Tensor:
    """LPIPS v0.1 written out: scale to [-1, 1], shift/scale, five taps, unit-normalise, weighted squared diff."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    hx, hy = (x * 2 - 1 - shift) / scale, (y * 2 - 1 - shift) / scale
    total, start = 0, 0
    for k, end in enumerate(bounds):
        for i in range(start, end):
            hx, hy = features[i](hx), features[i](hy)
        start = end
        nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((nx - ny) ** 2, heads[f"lin{k}.model.1.weight"]).mean((1, 2, 3))
    return total


@pytest.mark.parametrize("net,size", [("vgg", 32), ("alex", 64)])
def test_lpips_matches_the_formula(tmp_path, net, size) -> None:
    features, heads, backbone, head = _files(tmp_path, net)
    lp = LPIPS(net, backbone, head)
    x, y = torch.rand(3, 3, size, size), torch.rand(3, 3, size, size)
    d = lp(x, y)
    torch.testing.assert_close(d, _reference(features, heads, _NETS[net].bounds, x, y), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(lp(x, x), torch.zeros(3))
    assert (d > 0).all()
    # Frozen: no parameter trains, gradients reach the images.
    x.requires_grad_(True)
    lp(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lp.parameters())
    assert not lp.train().training


def test_weight_files_are_named_when_missing_or_wrong(tmp_path) -> None:
    _, _, backbone, head = _files(tmp_path)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        LPIPS("vgg", "", head)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        LPIPS("vgg", tmp_path / "nope.pth", head)
    with pytest.raises(FileNotFoundError, match="heads.pth"):
        LPIPS("vgg", backbone, tmp_path / "heads.pth")
    with pytest.raises(ValueError, match="does not fit"):
        LPIPS("alex", backbone, head)
    with pytest.raises(ValueError, match="unknown LPIPS feature net"):
        LPIPS("resnet", backbone, head)
    assert set(list_feature_nets()) >= {"vgg", "alex"}


def test_heads_shipped_with_the_lpips_package_load(tmp_path) -> None:
    try:
        path = lpips_head_file("vgg")
    except FileNotFoundError:
        pytest.skip("the lpips package is not installed")
    _, _, backbone, _ = _files(tmp_path)
    lp = LPIPS("vgg", backbone)  # heads from the package
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(lp.heads[0].weight, shipped["lin0.model.1.weight"])


def test_metric_clamps_and_is_per_image(tmp_path) -> None:
    _, _, backbone, head = _files(tmp_path)
    metric = lpips_metric(backbone, head, batch=2)
    x = torch.rand(5, 3, 32, 32)
    out = metric(x + 5, x)["lpips"]
    assert out.shape == (5,)
    torch.testing.assert_close(out, metric(torch.ones_like(x), x)["lpips"])


def test_evaluate_reports_lpips_and_bits_per_pixel(tmp_path) -> None:
    from vqtok.data import create_dataset
    from vqtok.tokenizers import create_tokenizer
    from vqtok.train.evaluate import evaluate

    _, _, backbone, head = _files(tmp_path)
    model = create_tokenizer("image2d", in_channels=3, image_size=(16, 16), downsample=4, channels=(4, 4, 4),
                             quantizer="fsq", quantizer_kwargs={"levels": (5, 5)})  # fmt: skip
    data = create_dataset("synthetic", "test", num_examples=6, image_size=16, channels=3)
    result = evaluate(model, data, batch_size=4, extra_metrics=lpips_metric(backbone, head))
    m = result.metrics
    assert m["lpips"] > 0 and m["examples"] == 6
    assert m["bits_per_pixel"] == 16 * m["bits_per_token"] / 256
