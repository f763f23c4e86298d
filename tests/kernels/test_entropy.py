"""Entropy kernels against brute force over all 2^d codes, plus the memory bound at d = 18."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vqtok.kernels.entropy import (
    binary_entropy,
    code_signs,
    exact_codebook_entropy,
    factorized_codebook_entropy,
    index_perplexity,
    per_sample_entropy,
)


def brute_force_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """``log q(c | n)`` for every sample and code, ``(N, 2^d)``: the N x 2^d table the kernel avoids."""
    bits = logits.shape[1]
    signs = code_signs(0, 2**bits, bits, dtype=logits.dtype)  # (2^d, d)
    return torch.nn.functional.logsigmoid(logits[:, None, :] * signs[None]).sum(-1)


def brute_force_codebook_entropy(logits: torch.Tensor) -> torch.Tensor:
    mean = brute_force_log_probs(logits).exp().mean(0)
    return -(mean * mean.log()).sum()


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("spread", [0.5, 4.0, 60.0], ids=lambda s: f"spread{s}")
def test_exact_matches_brute_force(bits, spread):
    logits = torch.randn(23, bits, dtype=torch.float64, generator=torch.Generator().manual_seed(bits)) * spread
    expected = brute_force_codebook_entropy(logits)
    # Sample tiles of 7 exercise the streaming accumulation; float64 leaves only rounding error.
    torch.testing.assert_close(exact_codebook_entropy(logits, sample_chunk=7), expected, rtol=1e-10, atol=1e-10)
    # float32 path: tolerance of a few ulps of the sum over 2^d terms.
    torch.testing.assert_close(exact_codebook_entropy(logits.float()), expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 4, 7], ids=lambda d: f"d{d}")
def test_exact_gradient_matches_brute_force(bits):
    logits = torch.randn(17, bits, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    exact_codebook_entropy(a, sample_chunk=5).backward()
    brute_force_codebook_entropy(b).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_exact_gradcheck():
    logits = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2
    assert torch.autograd.gradcheck(lambda x: exact_codebook_entropy(x, sample_chunk=4), (logits.requires_grad_(),))


def test_per_sample_entropy_is_exact():
    logits = torch.randn(9, 6, dtype=torch.float64) * 3
    log_probs = brute_force_log_probs(logits)
    expected = -(log_probs.exp() * log_probs).sum(-1)
    torch.testing.assert_close(per_sample_entropy(logits), expected, rtol=1e-10, atol=1e-12)


def test_binary_entropy_is_finite_for_extreme_logits():
    logits = torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], requires_grad=True)
    h = binary_entropy(logits)
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.isfinite(logits.grad).all()
    torch.testing.assert_close(h[2], torch.tensor(math.log(2)))
    assert h[0] < 1e-20 and h[-1] < 1e-20


def test_factorized_is_an_upper_bound_and_exact_for_independent_bits():
    # Correlated bits (all equal within a sample): the marginals look uniform, the joint does not.
    column = torch.randn(64, 1, generator=torch.Generator().manual_seed(0)) * 5
    correlated = column.expand(64, 6)
    assert factorized_codebook_entropy(correlated) > exact_codebook_entropy(correlated) + 1.0

    # Independent bits: samples form the full product grid of two per-bit states, so q̄ factorises.
    bits = 6
    per_bit = torch.tensor([[2.0, -1.0], [0.5, 3.0], [-4.0, 4.0], [1.0, 1.0], [0.0, -2.0], [7.0, -0.3]])
    grid = code_signs(0, 2**bits, bits) > 0  # (64, 6): which state each bit is in
    independent = torch.where(grid, per_bit[:, 0], per_bit[:, 1])
    torch.testing.assert_close(
        factorized_codebook_entropy(independent), exact_codebook_entropy(independent), rtol=1e-5, atol=1e-5
    )

    random = torch.randn(200, 8, generator=torch.Generator().manual_seed(3)) * 2
    assert factorized_codebook_entropy(random) >= exact_codebook_entropy(random) - 1e-5


def test_entropies_are_fp32_under_bf16_autocast():
    logits = torch.randn(128, 10, generator=torch.Generator().manual_seed(0)) * 3
    for f in (exact_codebook_entropy, factorized_codebook_entropy, per_sample_entropy):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = f(logits)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, f(logits), rtol=1e-6, atol=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least one sample"):
        exact_codebook_entropy(torch.zeros(0, 4))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        exact_codebook_entropy(torch.zeros(4))
    with pytest.raises(ValueError, match="positive"):
        exact_codebook_entropy(torch.zeros(3, 4), sample_chunk=0)


def test_index_perplexity():
    indices = torch.tensor([[0, 5], [1, 5], [2, 5], [3, 5]])
    torch.testing.assert_close(index_perplexity(indices), torch.tensor([4.0, 1.0]))


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_exact_d18_never_materialises_n_by_2_to_the_d():
    n, bits = 1024, 18
    logits = (torch.randn(n, bits, generator=torch.Generator().manual_seed(0)) * 2).requires_grad_(True)
    with _LargestTensor() as tracker:
        entropy = exact_codebook_entropy(logits)
        entropy.backward()
    # The full table would be n * 2^18 = 2^28 elements; the kernel's largest are the 2^18 code
    # probabilities and the (2^9, n) half tables.
    assert tracker.largest <= max(2**bits, 2 ** (bits // 2) * n), f"largest intermediate: {tracker.largest} elements"
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # Sanity of the value: below the factorized bound, and at most log N + mean per-sample entropy.
    assert entropy <= factorized_codebook_entropy(logits) + 1e-4
    assert entropy <= math.log(n) + per_sample_entropy(logits).mean() + 1e-4
