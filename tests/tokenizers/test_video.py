"""video tokenizer: causality and image/video consistency for every tested quantizer and compression, the
frame-count rule, bad input, checkpoints and the 3-D discriminator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqtok.layers import CausalConv3d, CausalDownsample3d, CausalUpsample3d, PatchDiscriminator3d
from vqtok.quantizers import example_config, list_quantizers
from vqtok.tokenizers import Tokenizer, VideoConfig, VideoTokenizer, create_tokenizer, list_tokenizers
from vqtok.tokenizers.video import pad_frames, stack_frames, valid_frame_count, video_to_float
from vqtok.train.adversarial import build_adversary

# temporal x spatial compression -> a tiny config of it
COMPRESSIONS = {
    "4x8x8": {"temporal_downsample": 4, "downsample": 8, "patch_size": 2, "channels": (4, 8, 8)},
    "4x4x4": {"temporal_downsample": 4, "downsample": 4, "patch_size": 1, "channels": (4, 8, 8)},
    "1x8x8": {"temporal_downsample": 1, "downsample": 8, "patch_size": 2, "channels": (4, 8, 8)},
}
QUANTIZERS = ("fsq", "lfq", "vq")


def _tiny(compression: str = "4x4x4", quantizer: str = "fsq", **kw) -> VideoTokenizer:
    torch.manual_seed(0)
    cfg = {"in_channels": 1, **COMPRESSIONS[compression], "quantizer": quantizer}
    cfg["quantizer_kwargs"] = example_config(quantizer)
    return create_tokenizer("video", **{**cfg, **kw})  # type: ignore[return-value]


def _clip(b: int = 2, t: int = 9, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, t, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_defaults_and_config_errors() -> None:
    assert "video" in list_tokenizers()
    model = create_tokenizer("video", quantizer_kwargs={"levels": (8, 5, 5, 5)})
    assert model.modality == "video" and model.config.quantizer == "fsq"
    assert (model.config.temporal_downsample, model.config.downsample) == (4, 8)
    with pytest.raises(ValueError, match="power of two"):
        VideoConfig(temporal_downsample=3)
    with pytest.raises(ValueError, match="entries in channels"):
        VideoConfig(downsample=8, patch_size=1, channels=(8, 8))
    with pytest.raises(ValueError, match="stride-2 stages"):
        VideoConfig(temporal_downsample=8, downsample=8, patch_size=2, channels=(4, 8, 8))
    with pytest.raises(ValueError, match="per-frame"):
        VideoConfig(norm="batch")
    with pytest.raises(ValueError, match="1 \\+ 4\\*k"):
        VideoConfig(frames=16)
    assert VideoConfig(frames=17, image_size=(64, 64)).frames == 17


def test_frame_count_rule() -> None:
    assert [t for t in range(1, 18) if valid_frame_count(t, 4)] == [1, 5, 9, 13, 17]
    x = _clip(t=16)
    padded = pad_frames(x, 4)
    assert padded.shape[2] == 17 and torch.equal(padded[:, :, :16], x) and torch.equal(padded[:, :, 16], x[:, :, 15])
    assert pad_frames(padded, 4) is padded
    model = _tiny()
    assert [model.latent_frames(t) for t in (1, 5, 9, 16, 17)] == [1, 2, 3, 5, 5]
    sized = _tiny(frames=17, image_size=(64, 64))
    assert sized.tokens_per_example == 5 * 16 * 16


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_causality_and_image_video_consistency(quantizer: str, compression: str) -> None:
    """Changing frames after t never changes tokens that only see frames <= t; encode(image) == video's first."""
    model = _tiny(compression, quantizer).eval()
    ft = model.config.temporal_downsample
    t_frames = 1 + 2 * ft if ft > 1 else 5
    x = _clip(t=t_frames)
    indices = model.encode(x)
    assert indices.shape[:4] == (
        2,
        model.latent_frames(t_frames),
        16 // model.config.downsample,
        16 // model.config.downsample,
    )
    for t in range(t_frames - 1):
        changed = x.clone()
        changed[:, :, t + 1 :] = torch.rand_like(changed[:, :, t + 1 :])
        got = model.encode(changed)
        seen = t // ft + 1  # latent frames j with ft*j <= t see frames <= t only
        assert torch.equal(got[:, :seen], indices[:, :seen]), f"t={t}: tokens of the past changed"
        if t == 0:
            assert not torch.equal(got, indices), "the test must change some later token"
    # 1-frame video == image, and the image's tokens are the first latent frame of every clip starting with it.
    image = x[:, :, 0]
    image_indices = model.encode(image)
    assert image_indices.shape == indices[:, 0].shape
    assert torch.equal(image_indices, indices[:, 0])
    assert torch.equal(model.encode(x[:, :, :1])[:, 0], image_indices)
    torch.testing.assert_close(model.decode(image_indices), model.decode(indices[:, :1])[:, :, 0])
    assert model.decode(image_indices).shape == image.shape


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_training_signal_and_round_trip(quantizer: str) -> None:
    model = _tiny("4x8x8", quantizer)
    x = _clip(t=5)
    out = model(x)
    assert out.recon.shape == x.shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    model.eval()
    torch.testing.assert_close(model.decode(model.encode(x)), model(x).recon)
    image_out = model(x[:, :, 0])
    assert image_out.recon.shape == (2, 1, 16, 16)


