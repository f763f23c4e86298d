import os

import pytest
import torch

# `VQTOK_GPU_TESTS_ON_CPU=1` runs the gpu-marked tests on CPU (Triton under its interpreter when installed):
# a dry run of their logic on a machine without CUDA, so they do not rot between GPU sessions.
GPU_DRY_RUN = os.environ.get("VQTOK_GPU_TESTS_ON_CPU", "0") == "1"
if GPU_DRY_RUN:
    # Must be set before triton is first imported (vqtok imports it lazily, at the first CUDA search).
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    # gpu-marked tests skip cleanly without CUDA, whatever else they are marked with.
    if torch.cuda.is_available() or GPU_DRY_RUN:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (VQTOK_GPU_TESTS_ON_CPU=1 dry-runs them on CPU)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    # The tests run tiny tensors: on a 2-core runner, OpenMP hand-offs between two threads cost more than they
    # save (measured 3-10x slower under load), so the whole session uses one intra-op thread (module fixtures included).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def kill_training(monkeypatch):
    """``kill_training(trainer, step)``: runs ``trainer.fit()`` and interrupts it during its ``step``-th training
    step, as a killed process would stop (the steps before it ran and saved their checkpoints as usual)."""
    from vqtok.train import Trainer

    def kill(trainer: Trainer, step: int) -> None:
        real_step = Trainer._train_step
        calls = 0

        def dying_step(self, *args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == step:
                raise KeyboardInterrupt
            return real_step(self, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(Trainer, "_train_step", dying_step)
            with pytest.raises(KeyboardInterrupt):
                trainer.fit()

    return kill
