"""Private bottom layer for files: atomic writes of files and whole folders, SHA-256, versioned JSON manifests.

Every package that writes or reads a file it owns goes through here, so that the rules hold everywhere:

* a file is written to a temporary sibling, fsynced and renamed over the target, so a reader sees the old or the
  new content, never a half-written file;
* a folder (a checkpoint, a vocabulary) is built as a temporary sibling and then swapped in one step
  (``renameat2(RENAME_EXCHANGE)`` on Linux), so the old or the new folder is complete at every instant;
* temporaries left by a killed writer carry a recognisable name and are removed by the next write of the same target;
* manifests are JSON with ``format`` and ``format_version`` and are checked by one function with one set of messages.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CheckpointError",
    "atomic_directory",
    "atomic_open",
    "atomic_save_torch",
    "atomic_write_bytes",
    "clean_stale_temporaries",
    "read_json",
    "read_versioned_json",
    "sha256_bytes",
    "sha256_file",
    "write_json",
]

_TMP_TAG = ".vqtok-tmp-"


class CheckpointError(ValueError):
    """A saved file or folder is missing, truncated, corrupt, foreign, or does not match what it is loaded into."""


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}{_TMP_TAG}"


def clean_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Removes temporaries that an interrupted write of ``path`` left beside it.

    Only names this module creates (``.<name>.vqtok-tmp-*``) are touched. A temporary whose writer is still running
    would be removed too, so two processes must not write the same target at once (they never do in vqtok: writes
    happen on rank 0 only).

    Returns:
        The paths removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = _tmp_prefix(path)
    # scandir, not iterdir: this runs before every write, in folders that may hold thousands of shards.
    with os.scandir(path.parent) as entries:
        stale = [Path(e.path) for e in entries if e.name.startswith(prefix)]
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def _fsync_dir(directory: Path) -> None:
    # Renames are durable only once the directory entry is on disk; some file systems refuse O_RDONLY fsync on dirs.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file next to ``path``; on success it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content. Temporaries of earlier
    interrupted writes of the same path are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write file {str(path)!r}: a directory of that name exists")
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` through :func:`atomic_open`."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Writes ``payload`` as indented JSON with sorted keys (byte-identical for equal payloads), atomically."""
    with atomic_open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    """Reads a JSON object.

    Raises:
        CheckpointError: Naming ``path`` when it is missing, not UTF-8, not JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} is missing")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{what} {str(path)!r} is corrupt or truncated: {err}") from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{what} {str(path)!r} is not a JSON object")
    return payload


def read_versioned_json(path: str | os.PathLike[str], fmt: str, max_version: int, what: str = "file") -> dict[str, Any]:
    """Reads a manifest written as ``{"format": fmt, "format_version": int, ...}`` and checks both fields.

    Raises:
        CheckpointError: When the file is missing or corrupt, its ``format`` is not ``fmt``, its ``format_version``
            is not a positive integer, or it is newer than ``max_version`` (the message names the version that
            saved it, from ``vqtok_version`` when recorded).
    """
    payload = read_json(path, what)
    if payload.get("format") != fmt:
        raise CheckpointError(f"{what} {str(path)!r} is not a {fmt} file (its 'format' is {payload.get('format')!r})")
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{what} {str(path)!r} has an invalid format_version {version!r} (expected an integer)")
    if version > max_version:
        saved_by = payload.get("vqtok_version", "a newer vqtok")
        raise CheckpointError(
            f"{what} {str(path)!r} was saved by vqtok {saved_by} with format_version {version}; this vqtok reads "
            f"up to {max_version}: upgrade vqtok"
        )
    return payload


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths (Linux ``renameat2``). Returns False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"renameat2({str(a)!r}, {str(b)!r}) failed: {os.strerror(err)}")


def _carry_over(old: Path, new: Path) -> None:
    # Files a user put beside ours (a README, a model card) survive a re-save: hard links, or copies across devices.
    for entry in old.iterdir():
        target = new / entry.name
        if target.exists() or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True)
        else:
            try:
                os.link(entry, target, follow_symlinks=False)
            except OSError:
                shutil.copy2(entry, target, follow_symlinks=False)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields an empty temporary sibling folder; on success it replaces ``path`` in one step.

    Write every file of the new folder into the yielded path (plain writes are fine: nobody reads it yet). When the
    block ends without an exception, the files are fsynced, entries of the old folder that the new one lacks are
    carried over (hard links), and the two folders are exchanged atomically, so ``path`` holds the complete old or
    the complete new folder at every instant, even under SIGKILL. Where the system has no atomic exchange
    (non-Linux), the old folder is renamed aside and the new one renamed in; a kill between those two renames
    leaves the old folder under its temporary name, which :func:`clean_stale_temporaries` does not remove until the
    next successful write. On an exception the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(os.path.abspath(path))
    cwd = Path.cwd()
    if path == cwd or path in cwd.parents:
        # Swapping the working directory away would leave this process inside the deleted old folder.
        raise ValueError(f"cannot replace folder {str(path)!r} atomically: it is the working directory or holds it")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"cannot write folder {str(path)!r}: a file of that name exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), dir=path.parent))
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(Path(root))
        if path.is_dir():
            _carry_over(path, tmp)
            if not _exchange(tmp, path):
                aside = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path) + "old-", dir=path.parent))
                os.rmdir(aside)
                os.replace(path, aside)
                os.replace(tmp, path)
                tmp = aside
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
