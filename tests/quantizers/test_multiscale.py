"""Multi-scale residual quantization: pooling per scale, compact token maps, scales adding detail."""

from __future__ import annotations

import pytest
import torch

from vqtok.quantizers import MultiScaleResidual, create
from vqtok.testing import make_latents


def _trained(scales, steps=5):
    torch.manual_seed(0)
    q = MultiScaleResidual(8, 64, scales=scales)
    x = make_latents(q, 8, 8, 8, seed=1)  # (B, H, W, D)
    q.train()
    for _ in range(steps):
        q(x)
    return q.eval(), x


def test_finer_scales_lower_the_error():
    errors = []
    for scales in [(1,), (1, 2, 4), (1, 2, 4, 8)]:
        q, x = _trained(scales)
        errors.append(float((q.decode(q.encode(x)) - x).square().mean()))
    assert errors[0] > errors[1] > errors[2], errors


def test_scale_one_is_the_mean_of_the_map_and_token_maps_are_compact():
    q, x = _trained((1, 2, 4))
    indices = q.encode(x)
    assert indices.shape == (8, 8, 8, 3)
    maps = q.token_maps(indices)
    assert [tuple(m.shape) for m in maps] == [(8, 1, 1), (8, 2, 2), (8, 4, 4)]
    # Scale 0 codes the whole map's mean; every position of a cell carries the cell's code.
    expected = q.levels[0].encode(x.mean((1, 2)))
    assert torch.equal(maps[0][:, 0, 0], expected)
    for k, factor in ((1, 4), (2, 2)):
        upsampled = maps[k].repeat_interleave(factor, 1).repeat_interleave(factor, 2)
        assert torch.equal(indices[..., k], upsampled)


def test_any_grid_rank_and_per_scale_codebooks():
    torch.manual_seed(0)
    q = create("multiscale_residual", dim=4, codebook_size=16, scales=(1, 3), shared=False)
    assert len(q.levels) == 2
    for shape in [(2, 7, 4), (2, 3, 5, 2, 4)]:  # a 1-D sequence and a 3-D (video) grid
        x = torch.randn(shape)
        out = q.train()(x)
        assert out.indices.shape == (*shape[:-1], 2)
        q.eval()
        assert torch.equal(q(x).quantized, q.decode(q.encode(x)))
    with pytest.raises(ValueError, match="increasing"):
        MultiScaleResidual(4, 16, scales=(2, 1))
