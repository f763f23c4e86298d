"""Evaluation report: ``metrics.json`` plus a folder with a reconstruction grid, a codebook histogram and an
``index.html`` that shows both next to the metrics table. Uses matplotlib's non-interactive Agg backend."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from ..tokenizers._pretrained import atomic_open

__all__ = ["format_metrics_table", "save_codebook_histogram", "save_image_grid", "write_report"]


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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(
    directory: str | os.PathLike[str],
    metrics: dict[str, float],
    originals: Tensor | None = None,
    recons: Tensor | None = None,
    counts: Tensor | None = None,
    title: str = "vqtok evaluation",
) -> Path:
    """Writes ``metrics.json``, ``recon_grid.png`` (images only), ``codebook_usage.png`` and ``index.html``.

    Returns:
        Path of ``index.html``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_open(directory / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    figures = []
    if originals is not None and recons is not None and originals.ndim == 4 and originals.numel():
        figures.append(("Reconstructions", save_image_grid(originals, recons, directory / "recon_grid.png").name))
    if counts is not None and counts.numel():
        figures.append(("Codebook usage", save_codebook_histogram(counts, directory / "codebook_usage.png").name))
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
        if isinstance(v, float)
        else f"<tr><td>{k}</td><td>{v}</td></tr>"
        for k, v in metrics.items()
    )
    figs = "\n".join(
        f"<h2>{html.escape(t)}</h2><img src='{html.escape(src)}' alt='{html.escape(t)}'>" for t, src in figures
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
