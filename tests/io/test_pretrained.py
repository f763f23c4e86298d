"""Release checkpoints: atomic under SIGKILL, checksummed, deterministic, readable from older versions."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vqtok._io import CheckpointError
from vqtok.tokenizers import CheckpointError as ReexportedCheckpointError
from vqtok.tokenizers import Tokenizer, create_tokenizer

TINY = {"in_channels": 1, "image_size": (8, 8), "downsample": 2, "channels": (8, 16)}
VQ = {"quantizer": "vq", "quantizer_kwargs": {"dim": 8, "codebook_size": 32}}


def _tiny(seed: int = 0, **kw) -> Tokenizer:
    torch.manual_seed(seed)
    return create_tokenizer("image2d", **{**TINY, **VQ, **kw})


def _same(a: Tokenizer, b: Tokenizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and a.config == b.config


def _header(path: Path) -> dict:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size])


def _flip_bit_in(path: Path, tensor: str, byte: int = 5, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    start = 8 + size + _header(path)[tensor]["data_offsets"][0]
    data[start + byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_checkpoint_error_is_one_class() -> None:
    assert ReexportedCheckpointError is CheckpointError
    from vqtok.tokenizers._pretrained import CheckpointError as legacy

    assert legacy is CheckpointError and issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("fresh", [False, True], ids=["over-old", "new-folder"])
def test_save_survives_a_kill_at_every_boundary(tmp_path, kill_at_every_boundary, fresh) -> None:
    """The folder always loads as the old or the new model (or, for a first save, does not exist yet)."""
    old, new = _tiny(seed=0), _tiny(seed=1)
    target = tmp_path / "ckpt"
    if not fresh:
        old.save_pretrained(target)
        (target / "README.md").write_text("model card")  # a user file beside ours survives every save
    seen = set()

    def check(k: int) -> None:
        if fresh and not target.exists():
            seen.add("none")
            return
        loaded = Tokenizer.from_pretrained(target)
        state = "old" if _same(loaded, old) else "new" if _same(loaded, new) else "mixed"
        assert state != "mixed", f"kill at boundary {k} left a checkpoint that is neither the old nor the new one"
        seen.add(state)
        if not fresh:
            assert (target / "README.md").read_text() == "model card"

    kills = kill_at_every_boundary(lambda: new.save_pretrained(target), check)
    assert kills >= 5 and "new" in seen and ({"old", "none"} & seen)
    # The kills left temporaries beside the folder; the next save removes them.
    new.save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert not [p for p in target.iterdir() if ".vqtok-tmp-" in p.name]


def test_flipped_bit_is_caught_naming_the_file(tmp_path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    _flip_bit_in(weights, "encoder.conv_in.weight")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt") as info:
        Tokenizer.from_pretrained(tmp_path / "m")
    assert str(weights) in str(info.value)
    # The option skips the check: the flipped bit then loads (the old, silent behaviour).
    loaded = Tokenizer.from_pretrained(tmp_path / "m", verify=False)
    assert not torch.equal(loaded.state_dict()["encoder.conv_in.weight"], model.state_dict()["encoder.conv_in.weight"])


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path) -> None:
    """A checkpoint saved from a diverged model (checksum consistent with the NaN) is refused at load."""
    model = _tiny()
    name = next(k for k in model.state_dict() if k.startswith("decoder.") and k.endswith("weight"))
    with torch.no_grad():
        model.state_dict()[name].view(-1)[3] = float("nan")
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match=rf"{name}.*non-finite"):
        Tokenizer.from_pretrained(tmp_path / "m")
    loaded = Tokenizer.from_pretrained(tmp_path / "m", verify=False)
    assert torch.isnan(loaded.state_dict()[name]).any()


def test_missing_or_tampered_checksum_entry(tmp_path) -> None:
    _tiny().save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    payload = json.loads(path.read_text())
    del payload["files"]
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="lacks the SHA-256"):
        Tokenizer.from_pretrained(tmp_path / "m")


_SAVE = """
import sys, torch
from vqtok.tokenizers import create_tokenizer
torch.manual_seed(0)
create_tokenizer("image2d", in_channels=1, image_size=(8, 8), downsample=2, channels=(8, 16), quantizer="vq",
                 quantizer_kwargs={"dim": 8, "codebook_size": 32}).save_pretrained(sys.argv[1])
"""


def test_equal_weights_give_equal_bytes_across_processes(tmp_path) -> None:
    """The safetensors header (metadata in hash order) is canonicalised: two processes write identical files."""
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    for i, seed in enumerate(("1", "2")):
        env["PYTHONHASHSEED"] = seed
        subprocess.run([sys.executable, "-c", _SAVE, str(tmp_path / f"m{i}")], check=True, env=env, timeout=300)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "m0" / name).read_bytes() == (tmp_path / "m1" / name).read_bytes(), name
    _tiny().save_pretrained(tmp_path / "here")
    here = (tmp_path / "here" / "model.safetensors").read_bytes()
    assert here == (tmp_path / "m0" / "model.safetensors").read_bytes()
    assert list(_header(tmp_path / "m0" / "model.safetensors")["__metadata__"]) == ["architecture", "config_sha256"]


def test_version_1_checkpoint_still_loads(tmp_path) -> None:
    """A folder in the format written before checksums (format_version 1, no 'files') loads unchanged."""
    from safetensors.torch import save

    from vqtok.tokenizers._pretrained import _config_digest

    model = _tiny()
    payload = {
        "format": "vqtok-tokenizer",
        "format_version": 1,
        "vqtok_version": "0.1.0",
        "architecture": "image2d",
        "config": model.config.to_dict(),
    }
    folder = tmp_path / "v1"
    folder.mkdir()
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"config_sha256": _config_digest(payload), "architecture": "image2d"}
    (folder / "model.safetensors").write_bytes(save(state, metadata=meta))
    (folder / "config.json").write_text(json.dumps(payload, indent=2))
    assert _same(Tokenizer.from_pretrained(folder), model)
    # Re-saving upgrades it in place to the checksummed format.
    Tokenizer.from_pretrained(folder).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["format_version"] == 2


def test_newer_format_version_names_the_saving_version(tmp_path) -> None:
    _tiny().save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    payload = json.loads(path.read_text())
    payload.update(format_version=99, vqtok_version="9.9.0")
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match=r"saved by vqtok 9\.9\.0 with format_version 99.*upgrade"):
        Tokenizer.from_pretrained(tmp_path / "m")
    payload["format_version"] = None
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="invalid format_version None"):
        Tokenizer.from_pretrained(tmp_path / "m")


def test_refuses_to_swap_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="working directory"):
        _tiny().save_pretrained(".")
    assert list(tmp_path.iterdir()) == []
