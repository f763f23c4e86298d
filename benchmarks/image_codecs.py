"""Rate-distortion rows of vqtok image tokenizers next to JPEG and WebP (Pillow) at the same bits per image.

For every tokenizer checkpoint given, its bits per image (tokens x bits per token, a fixed-length code with no
header) become the budget at which JPEG and WebP are coded: the codec quality is bisected per image to the highest
setting that fits, counting the whole file ("headers counted") and, separately, the entropy-coded payload only
("headers excluded"); see vqtok.metrics.codecs. Without checkpoints, ``--bits`` gives the budgets. Reports PSNR and
SSIM (reconstructions clamped to [0, 1]), LPIPS when ``--lpips-backbone`` names local VGG-16 weights, the share of
images that fit the budget and the mean bits actually used.

    python benchmarks/image_codecs.py --model runs/photos64/model            # photos test crops
    python benchmarks/image_codecs.py --bits 512 1024 2048 --crops 128       # codecs only
    python benchmarks/image_codecs.py --model M --data image_folder --data-kwargs '{"root": "/data/imagenet",
        "image_size": 256}' --max-images 500 --lpips-backbone /weights/vgg16-397923af.pth
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vqtok.data import create_dataset
from vqtok.metrics.codecs import codec_rows
from vqtok.metrics.image import image_metrics
from vqtok.tokenizers import BaseTokenizer


def _images(args: argparse.Namespace) -> torch.Tensor:
    kwargs = json.loads(args.data_kwargs) if args.data_kwargs else {}
    if args.data == "photos":
        kwargs.setdefault("num_examples", args.crops)
        kwargs.setdefault("crop", args.crop)
    data = create_dataset(args.data, "test", **kwargs)
    n = min(len(data), args.max_images)
    return torch.stack([data[i] for i in range(n)])


def _model_row(model_dir: str, images: torch.Tensor, extra) -> dict:  # type: ignore[no-untyped-def]
    model = BaseTokenizer.from_pretrained(model_dir).eval()
    recon, bits = [], None
    with torch.no_grad():
        for batch in images.split(64):
            indices = model.encode(batch)
            recon.append(model.decode(indices).float())
            tokens = indices[0].numel() // max(1, int(np.prod(model.index_shape)))
            bits = tokens * model.bits_per_token
    out = torch.cat(recon)
    scores = image_metrics(out, images)
    if extra is not None:
        scores.update(extra(out.clamp(0, 1), images))
    row = {"codec": f"vqtok:{model.architecture}", "headers": "none", "bits": bits, "file_bits": bits, "fits": 1.0}
    row.update({k: float(v.double().mean()) for k, v in scores.items()})
    row["model"] = model_dir
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", default=[], help="tokenizer checkpoint folders (save_pretrained)")
    parser.add_argument("--bits", type=float, nargs="*", default=[], help="budgets in bits per image (no model)")
    parser.add_argument("--data", default="photos", help="registered image data set (test split)")
    parser.add_argument("--data-kwargs", default="", help="JSON kwargs of the data set")
    parser.add_argument("--crops", type=int, default=256, help="photos: test crops")
    parser.add_argument("--crop", type=int, default=64, help="photos: crop side")
    parser.add_argument("--max-images", type=int, default=256)
    parser.add_argument("--lpips-backbone", default="", help="local VGG-16 weights (torchvision layout)")
    parser.add_argument("--lpips-head", default="", help="local LPIPS heads (default: the lpips package's file)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (e.g. benchmarks/results/...)")
    args = parser.parse_args()
    if not args.model and not args.bits:
        parser.error("give --model checkpoint(s) or --bits budgets")
    t0 = time.perf_counter()
    images = _images(args)
    extra = None
    if args.lpips_backbone:
        from vqtok.metrics.perceptual import lpips_metric

        extra = lpips_metric(args.lpips_backbone, args.lpips_head or None)
    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    budgets = [(None, b) for b in args.bits]
    rows = []
    for model_dir in args.model:
        row = _model_row(model_dir, images, extra)
        rows.append(row)
        budgets.append((model_dir, row["bits"]))
    for model_dir, budget in budgets:
        for row in codec_rows(pixels, budget, extra_metrics=extra):
            rows.append({**row, "budget_bits": budget, "model": model_dir})
    shape = tuple(images.shape[1:])
    cols = ["codec", "headers", "budget_bits", "bits", "fits", "psnr", "ssim"] + (["lpips"] if extra else [])
    print(f"{images.shape[0]} images {shape} from {args.data} (test); bits per image; 'fits': share within budget")
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        r.setdefault("budget_bits", r["bits"])
        print("  ".join(f"{r[c]:>14}" if isinstance(r[c], str) else f"{r[c]:>14.3f}" for c in cols))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"data": args.data, "shape": shape, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
