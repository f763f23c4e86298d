"""Adapters against their reference ``transformers`` models: codes and decoded signals must be EQUAL.

Every reference is a tiny random model built from a config, saved with ``save_pretrained`` into a temporary
folder and loaded back through ``hf:``; nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from _hf_references import REFERENCES, reference_codes

from vqtok.adapters import adapter_classes, from_hf_model
from vqtok.tokenizers import Tokenizer, from_pretrained

NAMES = sorted(REFERENCES)


def test_every_adapter_has_a_reference() -> None:
    assert sorted(adapter_classes()) == NAMES


def _signal(name: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = REFERENCES[name][1]
    return torch.rand(shape, generator=g) if len(shape) == 4 else 0.1 * torch.randn(shape, generator=g)


@pytest.fixture(scope="module", params=NAMES)
def saved(request, tmp_path_factory):
    """(family, reference model, its save_pretrained folder)."""
    name = request.param
    torch.manual_seed(0)
    ref = REFERENCES[name][0]()
    folder = tmp_path_factory.mktemp(name)
    ref.save_pretrained(folder)
    return name, ref, folder


def test_hf_folder_equals_reference(saved) -> None:
    name, ref, folder = saved
    tok = from_pretrained(f"hf:{folder}")
    assert type(tok).__name__ == adapter_classes()[name].__name__
    x = _signal(name)
    codes, decoded = reference_codes(name, ref, x)
    indices = tok.encode(x)
    assert indices.dtype == torch.long and torch.equal(indices, codes)
    assert torch.equal(tok.decode(indices), decoded)
    # Same through an in-memory model and through Tokenizer.from_pretrained (the CLI's loader).
    assert torch.equal(from_hf_model(ref).encode(x), codes)
    assert torch.equal(Tokenizer.from_pretrained(f"hf:{folder}").decode(indices), decoded)


def test_contract(saved) -> None:
    name, _, folder = saved
    tok = from_pretrained(f"hf:{folder}")
    x = _signal(name)
    indices = tok.encode(x)
    q = tok.quantizer
    assert tok.modality == ("image" if name == "janus_vqgan" else "audio")
    assert indices.shape[indices.ndim - len(q.index_shape) :] == q.index_shape
    assert 0 <= int(indices.min()) and int(indices.max()) < q.codebook_size
    # forward: the reconstruction is decode(encode(x)) and the encoder gets the straight-through gradient.
    x.requires_grad_(True)
    out = tok(x)
    assert torch.allclose(out.recon, tok.decode(indices), atol=1e-5)
    out.loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # The quantizer descriptor runs the model's own codebooks on channels-last latents.
    latents = tok._encode_latents(x.detach())
    assert torch.equal(q.encode(latents), indices)


@pytest.mark.parametrize("name", ["encodec", "dac", "mimi"])
def test_level_count_chosen_at_encode_time(name, tmp_path) -> None:
    torch.manual_seed(0)
    ref = REFERENCES[name][0]()
    tok = from_hf_model(ref)
    x = _signal(name)
    alias = {"encodec": "num_levels", "dac": "n_quantizers", "mimi": "num_quantizers"}[name]
    for n in range(1, tok.num_levels + 1):
        codes, decoded = reference_codes(name, ref, x, levels=n)
        indices = tok.encode(x, **{alias: n})
        assert indices.shape[-1] == n and torch.equal(indices, codes)
        assert torch.equal(tok.decode(indices), decoded)
        assert tok.bitrate_kbps(n) == pytest.approx(tok.bitrate_kbps() * n / tok.num_levels)
    if name == "encodec":
        assert torch.equal(tok.encode(x, bandwidth=20.0), tok.encode(x, num_levels=2))
        assert tok.bitrate_kbps() == pytest.approx(40.0)
        with pytest.raises(ValueError, match="target_bandwidths"):
            tok.encode(x, bandwidth=7.0)
    with pytest.raises(ValueError, match="must be an int in"):
        tok.encode(x, num_levels=tok.num_levels + 1)
    with pytest.raises(ValueError, match="unknown encode option.*'levels'"):
        tok.encode(x, levels=1)


def test_vqtok_checkpoint_round_trip(saved, tmp_path) -> None:
    name, ref, folder = saved
    tok = from_pretrained(f"hf:{folder}")
    tok.save_pretrained(tmp_path / "vq")
    again = Tokenizer.from_pretrained(tmp_path / "vq")
    assert type(again) is type(tok) and again.architecture == f"hf_{name}"
    x = _signal(name, seed=3)
    codes, decoded = reference_codes(name, ref, x)
    assert torch.equal(again.encode(x), codes) and torch.equal(again.decode(codes), decoded)
    # hf: also accepts a vqtok checkpoint folder.
    assert torch.equal(from_pretrained(f"hf:{tmp_path / 'vq'}").encode(x), codes)


def test_multimodal_vocab(tmp_path) -> None:
    from vqtok.vocab import MultimodalVocab, train_bpe

    torch.manual_seed(0)
    audio, image = from_hf_model(REFERENCES["dac"][0]()), from_hf_model(REFERENCES["janus_vqgan"][0]())
    text = train_bpe(["a cat says hello", "a dog says hi"] * 4, vocab_size=300)
    vocab = MultimodalVocab(text, {"audio": audio, "image": image})
    wav, img = _signal("dac")[0], _signal("janus_vqgan")[0]
    ids = vocab.encode(["hear ", ("audio", wav), " see ", ("image", img)])
    parts = vocab.decode(ids)
    assert parts[0] == "hear " and parts[2] == " see "
    assert torch.equal(parts[1], audio.decode(audio.encode(wav[None]))[0])
    assert torch.equal(parts[3], image.decode(image.encode(img[None]))[0])
    vocab.save_pretrained(tmp_path / "vocab")
    again = MultimodalVocab.from_pretrained(tmp_path / "vocab")
    assert torch.equal(again.encode(["hear ", ("audio", wav)]), ids[: len(again.encode(["hear ", ("audio", wav)]))])


def test_deepcopy_rebinds_the_quantizer_to_the_copy() -> None:
    import copy

    torch.manual_seed(0)
    tok = from_hf_model(REFERENCES["janus_vqgan"][0]())
    twin = copy.deepcopy(tok)
    with torch.no_grad():
        twin.model.quantize.embedding.weight.mul_(-1)
    indices = torch.arange(4)
    assert torch.equal(twin.quantizer.decode(indices), -tok.quantizer.decode(indices))
