"""Video tokenizer vs per-frame image tokenizer vs H.264 at equal bits per clip, on moving Fashion-MNIST.

The causal video tokenizer of ``vqtok demo video`` (trained first: pass its model folder) codes a 16-frame 64x64
clip in a fixed number of bits B (320 FSQ tokens x log2(1000) = 3,189 bits). Against it, at (about) the same B:

* **image2d per frame**: vqtok's image tokenizer coding each of the 16 frames on its own, with a token grid and an
  FSQ codebook chosen so that 16 frames cost about B bits (4x4 tokens x log2(8000) = 207.5 bits per frame, 3,320
  bits per clip: 4% MORE than the video model, in the baseline's favour). It is trained here from scratch on the
  frames of the same training clips for ``--image-steps`` steps (the gain it misses is temporal compression).
* **H.264 (libx264 via PyAV)**: each clip as 16 grey frames (yuv420p, flat chroma, preset veryslow) at the
  lowest constant QP whose encoded size fits in B bits, found per clip by bisection over QP 0..51. The size is the
  sum of the encoder's packet bytes (SPS/PPS and slices; no container; x264's informational SEI removed, see
  ``_drop_sei``). Clips that do not fit even at QP 51 are coded at QP 51, counted at their real (larger) size and
  reported as ``h264_over_budget``.

All three are scored with the same per-frame PSNR/SSIM and frame-difference error
(:mod:`vqtok.metrics.video`) on the first ``--clips`` test clips. CPU only; on a machine shared with other jobs
the times are not benchmarks, the qualities are.

Run::

    vqtok demo video                                        # trains runs/video_mfmnist/model
    python benchmarks/video_codecs.py --model runs/video_mfmnist/model   # writes benchmarks/results/video_codecs.json
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vqtok._io import write_json
from vqtok.cli.demo_video import evaluate_video
from vqtok.data import create_dataset
from vqtok.metrics.video import video_metrics
from vqtok.tokenizers import Tokenizer, create_tokenizer

RESULTS = Path(__file__).parent / "results" / "video_codecs.json"


# ------------------------------------------------------------------------------------------ image2d per frame
class _Frames(Dataset):
    """Every frame of the first ``clips`` clips of a clip data set, as ``(1, H, W)`` images."""

    def __init__(self, clips: Any, n: int) -> None:
        self.clips, self.n, self.t = clips, n, clips[0].shape[1]

    def __len__(self) -> int:
        return self.n * self.t

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.clips[i // self.t][:, i % self.t]


def train_image2d(train: Any, steps: int, batch: int, seed: int = 0) -> Tokenizer:
    torch.manual_seed(seed)
    model = create_tokenizer(
        "image2d", in_channels=1, image_size=(64, 64), downsample=16, channels=(16, 32, 64, 64, 64),
        num_res_blocks=0, norm="none", recon_loss="l1+l2", quantizer="fsq",
        quantizer_kwargs={"levels": (8, 8, 5, 5, 5)},
    )  # fmt: skip
    frames = _Frames(train, min(len(train), 4000))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(frames), (batch,), generator=g)
        x = torch.stack([frames[int(i)] for i in idx])
        loss = model(x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def image2d_per_frame(model: Tokenizer, clips: torch.Tensor) -> tuple[torch.Tensor, float]:
    b, c, t, h, w = clips.shape
    frames = clips.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    indices = model.encode(frames)
    recon = model.decode(indices).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    bits = math.prod(indices.shape[1:3]) * model.bits_per_token * t
    return recon, bits


# ----------------------------------------------------------------------------------------------------- H.264
_START = re.compile(b"\x00\x00\x01")


def _drop_sei(annexb: bytes) -> bytes:
    """Removes SEI NAL units (type 6) from an Annex-B packet: x264 writes a ~600-byte SEI with its version and
    settings into the first packet, which no decoder needs and which alone would exceed the budget. Every other
    NAL unit (SPS, PPS, slices) is kept with a 3-byte start code and counted."""
    starts = [m.end() for m in _START.finditer(annexb)]
    units = [annexb[a : (b - 3 if b else None)].rstrip(b"\x00") for a, b in zip(starts, [*starts[1:], 0], strict=True)]
    return b"".join(b"\x00\x00\x01" + u for u in units if u and (u[0] & 0x1F) != 6)


def _h264(clip: np.ndarray, qp: int) -> tuple[int, np.ndarray]:
    """Encodes a uint8 ``(T, H, W)`` clip at constant ``qp``; returns ``(bytes, decoded (T, H, W) uint8)``."""
    import av

    t, h, w = clip.shape
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 8)
    enc.options = {"qp": str(qp), "preset": "veryslow", "threads": "1"}
    dec = av.CodecContext.create("h264", "r")
    size, out = 0, []
    chroma = np.full((h // 2, w // 2), 128, np.uint8)
    packets = []
    for i in range(t):
        frame = av.VideoFrame(w, h, "yuv420p")
        for plane, data in zip(frame.planes, (clip[i], chroma, chroma), strict=True):
            view = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            view[: data.shape[0], : data.shape[1]] = data
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    for p in packets:
        data = _drop_sei(bytes(p))
        size += len(data)
        out += [f.to_ndarray()[:h] for f in dec.decode(av.Packet(data))]
    out += [f.to_ndarray()[:h] for f in dec.decode(None)]
    return size, np.stack(out)[:, :h, :w]


def h264_at_bits(clip: torch.Tensor, budget_bits: float) -> tuple[torch.Tensor, float, int, bool]:
    """Lowest QP whose packets fit ``budget_bits``; returns ``(recon (1, T, H, W), bits, qp, over_budget)``."""
    x = (clip[0].numpy() * 255).round().astype(np.uint8)
    lo, hi, best = 0, 51, None
    while lo <= hi:
        q = (lo + hi) // 2
        size, dec = _h264(x, q)
        if size * 8 <= budget_bits:
            best, hi = (size, dec, q), q - 1
        else:
            lo = q + 1
    over = best is None
    if best is None:
        size, dec = _h264(x, 51)
        best = (size, dec, 51)
    size, dec, q = best
    return torch.from_numpy(dec.astype(np.float32) / 255.0)[None], size * 8.0, q, over


# ------------------------------------------------------------------------------------------------------ main
def _mean(per: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.double().mean()) for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/video_mfmnist/model", help="trained video tokenizer folder")
    ap.add_argument("--clips", type=int, default=64, help="test clips scored")
    ap.add_argument("--image-steps", type=int, default=300, help="training steps of the per-frame image2d baseline")
    ap.add_argument("--image-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = create_dataset("moving_fashion_mnist", "test")
    train = create_dataset("moving_fashion_mnist", "train")
    clips = torch.stack([test[i] for i in range(args.clips)])
    rows: dict[str, dict[str, Any]] = {}

    t0 = time.perf_counter()
    video = Tokenizer.from_pretrained(args.model).eval()
    m, _, _ = evaluate_video(video, test, max_clips=args.clips)
    budget = m["bits_per_clip"]
    rows["video tokenizer (causal 3-D, FSQ)"] = {
        "bits_per_clip": budget, "psnr": m["psnr"], "ssim": m["ssim"], "temporal_error": m["temporal_error"],
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip

    t0 = time.perf_counter()
    image = train_image2d(train, args.image_steps, args.image_batch)
    train_s = time.perf_counter() - t0
    recon, bits = image2d_per_frame(image, clips)
    rows["image2d per frame (FSQ)"] = {
        "bits_per_clip": bits, **_mean(video_metrics(recon, clips)), "train_seconds": train_s,
        "train_steps": args.image_steps, "train_batch": args.image_batch,
    }  # fmt: skip

    t0 = time.perf_counter()
    recons, sizes, qps, over = [], [], [], 0
    for clip in clips:
        r, b, q, o = h264_at_bits(clip, budget)
        recons.append(r)
        sizes.append(b)
        qps.append(q)
        over += int(o)
    rows["H.264 (libx264, constant QP)"] = {
        "bits_per_clip": float(np.mean(sizes)), **_mean(video_metrics(torch.stack(recons), clips)),
        "mean_qp": float(np.mean(qps)), "h264_over_budget": over, "seconds": time.perf_counter() - t0,
    }  # fmt: skip

    payload = {
        "clips": args.clips, "budget_bits_per_clip": budget, "model": str(args.model), "threads": args.threads,
        "load_average": os.getloadavg()[0], "rows": rows,
    }  # fmt: skip
    write_json(args.out, payload)
    print("| codec | bits / clip | per-frame PSNR (dB) | per-frame SSIM | frame-diff error |\n|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['bits_per_clip']:.0f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['temporal_error']:.4f} |")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
