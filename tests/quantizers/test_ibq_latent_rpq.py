"""IBQ, latent quantization and the BEST-RQ random-projection quantizer: their defining properties."""

from __future__ import annotations

import pytest
import torch

from vqtok.quantizers import IBQ, LatentQuantize, RandomProjectionQuantizer
from vqtok.quantizers import ibq as ibq_module
from vqtok.testing import make_latents


# ---------------------------------------------------------------------------------------------- IBQ
def _dense_ibq(z: torch.Tensor, codes: torch.Tensor, inv_t: float) -> torch.Tensor:
    """The paper's formula with the full N x V softmax."""
    p = torch.softmax(z @ codes.T * inv_t, -1)
    hard = torch.nn.functional.one_hot(p.argmax(-1), codes.shape[0]).float()
    return (hard - p.detach() + p) @ codes


@pytest.mark.parametrize("tile_floats", [1 << 22, 64])  # one tile, and a tile of a few rows
def test_ibq_gradient_equals_the_dense_formula(monkeypatch, tile_floats):
    monkeypatch.setattr(ibq_module, "_TILE_FLOATS", tile_floats)
    torch.manual_seed(0)
    q = IBQ(8, 32, temperature=0.5).train()
    x = make_latents(q, 50).requires_grad_(True)
    g = torch.randn(50, 8)
    (q(x).quantized * g).sum().backward()
    ours = (x.grad.clone(), q.embed.grad.clone())
    x.grad, q.embed.grad = None, None
    ref = _dense_ibq(x, q.embed, 2.0)
    torch.testing.assert_close(ref.detach(), q(x).quantized.detach())
    (ref * g).sum().backward()
    torch.testing.assert_close(ours[0], x.grad)
    torch.testing.assert_close(ours[1], q.embed.grad)


def test_ibq_gradient_reaches_every_code():
    torch.manual_seed(0)
    q = IBQ(8, 64).train()
    x = make_latents(q, 16)
    out = q(x)
    (out.loss + out.quantized.square().sum()).backward()
    assert out.indices.unique().numel() < 64  # few codes chosen ...
    assert bool((q.embed.grad.abs().sum(-1) > 0).all())  # ... yet every code learns


# ------------------------------------------------------------------------------------ latent quantize
def test_latent_values_learn_and_indices_name_grid_cells():
    torch.manual_seed(0)
    q = LatentQuantize(levels=(5, 3)).train()
    x = 0.3 * torch.randn(512, 2) + torch.tensor([0.8, -0.9])  # outside the initial [-0.5, 0.5] grid
    before = q.values.detach().clone()
    opt = torch.optim.Adam(q.parameters(), lr=0.05)
    errors = []
    for _ in range(60):
        out = q(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        errors.append(float((q.decode(q.encode(x)) - x).square().mean()))
    assert not torch.equal(before, q.values.detach())
    assert errors[-1] < 0.5 * errors[0]
    # Digit j of an index is the rank of the chosen value among channel j's values.
    q.eval()
    idx = q.encode(x)
    digits = torch.stack([idx % 5, idx // 5], -1)
    for j, n in enumerate((5, 3)):
        ranked = q.values.detach()[j, :n].sort().values
        torch.testing.assert_close(q.decode(idx)[:, j], ranked[digits[:, j]])


# ---------------------------------------------------------------------------------- random projection
def test_random_projection_is_frozen_and_follows_the_paper():
    # vector-quantize-pytorch's RandomProjectionQuantizer adds a learned-shape Linear inside its VQ, so the
    # reference here is the paper's formula: standardise, project, argmax cosine to the normalised codes.
    torch.manual_seed(0)
    q = RandomProjectionQuantizer(16, 64, 8, num_codebooks=2)
    assert not list(q.parameters()) and q.index_shape == (2,)
    x = torch.randn(2, 30, 16) * 3 + 1
    z = (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    for k in range(2):
        sims = torch.nn.functional.normalize(z @ q.projection[k], dim=-1) @ q.codebook[k].T
        assert torch.equal(q.encode(x)[..., k], sims.argmax(-1))
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.train()(x)
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())
