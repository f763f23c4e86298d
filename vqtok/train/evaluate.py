"""Evaluation of a trained tokenizer over a data set: fidelity, codebook health and rate.

Fidelity metrics depend on the modality: each family names its ``modality`` and the registered descriptor
(:mod:`vqtok.modalities`) gives the per-example metric function and the bits per raw value used for the
compression ratio. Tokenizers of no registered modality get the modality-free metrics only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..metrics import code_counts
from ..metrics.codebook import perplexity_from_counts
from ..modalities import find_modality
from ..tokenizers import BaseTokenizer
from .state import collate

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    """Aggregated metrics plus what the report draws.

    Attributes:
        metrics: Scalar metrics (means over examples, codebook statistics, rate).
        counts: ``(V,)`` code histogram over the whole data set (``None`` when not histogrammable).
        originals: First few inputs, in the signal layout.
        recons: Their reconstructions.
    """

    metrics: dict[str, float]
    counts: Tensor | None
    originals: Tensor
    recons: Tensor
    extra: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def evaluate(
    model: BaseTokenizer,
    dataset: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    max_examples: int | None = None,
    keep_examples: int = 32,
    extra_metrics: Callable[[Tensor, Tensor], dict[str, Tensor]] | None = None,
) -> EvalResult:
    """Encodes and decodes ``dataset`` with ``model`` (eval mode) and scores the reconstructions.

    Args:
        model: A trained tokenizer.
        dataset: Items in the tokenizer's signal layout (tensors or dicts with ``"signal"``).
        batch_size: Examples per forward.
        device: Where to run.
        max_examples: Evaluate only the first this many examples.
        keep_examples: How many originals/reconstructions to keep for the report.
        extra_metrics: More per-example ``(recon, target) -> {name: (B,)}`` metrics (e.g.
            :func:`vqtok.metrics.perceptual.lpips_metric`, which needs local weights).

    Returns:
        An :class:`EvalResult` whose ``metrics`` hold ``<metric>`` means, ``mse``, ``usage``, ``perplexity``,
        ``tokens_per_example``, ``bits_per_token``, ``bits_per_example``, ``compression_ratio``, ``examples``.
    """
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be >= 1 (or None for all), got {max_examples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    modality = find_modality(model.modality)
    was_training = model.training
    model.eval().to(device)
    n = len(dataset) if max_examples is None else min(len(dataset), max_examples)  # type: ignore[arg-type]
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=False)
    # Only the tokenizer contract is used, so fitted tokenizers (FAST) are evaluated like neural ones.
    codebook_size, index_shape = model.codebook_size, model.index_shape
    counts = torch.zeros(codebook_size, dtype=torch.float64) if codebook_size <= 1 << 24 else None
    sums: dict[str, float] = {}
    valid_counts: dict[str, int] = {}
    seen = 0
    total_tokens = 0
    raw_values = 0
    originals: list[Tensor] = []
    recons: list[Tensor] = []
    for idx in loader:
        batch = collate(
            dataset.__getitems__(idx.tolist())
            if hasattr(dataset, "__getitems__")
            else [dataset[i] for i in idx.tolist()]
        )
        signal = (batch["signal"] if isinstance(batch, dict) else batch).to(device)
        indices = model.encode(signal)
        recon = model.decode(indices)
        b = signal.shape[0]
        # unbatch drops the padding of variable-length tokenizers, so lengths and histograms count real tokens.
        rows = model.unbatch(indices.cpu())
        total_tokens += sum(math.prod(r.shape[: r.ndim - len(index_shape)]) for r in rows)
        raw_values = signal[0].numel()
        if counts is not None:
            try:
                real = indices.cpu() if model.pad_index is None else torch.cat([r.reshape(-1) for r in rows])
                counts += code_counts(real, codebook_size)
            except ValueError:
                counts = None
        per = {"mse": (recon.float() - signal.float()).pow(2).flatten(1).mean(1)}
        if modality is not None and modality.metrics is not None:
            per.update(modality.metrics(recon, signal))
        undefined_ok: set[str] = set()
        if modality is not None and modality.model_metrics is not None:
            extra = modality.model_metrics(model, recon, signal)
            per.update(extra)
            undefined_ok.update(extra)
        if extra_metrics is not None:
            per.update(extra_metrics(recon, signal))
        for k, v in per.items():
            # Model-aware metrics are NaN where undefined (PESQ of a silent clip): such examples are left out of
            # that metric's mean only, so a diverged model still shows NaN in every other metric.
            valid = torch.isfinite(v.double()) if k in undefined_ok else torch.ones(v.shape, dtype=torch.bool)
            sums[k] = sums.get(k, 0.0) + float(v.double()[valid].sum())
            valid_counts[k] = valid_counts.get(k, 0) + int(valid.sum())
        seen += b
        if sum(x.shape[0] for x in originals) < keep_examples:
            originals.append(signal.cpu())
            recons.append(recon.float().cpu())
    model.train(was_training)
    if seen == 0:
        raise ValueError("the data set has no examples to evaluate")
    metrics = {k: v / valid_counts[k] if valid_counts[k] else float("nan") for k, v in sums.items()}
    if modality is not None and modality.model_summary is not None:
        metrics.update(modality.model_summary(model))
    metrics["examples"] = float(seen)
    if counts is not None and counts.sum() > 0:
        metrics["usage"] = float((counts > 0).sum()) / codebook_size
        metrics["perplexity"] = float(perplexity_from_counts(counts.double()))
    tokens_per_example = total_tokens / max(seen, 1)
    metrics["codebook_size"] = float(codebook_size)
    metrics["num_codebooks"] = float(math.prod(index_shape))
    metrics["tokens_per_example"] = float(tokens_per_example)
    metrics["bits_per_token"] = float(model.bits_per_token)
    metrics["bits_per_example"] = float(tokens_per_example * model.bits_per_token)
    if model.modality == "image" and originals:
        metrics["bits_per_pixel"] = metrics["bits_per_example"] / math.prod(originals[0].shape[-2:])
    if modality is not None and modality.raw_bits_per_value and metrics["bits_per_example"] > 0:
        metrics["compression_ratio"] = raw_values * modality.raw_bits_per_value / metrics["bits_per_example"]
    return EvalResult(
        metrics=metrics,
        counts=counts,
        originals=torch.cat(originals)[:keep_examples] if originals else torch.empty(0),
        recons=torch.cat(recons)[:keep_examples] if recons else torch.empty(0),
    )