def test_all_registered_quantizers_plug_in() -> None:
    for name in list_quantizers():
        model = _tiny("4x4x4", name).eval()
        x = _clip(b=1, t=5, size=8)
        idx = model.encode(x)
        assert idx.dtype == torch.int64 and idx.shape[:4] == (1, 2, 2, 2), name
        assert model.decode(idx).shape == x.shape, name


def test_causal_layers_map_frame_counts() -> None:
    x = torch.rand(1, 2, 9, 8, 8)
    assert CausalConv3d(2, 3, 3)(x).shape == (1, 3, 9, 8, 8)
    assert CausalDownsample3d(2, 3, temporal=True)(x).shape == (1, 3, 5, 4, 4)
    assert CausalUpsample3d(2, 3, temporal=True)(x[:, :, :5]).shape == (1, 3, 9, 16, 16)
    with pytest.raises(ValueError, match="must exceed"):
        CausalConv3d(2, 2, (2, 3, 3), stride=(2, 1, 1))


# --------------------------------------------------------------------------------------------- bad input
def test_bad_input_fails_clearly() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"\(B, 1, T, H, W\)"):
        model.encode(torch.rand(1, 1, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, T, H, W\)"):
        model.encode(torch.rand(2, 3, 5, 16, 16))
    with pytest.raises(ValueError, match=r"6 frames do not fit temporal_downsample 4: clips need 1 \+ 4\*k"):
        model.encode(_clip(t=6))
    with pytest.raises(ValueError, match="divisible"):
        model.encode(torch.rand(1, 1, 5, 18, 16))
    nan = _clip(t=5)
    nan[0, 0, 3, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.encode(nan)
    with pytest.raises(ValueError, match="uint8.*video_to_float"):
        model.encode((_clip(t=5) * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="stack_frames"):
        model.encode([torch.rand(1, 16, 16)] * 5)
    with pytest.raises(ValueError, match="empty axis"):
        model.encode(torch.rand(0, 1, 5, 16, 16))
    with pytest.raises(ValueError, match="expected indices"):
        model.decode(torch.zeros(2, 3, dtype=torch.long))


def test_documented_conversions() -> None:
    frames_u8 = [np.full((16, 16), v, dtype=np.uint8) for v in (0, 51, 255)]
    clip = stack_frames(frames_u8)
    assert clip.shape == (1, 3, 16, 16) and clip.dtype == torch.float32
    torch.testing.assert_close(clip[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    rgb = stack_frames([np.zeros((16, 16, 3), np.uint8)] * 2, channels_last=True)
    assert rgb.shape == (3, 2, 16, 16)
    with pytest.raises(ValueError, match=r"frame 2 has size \(1, 8, 8\) but frame 0 has \(1, 16, 16\)"):
        stack_frames([np.zeros((16, 16))] * 2 + [np.zeros((8, 8))])
    with pytest.raises(ValueError, match="frame 1 contains NaN"):
        stack_frames([np.zeros((4, 4)), np.full((4, 4), np.nan)])
    with pytest.raises(ValueError, match="at least one frame"):
        stack_frames([])
    with pytest.raises(TypeError, match="uint8 .* or float"):
        video_to_float(torch.zeros(2, dtype=torch.int32))


def test_repeat_last_padding_trims_and_keeps_the_past() -> None:
    model = _tiny(frame_padding="repeat_last").eval()
    x = _clip(t=7)
    out = model(x)
    assert out.recon.shape == x.shape
    idx = model.encode(x)
    assert idx.shape[1] == 3
    assert torch.equal(idx, model.encode(pad_frames(x, 4)))
    assert torch.equal(idx[:, :2], model.encode(x[:, :, :5]))
    assert model.decode(idx).shape[2] == 9
    # A model built for 7-frame clips decodes their 3 latent frames to 7 frames.
    sized = _tiny(frame_padding="repeat_last", frames=7).eval()
    assert sized.decode(sized.encode(x)).shape == x.shape
    torch.testing.assert_close(sized.decode(sized.encode(x)), sized(x).recon)


# ------------------------------------------------------------------------------------ checkpoints and GAN
def test_checkpoint_round_trip(tmp_path) -> None:
    model = _tiny("4x8x8", "lfq").eval()
    x = _clip(t=5)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = Tokenizer.from_pretrained(tmp_path / "ckpt").eval()
    assert isinstance(loaded, VideoTokenizer) and loaded.config == model.config
    assert torch.equal(loaded.encode(x), model.encode(x))


def test_3d_discriminator_through_the_trainer_path() -> None:
    model = _tiny(gan_weight=0.1, disc_channels=4, disc_layers=2)
    adversary = build_adversary(model)
    assert adversary is not None and isinstance(adversary.discriminator, PatchDiscriminator3d)
    recon = model(_clip(t=5)).recon
    g = adversary.generator_loss(recon)
    g.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    assert adversary.discriminator(torch.rand(2, 1, 16, 16)).shape[:3] == (2, 1, 1)
    assert not any(k.startswith("disc") for k in model.state_dict())


def test_trainer_trains_on_moving_fashion_mnist(tmp_path) -> None:
    from vqtok.data import create_dataset
    from vqtok.train import DataConfig, TrainConfig, Trainer

    try:
        create_dataset("fashion_mnist", "test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST (apt dataset-fashion-mnist) not installed")
    model = {"in_channels": 1, **COMPRESSIONS["4x8x8"], "frame_padding": "repeat_last", "gan_weight": 0.1,
             "disc_channels": 4, "quantizer": "fsq", "quantizer_kwargs": {"levels": (5, 5, 5)}}  # fmt: skip
    data = DataConfig(name="moving_fashion_mnist", kwargs={"num_clips": 8, "frames": 6, "size": 32})
    cfg = TrainConfig(tokenizer="video", model=model, data=data, device="cpu", steps=2, batch_size=2, log_every=1,
                      run_dir=str(tmp_path / "run"))  # fmt: skip
    result = Trainer(cfg, progress=False).fit()
    loaded = Tokenizer.from_pretrained(result.model_dir).eval()
    clip = create_dataset("moving_fashion_mnist", "test", num_clips=1, frames=6, size=32)[0][None]
    assert loaded.encode(clip).shape == (1, 3, 4, 4)
    assert loaded(clip).recon.shape == clip.shape


def test_multimodal_vocab_carries_frames_by_grid_with_size_tokens() -> None:
    pytest.importorskip("tokenizers")
    from vqtok.vocab import MediaSegment, MultimodalVocab, train_bpe

    video = _tiny("4x4x4", "vq").eval()
    vocab = MultimodalVocab(train_bpe(["a video of garments"] * 20, vocab_size=270), {"video": video}, max_grid_size=16)
    clip = _clip(b=1, t=9)[0]
    ids = vocab.encode(["watch:", clip, "done"])
    indices = video.encode(clip[None])[0]
    lay = vocab.layouts["video"]
    segment = ids[(ids == lay.open_id).nonzero()[0, 0] : (ids == lay.close_id).nonzero()[0, 0] + 1]
    # <video> <size:T'> <size:h> <size:w> body (frames x rows x columns, row-major) </video>
    assert [vocab.id_to_token(int(i)) for i in segment[:4]] == ["<video>", "<size:3>", "<size:4>", "<size:4>"]
    assert len(segment) == 1 + 3 + 3 * 4 * 4 + 1
    assert torch.equal(segment[4:-1] - lay.offset, indices.reshape(-1))
    parts = vocab.split(ids)
    got = next(p for p in parts if isinstance(p, MediaSegment))
    assert got.modality == "video" and torch.equal(got.indices, indices)
    decoded = next(p for p in vocab.decode(ids) if isinstance(p, torch.Tensor))
    torch.testing.assert_close(decoded, video.decode(indices[None])[0])
