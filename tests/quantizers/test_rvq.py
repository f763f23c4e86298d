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
