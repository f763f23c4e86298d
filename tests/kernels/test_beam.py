"""Beam search for additive codes against exhaustive search and greedy residual encoding."""

from __future__ import annotations

import itertools

import pytest
import torch

from vqtok.kernels import local_search, nearest
from vqtok.kernels.beam import beam_search, decode_sum


def _problem(n: int = 300, num_books: int = 3, size: int = 4, dim: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), 0.7 * torch.randn(num_books, size, dim, generator=g)


def _exhaustive(x, books):
    num_books, size = books.shape[:2]
    combos = torch.tensor(list(itertools.product(range(size), repeat=num_books)))  # (V^K, K)
    recon = sum(books[k][combos[:, k]] for k in range(num_books))
    errors = (x[:, None] - recon[None]).square().sum(-1)
    best_err, best = errors.min(1)
    return best_err, combos[best]


def test_beam_covering_all_combinations_is_exhaustive_search():
    x, books = _problem()
    want_err, want = _exhaustive(x, books)
    errors, indices = beam_search(x, books, beam_width=4**3)
    assert torch.equal(indices, want)
    # Float rounding only: the sums are accumulated in a different order.
    torch.testing.assert_close(errors, want_err, rtol=1e-5, atol=1e-5)


def test_error_does_not_increase_with_beam_width():
    x, books = _problem(n=400, num_books=4, size=8, seed=1)
    means = [float(beam_search(x, books, beam_width=b)[0].mean()) for b in (1, 2, 4, 8, 16)]
    assert all(later <= earlier + 1e-6 for earlier, later in zip(means[:-1], means[1:], strict=True)), means
    assert means[-1] < means[0]


def test_greedy_is_residual_nearest_search():
    x, books = _problem(n=200, num_books=3, size=16, seed=2)
    residual, want = x, []
    for k in range(books.shape[0]):
        _, idx = nearest(residual, books[k])
        residual = residual - books[k][idx]
        want.append(idx)
    errors, indices = beam_search(x, books, beam_width=1)
    assert torch.equal(indices, torch.stack(want, 1))
    torch.testing.assert_close(errors, (x - decode_sum(books, indices)).square().sum(-1), rtol=0, atol=0)


def test_extra_candidates_do_not_change_the_beam():
    # Expanding each beam by its top-B codes already keeps the best B children of the full expansion.
    x, books = _problem(n=200, num_books=3, size=16, seed=3)
    _, default = beam_search(x, books, beam_width=4)
    _, dense = beam_search(x, books, beam_width=4, candidates=16)
    assert torch.equal(default, dense)


def test_icm_refinement_never_hurts_any_row():
    x, books = _problem(n=300, num_books=4, size=8, seed=4)
    base_err, _ = beam_search(x, books, beam_width=2)
    refined_err, refined = beam_search(x, books, beam_width=2, refine_passes=2)
    assert bool((refined_err <= base_err + 1e-6).all())
    assert float(refined_err.mean()) < float(base_err.mean())
    torch.testing.assert_close(refined_err, (x - decode_sum(books, refined)).square().sum(-1))


def test_chunking_gives_the_same_result():
    x, books = _problem(n=101, num_books=3, size=8, seed=5)
    whole = beam_search(x, books, beam_width=3)
    chunked = beam_search(x, books, beam_width=3, chunk_size=7)
    assert torch.equal(whole[1], chunked[1])
    torch.testing.assert_close(whole[0], chunked[0], rtol=0, atol=0)


def test_beam_wider_than_a_codebook_and_empty_input():
    x, books = _problem(n=10, num_books=2, size=3, seed=6)
    errors, indices = beam_search(x, books, beam_width=50)
    assert indices.shape == (10, 2) and errors.shape == (10,)
    torch.testing.assert_close(errors, _exhaustive(x, books)[0], rtol=1e-5, atol=1e-5)
    errors, indices = beam_search(x[:0], books, beam_width=2)
    assert indices.shape == (0, 2) and errors.shape == (0,)


@pytest.mark.parametrize(
    "kwargs",
    [{"beam_width": 0}, {"candidates": 0}, {"refine_passes": -1}, {"chunk_size": 0}],
    ids=["beam0", "cand0", "refine-1", "chunk0"],
)
def test_bad_arguments_raise(kwargs):
    x, books = _problem(n=4)
    with pytest.raises(ValueError):
        beam_search(x, books, **kwargs)
    with pytest.raises(ValueError, match="codebooks"):
        beam_search(x, books[0])


def test_beam_encode_is_exact_with_a_full_beam() -> None:
    """With two codebooks and beam width K every one of the K^2 pairs is ranked, so the result is optimal."""
    g = torch.Generator().manual_seed(0)
    x, books = torch.randn(300, 8, generator=g), torch.randn(2, 16, 8, generator=g)
    err, idx = beam_search(x, books, beam_width=16, chunk_size=64, scoring="dense")
    pairs = (books[0][:, None] + books[1][None]).reshape(-1, 8)  # (K*K, D), pair (i, j) at i*K + j
    best = torch.cdist(x, pairs).square().min(1)
    torch.testing.assert_close(err, best.values, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(err, (x - books[0][idx[:, 0]] - books[1][idx[:, 1]]).square().sum(1))
    greedy_err, _ = beam_search(x, books, beam_width=1, scoring="dense")
    assert bool((err <= greedy_err + 1e-5).all()) and float(greedy_err.mean()) > float(err.mean())


def test_lookup_table_beam_matches_the_residual_beam(monkeypatch) -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(700, 24, generator=g)
    books = torch.randn(4, 32, 24, generator=g) * torch.tensor([1.0, 0.6, 0.4, 0.25])[:, None, None]
    lut_err, lut_idx = beam_search(x, books, 6, scoring="dense")
    monkeypatch.setattr(local_search, "_PAIR_TABLE_BYTES", 0)  # no table: residuals carried and scored
    res_err, res_idx = beam_search(x, books, 6, scoring="dense")
    # Same search in different float arithmetic: only near-ties may flip.
    assert float((lut_idx == res_idx).all(1).float().mean()) > 0.99
    torch.testing.assert_close(lut_err.mean(), res_err.mean(), rtol=1e-4, atol=0)


def test_dense_and_nearest_scoring_keep_the_same_beams() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 16, generator=g)
    books = torch.randn(3, 32, 16, generator=g) * torch.tensor([1.0, 0.5, 0.25])[:, None, None]
    dense_err, dense = beam_search(x, books, beam_width=4, scoring="dense")
    near_err, near = beam_search(x, books, beam_width=4)
    assert float((dense == near).all(1).float().mean()) > 0.99  # only fp32 near-ties may differ
    torch.testing.assert_close(dense_err.mean(), near_err.mean(), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="scoring"):
        beam_search(x, books, scoring="nope")
