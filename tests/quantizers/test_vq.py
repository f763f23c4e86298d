"""VQ: the contract for every option that changes the algorithm, and the properties each option promises."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqtok.quantizers import VQ, _codebook
from vqtok.testing import assert_quantizer_contract, make_latents


def _build(**overrides) -> VQ:
    torch.manual_seed(0)
    return VQ(**{"dim": 8, "codebook_size": 32, **overrides})


# The registered example (EMA, l2, k-means, restarts) already runs in test_contract.py.
OPTIONS = {
    "ema-cosine": {"metric": "cosine"},
    "ema-lowdim": {"codebook_dim": 3},
    "ema-cosine-lowdim": {"metric": "cosine", "codebook_dim": 4},
    "ema-random-init-no-restart": {"kmeans_init": False, "dead_code_threshold": 0.0},
    "gradient": {"ema_decay": None},
    "gradient-cosine-lowdim": {"ema_decay": None, "metric": "cosine", "codebook_dim": 4},
    "simvq": {"ema_decay": None, "simvq": True},
    "simvq-lowdim-rotation": {"ema_decay": None, "simvq": True, "codebook_dim": 4, "gradient": "rotation"},
    "rotation-ema": {"gradient": "rotation"},
    "rotation-gradient-cosine": {"gradient": "rotation", "ema_decay": None, "metric": "cosine"},
}


@pytest.mark.parametrize("overrides", OPTIONS.values(), ids=OPTIONS.keys())
def test_contract(overrides):
    assert_quantizer_contract(_build(**overrides), _build(**overrides))


@pytest.mark.parametrize(
    "bad",
    [
        {"metric": "ip"},
        {"ema_decay": 1.0},
        {"simvq": True},  # SimVQ needs ema_decay=None
        {"gradient": "gumbel"},
        {"codebook_dim": 9},
        {"dead_code_threshold": -1.0},
    ],
)
def test_bad_options_raise(bad):
    with pytest.raises(ValueError):
        _build(**bad)


def test_encode_rejects_unknown_options():
    with pytest.raises(ValueError, match="options"):
        _build().encode(torch.randn(3, 8), num_levels=2)


# ------------------------------------------------------------------------------------------- EMA
def test_ema_update_matches_hand_computed_reference():
    decay, eps = 0.9, 1e-5
    q = VQ(dim=2, codebook_size=3, ema_decay=decay, eps=eps, kmeans_init=False, dead_code_threshold=0.0)
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    q.embed.copy_(codes)
    q.embed_sum.copy_(codes)  # cluster sizes start at 1, so the sums equal the codes
    q.initialized.fill_(True)  # a hand-set codebook: the first batch must not re-initialise it
    latents = torch.tensor([[0.1, 0.0], [0.9, 0.1], [1.1, -0.1], [0.2, 0.1]])
    out = q.train()(latents)

    # Assignments 0, 1, 1, 0 with the old codes; code 2 is unused.
    assert out.indices.tolist() == [0, 1, 1, 0]
    assert torch.equal(out.quantized, codes[[0, 1, 1, 0]])
    sizes = [decay * 1 + (1 - decay) * c for c in (2, 2, 0)]
    sums = [
        [decay * 0.0 + (1 - decay) * 0.3, decay * 0.0 + (1 - decay) * 0.1],
        [decay * 1.0 + (1 - decay) * 2.0, decay * 0.0 + (1 - decay) * 0.0],
        [decay * 0.0, decay * 1.0],
    ]
    total = sum(sizes)
    smoothed = [(s + eps) / (total + 3 * eps) * total for s in sizes]
    expected = torch.tensor([[v / smoothed[i] for v in sums[i]] for i in range(3)])
    torch.testing.assert_close(q.cluster_size, torch.tensor(sizes), rtol=0, atol=1e-6)
    torch.testing.assert_close(q.embed_sum, torch.tensor(sums), rtol=0, atol=1e-6)
    torch.testing.assert_close(q.embed, expected, rtol=0, atol=1e-6)
    # Commitment loss against the old codes, weighted by the default beta.
    commitment = (latents - codes[[0, 1, 1, 0]]).square().mean()
    torch.testing.assert_close(out.losses["commitment"], commitment)
    torch.testing.assert_close(out.loss, 0.25 * commitment)
    assert set(out.losses) == {"commitment"}


def test_gradient_codebook_losses_and_gradients():
    q = _build(ema_decay=None, commitment_weight=0.5, dead_code_threshold=0.0).train()
    q(make_latents(q, 256))  # k-means init
    x = make_latents(q, 24, seed=1).requires_grad_(True)
    out = q(x)
    torch.testing.assert_close(out.loss, out.losses["codebook"] + 0.5 * out.losses["commitment"])
    torch.testing.assert_close(out.losses["codebook"], out.losses["commitment"])  # same value, other gradient
    out.loss.backward()
    assert q.embed.grad is not None and q.embed.grad.abs().sum() > 0
    # Only the codes that were picked get a codebook-loss gradient.
    used = torch.zeros(32, dtype=torch.bool)
    used[out.indices] = True
    assert 0 < int(used.sum()) < 32
    assert torch.all(q.embed.grad[~used] == 0) and torch.all(q.embed.grad[used].abs().sum(-1) > 0)


def test_simvq_learns_only_the_linear_map():
    q = _build(ema_decay=None, simvq=True).train()
    assert "basis" in dict(q.named_buffers()) and "basis_map.weight" in dict(q.named_parameters())
    basis = q.basis.clone()
    q(make_latents(q, 64))  # k-means writes the initial codes into the frozen basis
    basis = q.basis.clone()
    out = q(make_latents(q, 64, seed=1))
    out.loss.backward()
    grad = q.basis_map.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # One map moves every code, used or not (the point of SimVQ), while the basis stays frozen.
    before = q.codebook.clone()
    with torch.no_grad():
        q.basis_map.weight -= 0.1 * grad
    moved = (q.codebook - before).norm(dim=-1) > 0
    assert moved.all()
    assert torch.equal(q.basis, basis)


# ------------------------------------------------------------------------------ init and restarts
def test_kmeans_init_beats_random_latents_which_beat_a_fixed_random_codebook():
    # Latents far from N(0, 1): a codebook that ignored the data would leave a few codes taking every token.
    x = 10.0 + 5.0 * make_latents(_build(), 512, seed=3)
    errors, usage = {}, {}
    for init in ("kmeans", "latents", "fixed"):
        torch.manual_seed(0)
        q = _build(kmeans_init=init == "kmeans", dead_code_threshold=0.0).train()
        if init == "fixed":
            q.initialized.fill_(True)  # the constructor's N(0, 1) codes, the pre-fix behaviour
        else:
            q(x)  # initialises from this batch (then one EMA step)
        q(x)
        q.eval()
        codes = q.encode(x)
        errors[init] = float((q.decode(codes) - x).square().mean())
        usage[init] = codes.unique().numel()
    assert errors["kmeans"] < errors["latents"] < 0.5 * errors["fixed"], errors
    assert usage["latents"] > 4 * usage["fixed"], usage


def test_random_latents_repeats_are_distinct_and_on_the_data_scale():
    torch.manual_seed(0)
    data = 100.0 + 3.0 * torch.randn(5, 4)
    codes = _codebook.random_latents(data, 40)  # more codes than rows: repeats get noise
    assert codes.shape == (40, 4) and torch.unique(codes, dim=0).shape[0] == 40
    # Every code stays within a few percent of the data's spread from one of the rows.
    assert float(torch.cdist(codes, data).min(dim=1).values.max()) < 0.2 * 3.0 * 2


def test_kmeans_plusplus_and_lloyd_reduce_error():
    torch.manual_seed(0)
    centres = torch.randn(6, 4) * 3
    data = centres[torch.randint(6, (300,))] + 0.1 * torch.randn(300, 4)

    def error(codebook):
        return float((data - codebook[torch.cdist(data, codebook).argmin(1)]).square().sum(-1).mean())

    seeded = _codebook.kmeans_plusplus(data, 6)
    refined, counts = _codebook.kmeans(data, 6, iters=10)
    uniform = data[torch.randperm(300)[:6]]
    assert error(refined) <= error(seeded) + 1e-6
    assert error(refined) < 0.05  # every true cluster found: only the 0.1-std noise is left (4 * 0.01)
    assert error(refined) < error(uniform) or error(uniform) < 0.05
    assert counts.sum() == 300 and counts.min() > 0
    # Fewer rows than clusters still works: the remaining centres repeat rows.
    small = _codebook.kmeans_plusplus(data[:3], 6)
    assert small.shape == (6, 4) and all(any(torch.equal(c, r) for r in data[:3]) for c in small)


def test_kmeans_init_is_recorded_and_not_redone_after_reload(monkeypatch):
    q = _build().train()
    assert not bool(q.initialized)
    q(make_latents(q, 128))
    assert bool(q.initialized)
    fresh = _build()
    fresh.load_state_dict(q.state_dict())

    def fail(*args, **kwargs):
        raise AssertionError("k-means ran again after reload")

    monkeypatch.setattr(_codebook, "kmeans", fail)
    fresh.train()(make_latents(q, 128, seed=1))


@pytest.mark.parametrize("overrides", [{}, {"ema_decay": None}, {"ema_decay": None, "simvq": True}], ids=str)
def test_dead_codes_are_revived(overrides):
    q = _build(codebook_size=16, kmeans_init=False, **overrides).train()
    x = make_latents(q, 512, seed=5)
    # Put every code far from the data, so that one or two codes take all tokens and the rest are dead.
    q._write_codes(torch.arange(16), 50.0 + torch.randn(16, 8))
    q.initialized.fill_(True)  # so that the first step does not re-initialise the codes from the data
    q.eval()
    assert (q.encode(x).unique().numel()) <= 2
    q.train()
    restarted = []
    for _ in range(5):
        restarted.append(float(q(x).metrics["restarted_codes"]))
    q.eval()
    assert restarted[1] >= 14  # counts start at 1: the first step marks the codes dead, the second revives them
    assert q.encode(x).unique().numel() >= 12  # 8 data clusters share 16 codes; a few may be mid-restart
    with torch.no_grad():
        error = float((q.decode(q.encode(x)) - x).square().mean())
    assert error < 0.5  # the data's own scale is ~1; codes at distance 50 would give ~2500


def test_restarts_only_in_training_and_never_in_encode():
    q = _build(kmeans_init=False)
    q.cluster_size.zero_()  # every code looks dead
    state = copy.deepcopy(q.state_dict())
    x = make_latents(q, 64)
    q.eval()(x)
    q.train().encode(x)
    assert all(torch.equal(state[k], v) for k, v in q.state_dict().items())


# ------------------------------------------------------------------------------- output and metrics
def test_metrics_perplexity_and_usage():
    q = _build(codebook_size=4, dim=2, kmeans_init=False)
    q.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    x = torch.tensor([[0.1, 0.0], [9.9, 0.2], [0.0, 9.8], [0.2, 0.1]])  # codes 0, 1, 2, 0
    out = q.eval()(x)
    p = torch.tensor([0.5, 0.25, 0.25])
    torch.testing.assert_close(out.metrics["perplexity"], (-(p * p.log()).sum()).exp())
    torch.testing.assert_close(out.metrics["usage"], torch.tensor(0.75))


def test_cosine_outputs_unit_norm_codes():
    q = _build(metric="cosine").eval()
    x = make_latents(q, 100) * 5
    out = q(x)
    torch.testing.assert_close(out.quantized.norm(dim=-1), torch.ones(100))
    # Scaling a latent does not change its code under the cosine metric.
    assert torch.equal(q.encode(x), q.encode(3 * x))


def test_low_dim_codes_are_looked_up_in_the_projected_space():
    q = _build(codebook_dim=3).train()
    x = make_latents(q, 64).requires_grad_(True)
    out = q(x)
    assert q.codebook.shape == (32, 3)
    (out.quantized.square().sum() + out.loss).backward()
    for layer in (q.project_in, q.project_out):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    q.eval()
    expected = q.project_out(q.codebook[q.encode(x)])
    torch.testing.assert_close(q.decode(q.encode(x)), expected)


# ------------------------------------------------------------------------------------ rotation trick
def test_rotation_trick_same_forward_different_gradient():
    ste = _build(gradient="ste").train()
    x = make_latents(ste, 128)
    ste(x)  # initialise
    rot = _build(gradient="rotation")
    rot.load_state_dict(ste.state_dict())
    outs, grads = [], []
    for q in (ste.eval(), rot.eval()):
        xi = x.clone().requires_grad_(True)
        out = q(xi)
        (out.quantized * torch.linspace(-1, 1, 8)).sum().backward()
        outs.append(out)
        grads.append(xi.grad)
    assert torch.equal(outs[0].quantized, outs[1].quantized)
    assert torch.equal(outs[0].indices, outs[1].indices)
    torch.testing.assert_close(grads[0], torch.linspace(-1, 1, 8).expand(128, 8))  # STE: identity
    assert not torch.allclose(grads[0], grads[1], atol=1e-3)


def test_rotation_trick_maps_latents_to_codes_with_a_scaled_rotation():
    torch.manual_seed(1)
    e = torch.randn(5, 6, requires_grad=True)
    q = torch.randn(5, 6)
    rotated = _codebook.rotation_trick(e, q)
    torch.testing.assert_close(rotated, q, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(5, 6)
    rotated.backward(upstream)
    # The Jacobian is (|q| / |e|) R with R orthogonal, so it scales gradient norms by |q| / |e|.
    ratio = q.norm(dim=-1) / e.detach().norm(dim=-1)
    torch.testing.assert_close(e.grad.norm(dim=-1), upstream.norm(dim=-1) * ratio)


# ---------------------------------------------------------------------------------------------- DDP
_DDP_STEPS = 4


def _batches(rank: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    centres = torch.randn(6, 4, generator=torch.Generator().manual_seed(7)) * 2
    return [
        centres[torch.randint(6, (48,), generator=g)] + 0.3 * torch.randn(48, 4, generator=g) for _ in range(_DDP_STEPS)
    ]


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        batches = _batches(rank)
        # Default recipe, with rank-dependent seeds: random init, k-means and restarts all differ per
        # rank unless rank 0's choices are broadcast.
        torch.manual_seed(rank)
        full = VQ(dim=4, codebook_size=16, dead_code_threshold=3.0).train()
        # EMA only, identically initialised: must equal one process seeing both ranks' batches.
        torch.manual_seed(0)
        ema = VQ(dim=4, codebook_size=16, kmeans_init=False, dead_code_threshold=0.0).train()
        ema.initialized.fill_(True)  # keep the seeded constructor codes (no data-dependent init)
        for x in batches:
            full(x)
            ema(x)
        torch.save({"full": full.state_dict(), "ema": ema.state_dict()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_hold_identical_codebooks(tmp_path):
    # fork, not spawn: a spawned child re-imports torch, which takes seconds on a loaded runner.
    mp.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in states[0]["full"].items():
        assert torch.equal(value, states[1]["full"][key]), f"ranks disagree on {key}"
    assert bool(states[0]["full"]["initialized"])
    # The full recipe still learned something: the codebook left its random start.
    torch.manual_seed(0)
    assert not torch.equal(states[0]["full"]["embed"], torch.randn(16, 4))

    torch.manual_seed(0)
    reference = VQ(dim=4, codebook_size=16, kmeans_init=False, dead_code_threshold=0.0).train()
    reference.initialized.fill_(True)
    for a, b in zip(_batches(0), _batches(1), strict=True):
        reference(torch.cat([a, b]))
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(states[0]["ema"][key], value, rtol=1e-5, atol=1e-6, msg=key)
        assert torch.equal(states[0]["ema"][key], states[1]["ema"][key])


def test_single_process_helpers_are_no_ops():
    t = torch.arange(3.0)
    assert not _codebook.is_distributed() and _codebook.is_source_rank()
    assert torch.equal(_codebook.all_reduce_sum_(t.clone()), t)
    assert torch.equal(_codebook.broadcast_(t.clone()), t)
    assert math.isclose(float(_codebook.perplexity_from_counts(torch.tensor([1.0, 1.0, 0.0]))), 2.0, rel_tol=1e-6)
