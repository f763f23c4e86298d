"""Vector post-training quantization of ``nn.Linear`` weights (VPTQ-like), with calibration-weighted k-means.

For a linear layer ``y = x W^T``, the output error caused by a weight error ``dW`` is
``E||x dW^T||^2 = sum_r dW_r H dW_r^T`` with ``H = E[x x^T]``. Keeping only ``diag(H)`` (the per-input
channel energy of the calibration activations) turns that into a per-coordinate weighted squared
error, which weighted k-means minimises directly (VPTQ, arXiv:2409.17066, section 3, without its
second-order column updates; a GPTQ-style compensation we tried lowered each layer's error on
calibration data yet hurt the embeddings end to end, and was removed). Rows are first normalised
by their RMS (stored in fp16) so one codebook serves all rows; a residual stage adds bits; the
worst-fitting weights of each row can be kept exactly (outliers). Every stored bit (indices,
codebooks, scales, outliers) counts toward the reported bits per weight. Optionally the continuous
parameters are then fine-tuned end to end on the calibration inputs (:mod:`vqtok.weights.finetune`).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..kernels.kmeans import assign, kmeans
from .finetune import finetune_quantized, run_batch
from .vq_linear import VQLinear

__all__ = ["QuantizeReport", "collect_importance", "quantize_linear", "quantize_model", "stage_sizes"]


@dataclass
class QuantizeReport:
    """What :func:`quantize_model` did.

    Attributes:
        layers: Bits per weight of each replaced layer, by module name.
        skipped: Names of ``nn.Linear`` layers left in full precision, with the reason.
        bits_per_weight: Storage bits per weight over all replaced layers (codebooks included).
        finetune_losses: Loss of each fine-tuning step (empty without fine-tuning).
    """

    layers: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    bits_per_weight: float = float("nan")
    finetune_losses: list[float] = field(default_factory=list)


def stage_sizes(bits: float, vector_len: int, max_stage_bits: int = 8) -> list[int]:
    """Codebook sizes of the residual stages for ``bits`` index bits per weight.

    The ``round(bits * vector_len)`` index bits of each vector are dealt to stages of at most
    ``max_stage_bits`` bits, which keeps each codebook small enough to amortise over one layer.

    Args:
        bits: Index bits per weight.
        vector_len: Weights per vector.
        max_stage_bits: Largest index width of one stage.

    Returns:
        Codebook sizes, e.g. ``[256]`` for 2 bits at ``v=4`` and ``[256, 16]`` for 3 bits.
    """
    total = round(bits * vector_len)
    if total < 1:
        raise ValueError(f"bits * vector_len must be >= 1, got {bits} * {vector_len}")
    sizes = []
    while total > 0:
        b = min(total, max_stage_bits)
        sizes.append(1 << b)
        total -= b
    return sizes


@torch.no_grad()
def collect_importance(
    model: nn.Module,
    calib_batches: Iterable[Any],
    names: list[str],
    full: bool = False,
) -> dict[str, Tensor]:
    """Per-input-channel activation energy ``diag(X^T X) / num_tokens`` of the named linear layers.

    Args:
        model: The model.
        calib_batches: Inputs; a dict is passed as ``model(**batch)``, a tuple/list as ``model(*batch)``,
            anything else as ``model(batch)``.
        names: Module names of ``nn.Linear`` layers.
        full: Return the whole second-moment matrix ``X^T X / num_tokens`` instead of its diagonal.

    Returns:
        ``{name: (in_features,)}`` (or ``(in_features, in_features)`` when ``full``) float32 on the
        layer's device; layers that never ran are absent.
    """
    modules = dict(model.named_modules())
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name in names:

        def hook(mod: nn.Module, inputs: tuple[Tensor, ...], name: str = name) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
            sums[name] = sums.get(name, 0) + (x.T @ x if full else (x * x).sum(0))
            counts[name] = counts.get(name, 0) + x.shape[0]

        hooks.append(modules[name].register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for batch in calib_batches:
            run_batch(model, batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {n: sums[n] / counts[n] for n in sums}


@torch.no_grad()
def quantize_linear(
    layer: nn.Linear,
    importance: Tensor | None,
    bits: float = 2,
    vector_len: int = 4,
    outlier_frac: float = 0.0,
    codebook_dtype: torch.dtype = torch.float16,
    kmeans_iters: int = 15,
    max_points: int | None = 16384,
    seed: int = 0,
) -> VQLinear:
    """Quantizes one linear layer.

    Args:
        layer: The layer, weight ``(out, in)`` with ``in`` divisible by ``vector_len``.
        importance: ``(in,)`` non-negative channel importance (``None``: uniform).
        bits: Index bits per weight (codebooks and scales come on top; see ``VQLinear.bits_per_weight``).
        vector_len: Weights per vector.
        outlier_frac: Fraction of each row's weights kept exactly (fp16 value + column index).
        codebook_dtype: ``torch.float16`` or ``torch.bfloat16``.
        kmeans_iters: Lloyd iterations per stage.
        max_points: Fit each codebook on at most this many vectors (all vectors are then assigned);
            ``None`` uses all.
        seed: k-means++ seed.

    Returns:
        A :class:`VQLinear` on the layer's device, in eval mode.

    Raises:
        ValueError: If the layer has fewer vectors than a stage has codes, or shapes do not divide.
    """
    out_f, in_f = layer.weight.shape
    if in_f % vector_len:
        raise ValueError(f"in_features={in_f} is not divisible by vector_len={vector_len}")
    sizes = stage_sizes(bits, vector_len)
    groups = in_f // vector_len
    if out_f * groups < max(sizes):
        raise ValueError(f"layer has {out_f * groups} vectors, fewer than the {max(sizes)} codes of a stage")
    w = layer.weight.detach().float()
    device = w.device
    h = torch.ones(in_f, device=device) if importance is None else importance.to(device).float()
    if not bool(torch.isfinite(w).all()) or not bool(torch.isfinite(h).all()) or bool((h < 0).any()):
        raise ValueError("weights and importance must be finite, importance non-negative")
    # A small floor keeps channels that were silent in calibration from being ignored entirely.
    h = h / h.mean().clamp_min(1e-12) + 1e-2
    rnd = lambda t: t.to(codebook_dtype).float()
    scale = rnd(w.pow(2).mean(1).sqrt().clamp_min(1e-8))  # (out,)
    vecs = (w / scale[:, None]).reshape(out_f * groups, vector_len)
    # Error in the original space is scale_r^2 * h_j * (error in the normalised space)^2.
    vec_w = (scale[:, None, None] ** 2 * h.view(1, groups, vector_len)).reshape(-1, vector_len)
    vq = VQLinear(
        in_f,
        out_f,
        vector_len,
        sizes,
        bias=layer.bias is not None,
        num_outliers=int(round(outlier_frac * in_f)),
        codebook_dtype=codebook_dtype,
    ).to(device)
    residual = vecs.clone()
    for s, k in enumerate(sizes):
        books = rnd(kmeans(residual, k, iters=kmeans_iters, seed=seed + s, weights=vec_w, max_points=max_points))
        _, idx = assign(residual, books, vec_w)
        residual -= books[idx]
        vq.codebooks[s].copy_(books)
        vq.indices[s] = idx.view(out_f, groups).to(vq.indices.dtype)
    vq.row_scale.copy_(scale)
    if vq.num_outliers:
        err = (w - vq.weight()).pow(2) * h[None]
        cols = torch.topk(err, vq.num_outliers, dim=1).indices
        vq.outlier_cols.copy_(cols)
        vq.outlier_values.copy_(w.gather(1, cols))
    if layer.bias is not None:
        vq.bias.copy_(layer.bias.detach().float())
    return vq.eval()


def quantize_model(
    model: nn.Module,
    calib_batches: Iterable[Any],
    *,
    finetune_steps: int = 0,
    finetune_lr: float = 1e-3,
    skip: Iterable[str] = (),
    progress: bool = True,
    **linear_options: Any,
) -> QuantizeReport:
    """Replaces, in place, every ``nn.Linear`` that ran during calibration with a :class:`VQLinear`.

    Args:
        model: Any module.
        calib_batches: Calibration inputs (see :func:`collect_importance`); iterated once.
        finetune_steps: After all layers are replaced, train the codebooks, row scales, outlier
            values, biases and LayerNorm parameters (indices frozen, so the storage does not change)
            this many Adam steps to reproduce the original model's outputs on ``calib_batches``
            (see :func:`~vqtok.weights.finetune.finetune_quantized`); 0 skips it. The biggest gain
            at 2 bits (see the README, section Weights). Needs ``calib_batches`` to be re-iterable
            (it is materialised as a list) and keeps a copy of the original model meanwhile.
        finetune_lr: Adam learning rate of the fine-tuning.
        skip: Module names to leave alone.
        progress: Show a progress bar over layers.
        **linear_options: Settings of every layer, as :func:`quantize_linear` takes them: ``bits`` (2, 3 or 4
            index bits per weight; fractional values work too), ``vector_len``, ``outlier_frac``,
            ``codebook_dtype``, ``kmeans_iters``, ``max_points`` and ``seed``.

    Raises:
        TypeError: On a setting :func:`quantize_linear` does not take (before calibration runs).

    Returns:
        A :class:`QuantizeReport`.
    """
    inspect.signature(quantize_linear).bind(None, None, **linear_options)
    skip = set(skip)
    report = QuantizeReport()
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in skip]
    if finetune_steps:
        calib_batches = list(calib_batches)
        teacher = copy.deepcopy(model)
    importance = collect_importance(model, calib_batches, names)
    total_bits = 0.0
    total_weights = 0
    for name in tqdm(names, desc="VQ layers", disable=not progress):
        layer = model.get_submodule(name)
        if name not in importance:
            report.skipped[name] = "did not run during calibration"
            continue
        try:
            vq = quantize_linear(layer, importance[name], **linear_options)
        except ValueError as err:
            warnings.warn(f"leaving {name} unquantized: {err}", stacklevel=2)
            report.skipped[name] = str(err)
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, vq)
        report.layers[name] = vq.bits_per_weight()
        total_bits += vq.storage_bits()
        total_weights += layer.weight.numel()
    report.bits_per_weight = total_bits / total_weights if total_weights else math.nan
    if finetune_steps and report.layers:
        report.finetune_losses = finetune_quantized(model, teacher, calib_batches, finetune_steps, finetune_lr)
    return report
