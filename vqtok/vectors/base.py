"""Shared machinery of the offline vector codecs: input checks, device choice, packing and (de)serialization.

A codec maps ``(N, D)`` float vectors to ``(N, M)`` int64 indices (``M = num_codebooks``, each in
``[0, codebook_size)``) and back. Unlike :class:`vqtok.quantizers.Quantizer` it is fitted offline
(``fit``), never trained by gradient, and is not an ``nn.Module``.

For asymmetric distance computation (ADC) every codec expresses the squared L2 distance between a
query ``q`` and a decoded vector ``x_hat`` as::

    ||q - x_hat||^2 = query_term(q) + sum_m lut[q, m, indices_m] + database_term(indices)

where ``lut`` is ``(Q, M, K)``: product codes need no extra terms; additive codes need ``||q||^2`` and
``||x_hat||^2`` (which :mod:`vqtok.vectors.search` recomputes from the indices, so nothing beyond
the indices is stored).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .packing import code_size, pack_indices, unpack_indices

__all__ = ["VectorCodec", "codec_class"]

_REGISTRY: dict[str, type[VectorCodec]] = {}
# |x|^2 summed over D coordinates must stay below float32's max (3.4e38) for every distance computed in fit.
_MAX_SQUARED_NORM = 1e37


def codec_class(name: str) -> type[VectorCodec] | None:
    """The codec class registered under ``name`` (``"PQ"``, ``"OPQ"``, ``"RQ"``, ``"LSQ"``), or ``None``."""
    return _REGISTRY.get(name)


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class VectorCodec(ABC):
    """Base class of PQ, OPQ, RQ and LSQ.

    Subclasses set ``dim``, ``num_codebooks``, ``codebook_bits`` and implement ``_fit``, ``_encode``,
    ``_decode``, ``_lut`` and the tensor/config (de)serialization hooks.
    """

    additive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(
        self,
        dim: int,
        num_codebooks: int,
        codebook_bits: int = 8,
        seed: int = 0,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        """Args:
        dim: Vector dimension ``D``.
        num_codebooks: Indices per vector ``M``.
        codebook_bits: Bits per index; ``codebook_size = 2 ** codebook_bits``.
        seed: Seed of every random choice in ``fit``.
        device: Where fitting and encoding run; CUDA when available if ``None``.
        progress: Show tqdm progress bars during ``fit``.
        """
        if dim <= 0 or num_codebooks <= 0 or not 1 <= codebook_bits <= 16:
            raise ValueError(
                f"need dim > 0, num_codebooks > 0 and 1 <= codebook_bits <= 16, got {dim}, {num_codebooks}, "
                f"{codebook_bits}"
            )
        self.dim = dim
        self.num_codebooks = num_codebooks
        self.codebook_bits = codebook_bits
        self.codebook_size = 1 << codebook_bits
        self.seed = seed
        self.device = _default_device(device)
        self.progress = progress
        self.is_fitted = False

    # ----------------------------------------------------------------- public API
    @property
    def code_size(self) -> int:
        """Bytes per packed vector."""
        return code_size(self.num_codebooks, self.codebook_bits)

    def fit(self, x: Tensor | np.ndarray) -> VectorCodec:
        """Fits the codebooks.

        Args:
            x: ``(N, D)`` training vectors, ``N >= codebook_size``.

        Returns:
            ``self``.

        Raises:
            ValueError: On a wrong shape, NaN/Inf, values so large that squared distances overflow float32, or
                fewer training vectors than codebook entries.
        """
        x = self._check(x)
        peak = float(x.abs().max()) if x.numel() else 0.0
        if peak * peak * self.dim > _MAX_SQUARED_NORM:
            raise ValueError(
                f"{type(self).__name__}.fit: training vectors reach {peak:.3g} per coordinate, so squared distances "
                f"overflow float32; rescale the vectors (e.g. divide by their largest norm) before fitting"
            )
        if x.shape[0] < self.codebook_size:
            raise ValueError(
                f"{type(self).__name__} with codebook_size={self.codebook_size} needs at least that many training "
                f"vectors, got {x.shape[0]}"
            )
        self._fit(x)
        self.is_fitted = True
        return self

    @torch.no_grad()
    def encode(self, x: Tensor | np.ndarray, batch_size: int = 8192) -> Tensor:
        """Encodes vectors to indices.

        Args:
            x: ``(N, D)`` vectors.
            batch_size: Vectors per chunk (bounds scratch memory).

        Returns:
            ``(N, M)`` int64 indices on ``self.device``.
        """
        self._require_fitted()
        x = self._check(x)
        parts = []
        n = x.shape[0]
        # A bar only when there is more than one chunk: LSQ's local search takes minutes per million vectors.
        with tqdm(
            total=n, desc=f"{type(self).__name__} encode", unit="vec", disable=not self.progress or n <= batch_size
        ) as bar:
            for i in range(0, n, batch_size):
                parts.append(self._encode(x[i : i + batch_size]))
                bar.update(parts[-1].shape[0])
        if not parts:
            return torch.zeros(0, self.num_codebooks, dtype=torch.long, device=self.device)
        return torch.cat(parts)

    @torch.no_grad()
    def decode(self, indices: Tensor | np.ndarray) -> Tensor:
        """Reconstructs vectors from indices.

        Args:
            indices: ``(N, M)`` integer indices.

        Returns:
            ``(N, D)`` float32 on ``self.device``.
        """
        self._require_fitted()
        return self._decode(self._check_indices(indices))

    def pack(self, indices: Tensor) -> Tensor:
        """``(N, M)`` indices -> ``(N, code_size)`` uint8 (CPU)."""
        return pack_indices(self._check_indices(indices), self.codebook_bits)

    def unpack(self, packed: Tensor | np.ndarray) -> Tensor:
        """``(N, code_size)`` uint8 -> ``(N, M)`` int64 indices on ``self.device``."""
        packed = torch.as_tensor(packed)
        return unpack_indices(packed, self.num_codebooks, self.codebook_bits).to(self.device)

    @torch.no_grad()
    def lookup_tables(self, queries: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """ADC tables: ``||q - decode(i)||^2 = query_term + sum_m lut[:, m, i_m] + database_term(i)``.

        Args:
            queries: ``(Q, D)``.

        Returns:
            ``(lut, query_term)``: ``(Q, M, K)`` and ``(Q,)`` float32.
        """
        self._require_fitted()
        return self._lut(self._check(queries))

    @torch.no_grad()
    def inner_product_tables(self, queries: Tensor | np.ndarray) -> Tensor:
        """Inner-product tables: ``<q, decode(i)> = sum_m table[:, m, i_m]``.

        Args:
            queries: ``(Q, D)``.

        Returns:
            ``(Q, M, K)`` float32.
        """
        self._require_fitted()
        return self._ip_lut(self._check(queries))

    def _ip_lut(self, queries: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no inner-product tables")

    # ----------------------------------------------------------------- state (for io and index)
    def state_dict(self) -> dict[str, Tensor]:
        """The fitted tensors by name (an unfitted codec returns zero tensors of the fitted shapes)."""
        return dict(self._tensors())

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Installs fitted tensors (as returned by :meth:`state_dict`) and marks the codec fitted."""
        self._load_tensors({k: v.to(self.device) for k, v in tensors.items()})
        self.is_fitted = True

    @classmethod
    def init_parameters(cls) -> set[str]:
        """Keyword names the constructor accepts, following a subclass's ``**options`` to its base classes."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        names.discard("self")
        return names

    def config(self) -> dict[str, Any]:
        """Constructor settings beyond ``dim``, ``num_codebooks``, ``codebook_bits``, ``seed`` (JSON-serializable)."""
        return dict(self._config())

    def require_fitted(self) -> None:
        """Raises ``RuntimeError`` unless the codec is fitted."""
        self._require_fitted()

    def check_vectors(self, x: Tensor | np.ndarray) -> Tensor:
        """``(N, D)`` float32 vectors on ``self.device``; ``ValueError`` on a wrong shape, dtype, NaN or Inf."""
        return self._check(x)

    def check_indices(self, indices: Tensor | np.ndarray) -> Tensor:
        """``(N, M)`` int64 indices on ``self.device``; ``ValueError`` on a wrong shape, dtype or range."""
        return self._check_indices(indices)

    # ----------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _fit(self, x: Tensor) -> None: ...

    @abstractmethod
    def _encode(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def _decode(self, indices: Tensor) -> Tensor: ...

    @abstractmethod
    def _lut(self, queries: Tensor) -> tuple[Tensor, Tensor]: ...

    @abstractmethod
    def _tensors(self) -> dict[str, Tensor]:
        """Fitted state to save."""

    @abstractmethod
    def _load_tensors(self, tensors: dict[str, Tensor]) -> None: ...

    def _config(self) -> dict[str, Any]:
        """Constructor arguments beyond the common ones, JSON-serializable."""
        return {}

    # ----------------------------------------------------------------- helpers
    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    def _check(self, x: Tensor | np.ndarray) -> Tensor:
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects (N, {self.dim}) vectors, got shape {tuple(x.shape)}")
        if not (x.is_floating_point()):
            raise ValueError(f"expected floating point vectors, got {x.dtype}")
        x = x.to(self.device, torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("vectors contain NaN or Inf")
        return x

    def _check_indices(self, indices: Tensor | np.ndarray) -> Tensor:
        idx = torch.as_tensor(indices)
        if idx.ndim != 2 or idx.shape[1] != self.num_codebooks:
            raise ValueError(f"expected (N, {self.num_codebooks}) indices, got shape {tuple(idx.shape)}")
        if idx.is_floating_point():
            raise ValueError(f"indices must be integers, got {idx.dtype}")
        idx = idx.to(self.device, torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.codebook_size):
            raise ValueError(f"indices must lie in [0, {self.codebook_size})")
        return idx

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, num_codebooks={self.num_codebooks}, "
            f"codebook_bits={self.codebook_bits}, code_size={self.code_size}B, fitted={self.is_fitted})"
        )
