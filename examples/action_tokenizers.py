"""Rate-distortion of the learned ``action`` tokenizer vs training-free FAST (DCT + BPE), CPU, a few minutes.

    python examples/action_tokenizers.py [--steps 1000] [--chunk 10] [--out benchmarks/results/actions.json]

Both tokenize chunks of ``H`` steps x C channels of UEA BasicMotions (6 channels) and UCR GunPoint
(1 channel), both from sktime and standardized with training statistics, so MSE is in units of the
training variance. The learned tokenizers train on the training split (every window, stride 1); FAST fits
its BPE merges on the same chunks. Reported on the test split (non-overlapping chunks):

* MSE, overall and per channel;
* tokens per chunk: index entries (tokens x residual levels) for the learned ones, the mean BPE sequence
  length for FAST;
* bits per chunk: tokens x log2(vocabulary) for both (FAST: mean length x log2(BPE vocabulary)).

One residual-VQ model trained with quantizer dropout gives a whole curve: ``encode(x, num_levels=n)``
keeps its first ``n`` levels. Each learned row also carries FAST's MSE at the same bits per chunk,
interpolated (log-MSE, linear in bits) between the two nearest FAST scales.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqtok.data import create_dataset
from vqtok.metrics.timeseries import mse_per_channel
from vqtok.tokenizers import FASTTokenizer, create_tokenizer

# Conv layers + 2-layer MLP were the old default; on 40 training series that path alone overfits and
# loses to a linear coder, so the sweep uses one hidden layer plus the linear path (see ActionConfig).
OLD_ARCH = {"conv_layers": 2, "mlp_layers": 2, "width": 128, "linear_path": False}
ARCH = {"conv_layers": 0, "mlp_layers": 1, "width": 256, "linear_path": True}
# dead_code_threshold counts uses per batch: the default (1) with 256 codes and 256 chunks per batch keeps
# restarting half the codebook, which stalls residual levels.
RVQ = {"codebook_size": 256, "dead_code_threshold": 0.0, "quantizer_dropout": 0.5}

DATASETS: dict[str, dict[str, Any]] = {
    "basic_motions": {
        "fast_scales": (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
        "learned": [
            ("FSQ (8,5,5,5) x16, old conv+MLP", OLD_ARCH, 16, "fsq", {"levels": (8, 5, 5, 5)}, None),
            ("FSQ (8,5,5,5) x4", ARCH, 4, "fsq", {"levels": (8, 5, 5, 5)}, None),
            ("FSQ (8,5,5,5) x16", ARCH, 16, "fsq", {"levels": (8, 5, 5, 5)}, None),
            ("VQ 1024 x4", ARCH, 4, "vq", {"dim": 16, "codebook_size": 1024, "dead_code_threshold": 0.0}, None),
            ("RVQ 256, 20 levels", ARCH, 1, "rvq", {"dim": 64, "num_levels": 20, **RVQ}, (1, 2, 4, 8, 12, 16, 20)),
        ],
    },
    "gunpoint": {
        "fast_scales": (0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
        "learned": [
            ("FSQ (8,5,5,5) x1", ARCH, 1, "fsq", {"levels": (8, 5, 5, 5)}, None),
            ("FSQ (8,5,5,5) x2", ARCH, 2, "fsq", {"levels": (8, 5, 5, 5)}, None),
            ("RVQ 256, 8 levels", ARCH, 1, "rvq", {"dim": 16, "num_levels": 8, **RVQ}, (1, 2, 3, 4, 6, 8)),
        ],
    },
}


def _chunks(name: str, split: str, h: int) -> torch.Tensor:
    # Every window for training (more chunks from few series), disjoint chunks for testing.
    ds = create_dataset(name, split, window=h, stride=1 if split == "train" else h)
    return torch.stack([ds[i] for i in range(len(ds))])


def _mix(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Replaces half the chunks by ``sqrt(a) x_i + sqrt(1 - a) x_j``, which keeps the variance.

    The training sets hold 40-50 series; mixing widens them and cuts the learned codebooks' overfitting.
    """
    b = batch.shape[0]
    a = torch.rand(b, 1, 1, generator=g)
    other = batch[torch.randperm(b, generator=g)]
    mixed = a.sqrt() * batch + (1 - a).sqrt() * other
    return torch.where(torch.rand(b, 1, 1, generator=g) < 0.5, batch, mixed)


def _train(model: torch.nn.Module, train: torch.Tensor, steps: int, lr: float, batch: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    )
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        x = _mix(train[torch.randint(0, train.shape[0], (batch,), generator=g)], g)
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return time.perf_counter() - t0


