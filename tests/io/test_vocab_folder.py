"""MultimodalVocab folders: one atomic swap for the whole folder, checksums verified, older folders load."""

from __future__ import annotations

import json

import pytest
import torch

from vqtok._io import CheckpointError
from vqtok.tokenizers import create_tokenizer
from vqtok.vocab import MultimodalVocab

pytest.importorskip("tokenizers")

CORPUS = ["The quick brown fox jumps over the lazy dog.", "To be or not to be, that is the question."] * 20
TINY = {"image_size": (8, 8), "downsample": 2, "channels": (8, 16), "in_channels": 1}


def _vocab(seed: int) -> MultimodalVocab:
    from vqtok.vocab import train_bpe

    torch.manual_seed(seed)
    image = create_tokenizer("image2d", quantizer="vq", quantizer_kwargs={"dim": 8, "codebook_size": 16}, **TINY)
    mask = create_tokenizer("image2d", quantizer="fsq", quantizer_kwargs={"levels": (4, 4)}, **TINY)
    return MultimodalVocab(train_bpe(CORPUS, vocab_size=280), {"image": image, "mask": mask}, max_grid_size=8)


def _fingerprint(vocab: MultimodalVocab) -> tuple:
    weights = tuple(
        (name, key, value.sum().item())
        for name, tok in vocab.tokenizers.items()
        for key, value in tok.state_dict().items()
    )
    return json.dumps(vocab.config(), sort_keys=True), vocab.text.to_str(), weights


def test_vocab_save_survives_a_kill_at_every_boundary(tmp_path, kill_at_every_boundary) -> None:
    old, new = _vocab(0), _vocab(1)
    target = tmp_path / "vocab"
    old.save_pretrained(target)
    want = {"old": _fingerprint(old), "new": _fingerprint(new)}
    assert want["old"] != want["new"]
    seen = set()

    def check(k: int) -> None:
        got = _fingerprint(MultimodalVocab.from_pretrained(target))
        state = next((name for name, fp in want.items() if fp == got), "mixed")
        assert state != "mixed", f"kill at boundary {k} left a vocabulary that is neither the old nor the new one"
        seen.add(state)

    kills = kill_at_every_boundary(lambda: new.save_pretrained(target), check)
    assert kills >= 5 and seen == {"old", "new"}
    new.save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab"]


def test_vocab_corruption_and_versions(tmp_path) -> None:
    vocab = _vocab(0)
    vocab.save_pretrained(tmp_path / "v")
    weights = tmp_path / "v" / "modalities" / "mask" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x10
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"modalities/mask/model\.safetensors.*corrupt"):
        MultimodalVocab.from_pretrained(tmp_path / "v")
    MultimodalVocab.from_pretrained(tmp_path / "v", verify=False)  # the option skips the checksums

    vocab.save_pretrained(tmp_path / "v")
    path = tmp_path / "v" / "vocab.json"
    payload = json.loads(path.read_text())
    path.write_text(json.dumps({**payload, "format_version": 7, "vqtok_version": "3.0.0"}))
    with pytest.raises(CheckpointError, match=r"saved by vqtok 3\.0\.0 with format_version 7"):
        MultimodalVocab.from_pretrained(tmp_path / "v")


def test_vocab_written_by_the_previous_code_loads(tmp_path) -> None:
    """The old save wrote the same files in place with version-1 tokenizer folders; such a folder still loads."""
    from vqtok._io import sha256_file

    vocab = _vocab(0)
    vocab.save_pretrained(tmp_path / "v")
    folder = tmp_path / "v"
    for name in vocab.tokenizers:  # downgrade each tokenizer folder to format 1 (no per-file checksums)
        cfg = folder / "modalities" / name / "config.json"
        payload = json.loads(cfg.read_text())
        del payload["files"]
        payload["format_version"] = 1
        cfg.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    manifest = json.loads((folder / "vocab.json").read_text())
    manifest["files"] = {rel: sha256_file(folder / rel) for rel in manifest["files"]}
    (folder / "vocab.json").write_text(json.dumps(manifest))
    assert _fingerprint(MultimodalVocab.from_pretrained(folder)) == _fingerprint(vocab)
