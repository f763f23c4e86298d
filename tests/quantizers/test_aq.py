"""Additive quantization: contract for each option, and the properties that make it worth its cost."""

from __future__ import annotations

import pytest
import torch

from vqtok.kernels.beam import beam_search
from vqtok.quantizers import AQ, create, example_config
from vqtok.quantizers.aq import _residual_kmeans
from vqtok.testing import assert_quantizer_contract, make_latents


def _build(**overrides) -> AQ:
    cfg = {**example_config("aq"), **overrides}
    torch.manual_seed(0)
    return create("aq", **cfg)


OPTIONS = {
    "example": {},
    "greedy-no-restarts": {"beam_width": 1, "dead_code_threshold": 0.0},
    "icm-no-ema": {"refine_passes": 1, "decay": 0.0},
    "one-codebook": {"num_codebooks": 1},
    "three-codebooks": {"num_codebooks": 3, "codebook_size": 8},
}


@pytest.mark.parametrize("overrides", OPTIONS.values(), ids=OPTIONS.keys())
def test_contract(overrides):
    assert_quantizer_contract(_build(**overrides), _build(**overrides))


def _clustered(n: int, dim: int, clusters: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    return centres[torch.randint(0, clusters, (n,), generator=g)] + 0.2 * torch.randn(n, dim, generator=g)


def _error(q: AQ, x: torch.Tensor, **options) -> float:
    return float((q.decode(q.encode(x, **options)) - x).square().mean())


def _train(q: AQ, x: torch.Tensor, steps: int) -> AQ:
    q.train()
    for _ in range(steps):
        q(x)
    return q.eval()


def test_beam_search_beats_greedy_encoding():
    x = _clustered(512, 16, 64, seed=0)
    q = _train(_build(dim=16, codebook_size=16, num_codebooks=4, beam_width=8), x, steps=5)
    greedy = _error(q, x, beam_width=1)
    beam = _error(q, x)
    refined = _error(q, x, refine_passes=2)
    assert beam < greedy and refined <= beam


def test_least_squares_refit_lowers_error_on_a_fixed_batch():
    x = _clustered(512, 16, 64, seed=1)
    q = _train(_build(dim=16, codebook_size=16, num_codebooks=4, decay=0.0), x, steps=1)
    indices = q.encode(x)
    before = float((q.decode(indices) - x).square().mean())
    _train(q, x, steps=1)
    # With decay=0 the refit solves for this batch's assignments: the proximal least-squares optimum
    # can only lower the error of those same assignments.
    same_assignments = float((q.decode(indices) - x).square().mean())
    assert same_assignments < before
    errors = [_error(q, x)]
    for _ in range(3):
        errors.append(_error(_train(q, x, steps=1), x))
    assert errors[-1] < errors[0] and errors[-1] < before


def test_aq_beats_residual_vq_with_the_same_budget():
    # RVQ baseline: residual k-means codebooks (20 Lloyd iterations each) with greedy residual encoding.
    x = _clustered(1024, 16, 128, seed=2)
    torch.manual_seed(0)
    rvq_books = _residual_kmeans(x, 4, 16, iters=20)
    rvq = float(beam_search(x, rvq_books, beam_width=1)[0].mean()) / x.shape[1]
    aq = _error(_train(_build(dim=16, codebook_size=16, num_codebooks=4, beam_width=8), x, steps=10), x)
    assert aq < rvq


def _kill_code(q: AQ, book: int, code: int) -> None:
    """Moves one code far from the data and forgets its statistics, as if it had never been used."""
    row = book * q.codebook_size + code
    q.codebooks[book, code] = 1e3
    q.gram[row, :] = 0.0
    q.gram[:, row] = 0.0
    q.cross[row] = 0.0


def test_dead_codes_restart_near_the_data():
    x = _clustered(256, 8, 16, seed=3)
    q = _train(_build(), x, steps=2).train()
    _kill_code(q, 1, 5)
    assert float(q(x).metrics["restarted_codes"]) >= 1
    assert float(q.codebooks[1, 5].abs().max()) < 10.0
    off = _train(_build(dead_code_threshold=0.0), x, steps=2).train()
    _kill_code(off, 1, 5)
    off(x)
    assert float(off.codebooks[1, 5].abs().min()) > 100.0


def test_encode_options_and_outputs():
    q = _build()
    x = make_latents(q, 4, 16)
    out = q.train()(x)
    assert set(out.losses) == {"commitment"} and {"perplexity", "quantization_error"} <= set(out.metrics)
    torch.testing.assert_close(out.loss, q.commitment_weight * out.losses["commitment"])
    assert 1.0 <= float(out.metrics["perplexity"]) <= q.codebook_size
    q.eval()
    assert q.encode(x, beam_width=1).shape == (4, 16, 2)
    with pytest.raises(ValueError, match="unknown AQ encode option"):
        q.encode(x, beam=3)


@pytest.mark.parametrize(
    "kwargs",
    [{"beam_width": 0}, {"decay": 1.0}, {"ridge": 0.0}, {"num_codebooks": 0}],
    ids=["beam0", "decay1", "ridge0", "books0"],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        AQ(dim=8, codebook_size=16, **kwargs)
