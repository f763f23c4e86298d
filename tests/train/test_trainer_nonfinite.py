"""Non-finite training steps are skipped, counted and logged; the model is never poisoned (issue 17).

Runs the real trainer on a tiny image config, feeding one batch multiplied by 1e30 (the reported case:
``loss=inf`` silently, then NaN forever after one Adam step).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from vqtok.testing.configs import tiny_image_run
from vqtok.tokenizers import tokenizer_class
from vqtok.train import Trainer, load_config

# Each test replaces the quantizer by one of QUANTIZERS.
TINY = tiny_image_run("optim.lr=0.003", "batch_size=16", "log_every=2", "ckpt_every=0")
QUANTIZERS = {
    "lfq": ["model.quantizer=lfq", "model.quantizer_kwargs={codebook_size: 64, dim: 8}"],
    "vq_ema": ["model.quantizer=vq", "model.quantizer_kwargs={dim: 8, codebook_size: 32}"],
}


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _poison(monkeypatch, bad_steps: set[int], factor: float = 1e30) -> dict[int, tuple[dict, dict]]:
    """Multiplies the batch of the given (0-based) steps by ``factor``; records model state around them."""
    real = Trainer._train_step
    around: dict[int, tuple[dict, dict]] = {}

    def step(self, signal, mask, amp_dtype):
        if self.step in bad_steps:
            around[self.step] = (_state(self), {})
            terms = real(self, signal * factor, mask, amp_dtype)
            around[self.step][1].update(_state(self))
            return terms
        return real(self, signal, mask, amp_dtype)

    monkeypatch.setattr(Trainer, "_train_step", step)
    return around


# 1e30 makes the encoder's latents NaN (the quantizer refuses them); 1e20 keeps them finite but the
# reconstruction loss overflows to Inf after the quantizer has run its EMA update.
@pytest.mark.parametrize("factor", [1e30, 1e20])
@pytest.mark.parametrize("quantizer", sorted(QUANTIZERS))
def test_one_huge_batch_is_skipped_and_leaves_no_trace(
    tmp_path: Path, monkeypatch, caplog, quantizer: str, factor: float
) -> None:
    cfg = load_config(None, [*TINY, *QUANTIZERS[quantizer], "steps=8", f"run_dir={tmp_path / 'run'}"])
    around = _poison(monkeypatch, {3}, factor)
    trainer = Trainer(cfg, progress=False)
    with caplog.at_level(logging.WARNING, logger="vqtok.train.nonfinite"):
        result = trainer.fit()
    assert result.step == 8
    before, after = around[3]
    # No optimizer step and no EMA/statistics update: the skipped step left every tensor bit-identical.
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the skipped step changed the model"
    assert _all_finite(_state(trainer)), "the model was poisoned"
    assert trainer.nonfinite.total == 1
    assert any("step 4 skipped: non-finite" in r.getMessage() for r in caplog.records)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["nonfinite_steps"] for r in log] == [0, 1, 1, 1]
    # Logged averages come from the finite steps only.
    assert all(r["loss"] == r["loss"] and abs(r["loss"]) < 1e6 for r in log), log
    # Later forwards still give finite, varied tokens (the reported failure: NaN and a single index).
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        out = trainer.model.eval()(x)
    assert torch.isfinite(out.recon).all()
    assert out.quantizer_output.indices.unique().numel() > 1


def test_inf_loss_after_the_quantizer_update_is_undone(tmp_path: Path, monkeypatch) -> None:
    """The loss turns Inf after the forward has run the VQ's EMA update: that update must be undone."""
    tokenizer_cls = tokenizer_class("image2d")
    real_forward = tokenizer_cls.forward
    calls = {"n": 0}

    def forward(self, signal, mask=None):
        out = real_forward(self, signal, mask)
        calls["n"] += 1
        if calls["n"] == 4:
            out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(tokenizer_cls, "forward", forward)
    around = _poison(monkeypatch, {3}, factor=1.0)  # records the state around step 3 (the 4th forward)
    cfg = load_config(None, [*TINY, *QUANTIZERS["vq_ema"], "steps=6", f"run_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    before, after = around[3]
    assert trainer.nonfinite.total == 1
    assert all(torch.equal(before[k], after[k]) for k in before), "EMA buffers kept the skipped step's update"
    # Sanity: without the Inf, that forward does move the EMA statistics.
    assert not torch.equal(before["quantizer.cluster_size"], _state(trainer)["quantizer.cluster_size"])


def test_too_many_non_finite_steps_in_a_row_stop_with_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    extra = [*QUANTIZERS["vq_ema"], "steps=10", "max_nonfinite_steps=3", f"run_dir={tmp_path / 'run'}"]
    around = _poison(monkeypatch, {2, 3, 4, 5})
    trainer = Trainer(load_config(None, [*TINY, *extra]), progress=False)
    with pytest.raises(FloatingPointError, match=r"3 consecutive non-finite steps \(max_nonfinite_steps=3\)"):
        trainer.fit()
    assert sorted(around) == [2, 3, 4]
    assert torch.equal(trainer.model.quantizer.embed, around[2][0]["quantizer.embed"])
    assert _all_finite(_state(trainer))


def test_a_finite_step_resets_the_run_of_skips(tmp_path: Path, monkeypatch) -> None:
    extra = [*QUANTIZERS["vq_ema"], "steps=8", "max_nonfinite_steps=2", f"run_dir={tmp_path / 'run'}"]
    _poison(monkeypatch, {1, 3, 5})  # never two in a row
    trainer = Trainer(load_config(None, [*TINY, *extra]), progress=False)
    assert trainer.fit().step == 8
    assert trainer.nonfinite.total == 3


def test_max_nonfinite_steps_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        load_config(None, [*TINY, "max_nonfinite_steps=0", f"run_dir={tmp_path}"])
