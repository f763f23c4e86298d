"""Residual and grouped residual VQ: the contract per option, level prefixes, quantizer dropout."""

from __future__ import annotations

import pytest
import torch

from vqtok.quantizers import GroupedResidualQuantizer, ResidualQuantizer
from vqtok.testing import assert_quantizer_contract, make_latents


def _rvq(**overrides) -> ResidualQuantizer:
    torch.manual_seed(0)
    return ResidualQuantizer(**{"dim": 8, "codebook_size": 16, "num_levels": 3, **overrides})


def _grvq(**overrides) -> GroupedResidualQuantizer:
    torch.manual_seed(0)
    return GroupedResidualQuantizer(**{"dim": 8, "codebook_size": 16, "num_groups": 2, "num_levels": 2, **overrides})


RVQ_OPTIONS = {
    "ema": {},
    "dropout": {"quantizer_dropout": 1.0},
    "one-level": {"num_levels": 1},
    "cosine-lowdim": {"metric": "cosine", "codebook_dim": 4},
    "gradient-dropout": {"ema_decay": None, "quantizer_dropout": 0.5},
    "simvq-rotation": {"ema_decay": None, "simvq": True, "gradient": "rotation"},
    "beam-dropout": {"beam_width": 3, "quantizer_dropout": 0.5},
    "beam-cosine-rotation": {"beam_width": 4, "metric": "cosine", "codebook_dim": 4, "gradient": "rotation"},
}


@pytest.mark.parametrize("overrides", RVQ_OPTIONS.values(), ids=RVQ_OPTIONS.keys())
def test_rvq_contract(overrides):
    assert_quantizer_contract(_rvq(**overrides), _rvq(**overrides))


def test_grouped_contract_with_dropout():
    # The plain registered example runs in test_contract.py.
    overrides = {"quantizer_dropout": 0.5, "ema_decay": None, "num_levels": 3}
    assert_quantizer_contract(_grvq(**overrides), _grvq(**overrides))


def test_bad_options_raise():
    for bad in ({"num_levels": 0}, {"quantizer_dropout": 1.5}, {"metric": "ip"}, {"not_a_level_option": 1}):
        with pytest.raises((ValueError, TypeError)):
            _rvq(**bad)
    with pytest.raises(ValueError, match="divisible"):
        _grvq(num_groups=3)


def _train(q, x, steps=3):
    q.train()
    for _ in range(steps):
        q(x)
    return q.eval()


def _error(q, x, **options) -> float:
    with torch.no_grad():
        return float((q.decode(q.encode(x, **options)) - x).square().mean())


def test_more_levels_lower_error():
    x = make_latents(_rvq(), 512, seed=1)
    errors = [_error(_train(_rvq(num_levels=n), x), x) for n in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2], errors
    # Within one model, every extra level of the same encoding lowers the error as well.
    q = _train(_rvq(num_levels=4), x)
    prefix_errors = [_error(q, x, num_levels=n) for n in (1, 2, 3, 4)]
    assert all(a > b for a, b in zip(prefix_errors, prefix_errors[1:], strict=False)), prefix_errors


def test_encode_num_levels_round_trip():
    q = _rvq(num_levels=4)
    x = make_latents(q, 3, 20)
    q = _train(q, x.reshape(-1, 8))
    full = q.encode(x)
    assert full.shape == (3, 20, 4)
    for n in range(1, 5):
        prefix = q.encode(x, num_levels=n)
        assert prefix.shape == (3, 20, n)
        assert torch.equal(prefix, full[..., :n])  # a prefix code is the prefix of the full code
        expected = sum(q.levels[i].decode(full[..., i]) for i in range(n))
        torch.testing.assert_close(q.decode(prefix), expected)
    assert torch.equal(q.decode(full), q(x).quantized)


def test_empty_input_honours_num_levels():
    q = _rvq(num_levels=4).eval()
    empty = torch.zeros(0, 5, 8)
    assert q.encode(empty).shape == (0, 5, 4)
    assert q.encode(empty, num_levels=2).shape == (0, 5, 2)
    assert q.decode(q.encode(empty, num_levels=2)).shape == (0, 5, 8)
    with pytest.raises(ValueError, match="num_levels"):
        q.encode(empty, num_levels=9)
    assert _grvq().encode(torch.zeros(0, 8), num_levels=1).shape == (0, 2, 1)


