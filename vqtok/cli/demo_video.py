"""``vqtok demo video``: train the causal video tokenizer on moving Fashion-MNIST on the CPU and score it.

Uses ``configs/video_mfmnist.yaml``. Reports, on the test clips: per-frame PSNR/SSIM, temporal consistency
(frame-difference error), codebook usage, tokens and bits per clip; and the same model in image mode on single
frames (one frame of each test clip coded as an image). Writes ``eval/demo.json`` and ``eval/clips.gif``
(originals above, reconstructions below). A finished run is reused unless ``--force``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from ._clock import TIMING_ROWS, RunClock
from ._demo_train import train_or_reuse

__all__ = ["default_video_config_path", "run_video", "evaluate_video"]


def default_video_config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "video_mfmnist.yaml"


_TABLE = (
    ("psnr", "test per-frame PSNR (dB)"),
    ("ssim", "test per-frame SSIM"),
    ("temporal_error", "frame-difference error"),
    ("usage", "codebook usage"),
    ("perplexity", "code perplexity"),
    ("tokens_per_clip", "tokens / clip"),
    ("bits_per_clip", "bits / clip"),
    ("image_psnr", "image mode PSNR (dB)"),
    ("image_ssim", "image mode SSIM"),
    ("image_tokens", "image mode tokens / frame"),
    ("image_bits", "image mode bits / frame"),
    ("clips", "test clips"),
    *TIMING_ROWS,
)


def evaluate_video(model, dataset, max_clips: int = 128, batch_size: int = 8, seed: int = 0):  # type: ignore[no-untyped-def]
    """Scores a video tokenizer on ``dataset`` clips ``(1, T, H, W)``; returns ``(metrics, originals, recons)``."""
    import torch

    from ..metrics import code_counts
    from ..metrics.image import image_metrics
    from ..metrics.video import video_metrics

    model.eval()
    n = min(len(dataset), max_clips)
    sums: dict[str, float] = {}
    counts = torch.zeros(model.codebook_size, dtype=torch.float64)
    tokens = image_tokens = 0
    g = torch.Generator().manual_seed(seed)
    keep = None
    with torch.no_grad():
        for start in range(0, n, batch_size):
            clips = torch.stack([dataset[i] for i in range(start, min(n, start + batch_size))])
            indices = model.encode(clips)
            recon = model.decode(indices)[:, :, : clips.shape[2]]
            counts += code_counts(indices, model.codebook_size)
            tokens = math.prod(indices.shape[1:4])
            per = video_metrics(recon, clips)
            # Image mode: one random frame of each clip, coded on its own as an image.
            t = torch.randint(clips.shape[2], (clips.shape[0],), generator=g)
            frames = clips[torch.arange(clips.shape[0]), :, t]
            frame_indices = model.encode(frames)
            image_tokens = math.prod(frame_indices.shape[1:3])
            per.update({f"image_{k}": v for k, v in image_metrics(model.decode(frame_indices), frames).items()})
            for k, v in per.items():
                sums[k] = sums.get(k, 0.0) + float(v.double().sum())
            if keep is None:
                keep = (clips[:4], recon[:4].clamp(0, 1))
    metrics = {k: v / n for k, v in sums.items()}
    p = counts[counts > 0] / counts.sum()
    bits_per_token = model.bits_per_token
    metrics.update(
        clips=float(n),
        usage=float((counts > 0).sum()) / model.codebook_size,
        perplexity=float(2 ** (-(p * p.log2()).sum())),
        tokens_per_clip=float(tokens),
        bits_per_clip=float(tokens * bits_per_token),
        image_tokens=float(image_tokens),
        image_bits=float(image_tokens * bits_per_token),
        bits_per_token=float(bits_per_token),
    )
    return metrics, keep[0], keep[1]


def run_video(args: argparse.Namespace, overrides: list[str]) -> int:
    import torch

    from ..data import create_dataset
    from ..metrics.report import format_metrics_table
    from ..modalities.video import save_clip_gif
    from ..tokenizers import Tokenizer
    from ._args import load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = RunClock()
    path = Path(args.config) if args.config else default_video_config_path()
    cfg = load_config(path, ["device=cpu", *overrides])
    test = create_dataset(cfg.data.name, "test", **cfg.data.kwargs)
    run_dir = Path(cfg.run_dir)
    model_dir, train_seconds = train_or_reuse(cfg, args, "clips")
    t0 = time.perf_counter()
    model = Tokenizer.from_pretrained(model_dir)
    metrics, originals, recons = evaluate_video(model, test, max_clips=int(os.environ.get("VQTOK_DEMO_CLIPS", 128)))
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    gif = save_clip_gif(originals, recons, run_dir / "eval" / "clips.gif")
    if train_seconds is not None:
        metrics["train_seconds"] = train_seconds
    metrics["eval_seconds"] = time.perf_counter() - t0
    clock.stamp(metrics)
    from .._io import write_json

    write_json(run_dir / "eval" / "demo.json", metrics)
    print()
    print(format_metrics_table({label: metrics[key] for key, label in _TABLE if key in metrics}))
    print(f"\nmetrics: {run_dir / 'eval' / 'demo.json'}\nmodel:   {model_dir}\nclips:   {gif}")
    return 0
