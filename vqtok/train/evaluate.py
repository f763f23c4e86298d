"""Evaluation of a trained tokenizer over a data set: fidelity, codebook health and rate.

Fidelity metrics depend on the modality; each family names its ``modality`` and :data:`MODALITIES` maps it to
a per-example metric function and the bits per raw value used for the compression ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..metrics import code_counts
from ..metrics.audio import audio_metrics, speech_metrics, streaming_rtf
from ..metrics.image import image_metrics
from ..metrics.timeseries import timeseries_metrics
from ..tokenizers import BaseTokenizer
from .trainer import collate

__all__ = ["EvalResult", "MODALITIES", "Modality", "evaluate"]


@dataclass(frozen=True)
class Modality:
    """How to score one modality.

    Attributes:
        metrics: ``(recon, target) -> {name: (B,) tensor}``.
        raw_bits_per_value: Bits of one raw sample value (8 for uint8 pixels), for the compression ratio.
    """

    metrics: Callable[[Tensor, Tensor], dict[str, Tensor]]
    raw_bits_per_value: float


MODALITIES: dict[str, Modality] = {
    "image": Modality(image_metrics, 8.0),
    # 16-bit PCM; float32 sensor/action values.
    "audio": Modality(audio_metrics, 16.0),
    "timeseries": Modality(timeseries_metrics, 32.0),
}


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
) -> EvalResult:
    """Encodes and decodes ``dataset`` with ``model`` (eval mode) and scores the reconstructions.

    Args:
        model: A trained tokenizer.
        dataset: Items in the tokenizer's signal layout (tensors or dicts with ``"signal"``).
        batch_size: Examples per forward.
        device: Where to run.
        max_examples: Evaluate only the first this many examples.
        keep_examples: How many originals/reconstructions to keep for the report.

    Returns:
        An :class:`EvalResult` whose ``metrics`` hold ``<metric>`` means, ``mse``, ``usage``, ``perplexity``,
        ``tokens_per_example``, ``bits_per_token``, ``bits_per_example``, ``compression_ratio``, ``examples``.
    """
    modality = MODALITIES.get(model.modality)
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
        if modality is not None:
            per.update(modality.metrics(recon, signal))
        rate = getattr(getattr(model, "config", None), "sample_rate", None)
        if model.modality == "audio" and rate:
            per.update(speech_metrics(recon, signal, rate))
        for k, v in per.items():
            # PESQ is NaN on silent clips: such examples are left out of its mean (and only of its mean, so a
            # diverged model still shows NaN everywhere else).
            valid = torch.isfinite(v.double()) if k.startswith("pesq") else torch.ones(v.shape, dtype=torch.bool)
            sums[k] = sums.get(k, 0.0) + float(v.double()[valid].sum())
            valid_counts[k] = valid_counts.get(k, 0) + int(valid.sum())
        seen += b
        if sum(x.shape[0] for x in originals) < keep_examples:
            originals.append(signal.cpu())
            recons.append(recon.float().cpu())
    model.train(was_training)
    metrics = {k: v / valid_counts[k] if valid_counts[k] else float("nan") for k, v in sums.items()}
    if model.modality == "audio":
        metrics.update(_audio_rate_metrics(model))
    metrics["examples"] = float(seen)
    if counts is not None and counts.sum() > 0:
        p = counts[counts > 0] / counts.sum()
        metrics["usage"] = float((counts > 0).sum()) / codebook_size
        metrics["perplexity"] = float(2 ** (-(p * p.log2()).sum()))
    tokens_per_example = total_tokens / max(seen, 1)
    metrics["codebook_size"] = float(codebook_size)
    metrics["num_codebooks"] = float(math.prod(index_shape))
    metrics["tokens_per_example"] = float(tokens_per_example)
    metrics["bits_per_token"] = float(model.bits_per_token)
    metrics["bits_per_example"] = float(tokens_per_example * model.bits_per_token)
    if modality is not None and metrics["bits_per_example"] > 0:
        metrics["compression_ratio"] = raw_values * modality.raw_bits_per_value / metrics["bits_per_example"]
    return EvalResult(
        metrics=metrics,
        counts=counts,
        originals=torch.cat(originals)[:keep_examples] if originals else torch.empty(0),
        recons=torch.cat(recons)[:keep_examples] if recons else torch.empty(0),
    )


def _audio_rate_metrics(model: BaseTokenizer) -> dict[str, float]:
    """Bitrate, algorithmic latency and (causal codecs) the one-thread streaming real-time factor."""
    out: dict[str, float] = {}
    if hasattr(model, "bitrate_kbps"):
        out["bitrate_kbps"] = float(model.bitrate_kbps())
    latency = getattr(model, "algorithmic_latency_ms", None)
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if latency is not None and on_cpu:
        out["algorithmic_latency_ms"] = float(latency)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out["stream_rtf_1thread"] = streaming_rtf(model, model.config.sample_rate, seconds=2.0)
        finally:
            torch.set_num_threads(threads)
    return out
