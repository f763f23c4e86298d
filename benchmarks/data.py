"""Does loading keep up with training? Own-data loader throughput vs the demo model's CPU train step.

Writes (once, cached) a folder of ~10,000 JPEG crops cut at random places and sizes from the photos bundled
with scikit-image, scikit-learn and matplotlib, then measures on ``configs/fashion_mnist_vq.yaml`` trained on
that folder (``data.path``; grey 28x28 random resized crops):

* loader samples/s with 0, 1 and 2 DataLoader workers (decode + crop, the trainer's own ``TrainData``);
* the train step's samples/s (forward + backward + AdamW at batch 128, data already in memory).

The loader must be at least 3x faster than the step with 2 workers, or training waits for data.

    python benchmarks/data.py                      # writes benchmarks/results/data.json
    python benchmarks/data.py --crops 2000 --batches 10 --steps 5 --out /tmp/data.json   # quick check
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from vqtok._dist import DistInfo
from vqtok._io import write_json
from vqtok.train import Trainer, load_config
from vqtok.train.data import TrainData

ROOT = Path(__file__).resolve().parents[1]


def photos() -> list[np.ndarray]:
    """The bundled real photos (RGB uint8)."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out += list(load_sample_images().images)
    hopper = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    out.append(np.asarray(Image.open(hopper).convert("RGB")))
    return out


def write_crops(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` JPEG crops (sides 48-160 px) under ``folder`` in subfolders of 1,000, unless already there."""
    from PIL import Image

    if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) >= n:
        return
    rng = np.random.default_rng(seed)
    sources = photos()
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = int(rng.integers(48, 161)), int(rng.integers(48, 161))
        top, left = int(rng.integers(0, img.shape[0] - h)), int(rng.integers(0, img.shape[1] - w))
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[top : top + h, left : left + w]).save(sub / f"crop_{i:05d}.jpg", quality=90)


def loader_rate(cfg, workers: int, batches: int) -> float:
    cfg.data.num_workers = workers
    it = iter(TrainData(cfg, DistInfo(), 0))
    next(it)  # worker start-up is not part of the steady state
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.batch_size / (time.perf_counter() - t0)


def step_rate(cfg, steps: int) -> float:
    trainer = Trainer(cfg, force=True, progress=False)
    trainer._build(DistInfo())
    batch = torch.rand(cfg.batch_size, 1, 28, 28)
    trainer._train_step(batch, None, None)  # k-means init and warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer._train_step(batch, None, None)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/vqtok_bench_crops"))
    parser.add_argument("--crops", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=20, help="loader batches of 128 timed per setting")
    parser.add_argument("--steps", type=int, default=10, help="train steps timed")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    write_crops(args.folder, args.crops)
    overrides = [f"data.path={args.folder}", "run_dir=/tmp/vqtok_bench_data_run"]
    cfg = load_config(ROOT / "configs" / "fashion_mnist_vq.yaml", overrides)
    load = os.getloadavg()
    step = step_rate(cfg, args.steps)
    rows = []
    print(f"{len(list(args.folder.rglob('*.jpg')))} JPEG crops; train step {step:.0f} samples/s (1 thread)")
    print(f"{'workers':>7} {'loader samples/s':>17} {'loader/step':>11}")
    for w in args.workers:
        rate = loader_rate(cfg, w, args.batches)
        rows.append({"workers": w, "loader_samples_per_s": rate, "ratio_to_step": rate / step})
        print(f"{w:>7} {rate:>17.0f} {rate / step:>11.1f}")
    result = {
        "crops": args.crops,
        "batch_size": cfg.batch_size,
        "train_step_samples_per_s": step,
        "loader": rows,
        "loadavg_before": load,
        "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine; train step and loader each timed alone with 1 intra-op thread",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
