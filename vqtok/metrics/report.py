"""Evaluation report: ``metrics.json`` plus a folder with what the modality calls for (a reconstruction grid for
images, before/after WAV files for audio, overlaid curves for time series), a codebook histogram and an
``index.html`` that shows them next to the metrics table. Uses matplotlib's non-interactive Agg backend."""

from __future__ import annotations

import html
import os
import wave
from pathlib import Path

import torch
from torch import Tensor

from .._io import atomic_open, write_json
from .image_grid import save_full_resolution_grid

__all__ = [
    "format_metrics_table",
    "save_codebook_histogram",
    "save_image_grid",
    "save_series_plot",
    "save_wav",
    "write_report",
]


def format_metrics_table(metrics: dict[str, float]) -> str:
    """A two-column plain-text table of ``metrics``."""
    width = max((len(k) for k in metrics), default=0)
    lines = []
    for k, v in metrics.items():
        text = f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}"
        lines.append(f"{k:<{width}}  {text}")
    return "\n".join(lines)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike[str]) -> Path:  # type: ignore[no-untyped-def]
    """Lays out, writes (PNG, 100 dpi) and closes ``fig``; returns the path."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_image_grid(originals: Tensor, recons: Tensor, path: str | os.PathLike[str], columns: int = 16) -> Path:
    """Saves originals (odd rows) above their reconstructions (even rows) as one PNG.

    Args:
        originals: ``(N, C, H, W)`` in ``[0, 1]``; C is 1 or 3.
        recons: ``(N, C, H, W)``; clamped to ``[0, 1]``.
        path: Output PNG.
        columns: Images per row.
    """
    plt = _pyplot()
    n = min(originals.shape[0], recons.shape[0])
    cols = min(columns, n)
    pairs = (n + cols - 1) // cols
    fig, axes = plt.subplots(2 * pairs, cols, figsize=(cols * 0.8, 2 * pairs * 0.85), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        for row, img in ((2 * r, originals[i]), (2 * r + 1, recons[i])):
            img = img.float().clamp(0, 1)
            arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
            axes[row][c].imshow(arr, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
    fig.suptitle("originals (odd rows) / reconstructions (even rows)", fontsize=8)
    return _save(plt, fig, path)


def save_wav(waveform: Tensor, sample_rate: int, path: str | os.PathLike[str]) -> Path:
    """Writes a ``(C, T)`` float waveform as 16-bit PCM WAV (standard library ``wave``, no extra dependency).

    Values are clipped to ``[-1, 1]`` first: a codec's overshoot must not wrap around in int16.
    """
    if waveform.ndim != 2:
        raise ValueError(f"save_wav expects a (C, T) waveform, got {tuple(waveform.shape)}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    pcm = (waveform.float().clamp(-1, 1) * 32767).round().to(torch.int16)
    path = Path(path)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(pcm.shape[0])
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        # WAV frames interleave channels: (T, C) row-major, little-endian int16.
        f.writeframes(pcm.T.contiguous().numpy().astype("<i2").tobytes())
    return path


def save_series_plot(originals: Tensor, recons: Tensor, path: str | os.PathLike[str], examples: int = 4) -> Path:
    """Plots the channels of the first ``examples`` series ``(N, C, T)``: originals solid, reconstructions dashed."""
    plt = _pyplot()
    n = min(examples, originals.shape[0], recons.shape[0])
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n), squeeze=False)
    for i in range(n):
        ax = axes[i][0]
        for ch in range(originals.shape[1]):
            line = ax.plot(originals[i, ch].float().numpy(), lw=1.0)[0]
            ax.plot(recons[i, ch].float().numpy(), lw=1.0, ls="--", color=line.get_color())
        ax.set_ylabel(f"example {i}", fontsize=8)
    axes[-1][0].set_xlabel("step")
    fig.suptitle("originals (solid) / reconstructions (dashed), one colour per channel", fontsize=8)
    return _save(plt, fig, path)


def save_codebook_histogram(counts: Tensor, path: str | os.PathLike[str]) -> Path:
    """Plots code counts sorted by frequency (log scale), the usual picture of codebook health."""
    plt = _pyplot()
    sorted_counts = torch.sort(counts.double(), descending=True).values.numpy()
    used = int((counts > 0).sum())
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(sorted_counts)), sorted_counts + 1e-9, width=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("count")
    ax.set_title(f"codebook usage: {used}/{len(sorted_counts)} codes used", fontsize=9)
    return _save(plt, fig, path)


def write_report(
    directory: str | os.PathLike[str],
    metrics: dict[str, float],
    originals: Tensor | None = None,
    recons: Tensor | None = None,
    counts: Tensor | None = None,
    title: str = "vqtok evaluation",
    modality: str | None = None,
    sample_rate: int | None = None,
    audio_examples: int = 4,
) -> Path:
    """Writes ``metrics.json``, the modality's pictures or sounds, ``codebook_usage.png`` and ``index.html``.

    Args:
        directory: Report folder (created).
        metrics: Scalar metrics for the table.
        originals: Inputs in the tokenizer's layout: ``(N, C, H, W)`` images or ``(N, C, T)`` signals.
        recons: Their reconstructions, same shape.
        counts: ``(V,)`` code histogram.
        title: Page title.
        modality: ``"image"``, ``"audio"`` or ``"timeseries"``; ``None`` infers images from 4-D inputs.
        sample_rate: Hz of audio; with ``modality="audio"`` the first ``audio_examples`` originals and
            reconstructions are written as ``audio/original_<i>.wav`` / ``audio/recon_<i>.wav`` and embedded
            in the page as players.
        audio_examples: How many before/after pairs to write.

    Returns:
        Path of ``index.html``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "metrics.json", metrics)
    figures = []
    sounds: list[tuple[str, str]] = []
    have = originals is not None and recons is not None and originals.numel() > 0
    if have and originals.ndim == 4 and modality in (None, "image"):
        grid = save_full_resolution_grid(originals, recons, directory / "recon_grid.png")
        figures.append(("Reconstructions (full resolution; originals above reconstructions)", grid.name))
    elif have and originals.ndim == 3 and modality == "audio" and sample_rate:
        (directory / "audio").mkdir(exist_ok=True)
        for i in range(min(audio_examples, originals.shape[0], recons.shape[0])):
            for kind, wav in (("original", originals[i]), ("recon", recons[i])):
                save_wav(wav, sample_rate, directory / "audio" / f"{kind}_{i}.wav")
            sounds.append((f"audio/original_{i}.wav", f"audio/recon_{i}.wav"))
    elif have and originals.ndim == 3 and modality == "timeseries":
        figures.append(("Reconstructions", save_series_plot(originals, recons, directory / "recon_series.png").name))
    if counts is not None and counts.numel():
        figures.append(("Codebook usage", save_codebook_histogram(counts, directory / "codebook_usage.png").name))
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
        if isinstance(v, float) and not v.is_integer()
        else f"<tr><td>{k}</td><td>{int(v) if isinstance(v, float) else v}</td></tr>"
        for k, v in metrics.items()
    )
    figs = "\n".join(
        f"<h2>{html.escape(t)}</h2><img src='{html.escape(src)}' alt='{html.escape(t)}'>" for t, src in figures
    )
    if sounds:
        players = "".join(
            f"<tr><td>{i}</td><td><audio controls src='{html.escape(a)}'></audio></td>"
            f"<td><audio controls src='{html.escape(b)}'></audio></td></tr>"
            for i, (a, b) in enumerate(sounds)
        )
        figs = (
            "<h2>Audio (before / after)</h2><table><tr><th>#</th><th>original</th><th>reconstruction</th></tr>"
            f"{players}</table>{figs}"
        )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}img{max-width:100%}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><table><tr><th>metric</th><th>value</th></tr>{rows}</table>{figs}"
        "</body></html>\n"
    )
    with atomic_open(directory / "index.html", "w") as f:
        f.write(page)
    return directory / "index.html"
