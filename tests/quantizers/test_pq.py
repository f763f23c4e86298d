"""Product quantization: contract for each option, product structure and the disentanglement loss."""

from __future__ import annotations

import pytest
import torch

from vqtok.quantizers import PQ, VQ, create, example_config
from vqtok.testing import assert_quantizer_contract, make_latents


def _build(**overrides) -> PQ:
    cfg = {**example_config("pq"), **overrides}
    torch.manual_seed(0)
    return create("pq", **cfg)


OPTIONS = {
    "example-ema": {},
    "disentangle": {"disentangle_weight": 1.0},
    "one-group-gradient": {"num_groups": 1, "ema_decay": None},
    "four-groups-cosine": {"num_groups": 4, "metric": "cosine"},
}


@pytest.mark.parametrize("overrides", OPTIONS.values(), ids=OPTIONS.keys())
def test_contract(overrides):
    assert_quantizer_contract(_build(**overrides), _build(**overrides))


def test_each_group_is_an_independent_vq():
    q = _build(num_groups=2)
    x = make_latents(q, 64)
    q.train()(x)
    q.eval()
    indices = q.encode(x)
    assert indices.shape == (64, 2)
    for g, group in enumerate(q.groups):
        assert isinstance(group, VQ) and group.dim == 4 and group.codebook_size == q.codebook_size
        assert torch.equal(indices[:, g], group.encode(x[:, 4 * g : 4 * g + 4]))
    assert q.num_codebooks == 2 and q.bits_per_token == 2 * 4.0


def test_ema_decay_follows_the_regulariser():
    assert all(g.ema_decay == 0.99 for g in _build().groups)
    assert all(g.ema_decay is None for g in _build(disentangle_weight=0.5).groups)
    with pytest.raises(ValueError, match="ema_decay=None"):
        _build(disentangle_weight=0.5, ema_decay=0.9)
    with pytest.raises(ValueError, match="multiple"):
        PQ(dim=9, codebook_size=8, num_groups=2)


def _correlated(n: int = 256, seed: int = 0) -> torch.Tensor:
    # The second half of the channels repeats the first, so k-means gives near-identical sub-codebooks.
    g = torch.Generator().manual_seed(seed)
    half = torch.randn(8, 4, generator=g)[torch.randint(0, 8, (n,), generator=g)]
    return torch.cat([half, half + 0.05 * torch.randn(n, 4, generator=g)], -1)


def _train(q: PQ, x: torch.Tensor, steps: int) -> list[float]:
    q.train()
    q(x)  # k-means initialisation
    params = [p for p in q.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    history = [float(q.disentanglement().detach())]
    for _ in range(steps):
        out = q(x)
        opt.zero_grad()
        (out.loss + (out.quantized - x).square().mean()).backward()
        opt.step()
        history.append(float(q.disentanglement().detach()))
    return history


def test_disentanglement_lowers_cross_correlation():
    x = _correlated()
    with_reg = _train(_build(disentangle_weight=1.0, dead_code_threshold=0.0), x, steps=20)
    without = _train(_build(ema_decay=None, dead_code_threshold=0.0), x, steps=20)
    assert with_reg[0] == pytest.approx(without[0])  # same seed, same k-means start
    assert with_reg[-1] < 0.8 * with_reg[0]
    assert with_reg[-1] < without[-1]


def test_losses_and_metrics():
    x = make_latents(_build(), 4, 16)
    out = _build(disentangle_weight=0.5).train()(x)
    assert {"commitment", "codebook", "disentangle"} <= set(out.losses)
    assert {"perplexity", "usage"} <= set(out.metrics)
    assert out.losses["disentangle"].requires_grad
    out = _build().train()(x)
    assert "disentangle" not in out.losses
    with pytest.raises(ValueError, match="no options"):
        _build().encode(x, beam_width=2)
