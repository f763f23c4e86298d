"""vq with ``kmeans_init=False``: vqtok vs vector-quantize-pytorch on the digits autoencoder of quality.py.

Both libraries without dead-code restarts (the peer's default), so the codebook initialisation alone
decides usage: ``PYTHONPATH=$PWD python benchmarks/vq_no_kmeans.py --steps 400 --seeds 0 1``.
"""

from __future__ import annotations

import argparse

import torch

import vqtok
from benchmarks.quality import _run, _vqp_vq
from vqtok.testing.autoencoder import load_digit_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import vector_quantize_pytorch as vqp

    run_args = argparse.Namespace(steps=args.steps, batch_size=64, lr=2e-3, hidden=16)
    data = load_digit_images()
    for seed in args.seeds:
        ours = _run(
            lambda: vqtok.create_quantizer("vq", dim=16, codebook_size=512, kmeans_init=False, dead_code_threshold=0),
            16,
            512,
            None,
            data,
            run_args,
            seed,
        )
        peer = _run(
            lambda: vqp.VectorQuantize(dim=16, codebook_size=512, kmeans_init=False),
            16,
            512,
            _vqp_vq,
            data,
            run_args,
            seed,
        )
        print(
            f"seed {seed} steps {args.steps}: vqtok test MSE {ours['test_mse']:.5f} usage {ours['usage']:.1%} | "
            f"vqp test MSE {peer['test_mse']:.5f} usage {peer['usage']:.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
