"""1-D image tokenizer: a ViT reads patches plus learned latent tokens and keeps only the latent tokens.

After Yu et al., "An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok), arXiv:2406.07550:
patch embedding -> ViT encoder over ``[patches; latent tokens]`` -> the ``N`` latent outputs are quantized ->
ViT decoder over ``[mask tokens; quantized tokens]`` -> the mask-token outputs become pixels. Training
applies nested ("tail") token dropout, after Miwa et al., "One-D-Piece: Image Tokenizer Meets Quality-
Controllable Compression", arXiv:2501.10064, and Bachmann et al., "FlexTok", arXiv:2502.13967: with
probability ``prefix_dropout`` an image keeps only its first ``k`` tokens (``k`` uniform in ``[1, N]``) and
the rest are replaced by a learned null token. Early tokens thus carry the coarse content, and
``decode(indices[:, :k])`` gives a coarser image for any ``1 <= k <= N``. Written for vqtok; no code was
copied and no weights are shipped. Inputs follow :mod:`vqtok.tokenizers._image_input` (uint8 or any float dtype).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._config import TokenizerConfig
from ._image_input import prepare_images
from ._recon_loss import l1_l2_loss
from ._registry import register_tokenizer
from .base import Tokenizer, TokenizerOutput

__all__ = ["Image1dConfig", "Image1dTokenizer"]


def _default_vq() -> dict[str, Any]:
    return {"dim": 16, "codebook_size": 1024}


@dataclass
class Image1dConfig(TokenizerConfig):
    """Config of :class:`Image1dTokenizer`.

    Attributes:
        quantizer: Registered quantizer (VQ with low-dimensional codes by default, as in TiTok).
        quantizer_kwargs: Its kwargs; ``dim`` is the token width D.
        in_channels: Image channels C.
        image_size: ``(H, W)``; fixed, since positions are learned.
        patch_size: Square patch side p; ``H`` and ``W`` must be divisible by it.
        num_tokens: Latent tokens N per image (32-256 in TiTok).
        width: Transformer width.
        encoder_depth: Encoder blocks.
        decoder_depth: Decoder blocks.
        heads: Attention heads (divides ``width``).
        mlp_ratio: Hidden size of the MLP as a multiple of ``width``.
        prefix_dropout: Probability, in training, that an image keeps only a random prefix of its tokens.
        recon_loss: ``"l1"``, ``"l2"`` or ``"l1+l2"``.
        recon_weight: Weight of the reconstruction term.
        checkpointing: Recompute each transformer block's activations in backward (less memory, more compute).
    """

    quantizer: str = "vq"
    quantizer_kwargs: dict[str, Any] = field(default_factory=_default_vq)
    in_channels: int = 3
    image_size: tuple[int, int] = (32, 32)
    patch_size: int = 4
    num_tokens: int = 32
    width: int = 128
    encoder_depth: int = 4
    decoder_depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    prefix_dropout: float = 0.5
    recon_loss: str = "l2"
    recon_weight: float = 1.0
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        h, w = self.image_size
        p = self.patch_size
        if p < 1 or h < 1 or w < 1 or h % p or w % p:
            raise ValueError(f"image_size {self.image_size} must be positive and divisible by patch_size {p}")
        if self.num_tokens < 1 or self.width < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError("num_tokens and width must be positive, and heads must divide width")
        if self.encoder_depth < 1 or self.decoder_depth < 1:
            raise ValueError("encoder_depth and decoder_depth must be >= 1")
        if not 0.0 <= self.prefix_dropout <= 1.0:
            raise ValueError(f"prefix_dropout must be a probability, got {self.prefix_dropout}")
        if self.recon_loss not in ("l1", "l2", "l1+l2"):
            raise ValueError(f"recon_loss must be 'l1', 'l2' or 'l1+l2', got {self.recon_loss!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size[0] // self.patch_size) * (self.image_size[1] // self.patch_size)


def _transformer(cfg: Image1dConfig, depth: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.width,
        cfg.heads,
        int(cfg.width * cfg.mlp_ratio),
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # enable_nested_tensor only matters for padding masks, which are never used here.
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(cfg.width), enable_nested_tensor=False)


@register_tokenizer("image1d")
class Image1dTokenizer(Tokenizer):
    """Image tokenizer with a 1-D token sequence: ``(B, C, H, W)`` -> ``(B, N, *index_shape)`` -> images.

    ``decode`` accepts any prefix ``indices[:, :k]``, ``1 <= k <= N``; missing tokens become the learned
    null token, which is exactly what training with ``prefix_dropout`` taught the decoder to expect.

    Args:
        config: An :class:`Image1dConfig`.
    """

    config_class = Image1dConfig
    modality = "image"
    config: Image1dConfig

    def __init__(self, config: Image1dConfig) -> None:
        super().__init__(config)
        cfg, d, w = config, self.quantizer.dim, config.width
        p, n, m = cfg.patch_size, cfg.num_tokens, cfg.num_patches
        self.patch_embed = nn.Conv2d(cfg.in_channels, w, p, stride=p)
        self.patch_pos = nn.Parameter(torch.randn(m, w) * 0.02)
        self.latent_tokens = nn.Parameter(torch.randn(n, w) * 0.02)
        self.encoder = _transformer(cfg, cfg.encoder_depth)
        self.to_latent = nn.Linear(w, d)
        self.from_latent = nn.Linear(d, w)
        self.token_pos = nn.Parameter(torch.randn(n, w) * 0.02)
        self.null_token = nn.Parameter(torch.zeros(w))
        self.mask_token = nn.Parameter(torch.randn(w) * 0.02)
        self.decoder_patch_pos = nn.Parameter(torch.randn(m, w) * 0.02)
        self.decoder = _transformer(cfg, cfg.decoder_depth)
        self.to_pixels = nn.Linear(w, p * p * cfg.in_channels)

    @property
    def tokens_per_example(self) -> int | None:
        return self.config.num_tokens

    def check_signal(self, signal: Tensor) -> None:
        super().check_signal(signal)
        c, (h, w) = self.config.in_channels, self.config.image_size
        if signal.ndim != 4 or tuple(signal.shape[1:]) != (c, h, w):
            raise ValueError(
                f"Image1dTokenizer expects images (B, {c}, {h}, {w}) ({c} channel(s), the model's image_size, "
                f"which its learned positions fix), got shape {tuple(signal.shape)}"
            )

    def forward(self, signal: Tensor, mask: Tensor | None = None) -> TokenizerOutput:
        """As :meth:`Tokenizer.forward`, after the dtype rule; ``recon`` comes back in the caller's float dtype."""
        images, dtype = prepare_images(signal, self.patch_pos.dtype, type(self).__name__)
        out = super().forward(images, mask)
        out.recon = out.recon.to(dtype)
        return out

    def encode(self, signal: Tensor, **options: Any) -> Tensor:
        """As :meth:`Tokenizer.encode`, after the dtype rule."""
        return super().encode(prepare_images(signal, self.patch_pos.dtype, type(self).__name__)[0], **options)

    def _run(self, transformer: nn.TransformerEncoder, x: Tensor) -> Tensor:
        if not (self.config.checkpointing and torch.is_grad_enabled()):
            return transformer(x)
        for layer in transformer.layers:
            x = checkpoint(layer, x, use_reentrant=False)
        return transformer.norm(x) if transformer.norm is not None else x

    def _encode_latents(self, signal: Tensor) -> Tensor:
        b = signal.shape[0]
        patches = rearrange(self.patch_embed(signal), "b w h x -> b (h x) w") + self.patch_pos
        latents = self.latent_tokens.expand(b, -1, -1)
        h = self._run(self.encoder, torch.cat([patches, latents], 1))
        return self.to_latent(h[:, -self.config.num_tokens :])  # (B, N, D)

    def _decode_latents(self, quantized: Tensor) -> Tensor:
        keep = None
        if self.training and self.config.prefix_dropout > 0:
            b, n = quantized.shape[:2]
            dropped = torch.rand(b, device=quantized.device) < self.config.prefix_dropout
            prefix = torch.randint(1, n + 1, (b,), device=quantized.device)
            keep = torch.where(dropped, prefix, torch.full_like(prefix, n))
        return self._decode_tokens(quantized, keep)

    def _decode_tokens(self, quantized: Tensor, keep: Tensor | None) -> Tensor:
        """``(B, k, D)`` quantized tokens, ``k <= N`` -> ``(B, C, H, W)``; ``keep`` ``(B,)`` masks each tail."""
        cfg = self.config
        b, k = quantized.shape[:2]
        tokens = self.from_latent(quantized)  # (B, k, W)
        if k < cfg.num_tokens:
            tokens = torch.cat([tokens, self.null_token.expand(b, cfg.num_tokens - k, -1)], 1)
        if keep is not None:
            position = torch.arange(cfg.num_tokens, device=tokens.device)
            tokens = torch.where((position[None] < keep[:, None])[..., None], tokens, self.null_token)
        tokens = tokens + self.token_pos
        masks = self.mask_token + self.decoder_patch_pos
        h = self._run(self.decoder, torch.cat([masks.expand(b, -1, -1), tokens], 1))
        pixels = self.to_pixels(h[:, : cfg.num_patches])
        p = cfg.patch_size
        return rearrange(
            pixels,
            "b (h x) (p q c) -> b c (h p) (x q)",
            h=cfg.image_size[0] // p,
            p=p,
            q=p,
        )

    def decode(self, indices: Tensor) -> Tensor:
        """Indices ``(B, k, *index_shape)``, ``1 <= k <= N`` (a prefix of :meth:`encode`'s) -> ``(B, C, H, W)``.

        Raises:
            ValueError: On a wrong shape or ``k`` outside ``[1, N]``, or on invalid indices.
        """
        trailing = len(self.quantizer.index_shape)
        n = self.config.num_tokens
        if not isinstance(indices, Tensor) or indices.ndim != 2 + trailing or not 1 <= indices.shape[1] <= n:
            raise ValueError(
                f"Image1dTokenizer expects indices (B, k, *{tuple(self.quantizer.index_shape)}) with 1 <= k <= {n}, "
                f"got {tuple(getattr(indices, 'shape', ()))}"
            )
        quantized = self.quantizer.decode(indices)
        param = next(self.parameters())
        return self._decode_tokens(quantized.to(param.dtype), keep=None)

    def _reconstruction_losses(self, signal: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return l1_l2_loss(signal, recon, self.config.recon_loss, self.config.recon_weight)
