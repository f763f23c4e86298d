"""Tiny random ``transformers`` reference models, one per adapter family (built offline, seconds on CPU)."""

from __future__ import annotations

import torch

transformers = __import__("pytest").importorskip("transformers")


def encodec() -> torch.nn.Module:
    # codebook_size 1024 keeps EnCodec's bandwidth -> level count formula consistent (10 bits per level).
    cfg = transformers.EncodecConfig(
        target_bandwidths=[10.0, 20.0, 40.0], sampling_rate=8000, audio_channels=1, num_filters=4,
        num_residual_layers=1, upsampling_ratios=[4, 2], codebook_size=1024, codebook_dim=16, hidden_size=16,
        num_lstm_layers=1, kernel_size=3, last_kernel_size=3, residual_kernel_size=3, compress=2,
    )  # fmt: skip
    return transformers.EncodecModel(cfg).eval()


def dac() -> torch.nn.Module:
    cfg = transformers.DacConfig(
        encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16, n_codebooks=3,
        codebook_size=32, codebook_dim=4, hidden_size=16, sampling_rate=8000,
    )  # fmt: skip
    return transformers.DacModel(cfg).eval()


def mimi() -> torch.nn.Module:
    cfg = transformers.MimiConfig(
        sampling_rate=8000, frame_rate=None, audio_channels=1, hidden_size=16, num_filters=4, num_residual_layers=1,
        upsampling_ratios=[4, 2], kernel_size=3, last_kernel_size=3, residual_kernel_size=3, compress=2,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, head_dim=8, intermediate_size=32,
        sliding_window=16, codebook_size=32, codebook_dim=8, num_quantizers=4, num_semantic_quantizers=1,
        vector_quantization_hidden_dimension=8, max_position_embeddings=64, upsample_groups=16,
    )  # fmt: skip
    return transformers.MimiModel(cfg).eval()


def janus() -> torch.nn.Module:
    cfg = transformers.JanusVQVAEConfig(
        embed_dim=4, num_embeddings=32, latent_channels=32, in_channels=1, out_channels=1, base_channels=32,
        channel_multiplier=[1, 1, 1], num_res_blocks=1, num_patches=2, projection_dim=8, image_token_embed_dim=8,
    )  # fmt: skip
    return transformers.JanusVQVAE(cfg).eval()


#: family -> (builder, example signal shape).
REFERENCES = {
    "encodec": (encodec, (2, 1, 800)),
    "dac": (dac, (2, 1, 800)),
    "mimi": (mimi, (2, 1, 800)),
    "janus_vqgan": (janus, (2, 1, 8, 8)),
}


def reference_codes(name: str, model: torch.nn.Module, signal: torch.Tensor, levels: int | None = None):
    """The reference model's own codes and decoded signal, in vqtok's layout."""
    with torch.no_grad():
        if name == "encodec":
            if levels is None:
                out = model.encode(signal, bandwidth=model.config.target_bandwidths[-1])
                codes = out.audio_codes
            else:
                # Any level count through the reference's own RVQ (10 bits per level at 1000 frames/s).
                codes = model.quantizer.encode(model.encoder(signal), levels * 10.0).transpose(0, 1)[None]
            return codes[0].transpose(1, 2), model.decode(codes, [None]).audio_values
        if name == "dac":
            codes = model.encode(signal, n_quantizers=levels).audio_codes
            return codes.transpose(1, 2), model.decode(audio_codes=codes).audio_values[:, None]
        if name == "mimi":
            codes = model.encode(signal, num_quantizers=levels).audio_codes
            return codes.transpose(1, 2), model.decode(codes).audio_values
        tokens = model.encode(signal * 2 - 1).image_tokens.reshape(signal.shape[0], -1)
        return tokens.reshape(signal.shape[0], 2, 2), (model.decode(tokens) + 1) / 2