@pytest.mark.parametrize("bad", [0, 5, -1, 2.0, True, "2"])
def test_num_levels_out_of_range_raises(bad):
    q = _rvq(num_levels=4).eval()
    x = make_latents(q, 10)
    with pytest.raises(ValueError, match="num_levels"):
        q.encode(x, num_levels=bad)
    g = _grvq(num_levels=4).eval()
    with pytest.raises(ValueError, match="num_levels"):
        g.encode(x, num_levels=bad)


def test_decode_rejects_too_many_levels_and_unknown_options():
    q = _rvq(num_levels=4).eval()
    indices = q.encode(make_latents(q, 10))
    with pytest.raises(ValueError, match="shape"):
        q.decode(torch.cat([indices, indices[..., :1]], -1))
    with pytest.raises(ValueError, match="shape"):
        q.decode(indices[..., :0])
    with pytest.raises(ValueError, match="options"):
        q.encode(make_latents(q, 10), levels=2)


def test_quantizer_dropout_keeps_a_prefix_per_token():
    # A gradient codebook without restarts: forward changes no code, so decode shows what forward used.
    q = _rvq(num_levels=4, quantizer_dropout=1.0, ema_decay=None, dead_code_threshold=0.0)
    x = make_latents(q, 400, seed=2)
    q.train()(x)  # k-means init of every level
    torch.manual_seed(1)
    out = q(x)
    assert out.indices.shape == (400, 4) and 0 <= int(out.indices.min()) and int(out.indices.max()) < 16
    assert torch.equal(out.indices, q.encode(x))  # dropped levels still report their real indices
    kept = []
    for row in range(400):
        matches = [n for n in range(1, 5) if torch.equal(out.quantized[row], q.decode(out.indices[row, :n]))]
        assert matches, f"token {row} is not the decode of any level prefix"
        kept.append(matches[0])
    counts = torch.bincount(torch.tensor(kept), minlength=5)[1:]
    assert counts.min() > 60, counts  # n uniform in [1, 4]: about 100 each


def test_quantizer_dropout_excludes_dropped_tokens_from_codebook_statistics():
    q = _rvq(num_levels=3, quantizer_dropout=1.0, dead_code_threshold=0.0)
    x = make_latents(q, 300, seed=3)
    q.train()(x)
    decay = q.levels[0].ema_decay
    before = [float(level.cluster_size.sum()) for level in q.levels]
    torch.manual_seed(4)
    q(x)
    torch.manual_seed(4)  # replay the forward's draws: which tokens drop (all, at 1.0), then their prefix
    torch.rand(300)
    kept = torch.randint(1, 4, (300,))
    for level_id, level in enumerate(q.levels):
        active = int((kept > level_id).sum())
        expected = decay * before[level_id] + (1 - decay) * active
        assert abs(float(level.cluster_size.sum()) - expected) < 1e-3, (level_id, active)
    assert int((kept > 2).sum()) < 300  # the test means something: some tokens were dropped


def test_dropout_only_in_training():
    q = _rvq(num_levels=3, quantizer_dropout=1.0)
    x = make_latents(q, 64)
    q = _train(q, x)
    assert torch.equal(q(x).quantized, q.decode(q.encode(x)))


def test_gradient_reaches_latents_once():
    # With the straight-through estimator the sum of levels passes the gradient through exactly once.
    q = _rvq(num_levels=3)
    x = make_latents(q, 64)
    q = _train(q, x).train()
    xi = x.clone().requires_grad_(True)
    q(xi).quantized.sum().backward()
    torch.testing.assert_close(xi.grad, torch.ones_like(x))


def test_grouped_groups_are_independent():
    g = _grvq(num_groups=2, num_levels=3)
    x = make_latents(g, 100)
    g = _train(g, x)
    indices = g.encode(x)
    assert indices.shape == (100, 2, 3) and g.index_shape == (2, 3) and g.num_codebooks == 6
    y = x.clone()
    y[:, 4:] = torch.randn(100, 4)  # change only group 1's channels
    changed = g.encode(y)
    assert torch.equal(changed[:, 0], indices[:, 0])
    assert not torch.equal(changed[:, 1], indices[:, 1])
    # Each group is an RVQ on its own channels.
    assert torch.equal(indices[:, 0], g.groups[0].encode(x[:, :4]))
    prefix = g.encode(x, num_levels=2)
    assert prefix.shape == (100, 2, 2) and torch.equal(prefix, indices[..., :2])
    torch.testing.assert_close(
        g.decode(prefix), torch.cat([grp.decode(prefix[:, i]) for i, grp in enumerate(g.groups)], -1)
    )
    with pytest.raises(ValueError, match="shape"):
        g.decode(indices[:, :1])  # one group instead of two


