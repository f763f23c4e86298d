"""The quantizer contract shared by every vqtok quantizer.

Every quantizer takes channels-last latents ``(..., D)`` with any leading shape and returns a
:class:`QuantizerOutput`. Subclasses only ever see a flat ``(N, D)`` float32 tensor: the base class
validates inputs, flattens, switches autocast off (distances and codebook statistics are always
computed in fp32), handles masks and empty inputs, and restores the caller's shape and dtype.

Subclasses implement three methods on flat tensors:

* ``_quantize(latents)`` -> :class:`QuantizerOutput` with ``quantized`` ``(N, D)`` (straight-through
  in training) and ``indices`` ``(N, *index_shape)``. May update codebook state in training mode.
* ``_encode(latents)`` -> ``indices`` ``(N, *index_shape)``. Must never change any parameter or
  buffer; it runs under ``torch.no_grad()``.
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
"""

from __future__ import annotations

import contextlib
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["EncodeOptionError", "NonFiniteError", "Quantizer", "QuantizerOutput", "skip_input_checks"]

_CHECKS_ENABLED = True


@contextlib.contextmanager
def skip_input_checks() -> Iterator[None]:
    """Turns off the NaN/Inf and index-range checks, which each cost one host sync.

    Shape and dtype checks stay on: they are free.
    """
    global _CHECKS_ENABLED
    previous = _CHECKS_ENABLED
    _CHECKS_ENABLED = False
    try:
        yield
    finally:
        _CHECKS_ENABLED = previous


class NonFiniteError(ValueError):
    """NaN/Inf latents (after the cast to fp32), parameters or buffers, or an fp32 overflow inside a quantizer."""


