"""BSQ: the contract for every option, codes on the unit sphere, the entropy penalty (its spreading test: test_lfq)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vqtok.quantizers import BSQ
from vqtok.testing import assert_quantizer_contract, make_latents

CONFIGS = [
    {"codebook_size": 64, "dim": dim, "entropy": entropy, "temperature": temperature}
    for dim, entropy, temperature in itertools.product([None, 8], ["factorized", "exact"], [1.0, 0.1])
]


def build(**cfg) -> BSQ:
    torch.manual_seed(0)
    return BSQ(**cfg)


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_contract(cfg):
    assert_quantizer_contract(build(**cfg), build(**cfg))


def test_codes_are_unit_sphere_corners():
    q = build(codebook_size=2**7)
    codes = q.decode(torch.arange(2**7))
    torch.testing.assert_close(codes.norm(dim=-1), torch.ones(2**7))
    torch.testing.assert_close(codes.abs(), torch.full_like(codes, 1 / math.sqrt(7)))
    assert torch.unique(codes, dim=0).shape[0] == 2**7
    assert torch.equal(q.encode(codes), torch.arange(2**7))


def test_encoding_ignores_the_latent_norm():
    # Without projection (whose bias is not scale-equivariant) only the direction matters.
    q = build(codebook_size=2**10)
    x = make_latents(q, 200)
    assert torch.equal(q.encode(x), q.encode(3.5 * x))


def test_quantization_error_is_bounded_on_the_sphere():
    # Both u and its code are unit vectors, so ||u - code||^2 <= 2 - 2/sqrt(d) (sign agreement).
    q = build(codebook_size=2**9).train()
    x = 100 * make_latents(q, 500)
    out = q(x)
    d = 9
    assert out.losses["commitment"] * d <= 2 - 2 / math.sqrt(d) + 1e-6


def test_entropy_is_fp32_under_bf16_autocast():
    q = build(codebook_size=2**10, dim=16, entropy="exact").train()
    x = make_latents(q, 2, 64)
    reference = q(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(x)
    for name, value in out.losses.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, reference.losses[name], rtol=0, atol=0)


def test_2_to_the_18_codes_fit():
    q = build(dim=32).train()
    assert q.codebook_size == 2**18 and q.bits_per_token == 18
    x = make_latents(q, 1024).requires_grad_(True)
    out = q(x)
    out.loss.backward()
    assert torch.isfinite(x.grad).all()
