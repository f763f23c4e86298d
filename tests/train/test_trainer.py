"""Trainer: loss falls, run-dir contents, exact resume after a kill, DDP with identical codebooks, configs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import torch

from vqtok.data import StepBatchSampler
from vqtok.testing.configs import tiny_image_run
from vqtok.tokenizers import Tokenizer
from vqtok.train import Trainer, load_config

TINY = tiny_image_run("optim.lr=0.003")


def _cfg(run_dir: Path, *extra: str):
    return load_config(None, [*TINY, f"run_dir={run_dir}", *extra])


def test_trains_and_writes_run_dir(tmp_path) -> None:
    cfg = _cfg(tmp_path / "run", "steps=40", "batch_size=32", "log_every=10", "ckpt_every=20")
    result = Trainer(cfg, progress=False).fit()
    assert result.step == 40 and result.model_dir == tmp_path / "run" / "model"
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint.json", "checkpoint.pt", "config.yaml", "metrics.jsonl", "model"]
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert log[-1]["recon_l2"] < 0.5 * log[0]["recon_l2"], log
    assert 0 < log[-1]["usage"] <= 1
    # The resolved config reloads to the same config.
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    Tokenizer.from_pretrained(result.model_dir)
    # A second run into the same directory must be explicit.
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(cfg, progress=False)


@pytest.mark.slow
def test_resume_after_kill_is_exact(tmp_path, kill_training) -> None:
    """N steps uninterrupted == killed after the step-4 checkpoint, then resumed (same seed, CPU)."""
    extra = ("steps=12", "batch_size=16", "log_every=2", "ckpt_every=4")
    full = Trainer(_cfg(tmp_path / "full", *extra), progress=False)
    full.fit()

    cfg = _cfg(tmp_path / "killed", *extra)
    kill_training(Trainer(cfg, progress=False), 7)  # dies during step 7: the last checkpoint is the one at step 4
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"] == 4

    resumed = Trainer(cfg, resume=True, progress=False)
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = full.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
    log_a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    log_b = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]  # noqa: E731
    assert strip(log_a) == strip(log_b)


def test_gan_step(tmp_path) -> None:
    cfg = _cfg(
        tmp_path / "gan",
        "steps=3",
        "batch_size=8",
        "log_every=1",
        "model.gan_weight=0.1",
        "model.gan_start_step=1",
        "model.disc_channels=8",
    )
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert "d_loss" not in log[0] and "d_loss" in log[1] and "g_adv" in log[2]
    ckpt = torch.load(tmp_path / "gan" / "checkpoint.pt", weights_only=False)
    assert "discriminator" in ckpt and "disc_optimizer" in ckpt


def test_config_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nmodel:\n  in_channels: 1\n  quantizer_kwargs: {levels: [5, 5]}\n")
    cfg = load_config(path, ["optim.lr=0.01", "model.channels=[4, 8, 8]", "optim.betas=[0.5, 0.9]"])
    assert cfg.steps == 7 and cfg.optim.lr == 0.01 and cfg.optim.betas == (0.5, 0.9)
    assert cfg.model["channels"] == [4, 8, 8] and cfg.model["quantizer_kwargs"] == {"levels": [5, 5]}
    bad_overrides = [("optim.lrr=1", "lrr"), ("model.widht=3", "widht"), ("stepz=3", "stepz"), ("steps", "key=value")]
    for bad, match in bad_overrides:
        with pytest.raises(ValueError, match=match):
            load_config(path, [bad])
    (tmp_path / "bad.json").write_text(json.dumps({"optim": {"nope": 1}}))
    with pytest.raises(ValueError, match="nope"):
        load_config(tmp_path / "bad.json")


def test_sampler_is_a_function_of_step() -> None:
    full = list(StepBatchSampler(50, 8, 20, seed=3))
    assert list(StepBatchSampler(50, 8, 20, seed=3, start_step=7)) == full[7:]
    ranks = [list(StepBatchSampler(50, 8, 20, seed=3, rank=r, world_size=2)) for r in range(2)]
    for step in range(20):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(full[step])
    assert len(set(sum(full[:6], []))) == 48  # one epoch (6 full batches) never repeats an example


# Set in the environment of a launched command; every descendant inherits it, so it finds them even after they
# left the launcher's process group (torchrun starts each worker in a session of its own) or were reparented.
_TREE_MARKER = "VQTOK_TEST_PROCESS_TREE"


def _pids_with_marker(marker: str) -> list[int]:
    """Live processes whose environment holds ``_TREE_MARKER=marker`` (Linux ``/proc``)."""
    needle = f"{_TREE_MARKER}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        # Processes may exit, or belong to other users, while we look.
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def _kill_marked(proc: subprocess.Popen, marker: str) -> tuple[str, str]:
    """SIGKILLs the launcher's process group and every process carrying ``marker``; reaps the launcher.

    Returns:
        The launcher's remaining ``(stdout, stderr)``.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    # A few passes: a process that was forking during one scan is caught by the next.
    for _ in range(5):
        pids = _pids_with_marker(marker)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    out, err = proc.communicate()
    return out or "", err or ""