def _row(dataset: str, name: str, recon: torch.Tensor, test: torch.Tensor, **extra: Any) -> dict[str, Any]:
    per = mse_per_channel(recon, test)
    return {
        "dataset": dataset,
        "tokenizer": name,
        "mse": round(float(per.mean()), 5),
        "mse_per_channel": [round(float(v), 5) for v in per],
        **extra,
    }


def _fast_rows(dataset: str, train: torch.Tensor, test: torch.Tensor, scales: tuple[float, ...], vocab: int) -> list:
    rows = []
    c, h = train.shape[1:]
    for scale in scales:
        fast = FASTTokenizer(c, h, scale=scale, vocab_size=vocab).fit(train)
        tokens = fast.encode_lists(test)
        mean_tokens = float(np.mean([len(t) for t in tokens]))
        rows.append(
            _row(
                dataset,
                f"FAST scale {scale:g}",
                fast.decode(tokens),
                test,
                family="fast",
                tokens_per_chunk=round(mean_tokens, 2),
                vocab=fast.vocab_len,
                bits_per_chunk=round(mean_tokens * math.log2(fast.vocab_len), 1),
            )
        )
    return rows


def _learned_rows(dataset: str, train: torch.Tensor, test: torch.Tensor, spec: tuple, args: argparse.Namespace) -> list:
    name, arch, n_tokens, quantizer, qkwargs, prefixes = spec
    torch.manual_seed(0)
    model = create_tokenizer(
        "action",
        channels=train.shape[1],
        chunk_size=train.shape[2],
        tokens_per_chunk=n_tokens,
        quantizer=quantizer,
        quantizer_kwargs=qkwargs,
        **arch,
    )
    seconds = _train(model, train, args.steps, args.lr, args.batch)
    q = model.quantizer
    rows = []
    for levels in prefixes or (None,):
        options = {} if levels is None else {"num_levels": levels}
        with torch.no_grad():
            recon = model.decode(model.encode(test, **options))
            # The training error next to the test error shows how much of the gap is overfitting.
            seen = train[:: max(1, train.shape[0] // 2000)]
            train_mse = float((model.decode(model.encode(seen, **options)) - seen).pow(2).mean())
        entries = n_tokens * (q.num_codebooks if levels is None else levels)
        rows.append(
            _row(
                dataset,
                name if levels is None else f"{name}, first {levels}",
                recon,
                test,
                family="learned",
                quantizer=quantizer,
                config={"tokens_per_chunk": n_tokens, **arch, "quantizer_kwargs": qkwargs},
                tokens_per_chunk=entries,
                vocab=q.codebook_size,
                bits_per_chunk=round(entries * math.log2(q.codebook_size), 1),
                train_mse=round(train_mse, 5),
                train_seconds=round(seconds, 1),
            )
        )
    return rows


def _fast_mse_at(bits: float, fast_rows: list[dict[str, Any]]) -> float | None:
    """FAST's MSE at ``bits`` per chunk: log-MSE interpolated linearly in bits; ``None`` outside its range."""
    pts = sorted((r["bits_per_chunk"], math.log(r["mse"])) for r in fast_rows)
    for (b0, m0), (b1, m1) in zip(pts, pts[1:], strict=False):
        if b0 <= bits <= b1:
            return round(math.exp(m0 + (m1 - m0) * (bits - b0) / max(b1 - b0, 1e-9)), 5)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=10, help="steps H per chunk")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--fast-vocab", type=int, default=1024)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        train, test = _chunks(dataset, "train", args.chunk), _chunks(dataset, "test", args.chunk)
        spec = DATASETS[dataset]
        fast = _fast_rows(dataset, train, test, spec["fast_scales"], args.fast_vocab)
        learned = [r for s in spec["learned"] for r in _learned_rows(dataset, train, test, s, args)]
        for r in learned:
            r["fast_mse_at_same_bits"] = _fast_mse_at(r["bits_per_chunk"], fast)
        rows += fast + learned
        c, h = test.shape[1:]
        print(f"\n{dataset} test: {test.shape[0]} chunks of {h} steps x {c} channels (standardized)")
        print(f"{'tokenizer':<44}{'MSE':>9}{'tokens':>8}{'bits':>8}{'FAST@bits':>11}")
        for r in sorted(fast + learned, key=lambda r: r["bits_per_chunk"]):
            ref = r.get("fast_mse_at_same_bits")
            ref_s = "" if ref is None else f"{ref:.4f}"
            print(
                f"{r['tokenizer']:<44}{r['mse']:>9.4f}{r['tokens_per_chunk']:>8.2f}{r['bits_per_chunk']:>8.1f}{ref_s:>11}"
            )
    meta = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "chunk_steps": args.chunk,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_average_1min_at_start": load_before,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "mse_units": "training variance (per-channel standardized data)",
    }
    print(f"\ntotal {meta['seconds']} s (1-min load average at start {load_before})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
