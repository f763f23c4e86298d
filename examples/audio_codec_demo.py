"""Train the audio codec on the Asterisk English prompts on the CPU, then score the held-out 10% of files.

Run by ``make demo-audio``::

    python examples/audio_codec_demo.py [--config configs/audio_asterisk.yaml] [-f] [key=value ...]

Training shows a tqdm bar (steps/s and ETA). ``--threads auto`` (default) uses 2 torch threads, or 1 when the
1-minute load average already exceeds the core count: on a shared machine a second thread mostly waits for the
other processes, and oversubscribed OpenMP threads can stall each other for minutes.

Every held-out recording is encoded whole (the files go as one zero-padded batch, encoded once at full depth;
the first ``n`` residual levels are the ``n``-level code) at several residual-VQ depths; the table gives SI-SNR,
multi-scale mel distance, STOI (when ``pystoi`` is installed), bitrate and tokens per second for each depth.
Outputs, all under ``run_dir``:

* ``eval_audio.json``: the table above, plus training time and the data/model sizes;
* ``samples/<file>_original.wav`` and ``samples/<file>_L<n>.wav``: before/after recordings of the first
  ``--samples`` held-out files at every depth of the table;
* ``eval/metrics.json`` and ``eval/report/index.html``: what ``vqtok eval --model <run_dir>/model --data
  asterisk_en`` writes (1 s held-out segments at full depth, with before/after players).

A finished run is reused unless ``-f`` is given; an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from vqtok.cli.evaluate import evaluate_to_report
from vqtok.data import create_dataset
from vqtok.metrics.audio import multiscale_mel_distance, si_snr, stoi
from vqtok.metrics.report import save_wav
from vqtok.tokenizers import Tokenizer
from vqtok.train import Trainer, load_config

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def reconstruct(model: Tokenizer, waveforms: list[torch.Tensor], levels: list[int]) -> dict[int, list[torch.Tensor]]:
    """Every recording at every depth in ``levels``: one padded batch, encoded once, decoded per depth."""
    model.eval()
    lengths = [w.shape[-1] for w in waveforms]
    batch = torch.zeros(len(waveforms), waveforms[0].shape[0], max(lengths))
    for i, w in enumerate(waveforms):
        batch[i, :, : w.shape[-1]] = w
    indices = model.encode(batch)
    out = {}
    for n in levels:
        recon = model.decode(indices[..., :n]).clamp(-1, 1)
        out[n] = [recon[i, :, :length] for i, length in enumerate(lengths)]
    return out


def score_files(
    model: Tokenizer, waveforms: list[torch.Tensor], recons: dict[int, list[torch.Tensor]], sample_rate: int
) -> list[dict]:
    """Per-depth means over whole recordings (``recons`` from :func:`reconstruct`): SI-SNR, mel distance, STOI,
    kbps, tokens/s."""
    levels = list(recons)
    rows = []
    for n in levels:
        sums = {"si_snr_db": 0.0, "mel_distance": 0.0, "stoi": 0.0}
        has_stoi = True
        for wav, rec in zip(waveforms, recons[n], strict=True):
            x, recon = wav[None], rec[None]  # (1, C, T)
            sums["si_snr_db"] += float(si_snr(recon, x)[0])
            sums["mel_distance"] += float(multiscale_mel_distance(recon, x, sample_rate)[0])
            if has_stoi:
                try:
                    sums["stoi"] += float(stoi(recon, x, sample_rate)[0])
                except ImportError:
                    has_stoi = False
        row = {k: v / len(waveforms) for k, v in sums.items() if k != "stoi" or has_stoi}
        row.update(
            num_levels=n,
            kbps=model.bitrate_kbps(n),
            tokens_per_second=model.frames_per_second * n,
        )
        rows.append(row)
    return rows


def choose_threads(requested: str) -> int:
    """``auto``: 2 threads, or 1 when the 1-minute load average exceeds the core count; else the number given."""
    if requested != "auto":
        return max(1, int(requested))
    cores = os.cpu_count() or 1
    return 1 if os.getloadavg()[0] > cores else min(2, cores)


def write_samples(
    waveforms: list[torch.Tensor],
    recons: dict[int, list[torch.Tensor]],
    names: list[str],
    sample_rate: int,
    out: Path,
) -> list[Path]:
    """Writes each recording and its reconstruction at every depth of ``recons`` as 16-bit WAV files."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (wav, name) in enumerate(zip(waveforms, names, strict=False)):
        stem = Path(name).stem
        paths.append(save_wav(wav, sample_rate, out / f"{stem}_original.wav"))
        for n, recs in recons.items():
            paths.append(save_wav(recs[i], sample_rate, out / f"{stem}_L{n}.wav"))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--config", default=str(ROOT / "configs" / "audio_asterisk.yaml"))
    parser.add_argument("-f", "--force", action="store_true", help="retrain even if the run has a model")
    parser.add_argument("--threads", default="auto", help="torch intra-op threads, or 'auto' (see above)")
    parser.add_argument("--samples", type=int, default=4, help="held-out files written as before/after WAVs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    logging.getLogger(__name__).info("torch threads: %d (1-minute load average %.1f)", threads, os.getloadavg()[0])

    cfg = load_config(args.config, ["device=cpu", *args.overrides])
    test = create_dataset(cfg.data.name, "test", **cfg.data.kwargs)  # fails early, naming the apt package
    model_dir = Path(cfg.run_dir) / "model"
    train_seconds = None
    if args.force or not (model_dir / "config.json").is_file():
        t0 = time.perf_counter()
        result = Trainer(cfg, resume=not args.force, force=args.force, progress=True).fit()
        train_seconds = time.perf_counter() - t0
        model_dir = result.model_dir or model_dir
    model = Tokenizer.from_pretrained(model_dir)
    total = model.quantizer.num_levels
    levels = sorted({1, 2, max(1, total // 2), total})
    t0 = time.perf_counter()
    recons = reconstruct(model, test.waveforms, levels)
    rows = score_files(model, test.waveforms, recons, test.sample_rate)
    run_dir = Path(cfg.run_dir)
    k = args.samples
    wavs = write_samples(test.waveforms[:k], recons, test.names[:k], test.sample_rate, run_dir / "samples")
    report_metrics, page = evaluate_to_report(model_dir, cfg.data.name, "test", run_dir / "eval")
    seconds = sum(w.shape[-1] for w in test.waveforms) / test.sample_rate
    raw_kbps = test.sample_rate * 16 / 1000
    summary = {
        "model": str(model_dir),
        "steps": cfg.steps,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t0,
        "load_average_1_5_15_min": os.getloadavg(),  # timings are only comparable on an equally loaded machine
        "torch_threads": torch.get_num_threads(),
        "test_files": len(test.waveforms),
        "test_audio_seconds": seconds,
        "raw_pcm_kbps": raw_kbps,
        "parameters": sum(p.numel() for p in model.parameters()),
        "by_levels": rows,
        "eval_report": {"metrics": str(run_dir / "eval" / "metrics.json"), "page": str(page), **report_metrics},
        "samples": [str(p) for p in wavs],
    }
    out = run_dir / "eval_audio.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"held-out: {len(test.waveforms)} files, {seconds:.1f} s of 8 kHz speech (raw PCM {raw_kbps:g} kbps)")
    if train_seconds is not None:
        # A resumed run times only the steps done by this invocation.
        print(f"trained to step {cfg.steps} in {train_seconds / 60:.1f} min (this invocation)")
    keys = [k for k in ("num_levels", "kbps", "tokens_per_second", "si_snr_db", "mel_distance", "stoi") if k in rows[0]]
    print("  ".join(f"{k:>17}" for k in keys))
    for row in rows:
        print("  ".join(f"{row[k]:>17.3f}" if not float(row[k]).is_integer() else f"{row[k]:>17g}" for k in keys))
    print(f"results: {out}\nbefore/after WAVs: {run_dir / 'samples'}\nreport: {page}")
    return 0 if all(math.isfinite(r["si_snr_db"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
