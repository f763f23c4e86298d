"""Additive Quantization.

Babenko & Lempitsky, "Additive Quantization for Extreme Vector Compression", CVPR 2014; codebook
refit and ICM refinement as in LSQ (Martinez et al., "Revisiting Additive Quantization", ECCV 2016,
and "LSQ++", ECCV 2018).

A token is the sum of one code from each of K full-width codebooks: ``z ~ sum_k C_k[i_k]``. Unlike
residual VQ, no codebook is tied to a residual level, so encoding is a joint search, done here by
beam search over codebooks plus optional ICM passes (:func:`vqtok.kernels.beam.beam_search`).

Training (design):

* **Initialisation.** On the first training batch the codebooks are fitted by residual k-means
  (codebook k clusters what codebooks ``0..k-1`` left over), i.e. AQ starts from RVQ.
* **Least-squares refit, with EMA'd sufficient statistics.** For assignments written as a sparse
  ``(N, K*V)`` 0/1 matrix ``B`` with K ones per row, the best codebooks minimise ``||X - B C||^2``
  and satisfy ``(B^T B) C = B^T X``. Each training call builds ``B^T B / N`` (``(KV, KV)``) and
  ``B^T X / N`` (``(KV, D)``) with ``index_add_`` over the ``N K^2`` index pairs (no dense one-hot),
  blends them into running averages with weight ``1 - decay`` (the EMA k-means idea: small batches
  give noisy, often singular systems), and re-solves for all codebooks at once.
* **Proximal ridge.** ``B^T B`` is always singular: moving a vector from one codebook to another
  leaves every sum unchanged, and unused codes have empty rows. The solve therefore minimises
  ``||X - B C||^2 + lam ||C - C_old||^2`` with ``lam = ridge * mean(diag(B^T B))``, which picks the
  solution closest to the current codebooks and leaves unused codes where they are.
* **Dead codes.** A code whose running frequency falls below ``dead_code_threshold`` tokens per batch is
  moved onto the residual of a random batch token with respect to the other codebooks, and its
  statistics are reset as if it had been used there alone.
* **Latents** get the straight-through gradient and a commitment loss ``||z - sg(z_q)||^2``.

The statistics are per process: under data parallelism each rank refits from its own batches, so
ranks drift apart unless the module is kept in sync externally.

Costs: the ``(KV, KV)`` statistics cost ``(KV)^2`` floats (64 MiB for K=8, V=1024) and one dense
solve per training step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..kernels.beam import beam_search, decode_sum
from ..kernels.nearest import nearest
from ..metrics.codebook import perplexity_from_counts
from ._codebook import kmeans
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["AQ"]


@register_quantizer("aq", example={"dim": 8, "codebook_size": 16, "num_codebooks": 2, "beam_width": 4})
class AQ(Quantizer):
    """Additive quantizer: K full-width codebooks, beam-search encoding, least-squares codebook refit.

    Args:
        dim: Latent width D.
        codebook_size: Codes per codebook V.
        num_codebooks: Number of summed codebooks K; indices have shape ``(..., K)``.
        beam_width: Beam width of the encoder; 1 is greedy residual encoding.
        refine_passes: ICM passes after the beam (each re-picks every codebook's index given the others).
        decay: Weight of the old sufficient statistics in the running average; 0 refits on each batch alone.
        ridge: Strength of the proximal term that keeps the least-squares refit near the current
            codebooks, relative to the mean code frequency.
        commitment_weight: Weight of the commitment loss in ``loss``.
        kmeans_iters: Lloyd iterations per codebook of the residual k-means initialisation.
        dead_code_threshold: In training, a code whose running frequency times the batch size falls below
            this is restarted at the residual of a random batch token with respect to the other codebooks.
            ``0`` disables restarts.
    """

    has_learned_codebook = True
    encode_options = frozenset({"beam_width", "refine_passes"})

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_codebooks: int = 2,
        beam_width: int = 4,
        refine_passes: int = 0,
        decay: float = 0.9,
        ridge: float = 1e-2,
        commitment_weight: float = 0.25,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1 or num_codebooks < 1:
            raise ValueError(
                f"AQ needs dim, codebook_size and num_codebooks >= 1, got {dim}, {codebook_size}, {num_codebooks}"
            )
        if beam_width < 1 or refine_passes < 0 or kmeans_iters < 0 or dead_code_threshold < 0:
            raise ValueError(
                "AQ needs beam_width >= 1 and non-negative refine_passes, kmeans_iters and dead_code_threshold"
            )
        if not 0.0 <= decay < 1.0 or ridge <= 0.0:
            raise ValueError(f"AQ needs 0 <= decay < 1 and ridge > 0, got decay={decay}, ridge={ridge}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.index_shape = (num_codebooks,)
        self.beam_width = beam_width
        self.refine_passes = refine_passes
        self.decay = decay
        self.ridge = ridge
        self.commitment_weight = commitment_weight
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        total = num_codebooks * codebook_size
        # Small random codes make an untrained quantizer usable; the first training batch replaces them.
        self.register_buffer("codebooks", torch.randn(num_codebooks, codebook_size, dim) / num_codebooks)
        self.register_buffer("gram", torch.zeros(total, total))
        self.register_buffer("cross", torch.zeros(total, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------------------ contract methods
    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        x = latents.detach()
        first = self.training and not bool(self.initialized)
        if first:
            self.codebooks.copy_(_residual_kmeans(x, self.codebooks.shape[0], self.codebook_size, self.kmeans_iters))
        indices = self._search(x, self.beam_width, self.refine_passes)
        hard = decode_sum(self.codebooks, indices)  # (N, D), from the codebooks that chose the indices
        metrics = {"perplexity": self._perplexity(indices)}
        if self.training:
            self._refit(x, indices, weight=1.0 if first else 1.0 - self.decay)
            if first:
                self.initialized.fill_(True)
            elif self.dead_code_threshold > 0:
                metrics["restarted_codes"] = self._restart_dead_codes(x, indices)
        commitment = (latents - hard).square().mean()
        # Straight-through: adding the exact zero z - sg(z) keeps the value bitwise equal to decode(encode(z)).
        quantized = hard + (latents - latents.detach())
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=self.commitment_weight * commitment,
            losses={"commitment": commitment},
            metrics={**metrics, "quantization_error": commitment.detach()},
        )

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        """Options: ``beam_width`` and ``refine_passes`` override the constructor's values."""
        return self._search(
            latents, options.get("beam_width", self.beam_width), options.get("refine_passes", self.refine_passes)
        )

    def _decode(self, indices: Tensor) -> Tensor:
        return decode_sum(self.codebooks, indices)

    # ---------------------------------------------------------------------------------- internals
    def _search(self, latents: Tensor, beam_width: int, refine_passes: int) -> Tensor:
        _, indices = beam_search(latents, self.codebooks, beam_width=beam_width, refine_passes=refine_passes)
        return indices

    def _flat_ids(self, indices: Tensor) -> Tensor:
        """Ids into the stacked ``(K*V)`` code list, ``(N, K)``."""
        offsets = torch.arange(indices.shape[1], device=indices.device) * self.codebook_size
        return indices + offsets

    @torch.no_grad()
    def _refit(self, x: Tensor, indices: Tensor, weight: float) -> None:
        """Blends this batch's ``B^T B`` and ``B^T X`` into the running statistics and re-solves."""
        n, num_books = indices.shape
        total = self.gram.shape[0]
        ids = self._flat_ids(indices)  # (N, K)
        pairs = (ids[:, :, None] * total + ids[:, None, :]).reshape(-1)  # (N * K * K,)
        gram = torch.zeros(total * total, device=x.device).index_add_(0, pairs, x.new_ones(pairs.numel()))
        cross = torch.zeros(total, self.dim, device=x.device).index_add_(
            0, ids.reshape(-1), x.repeat_interleave(num_books, dim=0)
        )
        self.gram.lerp_(gram.view(total, total) / n, weight)
        self.cross.lerp_(cross / n, weight)
        old = self.codebooks.reshape(total, self.dim)
        lam = self.ridge * self.gram.diagonal().mean() + 1e-12
        system = self.gram + lam * torch.eye(total, device=x.device)
        solution = torch.linalg.solve(system, self.cross + lam * old)
        self.codebooks.copy_(solution.view_as(self.codebooks))

    @torch.no_grad()
    def _restart_dead_codes(self, x: Tensor, indices: Tensor) -> Tensor:
        """Moves rarely used codes onto what a random batch token still lacks; returns the count (0-d)."""
        n = x.shape[0]
        credit = self.dead_code_threshold / n
        # gram's diagonal is the running frequency of each code per token.
        dead = self.gram.diagonal() < credit  # (K*V,)
        num_dead = int(dead.sum())
        if num_dead:
            rows = dead.nonzero().squeeze(1)
            book, code = rows // self.codebook_size, rows % self.codebook_size
            pick = torch.randint(n, (num_dead,), device=x.device)
            chosen = indices[pick]  # (num_dead, K)
            others = decode_sum(self.codebooks, chosen) - self.codebooks[book, chosen[torch.arange(num_dead), book]]
            fresh = x[pick] - others
            self.codebooks[book, code] = fresh
            # Statistics as if the code had been used `credit` times per token exactly at its new value, alone,
            # so the next refit keeps it there until real assignments take over.
            self.gram[rows, :] = 0.0
            self.gram[:, rows] = 0.0
            self.gram[rows, rows] = credit
            self.cross[rows] = credit * fresh
        return x.new_tensor(float(num_dead))

    def _perplexity(self, indices: Tensor) -> Tensor:
        """Mean over codebooks of ``exp(H)`` of the batch's code distribution."""
        counts = torch.bincount(self._flat_ids(indices).reshape(-1), minlength=self.gram.shape[0])
        return perplexity_from_counts(counts.view(-1, self.codebook_size)).mean()


def _residual_kmeans(x: Tensor, num_books: int, num_codes: int, iters: int) -> Tensor:
    """Residual k-means: codebook k clusters the residual of codebooks ``0..k-1``; ``(K, V, D)``.

    Each codebook is fitted by the shared k-means (k-means++ seeding, Lloyd iterations) of every
    codebook quantizer.
    """
    residual = x
    books = []
    for _ in range(num_books):
        centres, _ = kmeans(residual, num_codes, iters)
        _, assign = nearest(residual, centres)
        residual = residual - centres[assign]
        books.append(centres)
    return torch.stack(books)
