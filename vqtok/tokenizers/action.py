"""Chunked action tokenizer: ``(B, C, T)`` multichannel series to a few tokens per chunk of ``H`` steps.

Each chunk of ``H`` steps x ``C`` channels (an action chunk of a robot policy, or a window of any sensor
series) is encoded independently into ``N`` tokens by a small convolutional + MLP encoder, quantized, and
decoded back to ``H x C`` values, after Wang et al., "VQ-VLA: Improving Vision-Language-Action Models via
Scaling Vector-Quantized Action Tokenizers", arXiv:2507.01016 (which uses a causal conv encoder + residual VQ;
here the quantizer is any registered one, FSQ by default). Written for vqtok; no code was copied.

The training-free FAST tokenizer of Pertsch et al. (2025) is the baseline in :mod:`vqtok.tokenizers.fast`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from einops import rearrange
from torch import Tensor, nn

from ._config import TokenizerConfig
from ._recon_loss import l1_l2_loss
from ._registry import register_tokenizer
from .base import Tokenizer

__all__ = ["ActionConfig", "ActionTokenizer"]


def _default_fsq() -> dict[str, Any]:
    return {"levels": (8, 5, 5, 5)}


@dataclass
class ActionConfig(TokenizerConfig):
    """Config of :class:`ActionTokenizer`.

    Attributes:
        quantizer: Registered quantizer (FSQ by default: no codebook to collapse on small data).
        quantizer_kwargs: Its kwargs.
        channels: Action / sensor channels C.
        chunk_size: Steps per chunk H; inputs must have ``T`` divisible by it.
        tokens_per_chunk: Tokens N per chunk.
        width: Conv width and MLP hidden width.
        conv_layers: Temporal convolutions (kernel 3) before the MLP, in encoder and decoder alike.
        mlp_layers: Hidden layers of the MLP (width ``width``); 0 makes it a single linear map, so
            ``conv_layers=0, mlp_layers=0`` is a learned linear transform coder.
        linear_path: Adds a linear map from the flattened chunk straight to the latents, and from
            the quantized latents straight to the chunk, next to the conv + MLP path. On small data
            sets the non-linear path alone overfits and loses to a linear coder; with this path it
            starts from (and only has to improve on) a linear transform.
        recon_loss: ``"l2"``, ``"l1"`` or ``"l1+l2"``.
        recon_weight: Weight of the reconstruction term.
    """

    quantizer: str = "fsq"
    quantizer_kwargs: dict[str, Any] = field(default_factory=_default_fsq)
    channels: int = 7
    chunk_size: int = 16
    tokens_per_chunk: int = 4
    width: int = 128
    conv_layers: int = 2
    mlp_layers: int = 2
    linear_path: bool = False
    recon_loss: str = "l2"
    recon_weight: float = 1.0

    def __post_init__(self) -> None:
        if min(self.channels, self.chunk_size, self.tokens_per_chunk, self.width) < 1:
            raise ValueError("channels, chunk_size, tokens_per_chunk and width must be positive")
        if self.conv_layers < 0 or self.mlp_layers < 0:
            raise ValueError(f"conv_layers and mlp_layers must be >= 0, got {self.conv_layers}, {self.mlp_layers}")
        if self.recon_loss not in ("l1", "l2", "l1+l2"):
            raise ValueError(f"recon_loss must be 'l1', 'l2' or 'l1+l2', got {self.recon_loss!r}")


def _conv_stack(c_in: int, width: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Conv1d(c_in if i == 0 else width, width, 3, padding=1), nn.GELU()]
    return nn.Sequential(*mods)


def _mlp(c_in: int, width: int, c_out: int, hidden_layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(hidden_layers):
        mods += [nn.Linear(c_in if i == 0 else width, width), nn.GELU()]
    mods.append(nn.Linear(width if hidden_layers else c_in, c_out))
    return nn.Sequential(*mods)


class _ChunkEncoder(nn.Module):
    def __init__(self, cfg: ActionConfig, dim: int) -> None:
        super().__init__()
        feat = cfg.width if cfg.conv_layers else cfg.channels
        self.convs = _conv_stack(cfg.channels, cfg.width, cfg.conv_layers)
        self.mlp = _mlp(feat * cfg.chunk_size, cfg.width, cfg.tokens_per_chunk * dim, cfg.mlp_layers)
        flat = cfg.channels * cfg.chunk_size
        self.linear = nn.Linear(flat, cfg.tokens_per_chunk * dim) if cfg.linear_path else None
        self.tokens, self.dim = cfg.tokens_per_chunk, dim

    def forward(self, chunks: Tensor) -> Tensor:
        """``(M, C, H) -> (M, N, D)``."""
        out = self.mlp(self.convs(chunks).flatten(1))
        if self.linear is not None:
            out = out + self.linear(chunks.flatten(1))
        return out.view(-1, self.tokens, self.dim)


class _ChunkDecoder(nn.Module):
    def __init__(self, cfg: ActionConfig, dim: int) -> None:
        super().__init__()
        self.feat = cfg.width if cfg.conv_layers else cfg.channels
        self.h, self.c = cfg.chunk_size, cfg.channels
        self.mlp = _mlp(cfg.tokens_per_chunk * dim, cfg.width, self.feat * cfg.chunk_size, cfg.mlp_layers)
        self.convs = _conv_stack(cfg.width, cfg.width, max(cfg.conv_layers - 1, 0))
        self.out = nn.Conv1d(self.feat, cfg.channels, 3, padding=1) if cfg.conv_layers else nn.Identity()
        flat = cfg.channels * cfg.chunk_size
        self.linear = nn.Linear(cfg.tokens_per_chunk * dim, flat) if cfg.linear_path else None

    def forward(self, tokens: Tensor) -> Tensor:
        """``(M, N, D) -> (M, C, H)``."""
        flat = tokens.flatten(1)
        out = self.out(self.convs(self.mlp(flat).view(-1, self.feat, self.h)))
        if self.linear is not None:
            out = out + self.linear(flat).view(-1, self.c, self.h)
        return out


@register_tokenizer("action")
class ActionTokenizer(Tokenizer):
    """Chunked tokenizer: ``(B, C, T)`` -> indices ``(B, T / H, N, *index_shape)`` -> ``(B, C, T)``.

    Chunks are independent, so any ``T`` divisible by ``H`` works and tokens per second scale with ``T``.

    Args:
        config: An :class:`ActionConfig`.
    """

    config_class = ActionConfig
    modality = "timeseries"
    config: ActionConfig

    def __init__(self, config: ActionConfig) -> None:
        super().__init__(config)
        self.encoder = _ChunkEncoder(config, self.quantizer.dim)
        self.decoder = _ChunkDecoder(config, self.quantizer.dim)

    @property
    def tokens_per_chunk(self) -> int:
        """Tokens N per chunk of ``H`` steps."""
        return self.config.tokens_per_chunk

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c, h = self.config.channels, self.config.chunk_size
        if signal.ndim != 3 or signal.shape[1] != c:
            raise ValueError(f"ActionTokenizer expects series (B, {c}, T), got shape {tuple(signal.shape)}")
        if signal.shape[-1] == 0 or signal.shape[-1] % h:
            raise ValueError(f"series length {signal.shape[-1]} is not a positive multiple of chunk_size {h}")

    def _encode_latents(self, signal: Tensor) -> Tensor:
        k = signal.shape[-1] // self.config.chunk_size
        chunks = rearrange(signal, "b c (k h) -> (b k) c h", k=k)
        tokens = self.encoder(chunks)
        # Named by k, not b: einops cannot infer k from an empty batch.
        return rearrange(tokens, "(b k) n d -> b k n d", k=k)

    def decode(self, indices: Tensor) -> Tensor:
        """Indices ``(B, K, N, *index_shape)`` -> series ``(B, C, K * H)``.

        A residual quantizer also takes a prefix of its levels (``encode(x, num_levels=n)``).

        Raises:
            ValueError: On anything that is not such an integer tensor with ``K >= 1`` chunks and ``N``
                tokens per chunk, or on an index out of the quantizer's range; never decodes it to zeros.
        """
        if not isinstance(indices, Tensor):
            raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
        n, trailing = self.config.tokens_per_chunk, len(self.quantizer.index_shape)
        if indices.ndim != 3 + trailing or indices.shape[1] < 1 or indices.shape[2] != n:
            layout = ", ".join(["B", "K >= 1", str(n), *map(str, self.quantizer.index_shape)])
            raise ValueError(f"ActionTokenizer expects indices ({layout}), got shape {tuple(indices.shape)}")
        return super().decode(indices)

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        if quantized.ndim != 4 or quantized.shape[2] != self.config.tokens_per_chunk:
            raise ValueError(
                f"expected quantized latents (B, K, {self.config.tokens_per_chunk}, D), got {tuple(quantized.shape)}"
            )
        chunks = self.decoder(rearrange(quantized, "b k n d -> (b k) n d"))
        return rearrange(chunks, "(b k) c h -> b c (k h)", k=quantized.shape[1])

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return l1_l2_loss(signal, recon, self.config.recon_loss, self.config.recon_weight)
