"""Learned chunk tokenizer vs training-free FAST (DCT + BPE) on BasicMotions (sktime), CPU, about a minute.

    python examples/action_tokenizers.py [--steps 600] [--chunk 10]

Both tokenize chunks of ``H`` steps x 6 channels (standardized with training statistics). The learned
tokenizer trains on the training split; FAST fits its BPE merges on the same chunks. Reported on the test
split: MSE per channel (in training standard deviations), tokens per chunk and bits per chunk.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from vqtok.data import create_dataset
from vqtok.metrics.timeseries import mse_per_channel
from vqtok.tokenizers import FASTTokenizer, create_tokenizer


def _stack(ds) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.stack([ds[i] for i in range(len(ds))])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=4, help="learned tokens per chunk")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h = args.chunk
    train = _stack(create_dataset("basic_motions", "train", window=h, stride=2))
    test = _stack(create_dataset("basic_motions", "test", window=h, stride=h))
    c = train.shape[1]
    rows = []

    levels = (8, 5, 5, 5)
    model = create_tokenizer(
        "action",
        channels=c,
        chunk_size=h,
        tokens_per_chunk=args.tokens,
        width=128,
        quantizer="fsq",
        quantizer_kwargs={"levels": levels},
    )
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        batch = train[torch.randint(0, train.shape[0], (256,), generator=g)]
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        recon = model.decode(model.encode(test))
    per = mse_per_channel(recon, test)
    rows.append(
        {
            "tokenizer": f"learned FSQ{levels}",
            "mse": float(per.mean()),
            "mse_per_channel": [round(float(v), 4) for v in per],
            "tokens_per_chunk": float(args.tokens),
            "bits_per_chunk": args.tokens * math.log2(math.prod(levels)),
            "train_seconds": time.perf_counter() - t0,
        }
    )

    for scale in (2.0, 5.0, 10.0):
        fast = FASTTokenizer(c, h, scale=scale, vocab_size=1024).fit(train)
        tokens = fast.encode(test)
        recon = fast.decode(tokens)
        per = mse_per_channel(recon, test)
        mean_tokens = float(np.mean([len(t) for t in tokens]))
        rows.append(
            {
                "tokenizer": f"FAST scale={scale:g}",
                "mse": float(per.mean()),
                "mse_per_channel": [round(float(v), 4) for v in per],
                "tokens_per_chunk": mean_tokens,
                "bits_per_chunk": mean_tokens * math.log2(fast.vocab_len),
            }
        )
    print(f"BasicMotions test: {test.shape[0]} chunks of {h} steps x {c} channels (standardized)")
    print(f"{'tokenizer':<26}{'MSE':>8}{'tokens/chunk':>14}{'bits/chunk':>12}")
    for r in rows:
        print(f"{r['tokenizer']:<26}{r['mse']:>8.4f}{r['tokens_per_chunk']:>14.2f}{r['bits_per_chunk']:>12.1f}")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
