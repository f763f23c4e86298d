"""``vqtok train ... data.path=...``: folders of photos and recordings, bad data, exact resume, torchrun on tars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from _files import clips, id_shards, photos, recordings  # noqa: E402
from test_trainer import run_process_tree  # noqa: E402

from vqtok.cli.__main__ import main  # noqa: E402
from vqtok.data.own import OwnDataset, open_records  # noqa: E402
from vqtok.train import Trainer, load_config  # noqa: E402
from vqtok.train.data import build_decoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "tokenizer=image2d",
    "model.image_size=[8, 8]",
    "model.downsample=2",
    "model.channels=[8, 16]",
    "model.quantizer=vq",
    "model.quantizer_kwargs={dim: 8, codebook_size: 32}",
    "optim.warmup_steps=2",
]
# A tiny causal video tokenizer: 5-frame 16x16 grey clips (1 + 4*1 frames -> 2 latent frames of 2x2).
VIDEO_TINY = [
    "tokenizer=video",
    "model.in_channels=1",
    "model.frames=5",
    "model.image_size=[16, 16]",
    "model.temporal_downsample=4",
    "model.downsample=8",
    "model.patch_size=2",
    "model.channels=[8, 8, 8]",
    "model.num_res_blocks=0",
    "model.norm=none",
    "model.quantizer=fsq",
    "model.quantizer_kwargs={levels: [5, 5, 5]}",
    "optim.warmup_steps=2",
]


def test_cli_trains_on_a_folder_of_rgb_photos(tmp_path) -> None:
    photos(tmp_path / "photos", 16)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            str(ROOT / "configs" / "fashion_mnist_vq.yaml"),
            f"data.path={tmp_path / 'photos'}",
            "model.in_channels=3",
            "model.image_size=[32,32]",
            "steps=20",
            "batch_size=8",
            "log_every=10",
            f"run_dir={run}",
            "--no-progress",
        ]
    )
    assert code == 0 and (run / "model" / "model.safetensors").is_file()


def test_cli_trains_on_a_folder_of_44k_stereo_wav_and_flac(tmp_path) -> None:
    recordings(tmp_path / "rec", 6, rate=44100, channels=2, seconds=0.7)
    run = tmp_path / "run"
    args = [f"data.path={tmp_path / 'rec'}", "steps=20", "batch_size=4", "log_every=10", f"run_dir={run}"]
    assert main(["train", str(ROOT / "configs" / "audio_asterisk.yaml"), *args, "--no-progress"]) == 0
    assert (run / "model" / "model.safetensors").is_file()


def test_too_many_unreadable_files_stop_the_run_naming_them(tmp_path, capsys) -> None:
    photos(tmp_path / "p", 10)
    (tmp_path / "p" / "zero.png").write_bytes(b"")
    (tmp_path / "p" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    cfg = load_config(None, [*TINY, "model.in_channels=3", f"data.path={tmp_path / 'p'}", f"run_dir={tmp_path / 'r'}"])
    cfg.steps, cfg.batch_size = 6, 12
    with pytest.raises(ValueError, match=r"2 of 12 examples are unreadable.*(zero.png|broken.jpg)"):
        Trainer(cfg, progress=False).fit()
    cfg.data.max_bad_fraction, cfg.run_dir = 0.2, str(tmp_path / "r2")
    assert Trainer(cfg, progress=False).fit().step == 6  # within the limit: skipped with a warning


def _kill_and_resume(tmp_path, kill_training, extra: list[str], base: list[str] = TINY) -> None:
    """12 steps uninterrupted == killed during step 7 (checkpoint at 4), then resumed: bit-identical."""
    opts = [*base, *extra, "steps=12", "log_every=2", "ckpt_every=4"]
    full = Trainer(load_config(None, [*opts, f"run_dir={tmp_path / 'full'}"]), progress=False)
    full.fit()
    cfg = load_config(None, [*opts, f"run_dir={tmp_path / 'killed'}"])
    kill_training(Trainer(cfg, progress=False), 7)
    saved = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 4 and saved["data"][0]["kind"] in ("map", "shards")
    resumed = Trainer(cfg, resume=True, progress=False)
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    logs = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("full", "killed")]
    assert [line.split('"time"')[0] for line in logs[0].splitlines()] == [
        line.split('"time"')[0] for line in logs[1].splitlines()
    ]


def test_folder_run_killed_mid_epoch_resumes_bit_identically(tmp_path, kill_training) -> None:
    photos(tmp_path / "p", 20)  # 20 photos, batch 8: an epoch is 2 steps, the kill falls inside epoch 3
    _kill_and_resume(tmp_path, kill_training, ["model.in_channels=3", f"data.path={tmp_path / 'p'}", "batch_size=8"])


def test_cli_trains_the_video_config_on_a_folder_of_mp4_and_gif_clips(tmp_path) -> None:
    """The docs' command ``vqtok train configs/video_mfmnist.yaml data.path=clips/``, shrunk: clips of 12-15
    frames and two sizes (a random 5-frame window, one random crop per clip) plus an animated GIF."""
    from _files import gif_bytes

    clips(tmp_path / "clips", 4)
    frames = np.random.default_rng(0).integers(0, 256, (7, 20, 20, 3), dtype=np.uint8)
    (tmp_path / "clips" / "anim.gif").write_bytes(gif_bytes(frames))
    run = tmp_path / "run"
    tiny = [o for o in VIDEO_TINY if not o.startswith(("tokenizer=", "model.quantizer"))]
    args = [f"data.path={tmp_path / 'clips'}", "steps=3", "batch_size=2", "log_every=1", f"run_dir={run}"]
    assert main(["train", str(ROOT / "configs" / "video_mfmnist.yaml"), *tiny, *args, "--no-progress"]) == 0
    assert (run / "model" / "model.safetensors").is_file()
    cfg = load_config(str(ROOT / "configs" / "video_mfmnist.yaml"), [*tiny, *args])
    data = OwnDataset(open_records(cfg.data.path, "video"), build_decoder(cfg))
    assert len(data) == 5 and all(tuple(data[i].shape) == (1, 5, 16, 16) for i in range(5))  # 4 MP4s + the GIF


def test_video_folder_run_killed_mid_epoch_resumes_bit_identically(tmp_path, kill_training) -> None:
    clips(tmp_path / "c", 5, frames=6)  # 5 clips, batch 2: the step-4 checkpoint (8 clips drawn) is mid-epoch 2
    _kill_and_resume(tmp_path, kill_training, [f"data.path={tmp_path / 'c'}", "batch_size=2"], base=VIDEO_TINY)


def test_shard_run_with_two_workers_killed_mid_epoch_resumes_bit_identically(tmp_path, kill_training) -> None:
    id_shards(tmp_path / "s", 4, 10)  # 40 samples, batch 6: the step-4 checkpoint is mid-epoch
    extra = ["model.in_channels=1", f"data.path={tmp_path / 's'}", "batch_size=6", "data.num_workers=2"]
    _kill_and_resume(tmp_path, kill_training, [*extra, "data.shuffle_buffer=5"])


def _torchrun_train(tmp_path: Path, overrides: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m vqtok.cli train`` with ``overrides`` (an empty config file in ``tmp_path``)."""
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "vqtok.cli", "train", str(config), *overrides, "--no-progress"]
    try:
        return run_process_tree(cmd, env, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun hung for {err.timeout} s\n{(err.stderr or '')[-4000:]}")


@pytest.mark.slow
def test_torchrun_two_ranks_two_workers_on_tar_shards(tmp_path) -> None:
    """The docs' third command: ``torchrun --nproc_per_node 2 -m vqtok.cli train ... data.path=shards-{..}.tar``."""
    id_shards(tmp_path / "s", 4, 8)
    overrides = [*TINY, "model.in_channels=1", f"data.path={tmp_path / 's' / 'shard-{000..003}.tar'}"]
    overrides += ["data.num_workers=2", "steps=8", "batch_size=8", "log_every=4", f"run_dir={tmp_path / 'run'}"]
    proc = _torchrun_train(tmp_path, overrides, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    slots = sorted(int(k) for rank in state["data"] for k in rank["positions"])
    assert slots == [0, 1, 2, 3]  # 2 ranks x 2 workers, each its own reader


@pytest.mark.slow
def test_torchrun_bad_data_stops_every_rank_with_the_error(tmp_path) -> None:
    """Over the limit under DDP: all ranks stop at the same log step (no rank left waiting in a collective)."""
    photos(tmp_path / "p", 12)
    for i in range(3):
        (tmp_path / "p" / f"broken_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    overrides = [*TINY, "model.in_channels=3", f"data.path={tmp_path / 'p'}", "steps=6", "batch_size=8"]
    overrides += ["log_every=2", f"run_dir={tmp_path / 'run'}"]
    proc = _torchrun_train(tmp_path, overrides, timeout=180)
    assert proc.returncode != 0
    assert "examples are unreadable" in proc.stderr and "broken_" in proc.stderr
    assert not (tmp_path / "run" / "model").exists()
