"""vqtok._io: atomic files and folders, stale temporaries, versioned manifests."""

from __future__ import annotations

import json

import pytest

from vqtok._io import (
    CheckpointError,
    atomic_directory,
    atomic_open,
    atomic_write_bytes,
    clean_stale_temporaries,
    read_versioned_json,
    sha256_bytes,
    sha256_file,
    write_json,
)


def test_stale_temporaries_of_a_killed_write_are_removed_by_the_next_write(tmp_path) -> None:
    target = tmp_path / "data.bin"
    stale_file = tmp_path / ".data.bin.vqtok-tmp-abc123"
    stale_file.write_bytes(b"half")
    unrelated = tmp_path / ".other.vqtok-tmp-x"
    unrelated.write_bytes(b"keep")
    atomic_write_bytes(target, b"full")
    assert target.read_bytes() == b"full" and not stale_file.exists() and unrelated.exists()

    folder = tmp_path / "ckpt"
    stale_dir = tmp_path / ".ckpt.vqtok-tmp-xyz"
    (stale_dir / "sub").mkdir(parents=True)
    with atomic_directory(folder) as tmp:
        (tmp / "a").write_text("1")
    assert not stale_dir.exists() and (folder / "a").read_text() == "1"
    assert clean_stale_temporaries(folder) == []


def test_failed_writes_leave_the_old_content_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("new")
        raise RuntimeError
    folder = tmp_path / "d"
    with atomic_directory(folder) as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(folder) as tmp:
        (tmp / "x").write_text("new")
        raise RuntimeError
    assert target.read_text() == "old" and (folder / "x").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.txt"]


def test_write_json_is_deterministic_and_checksums_agree(tmp_path) -> None:
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    data = (tmp_path / "a.json").read_bytes()
    assert data == (tmp_path / "b.json").read_bytes()
    assert sha256_file(tmp_path / "a.json") == sha256_bytes(data)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": "other", "format_version": 1}, "is not a fmt file"),
        ({"format": "fmt", "format_version": None}, "invalid format_version None"),
        ({"format": "fmt", "format_version": True}, "invalid format_version True"),
        ({"format": "fmt", "format_version": 3, "vqtok_version": "2.0"}, r"saved by vqtok 2\.0 with format_version 3"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_read_versioned_json_errors_name_the_file(tmp_path, payload, message) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match=message) as info:
        read_versioned_json(path, "fmt", 2)
    assert str(path) in str(info.value)


def test_read_versioned_json_missing_and_truncated(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        read_versioned_json(tmp_path / "none.json", "fmt", 1)
    (tmp_path / "t.json").write_text('{"format": "fm')
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_versioned_json(tmp_path / "t.json", "fmt", 1)
