"""Both image families at any resolution/channel count, their building options, and the input rule:
uint8/float16/bfloat16/float64 accepted as documented, wrong layouts and NaN refused, token counts honest."""

from __future__ import annotations

import math

import pytest
import torch

from vqtok.tokenizers import Image2dConfig, create_tokenizer

FSQ = {"quantizer": "fsq", "quantizer_kwargs": {"levels": (8, 5, 5)}}
FAMILIES = {
    "image2d": {"in_channels": 3, "image_size": (16, 24), "downsample": 4, "channels": (8, 16, 16), **FSQ},
    "image1d": {
        "in_channels": 3, "image_size": (16, 24), "patch_size": 4, "num_tokens": 6, "width": 32, "encoder_depth": 1,
        "decoder_depth": 1, "heads": 2, "mlp_ratio": 2.0, **FSQ,
    },
}  # fmt: skip


def _model(name: str, **kw):
    torch.manual_seed(0)
    return create_tokenizer(name, **{**FAMILIES[name], **kw}).eval()


def _pixels(c: int = 3, h: int = 16, w: int = 24, n: int = 2) -> torch.Tensor:
    """uint8 pixels; k/255 differs from its float16/bfloat16 rounding, so tests use k/256-exact values too."""
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_token_count_is_the_real_one(name) -> None:
    model = _model(name)
    x = _pixels().float() / 255
    indices = model.encode(x)
    grid = indices.shape[1 : indices.ndim - len(model.index_shape)]
    assert math.prod(grid) == model.tokens_per_example
    with pytest.raises(ValueError, match=r"image_size|\(B, 3, 16, 24\)"):
        model.encode(_pixels(h=32, w=32).float())


def test_a_28x28_model_refuses_32x32_instead_of_miscounting() -> None:
    model = create_tokenizer("image2d", in_channels=1, image_size=(28, 28), downsample=4, channels=(8, 8, 8), **FSQ)
    assert model.tokens_per_example == 49
    with pytest.raises(ValueError, match=r"image size \(32, 32\) differs from the model's image_size \(28, 28\)"):
        model.encode(torch.rand(1, 1, 32, 32))
    free = create_tokenizer("image2d", in_channels=1, image_size=(0, 0), downsample=4, channels=(8, 8, 8), **FSQ)
    assert free.tokens_per_example is None and free.encode(torch.rand(1, 1, 32, 32)).shape[1:3] == (8, 8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_layout_errors_name_the_problem(name) -> None:
    model = _model(name)
    with pytest.raises(ValueError, match="3 channel"):
        model.encode(torch.rand(2, 1, 16, 24))
    with pytest.raises(ValueError, match="3 channel"):
        model(torch.rand(16, 24))
    with pytest.raises(ValueError, match=r"divisible|image_size"):
        model.encode(torch.rand(2, 3, 18, 24))
    bad = torch.rand(2, 3, 16, 24)
    bad[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        model.encode(bad)
    with pytest.raises(ValueError, match="NaN/Inf"):
        model(bad.clamp(0, 1) * float("inf"))
    with pytest.raises(ValueError, match="uint8 pixels .* got dtype torch.int32"):
        model.encode(_pixels().int())
    with pytest.raises(ValueError, match="torch.Tensor"):
        model.encode(_pixels().numpy())


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_float_dtypes_are_read_in_the_model_dtype_and_returned_in_theirs(name, dtype) -> None:
    model = _model(name)
    x = (_pixels() // 2).float() / 128  # multiples of 1/128: exact in float16 and bfloat16
    ref_idx, ref = model.encode(x), model(x).recon
    idx, out = model.encode(x.to(dtype)), model(x.to(dtype)).recon
    torch.testing.assert_close(idx, ref_idx, rtol=0, atol=0)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=float(torch.finfo(dtype).eps) * 4)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_uint8_means_pixels_over_255(name) -> None:
    model = _model(name)
    pixels = _pixels()
    torch.testing.assert_close(model.encode(pixels), model.encode(pixels.float() / 255), rtol=0, atol=0)
    out = model(pixels).recon
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, model(pixels.float() / 255).recon)


@pytest.mark.parametrize("channels", [1, 4])
def test_any_channel_count_and_non_square_size(channels) -> None:
    model = create_tokenizer(
        "image2d", in_channels=channels, image_size=(8, 32), downsample=8, base_channels=4, channel_mult=(1, 2, 2, 4),
        attention=True, **FSQ,
    )  # fmt: skip
    x = torch.rand(2, channels, 8, 32)
    out = model(x)
    assert out.recon.shape == x.shape and model.encode(x).shape == (2, 1, 4)
    assert model.config.level_channels == (4, 8, 8, 16)
    out.loss.backward()
    attn = [p.grad for n, p in model.named_parameters() if n.endswith(".qkv.weight")]
    assert len(attn) == 2 and all(g is not None and g.abs().sum() > 0 for g in attn), "attention in both bottlenecks"


def test_option_errors() -> None:
    with pytest.raises(ValueError, match="channel_mult"):
        Image2dConfig(downsample=4, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="in_channels"):
        Image2dConfig(in_channels=0)
    with pytest.raises(ValueError, match="gan_loss"):
        Image2dConfig(gan_loss="wgan")


def test_defaults_build_the_same_network_as_before() -> None:
    """Existing configs and checkpoints keep working: no new parameters unless an option asks for them."""
    plain = create_tokenizer("image2d", **{**FAMILIES["image2d"]})
    assert not any("qkv" in k or "mid" in k for k in plain.state_dict())
    assert Image2dConfig().level_channels == (64, 128, 128)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_activation_checkpointing_changes_memory_not_maths(name) -> None:
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    grads = []
    for flag in (False, True):
        model = _model(name, checkpointing=flag).train()
        extra = {"prefix_dropout": 0.0} if name == "image1d" else {}
        for k, v in extra.items():
            setattr(model.config, k, v)
        model(x).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], msg=n)
