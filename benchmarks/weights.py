"""vqtok.weights (vector PTQ) vs round-to-nearest int4/int3 (group 128) on the real all-MiniLM-L6-v2.

Every ``nn.Linear`` of the transformer is quantized; embeddings, LayerNorms and biases stay fp32
(``+finetune`` rows adjust LayerNorms and biases, still fp32).
Bits per weight count everything stored for the linear weights: indices, codebooks (fp16), row
scales, outliers; RTN counts its fp16 scale and zero per group of 128 (``bits + 0.25``).
Calibration: 512 real sentences (importance statistics and, for ``+finetune``, 200 Adam steps of
end-to-end fine-tuning of codebooks/scales/biases/LayerNorms towards the fp32 model's outputs);
evaluation: 500 other (held-out) real sentences. We report the mean cosine similarity between
original and quantized sentence embeddings, and the Spearman correlation between the original and
quantized pairwise cosine similarities over all sentence pairs.

Run: .venv/bin/python benchmarks/weights.py [--out benchmarks/results/weights.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from vqtok.data.text import load_minilm, load_sentences
from vqtok.weights import quantize_model, quantize_model_rtn


def embed(model, sentences: list[str]) -> np.ndarray:
    with torch.no_grad():
        return model.encode(sentences, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)


def compare(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    cos = float((ref * out).sum(1).mean())  # both unit norm
    iu = np.triu_indices(len(ref), 1)
    rho = spearmanr((ref @ ref.T)[iu], (out @ out.T)[iu]).statistic
    return cos, float(rho)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calib", type=int, default=512)
    p.add_argument("--eval", type=int, default=500)
    p.add_argument("--vector-len", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="run only methods whose name contains one of these")
    p.add_argument("--out", default="benchmarks/results/weights.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    pool, sources = load_sentences(31000, seed=0)
    calib = pool[: args.calib]
    held_out = pool[-args.eval :]
    base = load_minilm("cpu").eval()
    ref = embed(base, held_out)
    features = [base.tokenize(calib[i : i + 32]) for i in range(0, len(calib), 32)]

    configs = [
        ("rtn int4 g128", {"rtn": 4}),
        ("rtn int3 g128", {"rtn": 3}),
        ("vqtok 4-bit", {"bits": 4}),
        ("vqtok 3-bit", {"bits": 3}),
        ("vqtok 2-bit", {"bits": 2}),
        ("vqtok 2-bit +0.5% outliers", {"bits": 2, "outlier_frac": 0.005}),
        ("vqtok 2-bit +finetune", {"bits": 2, "finetune_steps": 200}),
        ("vqtok 2-bit +0.5% outliers +finetune", {"bits": 2, "outlier_frac": 0.005, "finetune_steps": 200}),
    ]
    if args.only:
        configs = [c for c in configs if any(o in c[0] for o in args.only)]
    rows = []
    print(f"data: {sources}; calibration {len(calib)} sentences, held-out {len(held_out)}")
    header = f"{'method':28} {'bits/w':>7} {'cosine':>8} {'spearman':>9} {'quant s':>8}"
    print(header)
    print("-" * len(header))
    for name, cfg in configs:
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        if "rtn" in cfg:
            bpw = quantize_model_rtn(model, cfg["rtn"], group_size=128)
        else:
            report = quantize_model(
                model,
                [(f,) for f in features],
                bits=cfg["bits"],
                vector_len=args.vector_len,
                outlier_frac=cfg.get("outlier_frac", 0.0),
                finetune_steps=cfg.get("finetune_steps", 0),
                progress=False,
            )
            bpw = report.bits_per_weight
        secs = time.perf_counter() - t0
        cos, rho = compare(ref, embed(model, held_out))
        rows.append({"method": name, "bits_per_weight": bpw, "cosine": cos, "spearman": rho, "quantize_s": secs})
        print(f"{name:28} {bpw:7.3f} {cos:8.4f} {rho:9.4f} {secs:8.1f}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        meta = {
            "load_avg_1_5_15": os.getloadavg(),
            "sources": sources,
            "calib": len(calib),
            "eval": len(held_out),
            "vector_len": args.vector_len,
        }
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
