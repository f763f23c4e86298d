"""Video metrics: per-frame PSNR/SSIM, temporal consistency, and the Fréchet distance maths behind FVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from vqtok.metrics.image import psnr
from vqtok.metrics.video import I3DFeatures, frechet_distance, fvd, per_frame, temporal_consistency_error, video_metrics


def _clips(seed: int = 0) -> Tensor:
    return torch.rand(3, 1, 5, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_per_frame_metrics_match_frame_by_frame() -> None:
    x = _clips()
    r = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    got = per_frame(psnr, r, x)
    assert got.shape == (3, 5)
    for t in range(5):
        torch.testing.assert_close(got[:, t], psnr(r[:, :, t], x[:, :, t]))
    m = video_metrics(r, x)
    assert set(m) == {"psnr", "ssim", "temporal_error"} and all(v.shape == (3,) for v in m.values())
    assert (m["ssim"] < 1).all() and (video_metrics(x, x)["ssim"] > 0.999).all()
    with pytest.raises(ValueError, match="one shape"):
        video_metrics(r[:, :, :4], x)


def test_temporal_error_sees_flicker_not_static_error() -> None:
    x = _clips()
    assert torch.equal(temporal_consistency_error(x, x), torch.zeros(3))
    static = x + 0.1  # the same error in every frame: frame differences are unchanged
    torch.testing.assert_close(temporal_consistency_error(static, x), torch.zeros(3), atol=1e-6, rtol=0)
    flicker = x.clone()
    flicker[:, :, 1::2] += 0.1
    torch.testing.assert_close(temporal_consistency_error(flicker, x), torch.full((3,), 0.1), atol=1e-6, rtol=0)
    assert torch.equal(temporal_consistency_error(x[:, :, :1], x[:, :, :1]), torch.zeros(3))


def _reference_frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def test_frechet_distance_on_random_features() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g)
    b = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g) * 0.5 + 0.3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Shifting one set moves only the mean term: exactly |shift|^2.
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), abs=1e-6)
    # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2.
    x, y = a[:, :1], 2 * b[:, :1] + 1
    expected = float((x.double().mean() - y.double().mean()) ** 2 + (x.double().std() - y.double().std()) ** 2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    pytest.importorskip("scipy")
    assert frechet_distance(a, b) == pytest.approx(_reference_frechet(a.numpy(), b.numpy()), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((3, 6), float("nan")), b)


def test_i3d_weights_are_never_downloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VQTOK_I3D_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="VQTOK_I3D_WEIGHTS is not set"):
        I3DFeatures()
    with pytest.raises(FileNotFoundError, match="does not exist.*downloads nothing"):
        I3DFeatures(tmp_path / "i3d_torchscript.pt")


class _FakeI3D(nn.Module):
    """Stands in for the TorchScript I3D: same call signature, a fixed random projection of pooled frames."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True) -> Tensor:
        return self.proj(x.mean(dim=(2, 3, 4)))


def test_fvd_runs_a_local_torchscript_extractor(tmp_path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "fake_i3d.pt"
    torch.jit.script(_FakeI3D()).save(str(path))
    extractor = I3DFeatures(path, size=32)
    real = torch.rand(6, 1, 5, 16, 16)
    feats = extractor(real)
    assert feats.shape == (6, 4)
    assert fvd(real, real, extractor, batch_size=4) == pytest.approx(0.0, abs=1e-6)
    assert fvd(real, (real + 0.3).clamp(0, 1), extractor) > 0
