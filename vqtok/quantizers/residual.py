"""Residual quantization over any registered quantizer.

Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", arXiv:2107.03312, algorithm 1:
level ``l`` quantizes what levels ``0 .. l-1`` left over and the output is the sum of the levels.
Quantizer dropout (section 3.3; Kumar et al., "High-Fidelity Audio Compression with Improved
RVQGAN", arXiv:2306.06546, section 3.2) trains every level prefix for variable bitrate.

:class:`Residual` wraps any quantizer through its public methods only (``forward`` with a mask,
``encode``, ``decode``, ``quantize_with_indices``), so ``rvq`` (levels of VQ), ``residual_fsq``,
``residual_lfq`` and ``residual_bsq`` are registrations over it.

Losses and metrics combine by the rule of :mod:`vqtok.quantizers._compose`: every level sees all D
channels, so level losses are **summed** (as in SoundStream and DAC; vector-quantize-pytorch's
``ResidualVQ`` returns one loss per level and leaves the reduction to the user, EnCodec/audiocraft
averages them, i.e. divides our loss by L); each level's own terms are in ``losses["level{i}/..."]``.
Perplexity and usage are averaged over levels.

Options beyond the paper:

* ``level_scale`` (``s``): level ``l`` quantizes ``s**l * residual`` and contributes its output divided
  by ``s**l``, which keeps each level's input at the scale its fixed grid expects (residual FSQ and
  LFQ; vector-quantize-pytorch's ``ResidualFSQ`` scales by ``levels**-l`` and ``ResidualLFQ`` by ``2**-l``).
* ``input_clamp`` (``c``): the stack quantizes ``c * tanh(z / c)`` (per channel), a soft bound applied once
  before the first level, so that levels with a linear, hard-clamped grid (``residual_fsq``) see bounded
  input and their sum approximates the bounded latent (vector-quantize-pytorch's ``ResidualFSQ``).
* ``shared_codebook_dim``: one learned projection ``D -> d`` before the whole stack and one ``d -> D``
  after it (vector-quantize-pytorch's ``ResidualVQ(codebook_dim=d)``); the levels work in ``d``.
* ``beam_width > 1``: encoding (and the eval-mode forward) keeps the best partial sums after every
  level (:func:`vqtok.kernels.beam.beam_search` over the levels' decoded code tables), never worse per
  row than greedy encoding.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels.beam import beam_search
from ._compose import build_parts, check_count, combine, shared_projection
from .base import Quantizer, QuantizerOutput, skip_input_checks

__all__ = ["Residual", "sample_kept_levels"]


class Residual(Quantizer):
    """Residual stack of quantizers: level ``l`` quantizes ``z - (q_0 + ... + q_{l-1})``.

    Indices are ``(..., L, *level_index_shape)``, coarsest level first. ``encode(latents, num_levels=n)``
    and ``forward(latents, num_levels=n)`` use the first ``n`` levels only (indices ``(..., n, ...)``);
    ``decode`` accepts any such prefix. ``forward(latents, kept_levels=counts)`` keeps a per-token
    number of levels ``counts`` ``(...)`` (in ``[1, L]``), as quantizer dropout does at random.

    Args:
        quantizer: A registered name (built ``num_levels`` times with ``quantizer_kwargs``) or a list
            of quantizer instances, one per level, that agree on ``dim``, ``codebook_size`` and
            ``index_shape``.
        num_levels: Number of levels L (with a name; defaults to 8).
        dim: Latent width D. With a name and no ``shared_codebook_dim`` it is passed to every level
            as ``dim``; ``None`` takes the levels' own width.
        quantizer_kwargs: Constructor kwargs of every level (with a name).
        quantizer_dropout: Per-token probability, in training only, of keeping just the first ``n``
            levels, ``n`` uniform in ``[1, L]``. Dropped levels report their (valid) indices but add
            nothing to the output, the losses or their codebook statistics (each level runs its
            ``forward`` with the kept tokens as its mask; under DDP a VQ level still joins every
            collective when a rank keeps none of its tokens).
        beam_width: Partial solutions kept per token by the encoder; 1 is greedy. Needs levels with a
            single index per token. Training forwards stay greedy.
        level_scale: ``s``, a float or one float per channel of the levels' width: level ``l`` sees
            ``s**l * residual``; 1 turns scaling off.
        shared_codebook_dim: Width ``d`` of one projection around the whole stack; ``None`` for none.
        input_clamp: ``c``, a float or one float per channel of the levels' width: the levels quantize
            ``c * tanh(z / c)``; ``None`` passes ``z`` unchanged.

    Raises:
        ValueError: On a bad level count, dropout probability, beam width, scale or level option.
    """

    forward_options = frozenset({"num_levels", "kept_levels"})
    encode_options = frozenset({"num_levels", "beam_width"})

    def __init__(
        self,
        quantizer: str | Sequence[Quantizer] = "vq",
        num_levels: int | None = None,
        dim: int | None = None,
        quantizer_kwargs: dict[str, Any] | None = None,
        quantizer_dropout: float = 0.0,
        beam_width: int = 1,
        level_scale: float | Sequence[float] = 1.0,
        shared_codebook_dim: int | None = None,
        input_clamp: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be a probability, got {quantizer_dropout}")
        if isinstance(quantizer, str) and num_levels is None:
            num_levels = 8
        inner = dim if shared_codebook_dim is None else check_count(shared_codebook_dim, "shared_codebook_dim")
        self.levels = nn.ModuleList(build_parts(quantizer, num_levels, quantizer_kwargs, inner, "Residual level"))
        first = self.levels[0]
        self.num_levels = len(self.levels)
        self.codebook_size = first.codebook_size
        self.index_shape = (self.num_levels, *first.index_shape)
        self.has_learned_codebook = any(level.has_learned_codebook for level in self.levels)
        self.quantizer_dropout = float(quantizer_dropout)
        self.beam_width = check_count(beam_width, "beam_width")
        if self.beam_width > 1 and first.index_shape:
            raise ValueError("beam_width > 1 needs levels with one index per token (index_shape ())")
        self.dim, self.project_in, self.project_out = shared_projection(dim, first.dim, shared_codebook_dim)
        scale = torch.as_tensor(level_scale, dtype=torch.float32).reshape(-1)
        if scale.numel() not in (1, first.dim) or not bool((scale > 0).all()):
            raise ValueError(f"level_scale must be positive, one value or {first.dim}, got {level_scale}")
        self.scaled = not bool((scale == 1).all())
        # Derived from the constructor arguments, so not saved in the state dict.
        self.register_buffer("_scale", scale, persistent=False)
        clamp = None if input_clamp is None else torch.as_tensor(input_clamp, dtype=torch.float32).reshape(-1)
        if clamp is not None and (clamp.numel() not in (1, first.dim) or not bool((clamp > 0).all())):
            raise ValueError(f"input_clamp must be positive, one value or {first.dim}, got {input_clamp}")
        self.register_buffer("_clamp", clamp, persistent=False)

    # -------------------------------------------------------------------------------- level plumbing
    def _level_scale(self, level_id: int) -> Tensor | None:
        return self._scale**level_id if self.scaled and level_id else None

    def _level_table(self, level_id: int) -> Tensor:
        """Every code of level ``level_id`` as it is added to the sum, ``(V, d)``."""
        level = self.levels[level_id]
        table = level.decode(torch.arange(self.codebook_size, device=self._scale.device))
        scale = self._level_scale(level_id)
        return table if scale is None else table / scale

    # ---------------------------------------------------------------------------------- quantization
    def _quantize(self, latents: Tensor, num_levels: Any = None, kept_levels: Tensor | None = None) -> QuantizerOutput:
        count = self._num_levels(num_levels)
        kept = self._kept(latents, count, kept_levels)
        z = self._stack_input(latents)
        chosen = None
        if not self.training and self.beam_width > 1:
            # Eval mode with a beam: codes come from the same search as encode, and each level only
            # quantizes with its code, so forward equals decode(encode(z)) and keeps the levels' losses.
            chosen = self._search(latents.detach(), z.detach(), count, self.beam_width)
        residual = z
        total = torch.zeros_like(z)
        outs: list[QuantizerOutput] = []
        for level_id in range(count):
            level, scale = self.levels[level_id], self._level_scale(level_id)
            x = residual if scale is None else residual * scale
            self.require_finite(x, f"the input of level {level_id}", z)  # as in encode: the same rule
            keep = None if kept is None else kept > level_id
            with skip_input_checks():  # the latents were checked once by forward
                if chosen is not None:
                    out = level.quantize_with_indices(x, chosen[:, level_id])
                else:
                    out = level(x, mask=keep)
            q = out.quantized if scale is None else out.quantized / scale
            total = total + (q if keep is None else q * keep[:, None])
            # Not detached: with a straight-through level the residual's gradient cancels, so the
            # latents get the identity gradient once rather than once per level.
            residual = residual - q
            outs.append(out)
        combined = combine(outs, "level", 1.0, latents)
        indices = torch.stack([out.indices for out in outs], 1)
        return QuantizerOutput(self.project_out(total), indices, combined.loss, combined.losses, combined.metrics)

    def _kept(self, latents: Tensor, count: int, kept_levels: Tensor | None) -> Tensor | None:
        """Per-token level counts ``(N,)``, or ``None`` when every token keeps all ``count`` levels."""
        n = latents.shape[0]
        if kept_levels is not None:
            kept = kept_levels.to(latents.device).reshape(-1)
            if kept.shape[0] != n or kept.is_floating_point() or kept.dtype == torch.bool:
                raise ValueError(f"kept_levels must be an integer tensor of the latents' leading shape ({n} tokens)")
            if n and (int(kept.min()) < 1 or int(kept.max()) > self.num_levels):
                raise ValueError(f"kept_levels must be in [1, {self.num_levels}]")
            return kept.clamp_max(count)
        if not self.training:
            return None
        return sample_kept_levels(n, count, self.quantizer_dropout, latents.device)

    # -------------------------------------------------------------------------------------- encoding
    def _encode(self, latents: Tensor, num_levels: Any = None, beam_width: Any = None) -> Tensor:
        # Other options never get here: the base class checks them against ``encode_options``.
        count = self._num_levels(num_levels)
        width = self.beam_width if beam_width is None else check_count(beam_width, "beam_width")
        if width > 1 and self.levels[0].index_shape:
            raise ValueError("beam_width > 1 needs levels with one index per token (index_shape ())")
        return self._search(latents, self._stack_input(latents), count, width)

    def _stack_input(self, latents: Tensor) -> Tensor:
        """What the first level's residual starts from: the projected, optionally soft-clamped latents."""
        z = self.project_in(latents)
        self.require_finite(z, "the projected latents", latents)
        return z if self._clamp is None else torch.tanh(z / self._clamp) * self._clamp

    @torch.no_grad()
    def _search(self, latents: Tensor, z: Tensor, count: int, beam_width: int) -> Tensor:
        """Indices ``(N, count, ...)`` of the first ``count`` levels, greedy or by beam search."""
        greedy = self._greedy(z, count)
        if beam_width == 1 or latents.shape[0] == 0:
            return greedy
        with skip_input_checks():
            tables = torch.stack([self._level_table(i) for i in range(count)])  # (count, V, d)
        _, beam = beam_search(z, tables, beam_width=beam_width)
        # A beam can prune the greedy path, and projected or cosine levels search another space,
        # so the greedy code stays wherever the beam is not strictly better in the latent space.
        better = self._squared_error(latents, beam) < self._squared_error(latents, greedy)
        return torch.where(better[:, None], beam, greedy)

    def _greedy(self, z: Tensor, count: int) -> Tensor:
        residual = z
        indices = []
        for level_id in range(count):
            level, scale = self.levels[level_id], self._level_scale(level_id)
            level_input = residual if scale is None else residual * scale
            # Scaled residuals of latents near the fp32 limit overflow; checked here because the levels'
            # own checks are off (the latents were checked once by the caller, no sync per level).
            self.require_finite(level_input, f"the input of level {level_id}", z)
            with skip_input_checks():
                level_indices = level.encode(level_input)
                decoded = level.decode(level_indices)
            residual = residual - (decoded if scale is None else decoded / scale)
            indices.append(level_indices)
        return torch.stack(indices, 1)

    def _squared_error(self, latents: Tensor, indices: Tensor) -> Tensor:
        return (latents - self._decode(indices)).square().sum(-1)

    def _decode(self, indices: Tensor) -> Tensor:
        total: Tensor | None = None
        # Summed in level order from zeros, exactly like forward, so the round trip is bit-exact.
        with skip_input_checks():
            for level_id in range(indices.shape[1]):
                decoded = self.levels[level_id].decode(indices[:, level_id])
                scale = self._level_scale(level_id)
                q = decoded if scale is None else decoded / scale
                total = torch.zeros_like(q) + q if total is None else total + q
        assert total is not None
        return self.project_out(total)

    # -------------------------------------------------------------------------------------- checking
    def _num_levels(self, num_levels: Any) -> int:
        return self.num_levels if num_levels is None else check_count(num_levels, "num_levels", 1, self.num_levels)

    def _check_indices(self, indices: Tensor) -> Tensor:
        # Any prefix of the levels decodes: the level axis may hold 1..L entries.
        if not isinstance(indices, Tensor):
            raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        inner = tuple(self.index_shape[1:])
        rank = len(inner) + 1
        ok = indices.ndim >= rank and tuple(indices.shape[indices.ndim - len(inner) :]) == inner
        if not ok or not 1 <= indices.shape[indices.ndim - rank] <= self.num_levels:
            expected = "(..., n" + "".join(f", {s}" for s in inner) + f") with 1 <= n <= {self.num_levels}"
            raise ValueError(f"{type(self).__name__} expects indices of shape {expected}, got {tuple(indices.shape)}")
        indices = indices.long()
        self._check_index_range(indices)
        return indices

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer_dropout={self.quantizer_dropout}, beam_width={self.beam_width}"


def sample_kept_levels(n: int, count: int, dropout: float, device: torch.device) -> Tensor | None:
    """Quantizer dropout: per-token level counts ``(n,)``, or ``None`` when every token keeps ``count``.

    A token is dropped with probability ``dropout`` and then keeps ``k`` levels, ``k`` uniform in
    ``[1, count]``; the others keep all ``count``.
    """
    if dropout <= 0.0 or count == 1:
        return None
    # Same draws in the same order as before the composites, so seeded runs reproduce.
    dropped = torch.rand(n, device=device) < dropout
    prefix = torch.randint(1, count + 1, (n,), device=device)
    return torch.where(dropped, prefix, torch.full_like(prefix, count))
