"""Evaluation report: ``metrics.json``, a codebook histogram and an ``index.html`` that shows them next to the
metrics table and the panels a modality descriptor adds (a reconstruction grid for images, before/after WAV
files for audio, overlaid curves for time series; see :mod:`vqtok.modalities`). The drawing helpers here are
modality-free. Uses matplotlib's non-interactive Agg backend."""

from __future__ import annotations

import html
import os
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .._io import atomic_open, write_json

__all__ = [
    "Panel",
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


@dataclass(frozen=True)
class Panel:
    """One section of a report page, written by a modality descriptor (see :mod:`vqtok.modalities`).

    Attributes:
        title: Section heading.
        images: Picture files relative to the report folder.
        sounds: ``(original, reconstruction)`` audio file pairs relative to the report folder, shown as players.
    """

    title: str
    images: tuple[str, ...] = ()
    sounds: tuple[tuple[str, str], ...] = ()


def _panel_html(panel: Panel) -> str:
    parts = [f"<h2>{html.escape(panel.title)}</h2>"]
    parts += [f"<img src='{html.escape(src)}' alt='{html.escape(panel.title)}'>" for src in panel.images]
    if panel.sounds:
        players = "".join(
            f"<tr><td>{i}</td><td><audio controls src='{html.escape(a)}'></audio></td>"
            f"<td><audio controls src='{html.escape(b)}'></audio></td></tr>"
            for i, (a, b) in enumerate(panel.sounds)
        )
        parts.append(f"<table><tr><th>#</th><th>original</th><th>reconstruction</th></tr>{players}</table>")
    return "".join(parts)


def write_report(
    directory: str | os.PathLike[str],
    metrics: dict[str, float],
    counts: Tensor | None = None,
    title: str = "vqtok evaluation",
    panels: Sequence[Panel] = (),
) -> Path:
    """Writes ``metrics.json``, ``codebook_usage.png`` and an ``index.html`` showing them with ``panels``.

    The modality's own files (reconstruction grids, before/after sounds, curves) are written first by its
    descriptor (:meth:`vqtok.modalities.Modality.write_report`), which passes their :class:`Panel` here.

    Args:
        directory: Report folder (created).
        metrics: Scalar metrics for the table.
        counts: ``(V,)`` code histogram.
        title: Page title.
        panels: Sections to show above the codebook histogram, in order.

    Returns:
        Path of ``index.html``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "metrics.json", metrics)
    panels = list(panels)
    if counts is not None and counts.numel():
        name = save_codebook_histogram(counts, directory / "codebook_usage.png").name
        panels.append(Panel("Codebook usage", images=(name,)))
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
        if isinstance(v, float)
        else f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in metrics.items()
    )
    figs = "\n".join(_panel_html(p) for p in panels)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}img{max-width:100%}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><table><tr><th>metric</th><th>value</th></tr>{rows}</table>{figs}"
        "</body></html>\n"
    )
    with atomic_open(directory / "index.html", "w") as f:
        f.write(page)
    return directory / "index.html"
