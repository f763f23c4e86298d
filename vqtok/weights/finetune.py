"""End-to-end calibration fine-tuning of a vector-quantized model, with its indices frozen.

After :func:`~vqtok.weights.quantize_model` every layer was fitted alone, so the small errors of many
layers add up. As in AQLM (Egiazarian et al., arXiv:2401.06118) and VPTQ, the continuous parameters
that stay after quantization (codebooks, row scales, outlier values, biases and, optionally, the
normalisation layers) are then trained a few hundred steps so that the quantized model reproduces
the full-precision model's outputs on the calibration inputs. Indices are integer buffers and do not
change, so the storage cost does not change either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vq_linear import VQLinear

__all__ = ["finetune_quantized", "float_outputs", "run_batch"]

logger = logging.getLogger(__name__)

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.RMSNorm)


def run_batch(model: nn.Module, batch: Any) -> Any:
    """Calls ``model`` on one calibration batch and returns its output.

    A dict is passed as ``model(**batch)``, a tuple/list as ``model(*batch)``, anything else as
    ``model(batch)``. Mappings inside a tuple are shallow-copied first, because some models (e.g.
    sentence-transformers) write their outputs into the input dict.
    """
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*[dict(b) if isinstance(b, Mapping) else b for b in batch])
    return model(batch)


def float_outputs(out: Any) -> list[Tensor]:
    """Floating-point tensors of a model output (a tensor, or dicts/tuples/lists of them), in order."""
    if isinstance(out, Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, Mapping):  # also transformers' BatchEncoding / ModelOutput
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in float_outputs(o)]
    return []


def finetune_quantized(
    model: nn.Module,
    teacher: nn.Module,
    calib_batches: Iterable[Any],
    steps: int = 200,
    lr: float = 1e-3,
    train_norms: bool = True,
) -> list[float]:
    """Trains the continuous parameters of ``model``'s :class:`VQLinear` layers to match ``teacher``.

    The loss is, summed over the floating-point outputs (e.g. token and sentence embeddings), the
    mean squared error relative to the teacher output's mean square. Parameters are trained in
    float32 and rounded back to their storage dtype (fp16/bf16) at the end. Everything else is frozen
    and ``model`` is kept in eval mode (no dropout).

    Args:
        model: A model whose layers were replaced by :func:`~vqtok.weights.quantize_model`.
        teacher: The full-precision model (not modified).
        calib_batches: Calibration inputs (see :func:`run_batch`); cycled over ``steps`` steps.
        steps: Adam steps, one batch each.
        lr: Adam learning rate.
        train_norms: Also train the affine parameters of normalisation layers (LayerNorm etc.).

    Returns:
        The loss of every step.

    Raises:
        ValueError: If there are no batches, ``model`` has no ``VQLinear``, or outputs do not match.
    """
    batches = list(calib_batches)
    vqs = [m for m in model.modules() if isinstance(m, VQLinear)]
    if not batches or not vqs:
        raise ValueError("finetune_quantized needs calibration batches and a model with VQLinear layers")
    teacher.eval()
    with torch.no_grad():
        targets = [[t.detach().float().clone() for t in float_outputs(run_batch(teacher, b))] for b in batches]
    if not all(targets):
        raise ValueError("the model output holds no floating-point tensor to match")
    params: list[nn.Parameter] = [p for m in vqs for p in m.parameters()]
    if train_norms:
        params += [p for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters()]
    params = list({id(p): p for p in params}.values())
    # Adam updates of ~lr * 1e-3 vanish in fp16 storage, so train a float32 copy and round at the end.
    dtypes = [p.dtype for p in params]
    for p in params:
        p.data = p.data.float()
    trainable = {id(p) for p in params}
    requires = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    was_training = model.training
    model.eval()
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    losses = []
    try:
        for step in range(steps):
            i = step % len(batches)
            with torch.enable_grad():
                outs = float_outputs(run_batch(model, batches[i]))
                if len(outs) != len(targets[i]):
                    raise ValueError(f"model gives {len(outs)} float outputs, teacher {len(targets[i])}")
                pairs = zip(outs, targets[i], strict=True)
                loss = sum(F.mse_loss(o.float(), t) / t.square().mean().clamp_min(1e-12) for o, t in pairs)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if step % 50 == 0 or step == steps - 1:
                logger.info("finetune step %d/%d loss %.5f", step + 1, steps, losses[-1])
    finally:
        for p, dt in zip(params, dtypes, strict=True):
            p.data = p.data.to(dt)
            p.grad = None
        for p in model.parameters():
            p.requires_grad_(requires[id(p)])
        model.train(was_training)
    return losses
