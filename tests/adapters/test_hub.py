"""``hf:`` resolution (folders, a fake offline Hugging Face cache) and the errors for bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _hf_references import REFERENCES, reference_codes
from safetensors.torch import load_file, save_file

from vqtok.adapters import from_hf_model
from vqtok.tokenizers import CheckpointError, Tokenizer, from_pretrained


@pytest.fixture(scope="module")
def encodec_folder(tmp_path_factory):
    torch.manual_seed(0)
    ref = REFERENCES["encodec"][0]()
    folder = tmp_path_factory.mktemp("encodec")
    ref.save_pretrained(folder)
    return ref, folder


def _fake_cache(root, folder, repo="tiny-org/tiny-encodec", commit="0123456789abcdef0123456789abcdef01234567"):
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    entry = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, entry / "snapshots" / commit)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)
    return entry / "snapshots" / commit


def test_repo_id_from_offline_cache(encodec_folder, tmp_path, monkeypatch) -> None:
    ref, folder = encodec_folder
    _fake_cache(tmp_path / "hub", folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = from_pretrained("hf:tiny-org/tiny-encodec")
    x = 0.1 * torch.randn(1, 1, 400)
    codes, decoded = reference_codes("encodec", ref, x)
    assert torch.equal(tok.encode(x), codes) and torch.equal(tok.decode(codes), decoded)
    # A revision pin resolves to the same snapshot.
    assert torch.equal(from_pretrained("hf:tiny-org/tiny-encodec@main").encode(x), codes)


def test_repo_not_in_cache_says_how_to_fetch(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"'facebook/encodec_24khz' is not in the local .*hf download facebook"):
        from_pretrained("hf:facebook/encodec_24khz")
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(f"hf:{tmp_path / 'no' / 'such' / 'folder'}")


def test_weights_missing_from_snapshot(encodec_folder, tmp_path, monkeypatch) -> None:
    snapshot = _fake_cache(tmp_path / "hub", encodec_folder[1])
    (snapshot / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="no weights.*hf download tiny-org/tiny-encodec"):
        from_pretrained("hf:tiny-org/tiny-encodec")


def test_model_without_adapter(tmp_path) -> None:
    with pytest.raises(TypeError, match="no vqtok adapter for model class 'Linear'"):
        from_hf_model(torch.nn.Linear(2, 2))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    message = r"no vqtok adapter for model_type 'bert' \(architectures \['BertModel'\]\)"
    with pytest.raises(CheckpointError, match=message):
        from_pretrained(f"hf:{tmp_path}")


def _edit_weights(folder, tmp_path, edit):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    state = load_file(bad / "model.safetensors")
    edit(state)
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    return bad


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("decoder.layers.0.conv.bias"), r"missing keys \['decoder.layers.0.conv.bias'\]"),
        (lambda s: s.__setitem__("decoder.extra.weight", torch.zeros(2)), r"unexpected keys \['decoder.extra.weight"),
        (lambda s: s.__setitem__("decoder.layers.0.conv.bias", torch.zeros(3)), "decoder.layers.0.conv.bias"),
    ],
    ids=["missing", "extra", "misshaped"],
)
def test_bad_hf_state_dict_names_the_key(encodec_folder, tmp_path, edit, message) -> None:
    bad = _edit_weights(encodec_folder[1], tmp_path, edit)
    with pytest.raises(CheckpointError, match=message):
        from_pretrained(f"hf:{bad}")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("model.decoder.layers.0.conv.bias"), r"missing keys \['model.decoder.layers.0.conv.bias'\]"),
        (lambda s: s.__setitem__("model.extra", torch.zeros(2)), r"unexpected keys \['model.extra'\]"),
        (lambda s: s.__setitem__("model.decoder.layers.0.conv.bias", torch.zeros(3)), r"shape mismatches \['model.dec"),
    ],
    ids=["missing", "extra", "misshaped"],
)
def test_bad_vqtok_state_dict_names_the_key(encodec_folder, tmp_path, edit, message) -> None:
    from safetensors import safe_open

    folder = tmp_path / "vq"
    from_pretrained(f"hf:{encodec_folder[1]}").save_pretrained(folder)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match=message):
        Tokenizer.from_pretrained(folder, verify=False)  # the checksum would catch the edit first


def test_bad_indices_and_signals(encodec_folder) -> None:
    tok = from_pretrained(f"hf:{encodec_folder[1]}")
    with pytest.raises(ValueError, match=r"expects waveforms \(B, 1, T\)"):
        tok.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(torch.full((1, 5, 4), 1024))
    with pytest.raises(ValueError, match="got 5 levels"):
        tok.decode(torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer index tensor"):
        tok.decode(torch.zeros(1, 5, 4))


def test_unsupported_config_is_refused() -> None:
    import transformers

    cfg = transformers.EncodecConfig(
        normalize=True, chunk_length_s=1.0, overlap=0.01, sampling_rate=8000,
        upsampling_ratios=[4, 2], num_filters=4, hidden_size=16, codebook_dim=16,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"\['normalize', 'chunk_length_s'\]"):
        from_hf_model(transformers.EncodecModel(cfg))


def test_empty_source() -> None:
    with pytest.raises(CheckpointError, match="needs a repo id"):
        from_pretrained("hf:")
