"""Token export throughput on the CPU: items/s and tokens/s of :func:`vqtok.data.export.export_tokens`.

Exports Fashion-MNIST test images (28x28; falls back to the synthetic data set when the Debian package is
missing) with the demo-sized image2d tokenizer (downsample 4 -> 49 tokens per image), freshly initialised:
throughput does not depend on the weights. Each configuration runs on a fresh output directory, so the
times include loading, tokenization, Parquet writing, checksums and fsyncs, but not the Python start-up.
A second row re-runs over the finished export to time a resume that finds every shard complete.

Run::

    .venv/bin/python benchmarks/export.py                     # writes benchmarks/results/export.json
    .venv/bin/python benchmarks/export.py --items 10000 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import vqtok
from vqtok.data.export import DatasetSource, ExportSource, export_tokens
from vqtok.tokenizers import create_tokenizer

RESULTS = Path(__file__).parent / "results" / "export.json"


class _Head(ExportSource):
    """The first ``n`` items of another source."""

    def __init__(self, inner: ExportSource, n: int) -> None:
        self.inner, self.n = inner, min(n, len(inner))
        self.description = {**inner.description, "head": self.n}

    def __len__(self) -> int:
        return self.n

    def key(self, index: int) -> str:
        return self.inner.key(index)

    def load(self, index: int) -> torch.Tensor:
        return self.inner.load(index)

    def load_many(self, indices: list[int]) -> list[torch.Tensor]:
        return self.inner.load_many(indices)


def _source(items: int) -> tuple[ExportSource, str]:
    try:
        return _Head(DatasetSource("fashion_mnist", "test"), items), "fashion_mnist/test"
    except FileNotFoundError:
        return _Head(DatasetSource("synthetic", "test", num_examples=items, image_size=28), items), "synthetic 28x28"


def run(items: int, threads: int, batch_size: int, shard_size: int, quantizer: str) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kwargs = {"levels": (8, 5, 5, 5)} if quantizer == "fsq" else {"dim": 64, "codebook_size": 1024}
    tok = create_tokenizer(
        "image2d",
        in_channels=1,
        image_size=(28, 28),
        downsample=4,
        channels=(32, 64, 128),
        quantizer=quantizer,
        quantizer_kwargs=kwargs,
    )
    source, name = _source(items)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: imports (pyarrow, tqdm) and first-call allocations are not throughput.
        export_tokens(_Head(source, batch_size), tok, Path(tmp) / "warm", batch_size=batch_size, progress=False)
        for phase in ("fresh", "resume (all shards done)"):
            t0 = time.perf_counter()
            res = export_tokens(source, tok, Path(tmp) / "out", shard_size=shard_size, batch_size=batch_size,
                                progress=False)  # fmt: skip
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "data": name,
                    "quantizer": quantizer,
                    "phase": phase,
                    "threads": threads,
                    "batch_size": batch_size,
                    "items": res.manifest["num_items"] if res.manifest else len(source),
                    "shards": res.num_shards,
                    "seconds": round(seconds, 3),
                    "items_per_s": round(res.items / seconds, 1),
                    "tokens_per_s": round(res.tokens / seconds, 1),
                    "bytes": sum(s["bytes"] for s in res.manifest["shards"]) if res.manifest else None,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4096)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--quantizers", nargs="+", default=["fsq", "vq"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for quantizer in args.quantizers:
        for threads in args.threads:
            for row in run(args.items, threads, args.batch_size, args.shard_size, quantizer):
                rows.append(row)
                print(
                    f"{row['quantizer']:4s} {row['phase']:26s} threads {threads}: {row['items']} items in "
                    f"{row['seconds']:.2f} s -> {row['items_per_s']:.0f} items/s, {row['tokens_per_s']:.0f} tokens/s"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"vqtok": vqtok.__version__, "torch": torch.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count()}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
