"""LFQ and GroupLFQ: the contract for every option, the binary index, and what the entropy penalty does."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from vqtok.kernels.entropy import code_signs, exact_codebook_entropy
from vqtok.metrics import perplexity
from vqtok.quantizers import BSQ, LFQ, GroupLFQ
from vqtok.testing import assert_quantizer_contract, make_latents

LFQ_CONFIGS = [
    {"codebook_size": 16, "dim": dim, "scale": scale, "entropy": entropy}
    for dim, scale, entropy in itertools.product([None, 7], [1.0, 0.5], ["factorized", "exact"])
]
GROUP_CONFIGS = [
    {"codebook_size": 8, "num_groups": k, "dim": dim, "entropy": entropy}
    for k, dim, entropy in itertools.product([1, 3], [None, 5], ["factorized", "exact"])
]


def build(cls, **cfg):
    torch.manual_seed(0)
    return cls(**cfg)


@pytest.mark.parametrize("cfg", LFQ_CONFIGS, ids=str)
def test_lfq_contract(cfg):
    assert_quantizer_contract(build(LFQ, **cfg), build(LFQ, **cfg))


@pytest.mark.parametrize("cfg", GROUP_CONFIGS, ids=str)
def test_group_lfq_contract(cfg):
    q = build(GroupLFQ, **cfg)
    assert q.index_shape == (cfg["num_groups"],) and q.codebook_size == 8
    assert_quantizer_contract(q, build(GroupLFQ, **cfg))


def test_index_is_the_binary_number_of_the_signs():
    q = LFQ(codebook_size=16, scale=0.5)
    x = torch.tensor([[0.3, -2.0, 1.0, 4.0], [-1.0, -1.0, -1.0, 0.0]])
    # Channel i is bit i; zero counts as negative.
    assert q.encode(x).tolist() == [1 + 4 + 8, 0]
    torch.testing.assert_close(q.decode(torch.tensor([13])), torch.tensor([[0.5, -0.5, 0.5, 0.5]]))
    codes = q.decode(torch.arange(16))
    assert torch.unique(codes, dim=0).shape[0] == 16
    assert torch.equal(q.encode(codes), torch.arange(16))

    g = GroupLFQ(codebook_size=4, num_groups=2)
    assert g.encode(torch.tensor([[1.0, -1.0, -1.0, 1.0]])).tolist() == [[1, 2]]


def test_loss_is_the_weighted_sum_of_its_terms():
    q = LFQ(codebook_size=32, dim=6, entropy_weight=0.3, codebook_entropy_weight=0.7, commitment_weight=0.2)
    out = q.train()(make_latents(q, 64))
    terms = out.losses
    expected = 0.3 * (terms["per_sample_entropy"] - 0.7 * terms["codebook_entropy"]) + 0.2 * terms["commitment"]
    torch.testing.assert_close(out.loss, expected)
    assert set(out.metrics) == {"perplexity"}


def _independent_bit_latents(bits: int) -> torch.Tensor:
    """All 2^d combinations of two per-bit values: the batch-average code distribution factorises."""
    per_bit = torch.linspace(-1.5, 2.0, 2 * bits).reshape(bits, 2)
    on = code_signs(0, 2**bits, bits) > 0
    return torch.where(on, per_bit[:, 0], per_bit[:, 1])


SIX_BITS = [(LFQ, {"codebook_size": 64}), (GroupLFQ, {"codebook_size": 8, "num_groups": 2})]


@pytest.mark.parametrize("cls, cfg", SIX_BITS, ids=["lfq", "group_lfq"])
def test_factorized_and_exact_agree_when_bits_are_independent(cls, cfg):
    factorized, exact = cls(**cfg, entropy="factorized"), cls(**cfg, entropy="exact")
    x = _independent_bit_latents(6)
    torch.testing.assert_close(
        factorized(x).losses["codebook_entropy"], exact(x).losses["codebook_entropy"], rtol=1e-5, atol=1e-5
    )
    # With correlated bits the factorized value is a strict upper bound.
    y = make_latents(factorized, 128)
    assert factorized(y).losses["codebook_entropy"] > exact(y).losses["codebook_entropy"]


def test_group_exact_entropy_averages_the_groups():
    # Group losses are averaged (vqtok/quantizers/_compose.py); each group's own term is kept too.
    q = GroupLFQ(codebook_size=16, num_groups=3, entropy="exact", temperature=0.5)
    x = make_latents(q, 100)
    logits = (x * 4 / 0.5).reshape(100, 3, 4)
    per_group = [exact_codebook_entropy(logits[:, g]) for g in range(3)]
    out = q(x)
    torch.testing.assert_close(out.losses["codebook_entropy"], sum(per_group) / 3)
    for g in range(3):
        torch.testing.assert_close(out.losses[f"group{g}/codebook_entropy"], per_group[g])


def test_num_codebooks_is_a_deprecated_alias_of_num_groups():
    with pytest.warns(FutureWarning, match="num_groups"):
        old = GroupLFQ(codebook_size=8, num_codebooks=3)
    assert old.index_shape == (3,) and old.num_groups == 3
    with pytest.raises(ValueError, match="alias"):
        GroupLFQ(codebook_size=8, num_groups=2, num_codebooks=3)


@pytest.mark.parametrize("entropy", ["factorized", "exact"])
# BSQ's logits are about 4 / (d τ): a lower τ keeps its penalty informative at d = 6.
@pytest.mark.parametrize("make", [LFQ, functools.partial(BSQ, temperature=0.1)], ids=["lfq", "bsq"])
def test_entropy_penalty_spreads_latents_over_codes(make, entropy):
    q = make(codebook_size=64, entropy=entropy, commitment_weight=0.0, entropy_weight=1.0).train()
    # Every latent starts near the same corner: one code is used.
    x = (0.5 + 0.3 * torch.randn(256, 6, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    before = perplexity(q.encode(x), 64)
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        q(x).loss.backward()
        opt.step()
    after = perplexity(q.encode(x), 64)
    assert after > 4 * before, f"batch perplexity {before:.2f} -> {after:.2f}"


@pytest.mark.parametrize("entropy", ["factorized", "exact"])
def test_entropy_is_fp32_under_bf16_autocast(entropy):
    q = LFQ(codebook_size=256, dim=12, entropy=entropy).train()
    x = make_latents(q, 4, 32)
    reference = q(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(x)
        out_bf16 = q(x.bfloat16())
    for name, value in out.losses.items():
        assert value.dtype == torch.float32 and out_bf16.losses[name].dtype == torch.float32
        torch.testing.assert_close(value, reference.losses[name], rtol=0, atol=0)
    assert out.loss.dtype == torch.float32


def test_2_to_the_18_codes_fit():
    x = make_latents(LFQ(), 1024).requires_grad_(True)
    for q in (LFQ(), LFQ(entropy="exact"), GroupLFQ(codebook_size=2**9, num_groups=2, entropy="exact")):
        out = q.train()(x)
        out.loss.backward()
        assert torch.isfinite(out.loss) and out.indices.max() < q.codebook_size
    assert LFQ().bits_per_token == 18 and GroupLFQ(codebook_size=2**9, num_groups=2).bits_per_token == 18


@pytest.mark.parametrize(
    "cfg",
    [
        {"codebook_size": 12},
        {"codebook_size": 1},
        {"codebook_size": 2**25, "entropy": "exact"},
        {"codebook_size": 16, "entropy": "joint"},
        {"codebook_size": 16, "temperature": 0.0},
    ],
    ids=str,
)
def test_bad_config_raises(cfg):
    with pytest.raises(ValueError):
        LFQ(**cfg)