class EncodeOptionError(TypeError, ValueError):
    """An ``encode`` keyword argument the quantizer does not accept.

    A ``TypeError`` like any unexpected keyword argument; also a ``ValueError`` because some quantizers
    raised that before the rule was shared.
    """


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns, whatever its options.

    Attributes:
        quantized: ``(..., D)``, same shape and dtype as the latents; straight-through in training.
        indices: ``(..., *index_shape)`` int64 codebook ids.
        loss: Scalar, already weighted; ``zeros(())`` when the method has no auxiliary loss.
        losses: Unweighted loss terms, for logging.
        metrics: Detached statistics (perplexity, usage, ...).
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)


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
    def forward(self, latents: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantizes ``latents``.

        Args:
            latents: ``(..., D)`` floating point.
            mask: Optional boolean ``(...)``; ``False`` marks padding. Padding tokens are still
                quantized (by ``encode``/``decode``) but take no part in losses, metrics or codebook
                updates, and get no gradient.

        Returns:
            A :class:`QuantizerOutput` whose ``quantized`` has the shape and dtype of ``latents``.

        Raises:
            ValueError: On a wrong last dimension or a mask of the wrong shape.
            NonFiniteError: On latents that are not finite in fp32, non-finite parameters or buffers, or
                an fp32 overflow inside the quantizer (see the module docstring).
        """
        self._check_latents(latents)
        lead = latents.shape[:-1]
        flat = latents.reshape(-1, self.dim)
        if mask is not None:
            mask = self._check_mask(mask, lead).reshape(-1)
        with _fp32_region(latents):
            flat32 = flat.float()
            self._check_finite(flat32, flat)
            if mask is None or bool(mask.all()):
                out = self._quantize_or_empty(flat32)
            else:
                out = self._quantize_masked(flat32, mask)
            self.require_finite(out.quantized, "its quantized output", flat32)
        return QuantizerOutput(
            quantized=out.quantized.to(latents.dtype).reshape(latents.shape),
            indices=out.indices.reshape((*lead, *out.indices.shape[1:])),
            loss=out.loss,
            losses=out.losses,
            metrics={k: v.detach() for k, v in out.metrics.items()},
        )

    @torch.no_grad()
    def encode(self, latents: Tensor, **options: Any) -> Tensor:
        """Maps latents to indices without touching any parameter or buffer.

        Args:
            latents: ``(..., D)`` floating point.
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
        self._check_latents(latents)
        lead = latents.shape[:-1]
        flat = latents.reshape(-1, self.dim)
        with _fp32_region(latents):
            flat32 = flat.float()
            self._check_finite(flat32, flat)
            # Options can change the index shape (num_levels) or be invalid, so only an option-free
            # empty batch takes the shortcut.
            if flat.shape[0] == 0 and not options:
                indices = torch.zeros(0, *self.index_shape, dtype=torch.long, device=latents.device)
            else:
                indices = self._encode(flat32, **options)
        return indices.reshape((*lead, *indices.shape[1:]))

    def decode(self, indices: Tensor) -> Tensor:
        """Maps indices back to quantized latents (the eval-mode ``forward`` output).

        Args:
            indices: ``(..., *index_shape)`` integer tensor.

        Returns:
            ``(..., D)`` float32 quantized latents.

        Raises:
            ValueError: On a non-integer dtype, a wrong trailing shape or an index out of range.
        """
        indices = self._check_indices(indices)
        self._check_finite(None, None)
        trailing = len(self.index_shape)
        lead = indices.shape[: indices.ndim - trailing]
        flat = indices.reshape(-1, *indices.shape[indices.ndim - trailing :])
        with _fp32_region(indices):
            if flat.shape[0] == 0:
                quantized = torch.zeros(0, self.dim, device=indices.device)
            else:
                quantized = self._decode(flat)
        return quantized.reshape((*lead, self.dim))

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

    def _index_upper_bounds(self) -> Tensor | int:
        """Exclusive upper bound of each index entry; broadcastable to ``index_shape``.

        Override when entries have different ranges (e.g. anchors vs relations).
        """
        return self.codebook_size

    # ------------------------------------------------------------------------------------- checking
    def _check_latents(self, latents: Tensor) -> None:
        if not isinstance(latents, Tensor):
            raise ValueError(f"latents must be a torch.Tensor, got {type(latents).__name__}")
        if not latents.is_floating_point():
            raise ValueError(f"latents must be floating point, got dtype {latents.dtype}")
        if latents.ndim < 1 or latents.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects channels-last latents (..., {self.dim}), "
                f"got shape {tuple(latents.shape)}"
            )

    def _float_state(self) -> Iterator[tuple[str, Tensor]]:
        named = itertools.chain(self.named_parameters(), self.named_buffers())
        return ((name, t) for name, t in named if t.is_floating_point() and t.numel())

    def _check_finite(self, latents32: Tensor | None, original: Tensor | None) -> None:
        """Raises :class:`NonFiniteError` if the fp32 latents or any float parameter/buffer is not finite.

        One host sync for everything: the min and max of each tensor (no temporary the size of the
        input) are stacked and tested at once; NaN propagates through both and Inf shows in one.
        """
        if not _CHECKS_ENABLED:
            return
        state = list(self._float_state())
        tensors = [t for _, t in state]
        if latents32 is not None and latents32.numel():
            tensors.append(latents32)
        if not tensors:
            return
        extremes = torch.stack([torch.stack(torch.aminmax(t.detach())).float() for t in tensors])
        if bool(torch.isfinite(extremes).all()):
            return
        for name, t in state:
            if not bool(torch.isfinite(t.detach()).all()):
                bad = int((~torch.isfinite(t.detach())).sum())
                raise NonFiniteError(
                    f"{type(self).__name__} {name!r} holds {bad} NaN/Inf value(s) (corrupt or diverged weights); "
                    "refusing to quantize with it"
                )
        assert latents32 is not None and original is not None
        bad_mask = ~torch.isfinite(latents32)
        first = original[bad_mask][0].item()
        raise NonFiniteError(
            f"{type(self).__name__} got latents with {int(bad_mask.sum())} value(s) that are not finite in float32 "
            f"(NaN, Inf, or magnitude above {torch.finfo(torch.float32).max:.3g}); first offending value: {first!r}"
        )

    def require_finite(self, tensor: Tensor, what: str, latents: Tensor | None = None) -> None:
        """Raises :class:`NonFiniteError` naming this quantizer if ``tensor`` holds NaN/Inf.

        For subclasses, on intermediates that finite latents can still overflow in fp32 (learned
        projections of latents near 3.4e38). Skipped under :func:`skip_input_checks`.

        Args:
            tensor: The values to check.
            what: What ``tensor`` is, for the message (e.g. ``"the projected latents"``).
            latents: The fp32 latents it came from, to report their largest magnitude.
        """
        if not _CHECKS_ENABLED or tensor.numel() == 0 or bool(torch.isfinite(tensor.detach()).all()):
            return
        peak = f" (largest |latent| {_abs_max(latents):.3g})" if latents is not None and latents.numel() else ""
        raise NonFiniteError(
            f"{type(self).__name__} overflowed float32 computing {what} from finite latents{peak}; rescale the latents"
        )

    def _check_mask(self, mask: Tensor, lead: torch.Size) -> Tensor:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool tensor, got {got}")
        if mask.shape != lead:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match the latents' leading shape {tuple(lead)}")
        return mask

    def _check_indices(self, indices: Tensor) -> Tensor:
        """Validates dtype, trailing shape and range; returns int64 indices."""
        if not isinstance(indices, Tensor):
            raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        trailing = tuple(self.index_shape)
        if indices.ndim < len(trailing) or tuple(indices.shape[indices.ndim - len(trailing) :]) != trailing:
            expected = "(..., " + ", ".join(map(str, trailing)) + ")" if trailing else "(...)"
            raise ValueError(f"{type(self).__name__} expects indices of shape {expected}, got {tuple(indices.shape)}")
        indices = indices.long()
        self._check_index_range(indices)
        return indices

    def _check_index_range(self, indices: Tensor) -> None:
        if not _CHECKS_ENABLED or indices.numel() == 0:
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
    def _quantize_or_empty(self, latents: Tensor) -> QuantizerOutput:
        if latents.shape[0] == 0:
            return QuantizerOutput(
                quantized=latents.clone(),
                indices=torch.zeros(0, *self.index_shape, dtype=torch.long, device=latents.device),
                loss=latents.new_zeros(()),
            )
        return self._quantize(latents)

    def _quantize_masked(self, latents: Tensor, mask: Tensor) -> QuantizerOutput:
        # Valid tokens go through the training path; padding is quantized without side effects,
        # so the result for valid tokens is exactly that of forward(latents[mask]).
        valid = self._quantize_or_empty(latents[mask])
        pad = latents[~mask]
        with torch.no_grad():
            pad_indices = self._encode(pad)
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


def _abs_max(t: Tensor) -> float:
    return max(float(t.detach().amax()), -float(t.detach().amin()))


@contextlib.contextmanager
def _fp32_region(reference: Tensor) -> Iterator[None]:
    """Disables autocast so that distances and statistics are computed in fp32."""
    device_type = reference.device.type if reference.device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        yield
