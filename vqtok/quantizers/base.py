"""The quantizer contract shared by every vqtok quantizer.

Every quantizer takes channels-last latents ``(..., D)`` with any leading shape and returns a
:class:`QuantizerOutput`. Subclasses only ever see a flat ``(N, D)`` float32 tensor: the base class
validates inputs, flattens, switches autocast off (distances and codebook statistics are always
computed in fp32), handles masks and empty inputs, and restores the caller's shape and dtype.

Subclasses implement three methods on flat tensors:

* ``_quantize(latents, **options)`` -> :class:`QuantizerOutput` with ``quantized`` ``(N, D)``
  (straight-through in training) and ``indices`` ``(N, *index_shape)``. May update codebook state in
  training mode. ``options`` are the names in ``forward_options`` (e.g. ``num_levels``), never others.
* ``_encode(latents, **options)`` -> ``indices`` ``(N, *index_shape)``. Must never change any
  parameter or buffer; it runs under ``torch.no_grad()``.
* ``_decode(indices)`` -> ``quantized`` ``(N, D)``.

Numerical rule, the same for every quantizer (one host sync per call; :func:`skip_input_checks` turns
it off):

* Latents are checked **after** the cast to the fp32 compute dtype: NaN, ±Inf, and finite values whose
  magnitude overflows fp32 (above ~3.4e38, e.g. a float64 1e300) raise :class:`NonFiniteError` (a
  ``ValueError``) naming the quantizer and the first offending value.
* The quantizer's own floating-point parameters and buffers must be finite: a NaN/Inf in any of them
  raises :class:`NonFiniteError` naming the tensor at ``forward``, ``encode`` and ``decode``, before any
  state is updated.
* Finite latents give finite ``quantized`` values and in-range indices with ``decode(encode(x))`` equal
  to the eval-mode ``forward(x)``. Where an intermediate result of a quantizer overflows fp32 (a learned
  projection of latents near 3e38), it raises :class:`NonFiniteError` instead of returning garbage.
  Only the loss may then be non-finite (``+inf``, or NaN where two overflows meet) when squares of
  the latents overflow fp32; the trainer skips such steps (:class:`vqtok.train.Trainer`).
* ``encode`` options a quantizer does not accept (``encode(x, bogus=1)``) raise
  :class:`EncodeOptionError`, a ``TypeError`` (and, for older callers, a ``ValueError``).

Composite quantizers (:mod:`vqtok.quantizers.residual`, :mod:`vqtok.quantizers.grouped`) use only the
public methods: ``forward`` (with a ``mask``), ``encode``, ``decode`` and ``quantize_with_indices``.

Layout: latents are channels-last by default. Setting ``channel_first = True`` on any quantizer (or
``create(name, channel_first=True, ...)``) makes ``forward``, ``encode`` and ``decode`` take and return
``(B, D, ...)`` latents, as EnCodec and most conv encoders produce them; indices and masks keep the
token layout ``(B, ..., *index_shape)`` and ``(B, ...)``.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import (
    EncodeOptionError,
    NonFiniteError,
    check_finite,
    check_index_tensor,
    check_latents,
    check_mask,
    checks_enabled,
    fp32_region,
    require_finite,
    skip_input_checks,
)
from ._output import QuantizerOutput

__all__ = ["EncodeOptionError", "NonFiniteError", "Quantizer", "QuantizerOutput", "skip_input_checks"]


class Quantizer(nn.Module, ABC):
    """Base class of all quantizers.

    Subclasses set ``dim`` (D, the latent width), ``codebook_size`` (V, the number of values each
    index entry can take) and ``index_shape`` (the trailing shape of the indices of one token, ``()``
    for a single id, ``(L,)`` for L residual levels or groups).

    Every subclass follows the numerical rule of the module docstring: latents that are not finite in
    fp32 (NaN, Inf, or finite values such as a float64 1e300 that overflow the cast) and non-finite
    parameters or buffers raise :class:`NonFiniteError` naming the quantizer and the value or tensor;
    unknown ``encode`` options raise :class:`EncodeOptionError` (a ``TypeError``).
    """

    dim: int
    codebook_size: int
    index_shape: tuple[int, ...] = ()
    #: True when the quantizer owns a codebook that training changes (EMA or gradients).
    has_learned_codebook: bool = False
    #: Keyword options ``encode`` accepts; any other raises :class:`EncodeOptionError`.
    encode_options: frozenset[str] = frozenset()
    #: Names of the keyword options ``forward`` accepts (e.g. ``num_levels``); others are an error.
    forward_options: frozenset[str] = frozenset()
    #: True when every token is quantized on its own; False when neighbouring tokens interact
    #: (multi-scale quantizers pool over the token grid). The contract's mask check adapts to it.
    token_wise: bool = True
    #: Latents are ``(B, D, ...)`` instead of ``(..., D)``; see the module docstring.
    channel_first: bool = False

    # ----------------------------------------------------------------------------------- properties
    @property
    def num_codebooks(self) -> int:
        """Number of index entries per token (K): the product of ``index_shape``."""
        return math.prod(self.index_shape)

    @property
    def bits_per_token(self) -> float:
        """Bits needed to store one token's indices with a fixed-length code."""
        return self.num_codebooks * math.log2(self.codebook_size)

    # ------------------------------------------------------------------------------- public methods
    def forward(self, latents: Tensor, mask: Tensor | None = None, **options: Any) -> QuantizerOutput:
        """Quantizes ``latents``.

        Args:
            latents: ``(..., D)`` floating point (``(B, D, ...)`` with ``channel_first``).
            mask: Optional boolean ``(...)``; ``False`` marks padding. Padding tokens are still
                quantized (by ``encode``/``decode``) but take no part in losses, metrics or codebook
                updates, and get no gradient.
            **options: Method-specific options listed in ``forward_options`` (e.g. ``num_levels``
                for residual quantizers: EnCodec's bandwidth chosen per training step).

        Returns:
            A :class:`QuantizerOutput` whose ``quantized`` has the shape and dtype of ``latents``.

        Raises:
            ValueError: On a wrong last dimension, a mask of the wrong shape or an unknown option.
            NonFiniteError: On latents that are not finite in fp32, non-finite parameters or buffers, or
                an fp32 overflow inside the quantizer (see the module docstring).
        """
        unknown = sorted(set(options) - self.forward_options)
        if unknown:
            accepted = ", ".join(sorted(self.forward_options)) or "none"
            raise EncodeOptionError(
                f"{type(self).__name__}.forward got unknown options {unknown}; it accepts {accepted}"
            )
        latents = self._to_channels_last(latents)
        self._check_latents(latents)
        if mask is not None:
            mask = self._check_mask(mask, latents.shape[:-1])
        with fp32_region(latents):
            latents32 = latents.float()
            self._check_finite(latents32, latents)
            out = self._quantize_tokens(latents32, mask, options)
            self.require_finite(out.quantized, "its quantized output", latents32)
        return QuantizerOutput(
            quantized=self._to_channels_first(out.quantized.to(latents.dtype)),
            indices=out.indices,
            loss=out.loss,
            losses=out.losses,
            metrics={k: v.detach() for k, v in out.metrics.items()},
        )

    @torch.no_grad()
    def encode(self, latents: Tensor, **options: Any) -> Tensor:
        """Maps latents to indices without touching any parameter or buffer.

        Args:
            latents: ``(..., D)`` floating point (``(B, D, ...)`` with ``channel_first``).
            **options: Method-specific encoding options (e.g. ``num_levels`` for residual VQ),
                passed on to ``_encode``.

        Returns:
            ``(..., *index_shape)`` int64 indices.

        Raises:
            ValueError: On a wrong last dimension.
            NonFiniteError: As for :meth:`forward`.
            EncodeOptionError: On an option not in ``encode_options``.
        """
        unknown = sorted(set(options) - self.encode_options)
        if unknown:
            accepted = ", ".join(sorted(self.encode_options)) or "no options"
            raise EncodeOptionError(
                f"unknown {type(self).__name__} encode option(s) {unknown}; {type(self).__name__}.encode accepts "
                f"{'the options ' if self.encode_options else ''}{accepted}"
            )
        latents = self._to_channels_last(latents)
        self._check_latents(latents)
        with fp32_region(latents):
            latents32 = latents.float()
            self._check_finite(latents32, latents)
            return self._encode_tokens(latents32, options)

    def decode(self, indices: Tensor) -> Tensor:
        """Maps indices back to quantized latents (the eval-mode ``forward`` output).

        Args:
            indices: ``(..., *index_shape)`` integer tensor.

        Returns:
            ``(..., D)`` float32 quantized latents (``(B, D, ...)`` with ``channel_first``).

        Raises:
            ValueError: On a non-integer dtype, a wrong trailing shape or an index out of range.
        """
        indices = self._check_indices(indices)
        self._check_finite(None, None)
        with fp32_region(indices):
            return self._to_channels_first(self._decode_tokens(indices))

    def quantize_with_indices(self, latents: Tensor, indices: Tensor) -> QuantizerOutput:
        """Eval-mode ``forward`` with codes chosen by the caller instead of the quantizer's own search.

        Residual beam search picks the codes of all levels jointly; each level then quantizes with
        its code so that losses and the straight-through gradient stay those of the level. The
        default gives ``decode(indices)`` with an identity straight-through gradient and no loss;
        quantizers with losses override ``_quantize_with_indices``.

        Args:
            latents: ``(..., D)`` floating point, channels-last.
            indices: ``(..., *index_shape)``, valid for this quantizer.

        Returns:
            A :class:`QuantizerOutput` whose ``quantized`` equals ``decode(indices)`` in value.

        Raises:
            ValueError: In training mode (training updates the codebook before choosing codes).
        """
        if self.training:
            raise ValueError("quantize_with_indices is eval-only: training updates the codebook before choosing codes")
        self._check_latents(latents)
        indices = self._check_indices(indices)
        lead = latents.shape[:-1]
        if tuple(indices.shape[: len(lead)]) != tuple(lead):
            raise ValueError(
                f"indices shape {tuple(indices.shape)} does not match the latents' leading shape {tuple(lead)}"
            )
        with fp32_region(latents):
            flat = latents.reshape(-1, self.dim).float()
            out = self._quantize_with_indices(flat, indices.reshape(flat.shape[0], *indices.shape[len(lead) :]))
        return QuantizerOutput(
            quantized=out.quantized.to(latents.dtype).reshape(latents.shape),
            indices=out.indices.reshape(indices.shape),
            loss=out.loss,
            losses=out.losses,
            metrics={k: v.detach() for k, v in out.metrics.items()},
        )

    # ------------------------------------------------------------------------- token-level plumbing
    # Channels-last fp32 tensors with their leading shape; flattening happens here so that quantizers
    # whose tokens interact (multi-scale) can override these three instead.
    def _quantize_tokens(self, latents: Tensor, mask: Tensor | None, options: dict[str, Any]) -> QuantizerOutput:
        lead = latents.shape[:-1]
        flat = latents.reshape(-1, self.dim)
        # Tensor-valued options are per token (e.g. kept_levels): flattened, and masked, like the latents.
        for key, value in options.items():
            if isinstance(value, Tensor):
                if tuple(value.shape) != tuple(lead):
                    raise ValueError(
                        f"option {key} has shape {tuple(value.shape)}, expected the leading shape {tuple(lead)}"
                    )
                options = {**options, key: value.reshape(-1)}
        if mask is None or bool(mask.all()):
            out = self._quantize_or_empty(flat, options)
        else:
            out = self._quantize_masked(flat, mask.reshape(-1), options)
        out.quantized = out.quantized.reshape(latents.shape)
        out.indices = out.indices.reshape((*lead, *out.indices.shape[1:]))
        return out

    def _encode_tokens(self, latents: Tensor, options: dict[str, Any]) -> Tensor:
        lead = latents.shape[:-1]
        flat = latents.reshape(-1, self.dim)
        # Options can change the index shape (num_levels) or be invalid, so only an option-free
        # empty batch takes the shortcut.
        if flat.shape[0] == 0 and not options:
            indices = torch.zeros(0, *self.index_shape, dtype=torch.long, device=latents.device)
        else:
            indices = self._encode(flat, **options)
        return indices.reshape((*lead, *indices.shape[1:]))

    def _decode_tokens(self, indices: Tensor) -> Tensor:
        trailing = len(self.index_shape)
        lead = indices.shape[: indices.ndim - trailing]
        # An explicit row count: with a zero-size trailing entry, -1 would be ambiguous.
        flat = indices.reshape(math.prod(lead), *indices.shape[indices.ndim - trailing :])
        if flat.shape[0] == 0:
            quantized = torch.zeros(0, self.dim, device=indices.device)
        else:
            quantized = self._decode(flat)
        return quantized.reshape((*lead, self.dim))

    def _to_channels_last(self, latents: Tensor) -> Tensor:
        if not self.channel_first:
            return latents
        if not isinstance(latents, Tensor) or latents.ndim < 2 or latents.shape[1] != self.dim:
            got = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"{type(self).__name__} (channel_first) expects latents (B, {self.dim}, ...), got {got}")
        return latents.movedim(1, -1)

    def _to_channels_first(self, quantized: Tensor) -> Tensor:
        return quantized.movedim(-1, 1) if self.channel_first and quantized.ndim >= 2 else quantized

    # --------------------------------------------------------------------------- subclass interface
    @abstractmethod
    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        """Quantizes flat fp32 latents ``(N, D)`` with ``N >= 1``; may update state in training."""

    @abstractmethod
    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        """Flat fp32 latents ``(N, D)`` -> indices ``(N, *index_shape)``; must not mutate state."""

    @abstractmethod
    def _decode(self, indices: Tensor) -> Tensor:
        """Validated indices ``(N, *index_shape)`` -> fp32 quantized latents ``(N, D)``."""

    def _quantize_with_indices(self, latents: Tensor, indices: Tensor) -> QuantizerOutput:
        """Flat latents ``(N, D)`` and validated indices -> eval-mode output with those codes."""
        decoded = self._decode(indices)
        # `latents - latents.detach()` is exactly zero: the value is the decode, the gradient the identity.
        return QuantizerOutput(decoded + (latents - latents.detach()), indices, latents.new_zeros(()))

    def _index_upper_bounds(self) -> Tensor | int:
        """Exclusive upper bound of each index entry; broadcastable to ``index_shape``.

        Override when entries have different ranges (e.g. anchors vs relations).
        """
        return self.codebook_size

    # ------------------------------------------------------------------------------------- checking
    def _check_latents(self, latents: Tensor) -> None:
        check_latents(type(self).__name__, latents, self.dim)

    def _float_state(self) -> Iterator[tuple[str, Tensor]]:
        named = itertools.chain(self.named_parameters(), self.named_buffers())
        return ((name, t) for name, t in named if t.is_floating_point() and t.numel())

    def _check_finite(self, latents32: Tensor | None, original: Tensor | None) -> None:
        """Raises :class:`NonFiniteError` if the fp32 latents or any float parameter/buffer is not finite."""
        check_finite(type(self).__name__, list(self._float_state()), latents32, original)

    def require_finite(self, tensor: Tensor, what: str, latents: Tensor | None = None) -> None:
        """Raises :class:`NonFiniteError` naming this quantizer if ``tensor`` holds NaN/Inf.

        For subclasses, on intermediates that finite latents can still overflow in fp32 (learned projections of
        latents near 3.4e38): ``what`` names ``tensor`` in the message, ``latents`` gives the largest magnitude.
        Skipped under :func:`skip_input_checks`.
        """
        require_finite(type(self).__name__, tensor, what, latents)

    def _check_mask(self, mask: Tensor, lead: torch.Size) -> Tensor:
        return check_mask(mask, lead)

    def _check_indices(self, indices: Tensor) -> Tensor:
        """Validates dtype, trailing shape and range; returns int64 indices."""
        indices = check_index_tensor(type(self).__name__, indices, tuple(self.index_shape))
        self._check_index_range(indices)
        return indices

    def _check_index_range(self, indices: Tensor) -> None:
        if not checks_enabled() or indices.numel() == 0:
            return
        upper = self._index_upper_bounds()
        low = int(indices.min())
        too_big = indices >= (upper.to(indices.device) if isinstance(upper, Tensor) else upper)
        if low < 0 or bool(too_big.any()):
            high = int(indices.max())
            raise ValueError(
                f"indices out of range for {type(self).__name__}: min {low}, max {high}, "
                f"valid range is [0, {upper if isinstance(upper, int) else upper.tolist()})"
            )

    # -------------------------------------------------------------------------------------- helpers
    def _quantize_or_empty(self, latents: Tensor, options: dict[str, Any] | None = None) -> QuantizerOutput:
        if latents.shape[0] == 0 and not options:
            return QuantizerOutput(
                quantized=latents.clone(),
                indices=torch.zeros(0, *self.index_shape, dtype=torch.long, device=latents.device),
                loss=latents.new_zeros(()),
            )
        return self._quantize(latents, **options) if options else self._quantize(latents)

    def _quantize_masked(self, latents: Tensor, mask: Tensor, options: dict[str, Any] | None = None) -> QuantizerOutput:
        # Valid tokens go through the training path; padding is quantized without side effects,
        # so the result for valid tokens is exactly that of forward(latents[mask]).
        options = options or {}
        valid = self._quantize_or_empty(
            latents[mask], {k: v[mask] if isinstance(v, Tensor) else v for k, v in options.items()}
        )
        pad = latents[~mask]
        with torch.no_grad():
            # Per-token options steer training only; padding is encoded with the scalar ones.
            pad_indices = self._encode(pad, **{k: v for k, v in options.items() if not isinstance(v, Tensor)})
            pad_quantized = self._decode(pad_indices)
        quantized = latents.new_empty(latents.shape[0], self.dim, dtype=valid.quantized.dtype)
        quantized = quantized.masked_scatter(mask[:, None], valid.quantized)
        quantized = quantized.masked_scatter(~mask[:, None], pad_quantized.to(quantized.dtype))
        indices = torch.empty(latents.shape[0], *valid.indices.shape[1:], dtype=torch.long, device=latents.device)
        indices[mask] = valid.indices
        indices[~mask] = pad_indices
        return QuantizerOutput(quantized, indices, valid.loss, valid.losses, valid.metrics)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, index_shape={tuple(self.index_shape)}"
