"""A batch sampler whose position is a single integer: the training step.

Batch ``s`` is a pure function of ``(seed, s)``: epoch ``e = s // steps_per_epoch`` uses the permutation
``randperm(N, seed + e)`` and each rank takes its stride of the global batch. Resuming a run therefore
only needs the step number, and the result does not depend on how often the run was interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["StepBatchSampler"]


class StepBatchSampler(Sampler[list]):
    """Yields index lists for steps ``start_step, start_step + 1, ...`` up to ``total_steps``.

    Args:
        num_examples: Data set size N.
        global_batch_size: Examples per step over all ranks; the last partial batch of an epoch is dropped.
        total_steps: Step at which iteration stops.
        seed: Seed of the per-epoch permutations.
        start_step: First step to yield (the resume position).
        rank: This process's rank.
        world_size: Number of ranks; must divide ``global_batch_size``.
        with_step: Yield ``(index, step)`` pairs instead of indices, so a data set can seed per-example random
            transforms by position (the same after a resume, in any worker).
    """

    def __init__(
        self,
        num_examples: int,
        global_batch_size: int,
        total_steps: int,
        seed: int = 0,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        with_step: bool = False,
    ) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"batch size {global_batch_size} is not divisible by world size {world_size}")
        if num_examples < global_batch_size:
            raise ValueError(f"data set of {num_examples} examples is smaller than one batch ({global_batch_size})")
        self.num_examples = num_examples
        self.global_batch_size = global_batch_size
        self.total_steps = total_steps
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.with_step = with_step
        self.steps_per_epoch = num_examples // global_batch_size

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def batch_for_step(self, step: int) -> list[int]:
        """This rank's indices for ``step``."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + epoch))
        batch = perm[pos * self.global_batch_size : (pos + 1) * self.global_batch_size]
        return batch[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[list]:
        cached_epoch, perm = -1, None
        for step in range(self.start_step, self.total_steps):
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != cached_epoch:
                perm = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + epoch))
                cached_epoch = epoch
            assert perm is not None
            batch = perm[pos * self.global_batch_size : (pos + 1) * self.global_batch_size]
            mine = batch[self.rank :: self.world_size].tolist()
            yield [(i, step) for i in mine] if self.with_step else mine
