"""FID and IS maths against NumPy/SciPy references on random features; the Inception file is local or an error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from vqtok.metrics.fid import FeatureStatistics, InceptionFeatures, frechet_distance, inception_score


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The formula of the original TTUR code (pytorch-fid's calculate_frechet_distance)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("dim,shift", [(8, 0.0), (32, 0.5), (64, 2.0)])
def test_fid_matches_scipy(dim, shift) -> None:
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(500, dim)) @ rng.normal(size=(dim, dim))
    b = rng.normal(size=(400, dim)) @ rng.normal(size=(dim, dim)) * 0.7 + shift
    stats = []
    for x in (a, b):
        s = FeatureStatistics(dim)
        for chunk in np.array_split(x, 7):  # streamed in uneven batches
            s.update(torch.from_numpy(chunk))
        stats.append(s.compute())
    np.testing.assert_allclose(stats[0][1].numpy(), np.cov(a, rowvar=False), rtol=1e-9, atol=1e-9)
    ours = frechet_distance(*stats[0], *stats[1])
    assert ours == pytest.approx(_reference_fid(a, b), rel=1e-6, abs=1e-6)
    same = frechet_distance(*stats[0], *stats[0])
    assert abs(same) < 1e-6 * max(1.0, float(stats[0][1].trace()))


def test_fid_needs_two_examples() -> None:
    s = FeatureStatistics(3)
    s.update(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        s.compute()
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        s.update(torch.zeros(2, 4))


def _reference_is(p: np.ndarray, splits: int) -> tuple[float, float]:
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 50)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mean, std = inception_score(torch.from_numpy(p), splits=10)
    ref = _reference_is(p, 10)
    assert mean == pytest.approx(ref[0], rel=1e-6) and std == pytest.approx(ref[1], rel=1e-5)
    one_hot = np.eye(50)[rng.integers(0, 50, 5000)]
    assert inception_score(torch.from_numpy(one_hot), 1)[0] == pytest.approx(50, rel=0.05)  # ~uniform marginal
    with pytest.raises(ValueError, match="probabilities"):
        inception_score(torch.from_numpy(logits))


class _StandIn(torch.nn.Module):
    """Same calling convention as NVIDIA's TorchScript Inception (the real file is not available offline)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 16)

    def forward(self, x: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        f = self.proj(x.mean((2, 3)) / 255.0)
        return f if return_features else torch.softmax(f, 1)


def test_inception_file_is_local_or_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt.*never downloaded|never downloaded"):
        InceptionFeatures(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        InceptionFeatures(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="TorchScript"):
        InceptionFeatures(tmp_path / "junk.pt")
    torch.jit.script(_StandIn()).save(str(tmp_path / "inception.pt"))
    net = InceptionFeatures(tmp_path / "inception.pt")
    images = torch.rand(6, 3, 8, 8)
    assert net.features(images).shape == (6, 16)
    probs = net.probabilities(images[:, :1])
    torch.testing.assert_close(probs.sum(1), torch.ones(6))