def run_process_tree(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Runs ``cmd`` like ``subprocess.run(capture_output=True, text=True)``, never leaving a process behind.

    ``subprocess.run``'s timeout kills only the direct child, so a hung ``torchrun`` left its workers orphaned.
    Here the launcher starts a new session and its whole tree is tagged, and on timeout (or any interruption,
    Ctrl-C included) every process of the tree is killed before the exception propagates.

    Raises:
        subprocess.TimeoutExpired: After killing the tree, when ``cmd`` ran longer than ``timeout`` seconds.
    """
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        cmd,
        env={**env, _TREE_MARKER: marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        out, err = _kill_marked(proc, marker)
        if isinstance(exc, subprocess.TimeoutExpired):
            # Popen.communicate's TimeoutExpired carries no output; the tail of stderr shows where it hung.
            exc.output, exc.stderr = out, err
        raise
    # Even after a clean exit of the launcher, a stray descendant must not outlive the test.
    if _pids_with_marker(marker):
        _kill_marked(proc, marker)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_run_process_tree_kills_detached_descendants_on_timeout(tmp_path) -> None:
    """A grandchild in a session of its own (as torchrun starts its workers) dies with the timed-out launcher."""
    pid_file = tmp_path / "grandchild.pid"
    script = f"setsid sleep 300 & echo $! > {pid_file}; sleep 300"
    script += " & echo started >&2; wait"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_process_tree(["sh", "-c", script], dict(os.environ), timeout=2)
    assert "started" in info.value.stderr
    grandchild = int(pid_file.read_text())
    # Killed and, reparented to init (or a subreaper), reaped; a zombie is dead too.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {grandchild} survived the timeout")


_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    torch.set_num_threads(1)
    from vqtok.train import Trainer, load_config
    out, overrides = sys.argv[1], sys.argv[2:]
    trainer = Trainer(load_config(None, overrides), progress=False)
    trainer.fit()
    torch.save(trainer.model.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
    """
)


@pytest.mark.slow
def test_torchrun_two_ranks_identical_codebooks(tmp_path) -> None:
    """``torchrun --nproc_per_node 2`` on CPU (gloo): 20 steps, then every tensor is bit-identical on both ranks."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    overrides = [*TINY, f"run_dir={tmp_path / 'run'}", "steps=20", "batch_size=16", "log_every=10", "ckpt_every=10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    try:
        proc = run_process_tree([*cmd, str(script), str(tmp_path), *overrides], env, timeout=300)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun hung for {err.timeout} s (its process tree was killed)\n{(err.stderr or '')[-4000:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    s0 = torch.load(tmp_path / "rank0.pt")
    s1 = torch.load(tmp_path / "rank1.pt")
    codebook_keys = [k for k in s0 if k.startswith("quantizer.")]
    assert codebook_keys, list(s0)
    for k in s0:
        assert torch.equal(s0[k], s1[k]), f"{k} differs between ranks"
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20]
