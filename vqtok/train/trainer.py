"""One training loop for every tokenizer: single process on CPU, or DDP under ``torchrun``.

Run directory layout::

    run_dir/
      config.yaml        resolved TrainConfig
      checkpoint.pt      latest full state (model, optimizer, scheduler, RNG, step), replaced atomically
      checkpoint.json    its SHA-256, checked by --resume (see vqtok.train.checkpoint)
      metrics.jsonl      one JSON object per logged step
      model/             release checkpoint (save_pretrained) written at the end

Resuming restores every piece of state that influences later steps (weights, quantizer buffers, optimizer
moments, schedule, the RNG of every rank) and restarts the data order at the saved step
(:class:`vqtok.data.StepBatchSampler`), so on CPU a resumed run ends bit-identical to an uninterrupted one.

Non-finite steps never poison the model. A step whose loss or gradient norm is NaN/Inf, or whose quantizer
refuses its latents or weights (:class:`vqtok.quantizers.base.NonFiniteError`), is skipped: no optimizer step,
and every buffer of the model (and discriminator) that its forward changed, such as EMA codebooks and usage
statistics, is restored to its value before the step. The learning-rate schedule still advances, so the rate
stays a function of the step number. Each skip logs a warning and is counted (``nonfinite_steps`` in
``metrics.jsonl``, the total of this process); after ``max_nonfinite_steps`` consecutive skips the run stops with
``FloatingPointError``. See docs/training.md.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .._dist import DistInfo, all_gather_objects, setup_distributed, teardown_distributed
from ..metrics import CodebookUsage
from ..quantizers.base import NonFiniteError
from ..tokenizers import Tokenizer, create_tokenizer
from ..version import __version__
from .adversarial import Adversary, build_adversary
from .checkpoint import load_training_checkpoint, save_training_checkpoint
from .config import TrainConfig
from .data import TrainData
from .ema import ModelEMA
from .nonfinite import NonFiniteGuard, agreed_finite
from .perceptual import PerceptualTerm, build_perceptual
from .run_dir import METRICS_NAME, prepare_run_dir
from .state import StepResult, TrainResult, collate, lr_lambda, reduce_logs, rng_state, seed_everything, set_rng_state

__all__ = ["StepResult", "Trainer", "TrainResult", "collate", "seed_everything"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_DIR = "model"

# Newer torch renames DDP's `broadcast_buffers` to `forward_sync_buffers` (the one-off sync at construction stays,
# which is harmless: every rank builds the model from the same seed).
_NO_FORWARD_BUFFER_SYNC = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else "broadcast_buffers"
)


class Trainer:
    """Trains ``create_tokenizer(cfg.tokenizer, **cfg.model)`` on ``create_dataset(cfg.data.name)`` or ``data.path``
    (:class:`vqtok.train.data.TrainData`).

    Args:
        config: The resolved training config.
        resume: Continue from ``run_dir/checkpoint.pt`` when it exists.
        force: Start afresh even if ``run_dir`` already holds a checkpoint (it is overwritten).
        progress: Show a tqdm bar on rank 0.

    A step with a non-finite loss or gradient is skipped without changing the model (module docstring);
    :meth:`fit` raises ``FloatingPointError`` after ``config.max_nonfinite_steps`` such steps in a row.

    Raises:
        FileExistsError: When ``run_dir`` holds a checkpoint and neither ``resume`` nor ``force`` is set.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True) -> None:
        if config.optim.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {config.optim.schedule!r}")
        config.validate_model()
        self.cfg = config
        self.progress = progress
        self.run_dir = Path(config.run_dir)
        ckpt = self.run_dir / CHECKPOINT_NAME
        if ckpt.exists() and not (resume or force):
            raise FileExistsError(
                f"{str(self.run_dir)!r} already holds a checkpoint; pass --resume to continue it or --force to restart"
            )
        self.resume = resume and ckpt.exists()
        self.nonfinite = NonFiniteGuard(config.max_nonfinite_steps)
        if resume and not ckpt.exists():
            logger.warning("no checkpoint in %s; starting from scratch", self.run_dir)

    # ------------------------------------------------------------------------------------- set-up
    def _build(self, info: DistInfo) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        model = create_tokenizer(cfg.tokenizer, **cfg.model)
        if not isinstance(model, Tokenizer):
            raise ValueError(f"{cfg.tokenizer!r} is a fitted tokenizer, not trained by gradient: use its fit()")
        self.model: Tokenizer = model.to(info.device)
        # Adversarial training is part of the recipe, not of the model: composed here from the model's config.
        self.adversary: Adversary | None = build_adversary(self.model)
        self.disc: nn.Module | None = None
        if self.adversary is not None:
            self.disc = self.adversary.discriminator = self.adversary.discriminator.to(info.device)
            if self.adversary.settings.adaptive_weight and not hasattr(self.model, "last_layer"):
                raise ValueError(f"gan_adaptive_weight needs a model with a last_layer; {cfg.tokenizer!r} has none")
        # The perceptual network is frozen and trainer-owned, like the discriminator.
        self.perceptual: PerceptualTerm | None = build_perceptual(self.model)
        if self.perceptual is not None:
            self.perceptual.to(info.device)
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        o = cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.disc_opt = None
        if self.disc is not None:
            self.disc_opt = torch.optim.AdamW(
                self.disc.parameters(), lr=o.disc_lr or o.lr, betas=o.betas, weight_decay=o.weight_decay
            )
        self.step = 0
        if self.resume:
            self._load_checkpoint(info)
        self.ddp_model: nn.Module = self.model
        self.ddp_disc: nn.Module | None = self.disc
        if info.enabled:
            # No per-forward buffer broadcast: quantizers keep their buffers (EMA statistics, k-means init) identical on
            # every rank themselves, with their own collectives; DDP re-broadcasting rank 0's copy before each
            # forward would be redundant at best and would race those collectives at worst.
            kw: dict[str, Any] = {_NO_FORWARD_BUFFER_SYNC: False, "find_unused_parameters": cfg.find_unused_parameters}
            if info.device.type == "cuda":
                kw["device_ids"] = [info.device.index]
            self.ddp_model = DistributedDataParallel(self.model, **kw)
            if self.disc is not None:
                self.ddp_disc = DistributedDataParallel(self.disc, **kw)
        if cfg.compile:
            self.ddp_model = torch.compile(self.ddp_model)

    def _precision(self, info: DistInfo) -> torch.dtype | None:
        p = self.cfg.precision
        if p == "bf16" or (p == "auto" and info.device.type == "cuda"):
            return torch.bfloat16
        return None

    # -------------------------------------------------------------------------------- checkpoints
    def _checkpoint_state(self, info: DistInfo) -> dict[str, Any] | None:
        rngs = all_gather_objects(rng_state())
        data = getattr(self, "data", None)
        data_states = all_gather_objects(data.state() if data is not None else None)
        if not info.is_main:
            return None
        state: dict[str, Any] = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rngs,
            "world_size": info.world_size,
            "data": data_states,
            "config": self.cfg.to_dict(),
            "vqtok_version": __version__,
        }
        if self.disc is not None and self.disc_opt is not None:
            state["discriminator"] = self.disc.state_dict()
            state["disc_optimizer"] = self.disc_opt.state_dict()
        if self.adversary is not None:
            state["adversary"] = self.adversary.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def save_checkpoint(self, info: DistInfo) -> None:
        """Writes ``checkpoint.pt`` + checksum atomically (rank 0); every rank calls it (RNG states are gathered)."""
        state = self._checkpoint_state(info)
        if state is not None:
            save_training_checkpoint(state, self.run_dir / CHECKPOINT_NAME)
        if info.enabled:
            dist.barrier()

    def _load_checkpoint(self, info: DistInfo) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        state = load_training_checkpoint(path)
        saved = dict(state.get("config", {}))
        current = self.cfg.to_dict()
        changed = sorted(k for k in set(saved) | set(current) if k != "run_dir" and saved.get(k) != current.get(k))
        if changed:
            logger.warning("resuming with a config that differs from the checkpoint's in %s", changed)
        self.model.load_checked_state_dict(state["model"], source=str(path))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.disc is not None and self.disc_opt is not None:
            self.disc.load_state_dict(state["discriminator"])
            self.disc_opt.load_state_dict(state["disc_optimizer"])
        if self.adversary is not None and "adversary" in state:
            self.adversary.load_state_dict(state["adversary"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self._saved_data = state.get("data")
        rngs = state["rng"]
        if len(rngs) == info.world_size:
            set_rng_state(rngs[info.rank])
        else:
            logger.warning("checkpoint was written by %d ranks, now %d: reseeding RNGs", len(rngs), info.world_size)
            seed_everything(self.cfg.seed + self.step + info.rank)
        logger.info("resumed %s at step %d", self.run_dir, self.step)

    # ------------------------------------------------------------------------------------ logging
    def _prepare_run_dir(self, info: DistInfo) -> None:
        if info.is_main:
            prepare_run_dir(self.run_dir, self.cfg.to_dict(), self.step if self.resume else None)

    def _log(self, info: DistInfo, record: dict[str, float]) -> None:
        if info.is_main:
            with open(self.run_dir / METRICS_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")

    # --------------------------------------------------------------------------------------- loop
    def _batches(self, info: DistInfo) -> Iterator[Any]:
        # The data position (batches drawn, or each shard reader's place) is restored from the checkpoint.
        self.data = TrainData(self.cfg, info, self.step, getattr(self, "_saved_data", None))
        return iter(self.data)

    def fit(self, until_step: int | None = None) -> TrainResult:
        """Runs the loop until ``cfg.steps`` (or ``until_step``, for time-boxed runs and resume tests).

        Returns:
            A :class:`TrainResult`; ``model_dir`` is set only when the run reached ``cfg.steps``.
        """
        info = setup_distributed(self.cfg.device)
        try:
            return self._fit(info, until_step)
        finally:
            teardown_distributed(info)

    def _fit(self, info: DistInfo, until_step: int | None) -> TrainResult:
        cfg = self.cfg
        self._build(info)
        self._prepare_run_dir(info)
        end = cfg.steps if until_step is None else min(cfg.steps, until_step)
        amp_dtype = self._precision(info)
        meter = (
            CodebookUsage(self.model.quantizer.codebook_size) if self.model.quantizer.codebook_size <= 1 << 24 else None
        )
        sums: dict[str, float] = {}
        count = 0
        last: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = None
        if self.progress and info.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=end, initial=self.step, desc="train", dynamic_ncols=True)
        self.model.train()
        if self.disc is not None:
            self.disc.train()
        batches = self._batches(info)
        while self.step < end:
            batch = next(batches)
            signal, mask = (batch["signal"], batch.get("mask")) if isinstance(batch, dict) else (batch, None)
            signal = signal.to(info.device, non_blocking=True)
            mask = mask.to(info.device, non_blocking=True) if mask is not None else None
            result = self._train_step(signal, mask, amp_dtype)
            if result is not None:  # None when the step was skipped as non-finite
                if meter is not None:
                    try:
                        meter.update(result.indices)
                    except ValueError:
                        # Quantizers whose index entries have different ranges (anchors) are not histogrammed.
                        meter = None
                for k, v in result.logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == end:
                self.data.check_bad_data()
                last = self._reduce_logs(info, sums, count, meter)
                last.update(step=self.step, lr=self.sched.get_last_lr()[0], time=time.perf_counter() - t0)
                last.update(nonfinite_steps=self.nonfinite.total)
                self._log(info, last)
                sums, count = {}, 0
                if meter is not None:
                    meter.reset()
                if bar is not None:
                    bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "usage") if k in last})
            if bar is not None:
                bar.update(1)
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < end:
                self.save_checkpoint(info)
        if bar is not None:
            bar.close()
        self.save_checkpoint(info)
        model_dir = None
        if self.step >= cfg.steps:
            model_dir = self.run_dir / MODEL_DIR
            if info.is_main:
                if self.ema is not None:
                    # The averaged weights are the release; the raw ones stay in checkpoint.pt.
                    self.ema.copy_to(self.model)
                self.model.save_pretrained(model_dir)
            if info.enabled:
                dist.barrier()
        return TrainResult(self.run_dir, self.step, last, model_dir, time.perf_counter() - t0)

    def _train_step(self, signal: Tensor, mask: Tensor | None, amp_dtype: torch.dtype | None) -> StepResult | None:
        """One optimizer step; returns the logged terms and indices, or ``None`` when skipped as non-finite."""
        cfg, dev = self.cfg, signal.device.type
        autocast = torch.autocast(dev, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
        adversary = self.adversary if self.adversary is not None and self.adversary.active(self.step) else None
        # Quantizers update EMA codebooks and statistics inside forward: keep a copy to restore on a skip.
        self.nonfinite.backup([m for m in (self.model, self.disc) if m is not None])
        try:
            with autocast:
                out = self.ddp_model(signal, mask)
                loss = out.loss
                p_loss = g_adv = g_weight = None
                if self.perceptual is not None:
                    p_loss = self.perceptual.loss(out.recon, signal)
                    loss = loss + self.perceptual.weight * p_loss
                if adversary is not None:
                    g_adv = adversary.generator_loss(out.recon, real=signal, recon_loss=out.loss)
                    g_weight = adversary.adaptive_weight(loss, g_adv, getattr(self.model, "last_layer", None))
                    loss = loss + g_weight * g_adv
        except NonFiniteError as err:
            return self._skip_step(str(err))
        if not agreed_finite(loss):
            return self._skip_step(f"loss is {float(loss.detach())}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.opt.param_groups for p in g["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            if cfg.optim.grad_clip > 0
            else torch.nn.utils.get_total_norm(grads)
        )
        if not bool(torch.isfinite(grad_norm)):  # gradients are all-reduced: every rank agrees
            self.opt.zero_grad(set_to_none=True)
            return self._skip_step(f"gradient norm is {float(grad_norm)}")
        self.nonfinite.succeeded()
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model)
        terms: dict[str, float] = {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}
        if p_loss is not None:
            terms["perceptual"] = float(p_loss.detach())
        if adversary is not None and self.ddp_disc is not None and self.disc_opt is not None:
            with autocast:
                d_terms = adversary.discriminator_terms(self.ddp_disc, signal, out.recon)
            self.disc_opt.zero_grad(set_to_none=True)
            d_terms["loss"].backward()
            self.disc_opt.step()
            terms["d_loss"] = float(d_terms["loss"].detach())
            terms.update({k: float(v) for k, v in d_terms.items() if k != "loss"})
            terms["g_adv"] = float(g_adv.detach()) if g_adv is not None else 0.0
            terms["g_weight"] = float(g_weight) if g_weight is not None else 0.0
        terms.update({k: float(v) for k, v in out.losses.items()})
        terms.update({k: float(v) for k, v in out.metrics.items() if v.numel() == 1})
        return StepResult(logs=terms, indices=out.quantizer_output.indices.detach())

    def _skip_step(self, reason: str) -> None:
        """Skips a non-finite step (see the module docstring); the schedule still advances."""
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.nonfinite.skip([m for m in (self.model, self.disc) if m is not None], self.step + 1, reason)
        return None

    def _reduce_logs(
        self, info: DistInfo, sums: dict[str, float], count: int, meter: CodebookUsage | None
    ) -> dict[str, float]:
        return reduce_logs(info, sums, count, meter)
