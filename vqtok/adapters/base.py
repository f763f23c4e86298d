"""Shared machinery of the adapters: a vqtok :class:`~vqtok.tokenizers.Tokenizer` around a Hugging Face model.

An adapter holds the reference ``transformers`` model as ``self.model`` and calls the model's own
``encode``/``decode`` methods, so that codes and decoded signals are the reference model's, bit for bit;
it only changes the layout (vqtok puts tokens first and the residual levels last) and adds the vqtok
contract around it: a ``modality``, a ``quantizer`` that describes the codes (``codebook_size``,
``index_shape``) for :class:`~vqtok.vocab.MultimodalVocab` and the evaluation, and checkpoints.

``save_pretrained`` writes an ordinary vqtok checkpoint (``architecture = "hf_<model_type>"``, the model's
full ``transformers`` config under ``config.hf_config`` and its state dict under ``model.*``), so
:meth:`Tokenizer.from_pretrained`, vocabularies and exports load adapters like any other family. Loading a
Hugging Face folder or cache entry goes through :mod:`vqtok.adapters.hub`.

Adapters are for inference: the codebooks are frozen, and ``forward`` quantizes with a straight-through
estimator and no codebook loss.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..quantizers import Quantizer, QuantizerOutput
from ..tokenizers import Tokenizer, TokenizerConfig, register_tokenizer

__all__ = ["AdapterConfig", "ExternalCodes", "HFAdapter", "adapter_classes", "register_adapter"]

A = TypeVar("A", bound=type["HFAdapter"])

#: ``transformers`` ``model_type`` -> adapter class.
_ADAPTERS: dict[str, type[HFAdapter]] = {}


def register_adapter(model_type: str) -> Callable[[A], A]:
    """Registers an adapter for ``model_type`` and as the vqtok tokenizer family ``hf_<model_type>``."""

    def wrap(cls: A) -> A:
        cls.model_type = model_type
        _ADAPTERS[model_type] = cls
        return register_tokenizer(f"hf_{model_type}")(cls)

    return wrap


def adapter_classes() -> dict[str, type[HFAdapter]]:
    """``model_type`` -> adapter class, for every registered adapter."""
    return dict(_ADAPTERS)


@dataclass
class AdapterConfig(TokenizerConfig):
    """Config of an adapter: the wrapped model's complete ``transformers`` config.

    Attributes:
        hf_config: ``PretrainedConfig.to_dict()`` of the wrapped model (JSON-safe).
        quantizer: Descriptive only (``"external"``): the codes come from the wrapped model.
    """

    quantizer: str = "external"
    hf_config: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_rate(self) -> int | None:
        """Sampling rate of an audio model (``None`` for images); read by ``vqtok export``."""
        rate = self.hf_config.get("sampling_rate")
        return None if rate is None else int(rate)

    @property
    def in_channels(self) -> int:
        """Signal channels: audio channels for codecs, colour channels for images."""
        return int(self.hf_config.get("audio_channels", self.hf_config.get("in_channels", 1)))


class ExternalCodes(Quantizer):
    """Describes (and runs) the wrapped model's quantizer behind the vqtok :class:`Quantizer` contract.

    Works on flat channels-last latents ``(N, D)``; the adapter supplies two of its bound methods that call
    the wrapped quantizer (bound methods, not closures, so that ``copy.deepcopy`` of the adapter rebinds them
    to the copy). It owns no parameters, so the adapter's state dict is exactly the model's.

    Args:
        dim: Latent width D at the quantizer's input.
        codebook_size: V, values per index entry.
        index_shape: ``(L,)`` for L residual levels, ``()`` for one id per token.
        encode_fn: ``(N, D) latents, num_levels -> (N, *index_shape)`` indices.
        decode_fn: ``(N, *index_shape) indices -> (N, D)`` quantized latents.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        index_shape: tuple[int, ...],
        encode_fn: Callable[..., Tensor],
        decode_fn: Callable[[Tensor], Tensor],
    ) -> None:
        super().__init__()
        self.dim, self.codebook_size, self.index_shape = int(dim), int(codebook_size), tuple(index_shape)
        self._encode_fn, self._decode_fn = encode_fn, decode_fn

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        with torch.no_grad():
            indices = self._encode_fn(latents)
            quantized = self._decode_fn(indices).to(latents.dtype)
        # Frozen codebooks: straight-through to the encoder, no codebook or commitment loss.
        return QuantizerOutput(latents + (quantized - latents).detach(), indices, latents.new_zeros(()))

    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        unknown = sorted(set(options) - {"num_levels"})
        if unknown:
            raise ValueError(f"unknown encode option(s) {unknown} for {type(self).__name__}; accepted: num_levels")
        return self._encode_fn(latents, options.get("num_levels"))

    def _decode(self, indices: Tensor) -> Tensor:
        return self._decode_fn(indices)


