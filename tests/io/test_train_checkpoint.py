"""Training checkpoints: SHA-256 verified at --resume, clear errors for damaged files, safe under kills."""

from __future__ import annotations

import json

import pytest
import torch

from vqtok._io import CheckpointError
from vqtok.testing.configs import tiny_image_run
from vqtok.train import Trainer, load_config
from vqtok.train.checkpoint import checksum_path, load_training_checkpoint, save_training_checkpoint

TINY = tiny_image_run("steps=4", "batch_size=8", "log_every=2", "ckpt_every=2")


def _state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"step": step, "model": {"w": torch.randn(64, generator=g)}, "optimizer": {}, "scheduler": {}, "rng": []}


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))


def test_flipped_bit_stops_resume_naming_the_file(tmp_path) -> None:
    cfg = load_config(None, [*TINY, f"run_dir={tmp_path / 'run'}"])
    Trainer(cfg, progress=False).fit(until_step=2)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert json.loads(checksum_path(ckpt).read_text())["step"] == 2
    _flip(ckpt, len(ckpt.read_bytes()) // 2)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*SHA-256"):
        Trainer(cfg, resume=True, progress=False).fit()


def test_truncated_or_garbage_checkpoint_is_a_checkpoint_error(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_training_checkpoint(_state(3), path)
    assert load_training_checkpoint(path)["step"] == 3
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_training_checkpoint(path)
    # Without its checksum file (older vqtok) the damage is still reported as a CheckpointError, not a traceback.
    checksum_path(path).unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*corrupt or truncated"):
        load_training_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_training_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing"):
        load_training_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_without_checksum_file_still_loads(tmp_path) -> None:
    """Run directories written before checksums (plain torch.save, no checkpoint.json) resume."""
    path = tmp_path / "checkpoint.pt"
    torch.save(_state(5), path)
    assert load_training_checkpoint(path)["step"] == 5


def test_newer_checksum_format_names_the_version(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_training_checkpoint(_state(1), path)
    meta = json.loads(checksum_path(path).read_text())
    checksum_path(path).write_text(json.dumps({**meta, "format_version": 4, "vqtok_version": "5.0"}))
    with pytest.raises(CheckpointError, match=r"saved by vqtok 5\.0 with format_version 4"):
        load_training_checkpoint(path)


def test_kill_at_every_boundary_leaves_a_verifiable_checkpoint(tmp_path, kill_at_every_boundary) -> None:
    path = tmp_path / "checkpoint.pt"
    save_training_checkpoint(_state(1), path)
    seen = set()

    def check(k: int) -> None:
        seen.add(load_training_checkpoint(path)["step"])

    kills = kill_at_every_boundary(lambda: save_training_checkpoint(_state(2), path), check)
    assert kills >= 4 and seen == {1, 2}


def test_two_interrupted_saves_in_a_row_keep_the_old_checkpoint(tmp_path, monkeypatch) -> None:
    """The checksum file is written first; twice killed before the .pt lands, the old file must still verify."""
    import vqtok.train.checkpoint as module

    path = tmp_path / "checkpoint.pt"
    save_training_checkpoint(_state(1), path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "atomic_write_bytes", killed)
    for step in (2, 3):
        with pytest.raises(KeyboardInterrupt):
            save_training_checkpoint(_state(step), path)
        assert load_training_checkpoint(path)["step"] == 1
    monkeypatch.undo()
    _flip(path, len(path.read_bytes()) // 2)  # and a damaged old file is still refused
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_training_checkpoint(path)


def test_cli_resume_of_a_damaged_checkpoint_is_one_line(tmp_path, capsys) -> None:
    from vqtok.cli.__main__ import main

    config = tmp_path / "c.yaml"
    config.write_text("tokenizer: image2d\n")
    args = [str(config), *TINY, f"run_dir={tmp_path / 'run'}", "optim.lr=1e-3", "--no-progress"]
    assert main(["train", *args, "--until-step", "2"]) == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-50])
    assert main(["train", *args, "--resume"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert "Traceback" not in err and len(errors) == 1, err
    assert "checkpoint.pt" in errors[0] and "corrupt or truncated" in errors[0], err
    assert main(["train", *args[:-2], "steps=abc", "--no-progress"]) == 2
    assert "'steps' expects int, got 'abc'" in capsys.readouterr().err
