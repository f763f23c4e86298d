"""FSQ: the contract for every option, grid enumeration, index bijection and the straight-through gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

from vqtok.quantizers import FSQ
from vqtok.testing import assert_quantizer_contract, make_latents

CONFIGS = [
    {"levels": (8, 5, 5, 5)},
    {"levels": (4, 4, 3)},
    {"levels": (3, 4), "dim": 5},
    {"levels": (7, 5, 5, 5, 5), "dim": 3},
    {"levels": (8, 5, 2), "bound": "clamp"},
    {"levels": (4, 3), "dim": 5, "bound": "clamp"},
]


def build(**cfg) -> FSQ:
    torch.manual_seed(0)
    return FSQ(**cfg)


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_contract(cfg):
    assert_quantizer_contract(build(**cfg), build(**cfg))


@pytest.mark.parametrize("levels", [(4, 3), (3, 6, 4), (5, 5)], ids=str)
def test_decode_enumerates_every_grid_point_once(levels):
    q = build(levels=levels)
    codes = q.decode(torch.arange(q.codebook_size))  # (V, d)
    assert torch.unique(codes, dim=0).shape[0] == q.codebook_size
    assert codes.abs().max() <= 1
    for channel, count in enumerate(levels):
        assert torch.unique(codes[:, channel]).numel() == count
    expected = {tuple(p) for p in itertools.product(*(range(n) for n in levels))}
    digits = codes * torch.tensor([n // 2 for n in levels]) + torch.tensor([n // 2 for n in levels])
    assert {tuple(int(v) for v in row) for row in digits.round()} == expected


@pytest.mark.parametrize("levels", [(6, 3), (8, 5, 5, 5), (4, 7)], ids=str)
def test_indices_are_a_bijection(levels):
    q = build(levels=levels)
    v = q.codebook_size
    codes = q.decode(torch.arange(v))  # (V, d) in [-1, 1]
    # Invert the bound: latents whose bounded value is the grid point itself.
    grid = codes * (q._levels // 2)
    half = (q._levels - 1) * (1 + 1e-3) / 2
    offset = torch.where(q._levels % 2 == 0, 0.5, 0.0)
    latents = torch.atanh((grid + offset) / half) - torch.atanh(offset / half)
    assert torch.equal(q.encode(latents), torch.arange(v)), "encode does not invert decode on the grid"
    assert torch.equal(q.eval()(latents).quantized, codes)


def test_straight_through_gradient_is_the_bound_derivative():
    q = build(levels=(8, 5, 3, 4)).train()
    x = make_latents(q, 64, seed=1).requires_grad_(True)
    upstream = torch.randn(64, 4)
    (q(x).quantized * upstream).sum().backward()
    # Without rounding the output would be bound(x) / (L // 2): the rounding step must pass the
    # gradient through unchanged.
    y = x.detach().clone().requires_grad_(True)
    (q._bound(y) / (q._levels // 2) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)
    assert (x.grad != 0).all()


def test_projections_are_learned():
    q = build(levels=(8, 5, 5, 5), dim=6).train()
    assert q.dim == 6 and q.codebook_size == 1000
    assert {"project_in.weight", "project_out.weight"} <= set(q.state_dict())
    x = make_latents(q, 32)
    out = q(x)
    (out.quantized - x).square().mean().backward()
    assert q.project_in.weight.grad.abs().sum() > 0 and q.project_out.weight.grad.abs().sum() > 0
    assert build(levels=(8, 5, 5, 5)).state_dict() == {}


def test_metrics_report_batch_perplexity():
    q = build(levels=(3, 3)).train()
    x = torch.tensor([[3.0, 3.0], [3.0, -3.0], [-3.0, 3.0], [-3.0, -3.0], [3.0, 3.0], [3.0, 3.0]])
    # Codes hit 3, 1, 1 and 1 times out of 6.
    expected = torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6])
    torch.testing.assert_close(q(x).metrics["perplexity"], torch.exp(-(expected * expected.log()).sum()))


def test_binary_levels_warn():
    with pytest.warns(UserWarning, match="LFQ"):
        FSQ(levels=(2, 5))


@pytest.mark.parametrize("levels", [(8, 5), (2, 3, 6)], ids=str)
def test_clamp_grid_is_symmetric_and_rounds_to_the_nearest_value(levels):
    q = build(levels=levels, bound="clamp")
    codes = q.decode(torch.arange(q.codebook_size))  # (V, d)
    for channel, count in enumerate(levels):
        values = torch.unique(codes[:, channel])
        # L evenly spaced values from -1 to 1, both ends included, a mirror image of themselves.
        torch.testing.assert_close(values, torch.linspace(-1, 1, count))
        torch.testing.assert_close(values, -values.flip(0))
    x = torch.rand(500, len(levels)) * 2.4 - 1.2  # some beyond [-1, 1]
    out = q.eval()(x).quantized
    grid = torch.stack(
        [
            torch.linspace(-1, 1, n)[(out[:, j].reshape(-1, 1) - torch.linspace(-1, 1, n)).abs().argmin(1)]
            for j, n in enumerate(levels)
        ],
        1,
    )
    torch.testing.assert_close(out, grid, rtol=0, atol=1e-6)  # every output is a grid value
    nearest = torch.stack(
        [(x[:, j].clamp(-1, 1)[:, None] - torch.linspace(-1, 1, n)).abs().min(1).values for j, n in enumerate(levels)],
        1,
    )
    torch.testing.assert_close((out - x.clamp(-1, 1)).abs(), nearest, rtol=0, atol=1e-6)  # and the nearest one


def test_clamp_gradient_is_the_identity_inside_and_zero_outside():
    q = build(levels=(8, 5), bound="clamp").train()
    x = torch.tensor([[0.3, -0.7], [1.5, -2.0], [-0.99, 0.2]], requires_grad=True)
    q(x).quantized.sum().backward()
    assert torch.equal(x.grad, (x.detach().abs() <= 1).float())


@pytest.mark.parametrize(
    "cfg",
    [{"levels": ()}, {"levels": (1, 4)}, {"levels": (4,), "dim": 0}, {"levels": (4,), "bound": "sigmoid"}],
    ids=str,
)
def test_bad_config_raises(cfg):
    with pytest.raises(ValueError):
        FSQ(**cfg)