class HFAdapter(Tokenizer):
    """Base of the adapters; subclasses set the class names and implement the layout-changing methods.

    Args:
        config: An :class:`AdapterConfig` (the wrapped model is built from ``config.hf_config`` with
            random weights, to be overwritten by a checkpoint).
        model: An existing ``transformers`` model to wrap instead (its config must be ``config.hf_config``).
    """

    config_class = AdapterConfig
    config: AdapterConfig
    #: ``transformers`` class names of the model and of its config.
    hf_model_class: ClassVar[str] = ""
    hf_config_class: ClassVar[str] = ""
    #: ``model_type`` of the wrapped model, set by :func:`register_adapter`.
    model_type: ClassVar[str] = ""

    def __init__(self, config: AdapterConfig, model: nn.Module | None = None) -> None:
        # Tokenizer.__init__ would build a vqtok quantizer from the config; an adapter's codes come from
        # the wrapped model, so only the module and config checks are kept.
        nn.Module.__init__(self)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        if model is None:
            model = self._build_model(config.hf_config)
        elif type(model).__name__ != self.hf_model_class:
            raise TypeError(f"{type(self).__name__} wraps a {self.hf_model_class}, got {type(model).__name__}")
        self.model = model.eval()
        self.check_hf_config(self.model.config)
        self.quantizer = self._make_quantizer()

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def _build_model(cls, hf_config: dict[str, Any]) -> nn.Module:
        import transformers

        got = hf_config.get("model_type")
        if got != cls.model_type:
            raise ValueError(f"{cls.__name__} wraps model_type {cls.model_type!r}, but hf_config has {got!r}")
        config = getattr(transformers, cls.hf_config_class).from_dict(hf_config)
        return getattr(transformers, cls.hf_model_class)(config)

    @classmethod
    def from_hf_model(cls, model: nn.Module) -> HFAdapter:
        """Wraps an existing ``transformers`` model (weights shared, not copied)."""
        hf_config = json.loads(model.config.to_json_string(use_diff=False))
        return cls(AdapterConfig(hf_config=hf_config), model)

    def check_hf_config(self, hf_config: Any) -> None:
        """Raises ``ValueError`` for configs the adapter cannot represent; subclasses extend."""

    # ------------------------------------------------------------------------- subclass interface
    def _make_quantizer(self) -> ExternalCodes:
        raise NotImplementedError

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        n = min(signal.shape[-1], recon.shape[-1])
        l1 = F.l1_loss(recon[..., :n].float(), signal[..., :n].float())
        return l1, {"recon_l1": l1.detach()}

    # ---------------------------------------------------------------------------------- helpers
    @property
    def num_levels(self) -> int:
        """Index entries per token at full rate (residual levels; 1 for single-code models)."""
        return self.quantizer.num_codebooks

    def _resolve_levels(self, options: dict[str, Any], aliases: tuple[str, ...] = ()) -> int | None:
        """Pops the level count from ``options`` (``num_levels`` or a model-specific alias).

        Raises:
            ValueError: On unknown options, two spellings at once, or a count out of range.
        """
        accepted = ("num_levels", *aliases)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"unknown encode option(s) {unknown} for {type(self).__name__}; accepted: {accepted}")
        given = {k: v for k, v in options.items() if v is not None}
        if len(given) > 1:
            raise ValueError(f"pass only one of {sorted(given)}")
        if not given:
            return None
        (key, value), total = next(iter(given.items())), self.num_levels
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= total:
            raise ValueError(f"{key} must be an int in [1, {total}], got {value!r}")
        return value

    def _check_indices(self, indices: Tensor, grid_dims: int, min_levels: int = 1) -> Tensor:
        """Validates ``(B, *grid, L')`` (or ``(B, *grid)`` for single-code models) indices; returns int64."""
        if not isinstance(indices, Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(f"{type(self).__name__} expects an integer index tensor, got {type(indices).__name__}")
        levels = len(self.quantizer.index_shape)
        if indices.ndim != 1 + grid_dims + levels:
            raise ValueError(
                f"{type(self).__name__} expects indices with {1 + grid_dims + levels} dims, got {tuple(indices.shape)}"
            )
        if levels and not min_levels <= indices.shape[-1] <= self.num_levels:
            raise ValueError(
                f"{type(self).__name__}: got {indices.shape[-1]} levels, expected {min_levels}..{self.num_levels}"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.quantizer.codebook_size):
            raise ValueError(
                f"indices out of range [0, {self.quantizer.codebook_size}): min {int(indices.min())}, "
                f"max {int(indices.max())}"
            )
        return indices.long()

    @property
    def _param(self) -> Tensor:
        return next(self.model.parameters())