# ------------------------------------------------------------------------------------ beam search
def _clustered(n: int, dim: int = 8, clusters: int = 12, seed: int = 0) -> torch.Tensor:
    """Tight clusters plus a spread-out residual: greedy RVQ wastes later levels on it."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(clusters, dim, generator=g)
    return centres[torch.randint(clusters, (n,), generator=g)] + 0.5 * torch.randn(n, dim, generator=g)


@torch.no_grad()
def _row_errors(q, x, indices) -> torch.Tensor:
    return (q.decode(indices) - x).square().sum(-1)


@pytest.mark.parametrize("overrides", [{}, {"metric": "cosine", "codebook_dim": 4}], ids=["l2", "cosine-lowdim"])
def test_beam_never_worse_than_greedy_per_row(overrides):
    x = _clustered(2_000)
    q = _train(_rvq(num_levels=4, **overrides), x, steps=5)
    greedy = _row_errors(q, x, q.encode(x))
    for width in (2, 8):
        indices = q.encode(x, beam_width=width)
        assert indices.shape == (2_000, 4) and int(indices.min()) >= 0 and int(indices.max()) < 16
        beam = _row_errors(q, x, indices)
        assert bool((beam <= greedy).all())
        assert float(beam.mean()) < 0.99 * float(greedy.mean()), (float(beam.mean()), float(greedy.mean()))


def test_beam_width_option_drives_eval_forward_and_keeps_level_prefixes():
    x = _clustered(500, seed=1)
    greedy = _train(_rvq(num_levels=4), x)
    q = _train(_rvq(num_levels=4, beam_width=4), x)
    # Training stays greedy, so the two models learned the same codebooks.
    assert torch.equal(q.state_dict()["levels.0.embed"], greedy.state_dict()["levels.0.embed"])
    out = q(x)
    assert torch.equal(out.indices, q.encode(x)) and torch.equal(out.quantized, q.decode(out.indices))
    assert torch.equal(q.encode(x, beam_width=1), greedy.encode(x))
    assert not torch.equal(out.indices, greedy.encode(x))  # the beam did change some codes
    for n in (1, 2, 3):
        prefix = q.encode(x, num_levels=n)
        assert prefix.shape == (500, n)
        assert bool((_row_errors(q, x, prefix) <= _row_errors(q, x, q.encode(x, num_levels=n, beam_width=1))).all())


def test_beam_keeps_gradients_and_dropout_in_training():
    q = _train(_rvq(num_levels=3, beam_width=4, quantizer_dropout=1.0), _clustered(300)).train()
    xi = _clustered(300, seed=2).requires_grad_(True)
    out = q(xi)
    out.quantized.sum().backward()
    torch.testing.assert_close(xi.grad, torch.ones_like(xi))  # straight-through, once
    # Quantizer dropout still zeroes later levels of some tokens, so not every row is a full decode.
    full = q.decode(out.indices)
    assert not torch.equal(out.quantized.detach(), full)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_beam_width_raises(bad):
    with pytest.raises(ValueError, match="beam_width"):
        _rvq(beam_width=bad)
    q = _rvq().eval()
    with pytest.raises(ValueError, match="beam_width"):
        q.encode(make_latents(q, 4), beam_width=bad)
    with pytest.raises(ValueError, match="beam_width"):
        _grvq().eval().encode(make_latents(q, 4), beam_width=bad)


def test_grouped_beam_encode():
    x = _clustered(400, seed=3)
    g = _train(_grvq(num_levels=3), x)
    greedy, beam = g.encode(x), g.encode(x, beam_width=4)
    assert beam.shape == greedy.shape == (400, 2, 3)
    assert bool((_row_errors(g, x, beam) <= _row_errors(g, x, greedy)).all())
    assert torch.equal(beam[:, 1], g.groups[1].encode(x[:, 4:], beam_width=4))
    g4 = _train(_grvq(num_levels=3, beam_width=4), x)
    assert torch.equal(g4(x).quantized, g4.decode(g4.encode(x)))
