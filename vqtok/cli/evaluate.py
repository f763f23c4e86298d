"""``vqtok eval --model DIR --data NAME``: metrics.json plus an HTML report folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import positive_int

__all__ = ["add_parser", "run", "evaluate_to_report"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained tokenizer on a data set and write a report")
    p.add_argument("--model", required=True, help="directory written by save_pretrained (run_dir/model)")
    p.add_argument("--data", required=True, help="registered data set, e.g. fashion_mnist")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("-o", "--out", default=None, help="output folder (default: reports/<data>-<split>)")
    p.add_argument("--max-examples", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def evaluate_to_report(
    model_dir: str | Path,
    data: str,
    split: str,
    out: str | Path,
    max_examples: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
) -> tuple[dict[str, float], Path]:
    """Evaluates and writes ``out/metrics.json`` and ``out/report/index.html``; returns metrics and the page."""
    from .._io import write_json
    from ..data import create_dataset
    from ..metrics.report import write_report
    from ..modalities import find_modality
    from ..tokenizers import BaseTokenizer
    from ..train import evaluate

    model = BaseTokenizer.from_pretrained(model_dir, map_location=device)
    result = evaluate(model, create_dataset(data, split), batch_size, device, max_examples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"data": data, "split": split, "model": str(model_dir), **result.metrics}
    write_json(out / "metrics.json", metrics)
    title = f"{model.architecture}{_quantizer_label(model)} on {data}/{split}"
    descriptor = find_modality(model.modality)
    if descriptor is None:
        page = write_report(out / "report", result.metrics, result.counts, title)
    else:
        page = descriptor.write_report(
            out / "report",
            result.metrics,
            result.originals,
            result.recons,
            result.counts,
            title,
            sample_rate=getattr(model.config, "sample_rate", None),
        )
    return result.metrics, page


def _quantizer_label(model) -> str:  # type: ignore[no-untyped-def]
    quantizer = getattr(model.config, "quantizer", None)
    return f" + {quantizer}" if quantizer else ""


def run(args: argparse.Namespace) -> int:
    from ..metrics.report import format_metrics_table

    out = args.out or f"reports/{args.data}-{args.split}"
    metrics, page = evaluate_to_report(
        args.model, args.data, args.split, out, args.max_examples, args.batch_size, args.device
    )
    print(format_metrics_table(metrics))
    print(f"metrics: {Path(out) / 'metrics.json'}\nreport:  {page}")
    return 0
