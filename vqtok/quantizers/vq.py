"""Nearest-code vector quantization.

van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017, arXiv:1711.00937
(VQ-VAE: straight-through estimator, codebook and commitment losses, EMA codebook in appendix A.1).

Options from later work:

* Factorised, l2-normalised codes: Yu et al., "Vector-quantized Image Modeling with Improved
  VQGAN", ICLR 2022, arXiv:2110.04627, section 3.2 (``codebook_dim < dim``, ``metric="cosine"``).
* k-means codebook initialisation and dead-code restarts: Zeghidour et al., "SoundStream",
  arXiv:2107.03312, section 3.3; Dhariwal et al., "Jukebox", arXiv:2005.00341, section 2.2.
* SimVQ: Zhu et al., "Addressing Representation Collapse in Vector Quantized Models with One
  Linear Layer", arXiv:2411.02038 (codebook = frozen random basis times a learned linear map).
* Rotation trick: Fifty et al., "Restructuring Vector Quantization with the Rotation Trick",
  arXiv:2410.06424.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import nearest
from . import _codebook as cb
from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["VQ"]

# Decay of the usage statistics that drive dead-code restarts when the codebook itself is learned
# by gradient (with an EMA codebook, ``ema_decay`` is used for both).
_USAGE_DECAY = 0.99


@register_quantizer("vq", example={"dim": 8, "codebook_size": 32})
class VQ(Quantizer):
    """Vector quantizer: each token becomes the id of its nearest codebook entry.

    Defaults are the robust recipe: k-means++ initialisation on the first training batch, EMA
    codebook updates and dead-code restarts.

    Under ``torch.distributed`` the codebook stays identical on every rank without relying on DDP's
    buffer broadcast: EMA counts and sums are all-reduced, and k-means initialisation and dead-code
    restarts are computed on rank 0 and broadcast. Every rank must therefore run each training
    forward (with at least one unmasked token), as with any collective.

    Args:
        dim: Latent width D.
        codebook_size: Number of codes V.
        codebook_dim: Width d of the codes. ``None`` (or ``dim``) looks codes up in the latent space;
            a smaller value adds a learned linear projection D -> d before the lookup and d -> D
            after it (factorised codes, arXiv:2110.04627).
        metric: ``"l2"`` (euclidean) or ``"cosine"``; with cosine, projected latents and codes are
            l2-normalised, so the quantized output of one token has unit norm in the code space.
        ema_decay: Decay of the exponential moving averages that learn the codebook, in (0, 1).
            ``None`` learns the codebook by gradient instead, through the codebook loss
            ``||sg(z) - q||^2``.
        commitment_weight: Weight beta of the commitment loss ``||z - sg(q)||^2``.
        codebook_weight: Weight of the codebook loss (only used when ``ema_decay`` is ``None``).
        kmeans_init: Initialise the codebook by k-means++ plus Lloyd iterations on the first training
            batch. The result is recorded in a buffer, so a reloaded model does not re-initialise.
            Otherwise the codes start as random latents of that batch (plus a little noise, so that
            repeats differ), on the data's scale like k-means but without its cost.
        kmeans_iters: Lloyd iterations after k-means++ seeding.
        dead_code_threshold: In training, a code whose moving-average number of assignments per batch
            falls below this is replaced by a random latent of the current batch. ``0`` disables
            restarts. The threshold is in tokens per batch, so scale it with the batch size.
        simvq: Parameterise the codebook as a frozen random basis ``C`` ``(V, d)`` times a learned
            ``(d, d)`` linear map, so every code moves with every gradient step (arXiv:2411.02038).
            Requires ``ema_decay=None``.
        gradient: How the gradient reaches the latents: ``"ste"`` (straight-through, identity) or
            ``"rotation"`` (rotation trick, arXiv:2410.06424). The forward value is the same.
        eps: Laplace smoothing constant of the EMA cluster sizes.

    Raises:
        ValueError: On inconsistent options.
    """

    has_learned_codebook = True

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        metric: Literal["l2", "cosine"] = "l2",
        ema_decay: float | None = 0.99,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1.0,
        simvq: bool = False,
        gradient: Literal["ste", "rotation"] = "ste",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be positive, got {dim} and {codebook_size}")
        codebook_dim = dim if codebook_dim is None else int(codebook_dim)
        if not 1 <= codebook_dim <= dim:
            raise ValueError(f"codebook_dim must be in [1, dim={dim}], got {codebook_dim}")
        if metric not in ("l2", "cosine"):
            raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        if simvq and ema_decay is not None:
            raise ValueError("SimVQ learns its codebook by gradient through a linear layer; pass ema_decay=None")
        if gradient not in ("ste", "rotation"):
            raise ValueError(f"gradient must be 'ste' or 'rotation', got {gradient!r}")
        if dead_code_threshold < 0 or kmeans_iters < 0:
            raise ValueError("dead_code_threshold and kmeans_iters must be non-negative")

        self.dim = dim
        self.codebook_size = codebook_size
        self.index_shape = ()
        self.codebook_dim = codebook_dim
        self.metric = metric
        self.ema_decay = ema_decay
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.simvq = simvq
        self.gradient = gradient
        self.eps = eps

        if codebook_dim < dim:
            self.project_in: nn.Module = nn.Linear(dim, codebook_dim)
            self.project_out: nn.Module = nn.Linear(codebook_dim, dim)
        else:
            self.project_in = nn.Identity()
            self.project_out = nn.Identity()

        init = torch.randn(codebook_size, codebook_dim)
        if simvq:
            # The basis is frozen (a buffer); only the linear map learns. Identity start means the
            # initial codebook is the basis itself, so k-means initialisation can write into it.
            self.register_buffer("basis", init)
            self.basis_map = nn.Linear(codebook_dim, codebook_dim, bias=False)
            nn.init.eye_(self.basis_map.weight)
        elif ema_decay is None:
            self.embed = nn.Parameter(init)
        else:
            self.register_buffer("embed", init)
            self.register_buffer("embed_sum", init.clone())
        # Moving average of assignments per batch; drives dead-code restarts (and the EMA codebook).
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        # Set once the first training batch has initialised (and, under DDP, synchronised) the codebook.
        self.register_buffer("initialized", torch.tensor(False))

    # ------------------------------------------------------------------------------------ codebook
    @property
    def codebook(self) -> Tensor:
        """The effective codebook ``(V, d)`` used for lookup (normalised for cosine), detached."""
        return self._codes().detach()

    def _codes(self) -> Tensor:
        """Effective codes ``(V, d)``, with gradient when the codebook is learned by gradient."""
        if self.simvq:
            codes = self.basis_map(self.basis)
        else:
            codes = self.embed
        return F.normalize(codes, dim=-1) if self.metric == "cosine" else codes

    def _output_table(self) -> Tensor:
        """Every code mapped back to the latent space, ``(V, D)``; decoding is a row lookup in it."""
        return self.project_out(self._codes())

    def _project(self, latents: Tensor) -> Tensor:
        z = self.project_in(latents)  # (N, d)
        if self.codebook_dim < self.dim:
            # A learned projection of finite latents near the fp32 limit can overflow.
            self.require_finite(z, "the projected latents", latents)
        return F.normalize(z, dim=-1) if self.metric == "cosine" else z

    @torch.no_grad()
    def _write_codes(self, rows: Tensor, values: Tensor) -> None:
        """Makes the effective codes ``rows`` equal ``values`` ``(len(rows), d)``."""
        if self.simvq:
            # codes = basis @ W^T, so solve W @ basis_rows^T = values^T for the frozen basis rows.
            weight = self.basis_map.weight.detach().float()
            # LU solve rather than lstsq: lstsq's CPU result varies in the last bit from run to run.
            solved, info = torch.linalg.solve_ex(weight, values.T.float())
            if int(info) != 0:  # a singular map: fall back to the least-squares solution
                solved = torch.linalg.lstsq(weight, values.T.float()).solution
            solved = solved.T
            # `.data` so that a graph still holding the old basis does not fail at backward.
            self.basis.data[rows] = solved
        else:
            self.embed.data[rows] = values

    # --------------------------------------------------------------------------- training updates
    @torch.no_grad()
    def _initialise(self, z: Tensor) -> None:
        """First training batch: k-means on rank 0, then every rank takes rank 0's codebook."""
        if self.kmeans_init:
            if cb.is_source_rank():
                centres, counts = cb.kmeans(z, self.codebook_size, self.kmeans_iters, self.metric)
            else:
                centres = z.new_empty(self.codebook_size, self.codebook_dim)
                counts = z.new_empty(self.codebook_size)
            cb.broadcast_(centres)
            cb.broadcast_(counts)
            self._write_codes(torch.arange(self.codebook_size, device=z.device), centres)
            self.cluster_size.copy_(counts)
        else:
            # Without k-means the codes still start on the data: a fixed N(0, 1) codebook far from the
            # latents' scale leaves every latent nearest the same few codes, and without dead-code restarts
            # training never recovers (2% usage, 1.4x vector-quantize-pytorch's test MSE on digits).
            if cb.is_source_rank():
                centres = cb.random_latents(z, self.codebook_size)
            else:
                centres = z.new_empty(self.codebook_size, self.codebook_dim)
            # Random choices may differ between ranks that were not seeded alike.
            cb.broadcast_(centres)
            self._write_codes(torch.arange(self.codebook_size, device=z.device), centres)
        if self.ema_decay is not None:
            self.embed_sum.copy_(self.embed * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, z: Tensor) -> Tensor:
        """Replaces codes used less than ``dead_code_threshold`` times per batch by batch latents.

        Returns:
            0-d tensor: the number of codes restarted.
        """
        dead = self.cluster_size < self.dead_code_threshold  # identical on every rank
        num_dead = int(dead.sum())
        if num_dead:
            if cb.is_source_rank():
                fresh = cb.sample_rows(z, num_dead)
            else:
                fresh = z.new_empty(num_dead, self.codebook_dim)
            cb.broadcast_(fresh)
            rows = dead.nonzero().squeeze(1)
            self._write_codes(rows, fresh)
            # A little credit so that a restarted code survives until the next batches can use it.
            self.cluster_size[rows] = self.dead_code_threshold
            if self.ema_decay is not None:
                self.embed_sum[rows] = self.embed[rows] * self.dead_code_threshold
        return z.new_tensor(float(num_dead))

    @torch.no_grad()
    def _update_statistics(self, counts: Tensor, sums: Tensor | None) -> None:
        """EMA of cluster sizes (and of the codebook itself in EMA mode) from batch statistics.

        Args:
            counts: ``(V,)`` this rank's assignment counts; summed over ranks here.
            sums: ``(V, d)`` this rank's per-code latent sums (EMA mode only); summed over ranks here.
        """
        counts = cb.all_reduce_sum_(counts.clone())
        if self.ema_decay is None:
            cb.ema_update_(self.cluster_size, counts, _USAGE_DECAY)
            return
        assert sums is not None
        sums = cb.all_reduce_sum_(sums)
        cb.ema_update_(self.cluster_size, counts, self.ema_decay, self.embed_sum, sums)
        # Divided straight into the codebook: a (V, d) temporary would be the largest allocation of a
        # training step at large V * d.
        torch.div(self.embed_sum, cb.laplace_smoothed(self.cluster_size, self.eps)[:, None], out=self.embed)

    # ------------------------------------------------------------------------------ quantization
    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        return self._step(latents)

    def _quantize_with_indices(self, latents: Tensor, indices: Tensor) -> QuantizerOutput:
        return self._step(latents, indices=indices)

    def _quantize_masked(self, latents: Tensor, mask: Tensor, options: dict[str, Any] | None = None) -> QuantizerOutput:
        if not (self.training and cb.is_distributed()):
            return super()._quantize_masked(latents, mask, options)
        # Under DDP every rank must join every collective even when it has no valid token (residual
        # quantizer dropout can leave a level none): padding rows stay in with weight 0 instead, so they
        # add nothing to losses or statistics, and their output is detached (no gradient).
        out = self._step(latents, weights=mask.float())
        out.quantized = torch.where(mask[:, None], out.quantized, out.quantized.detach())
        return out

    def _step(self, latents: Tensor, weights: Tensor | None = None, indices: Tensor | None = None) -> QuantizerOutput:
        """Quantizes ``(N, D)`` latents; ``weights`` ``(N,)`` (0 or 1) selects the rows that count.

        Rows with weight 0 are still quantized (and restarts may sample them) but take no part in
        losses, metrics or codebook statistics. Residual quantizers use this for quantizer dropout,
        so that every rank still joins every collective. ``indices`` ``(N,)``, in eval mode only,
        replaces the nearest-code search (residual beam search chooses codes jointly over levels).
        """
        if indices is not None and self.training:
            raise ValueError("precomputed indices are only accepted in eval mode: training updates the codebook first")
        z = self._project(latents)  # (N, d)
        metrics: dict[str, Tensor] = {}
        if self.training:
            if not bool(self.initialized):
                self._initialise(z.detach())
                metrics["restarted_codes"] = z.new_zeros(())
            elif self.dead_code_threshold > 0:
                metrics["restarted_codes"] = self._restart_dead_codes(z.detach())

        codes = self._codes()  # (V, d)
        if indices is None:
            _, indices = nearest(z.detach(), codes.detach(), self.metric)
        q = codes[indices]  # (N, d)

        commitment = _mean_sq_error(z, q.detach(), weights)
        losses = {"commitment": commitment}
        loss = self.commitment_weight * commitment
        if self.ema_decay is None:
            losses["codebook"] = _mean_sq_error(q, z.detach(), weights)
            loss = loss + self.codebook_weight * losses["codebook"]

        table = self._output_table().detach()
        quantized = table[indices]  # (N, D)
        if torch.is_grad_enabled():
            path = _scaled_rotation_trick(z, q) if self.gradient == "rotation" else z
            quantized = cb.with_gradient_of(quantized, self.project_out(path))

        with_sums = self.training and self.ema_decay is not None
        counts, sums = cb.cluster_stats(z.detach(), indices, self.codebook_size, weights, with_sums=with_sums)
        if self.training:
            self._update_statistics(counts, sums)
        metrics["perplexity"] = cb.perplexity_from_counts(counts)
        metrics["usage"] = (counts > 0).float().mean()
        return QuantizerOutput(quantized=quantized, indices=indices, loss=loss, losses=losses, metrics=metrics)

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        _, indices = nearest(self._project(latents), self._codes(), self.metric)
        return indices

    def _decode(self, indices: Tensor) -> Tensor:
        return self._output_table()[indices]

    def extra_repr(self) -> str:
        learn = "gradient" if self.ema_decay is None else f"ema_decay={self.ema_decay}"
        return (
            f"{super().extra_repr()}, codebook_dim={self.codebook_dim}, metric={self.metric!r}, {learn}, "
            f"simvq={self.simvq}, gradient={self.gradient!r}"
        )


def _mean_sq_error(a: Tensor, b: Tensor, weights: Tensor | None) -> Tensor:
    """Mean squared error over the rows with non-zero weight (0 when there are none)."""
    if weights is None:
        return F.mse_loss(a, b)
    per_row = (a - b).square().mean(-1)
    return (per_row * weights).sum() / weights.sum().clamp_min(1.0)


def _scaled_rotation_trick(z: Tensor, q: Tensor) -> Tensor:
    """:func:`cb.rotation_trick` on rows divided by a power of two near their largest entry.

    The trick squares norms, which overflows fp32 above ~1.8e19 (Inf output for finite latents). Its
    result is homogeneous of degree one in ``(z, q)`` jointly, so scaling both by the same power of two
    and undoing it afterwards is exact in value and gradient.
    """
    peak = torch.maximum(z.detach().abs().amax(-1, keepdim=True), q.detach().abs().amax(-1, keepdim=True))
    scale = cb.inverse_power_of_two(peak)  # not torch.ldexp: its gradient with integer exponents is zero
    return cb.rotation_trick(z * scale, q * scale) / scale
