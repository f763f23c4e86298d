"""Residual and Grouped over any quantizer: the combining rule, options, layout and old checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vqtok.quantizers import VQ, Grouped, Residual, create
from vqtok.testing import assert_quantizer_contract, make_latents

FIXTURES = Path(__file__).parent / "fixtures"


def _seeded(fn):
    torch.manual_seed(0)
    return fn()


# ------------------------------------------------------------------------------ any quantizer inside
COMPOSITES = {
    "residual-of-vq-instances": lambda: Residual([VQ(8, 16), VQ(8, 16, ema_decay=None)]),
    "residual-of-fsq-by-name": lambda: Residual("fsq", 3, quantizer_kwargs={"levels": (5, 5, 3)}, level_scale=4.0),
    "residual-fsq-projected": lambda: create("residual_fsq", levels=(5, 4), num_levels=2, dim=6),
    "residual-shared-projection": lambda: Residual(
        "vq", 2, dim=8, quantizer_kwargs={"codebook_size": 16}, shared_codebook_dim=4, beam_width=2
    ),
    "grouped-of-lfq": lambda: Grouped("lfq", 2, dim=6, quantizer_kwargs={"codebook_size": 8}),
    "grouped-of-residual-fsq": lambda: Grouped(
        [create("residual_fsq", levels=(5, 3), num_levels=2) for _ in range(2)], dim=6, shared_codebook_dim=4
    ),
}


@pytest.mark.parametrize("make", COMPOSITES.values(), ids=COMPOSITES.keys())
def test_contract(make):
    assert_quantizer_contract(_seeded(make), _seeded(make))


def test_parts_must_agree_and_be_channels_last():
    with pytest.raises(ValueError, match="same dim"):
        Residual([VQ(8, 16), VQ(8, 32)])
    bad = VQ(8, 16)
    bad.channel_first = True
    with pytest.raises(ValueError, match="channels-last"):
        Grouped([bad, VQ(8, 16)])
    with pytest.raises(ValueError, match="quantizer_kwargs"):
        Residual([VQ(8, 16)], quantizer_kwargs={"metric": "cosine"})
    with pytest.raises(ValueError, match="multiple"):
        Grouped("vq", 3, dim=8, quantizer_kwargs={"codebook_size": 16})


# ----------------------------------------------------------------------------------- combining rule
def test_levels_sum_and_groups_average_losses():
    x = make_latents(VQ(8, 16), 64)
    rvq = _seeded(lambda: create("rvq", dim=8, codebook_size=16, num_levels=3, ema_decay=None)).train()
    out = rvq(x)
    per_level = [out.losses[f"level{i}/commitment"] for i in range(3)]
    torch.testing.assert_close(out.losses["commitment"], sum(per_level))
    torch.testing.assert_close(
        out.loss, sum(0.25 * c + out.losses[f"level{i}/codebook"] for i, c in enumerate(per_level))
    )
    assert set(out.metrics) >= {"perplexity", "usage", "restarted_codes", "level2/perplexity"}

    pq = _seeded(lambda: create("pq", dim=8, codebook_size=16, num_groups=2)).train()
    grvq = _seeded(lambda: create("grouped_rvq", dim=8, codebook_size=16, num_groups=2, num_levels=2)).train()
    for q in (pq, grvq):
        out = q(x)
        groups = [out.losses[f"group{g}/commitment"] for g in range(2)]
        torch.testing.assert_close(out.losses["commitment"], sum(groups) / 2)
    # Grouped RVQ: mean over groups of each group's sum over levels.
    out = grvq(x)
    level_sum = out.losses["group1/level0/commitment"] + out.losses["group1/level1/commitment"]
    torch.testing.assert_close(out.losses["group1/commitment"], level_sum)
    restarts = torch.stack([out.metrics[f"group{g}/restarted_codes"] for g in range(2)]).sum()
    torch.testing.assert_close(out.metrics["restarted_codes"], restarts)


# ------------------------------------------------------------------------------ residual level count
def test_forward_num_levels_is_a_fixed_bandwidth():
    q = _seeded(lambda: create("rvq", dim=8, codebook_size=16, num_levels=4))
    x = make_latents(q, 3, 20)
    q.train()(x)
    out = q(x, num_levels=2)
    assert out.indices.shape == (3, 20, 2) and "level2/commitment" not in out.losses
    q.eval()
    out = q(x, num_levels=2)
    assert torch.equal(out.indices, q.encode(x, num_levels=2))
    assert torch.equal(out.quantized, q.decode(out.indices))
    with pytest.raises(ValueError, match="num_levels"):
        q(x, num_levels=5)
    with pytest.raises(ValueError, match="unknown options"):
        q(x, beam=2)
    with pytest.raises(ValueError, match="unknown options"):
        create("vq", dim=8, codebook_size=16)(x, num_levels=2)


def test_kept_levels_per_token_and_grouped_dropout_is_shared_by_groups():
    q = _seeded(lambda: create("rvq", dim=8, codebook_size=16, num_levels=3, ema_decay=None, dead_code_threshold=0.0))
    x = make_latents(q, 30)
    q.train()(x)
    kept = torch.arange(30) % 3 + 1
    out = q(x, kept_levels=kept)
    q.eval()
    for row in range(30):
        torch.testing.assert_close(out.quantized[row], q.decode(out.indices[row, : int(kept[row])]))
    with pytest.raises(ValueError, match="kept_levels"):
        q.train()(x, kept_levels=kept + 3)

    g = _seeded(
        lambda: create(
            "grouped_rvq",
            dim=8,
            codebook_size=16,
            num_groups=2,
            num_levels=3,
            quantizer_dropout=1.0,
            ema_decay=None,
            dead_code_threshold=0.0,
        )
    )
    g.train()(x)
    out = g.train()(x)
    g.eval()

    def same_prefix(row: int, m: int) -> bool:
        return all(
            torch.allclose(out.quantized[row, 4 * i : 4 * i + 4], g.groups[i].decode(out.indices[row, i, :m]))
            for i in range(2)
        )

    kept = [next((m for m in (1, 2, 3) if same_prefix(row, m)), 0) for row in range(30)]
    assert all(kept), kept  # every token keeps one level count in both groups
    assert min(kept) < 3  # and dropout did drop levels


def test_residual_fsq_levels_refine_the_soft_clamped_latent():
    levels = (8, 5, 5)
    q = _seeded(lambda: create("residual_fsq", levels=levels, num_levels=3)).eval()
    x = make_latents(q, 2000, seed=3) * 2  # many beyond the clamp
    c = torch.tensor([1 + 1 / (n - 1) for n in levels])
    target = torch.tanh(x / c) * c
    step = 2 / (torch.tensor(levels, dtype=torch.float32) - 1)
    indices = q.encode(x)
    errors = [(target - q.decode(indices[:, :n])).abs() for n in (1, 2, 3)]
    # Level 0 is within half a step of the clamped latent (the soft clamp ends half a step beyond 1), and
    # every further level shrinks the worst error about L-fold (the residual grid is L times finer).
    assert bool((errors[0] <= step / 2 + 1e-6).all())
    for coarse, fine in zip(errors, errors[1:], strict=False):
        worst_coarse, worst_fine = coarse.amax(0), fine.amax(0)
        assert bool((worst_fine < worst_coarse / (torch.tensor(levels) - 1)).all()), (worst_coarse, worst_fine)


def test_residual_fsq_tanh_bound_is_the_earlier_rule():
    """``bound="tanh"``: tanh-bounded FSQ levels and no input clamp, what residual_fsq computed before 2026-12-02."""
    from vqtok.quantizers.fsq import FSQ

    levels = (8, 5, 5)
    q = create("residual_fsq", levels=levels, num_levels=3, bound="tanh").eval()
    before = Residual([FSQ(levels) for _ in range(3)], level_scale=[float(v) for v in levels]).eval()
    x = make_latents(q, 500, seed=4) * 2
    assert torch.equal(q.encode(x), before.encode(x))
    assert torch.equal(q(x).quantized, before(x).quantized)
    assert not torch.equal(q.encode(x), create("residual_fsq", levels=levels, num_levels=3).eval().encode(x))
    with pytest.raises(ValueError, match="bound"):
        create("residual_fsq", levels=levels, bound="round")


@pytest.mark.parametrize("bad", [0.0, -1.0, [1.0, 2.0]])
def test_input_clamp_must_be_positive_per_channel(bad):
    with pytest.raises(ValueError, match="input_clamp"):
        Residual("fsq", 2, quantizer_kwargs={"levels": (5, 5, 3)}, input_clamp=bad)


def test_shared_codebook_dim_projects_once_around_the_stack():
    q = _seeded(lambda: create("rvq", dim=16, codebook_size=32, num_levels=3, shared_codebook_dim=4))
    assert q.project_in.weight.shape == (4, 16) and all(level.dim == 4 for level in q.levels)
    assert "levels.0.project_in.weight" not in q.state_dict()


# -------------------------------------------------------------------------------------- channel-first
@pytest.mark.parametrize("name", ["vq", "rvq", "fsq", "grouped_rvq"])
def test_channel_first_layout(name):
    from vqtok.quantizers import example_config

    last = _seeded(lambda: create(name, **example_config(name))).eval()
    first = _seeded(lambda: create(name, channel_first=True, **example_config(name))).eval()
    first.load_state_dict(last.state_dict())
    x = make_latents(last, 2, 5, 3)  # (B, H, W, D)
    xc = x.movedim(-1, 1)  # (B, D, H, W)
    out = first(xc)
    assert out.quantized.shape == xc.shape
    assert torch.equal(out.quantized, last(x).quantized.movedim(-1, 1))
    assert torch.equal(first.encode(xc), last.encode(x))  # indices keep the token layout
    assert torch.equal(first.decode(first.encode(xc)), out.quantized)
    with pytest.raises(ValueError, match="channel_first"):
        first(x)


# ------------------------------------------------------------------------------ old checkpoints load
def test_checkpoints_of_the_classes_before_the_composites_load_and_decode_identically():
    """``fixtures/legacy_composites.pt`` was written by ``make_legacy_composites.py`` at commit 17554f7."""
    saved = torch.load(FIXTURES / "legacy_composites.pt", weights_only=True)
    assert set(saved) == {"rvq", "rvq_simvq", "grouped_rvq", "pq", "pq_disentangle", "group_lfq"}
    for key, case in saved.items():
        if "num_codebooks" in case["config"]:
            with pytest.warns(FutureWarning):
                q = create(case["name"], **case["config"])
        else:
            q = create(case["name"], **case["config"])
        q.load_state_dict(case["state_dict"])  # strict: same keys and shapes
        q.eval()
        assert torch.equal(q.encode(case["latents"]), case["indices"]), key
        # Indices must match exactly; decoded values only to float rounding: the projections' matmuls
        # sum in a CPU-dependent order (the fixture was written on another CPU model).
        torch.testing.assert_close(q.decode(case["indices"]), case["quantized"], rtol=0, atol=1e-5, msg=key)


# ------------------------------------------------------------------------------------------------ DDP
def _ddp_dropout_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        q = create("rvq", dim=4, codebook_size=8, num_levels=3).train()
        x = torch.randn(6, 4, generator=torch.Generator().manual_seed(rank))
        # Rank 0 keeps only level 0 for every token: its levels 1 and 2 have no valid token at all.
        kept = torch.full((6,), 1 if rank == 0 else 3)
        for _ in range(3):
            q(x, kept_levels=kept)
        torch.save(q.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_levels_without_kept_tokens_still_join_the_collectives(tmp_path):
    import torch.multiprocessing as mp

    context = mp.start_processes(
        _ddp_dropout_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False, start_method="fork"
    )
    for _ in range(120):  # a deadlock would hang here: fail after two minutes instead
        if context.join(timeout=1):
            break
    else:
        for process in context.processes:
            process.kill()
        pytest.fail("DDP ranks deadlocked")
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), f"ranks disagree on {key}"
