"""Kill-at-every-write-boundary harness: runs a write in a forked child that SIGKILLs itself at the k-th boundary."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable

import pytest

import vqtok._io

# Every call that changes the file system on the way to a finished write; the child dies just before the k-th one.
_BOUNDARIES = (
    (os, "replace"),
    (os, "rename"),
    (os, "link"),
    (os, "fsync"),
    (os, "rmdir"),
    (os, "mkdir"),
    (os, "unlink"),
    (shutil, "rmtree"),
    (shutil, "copytree"),
    (tempfile, "mkdtemp"),
    (tempfile, "mkstemp"),
    (pathlib.Path, "write_bytes"),
    (pathlib.Path, "write_text"),
    (vqtok._io, "_exchange"),
)


def _run_killed_at(action: Callable[[], object], k: int) -> bool:
    """Runs ``action`` in a child killed at boundary ``k``. Returns True when it finished before reaching ``k``."""
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            count = [0]
            for owner, name in _BOUNDARIES:
                real = getattr(owner, name)

                def hooked(*args, _real=real, **kwargs):
                    count[0] += 1
                    if count[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return _real(*args, **kwargs)

                setattr(owner, name, hooked)
            action()
            code = 0
        except BaseException as err:  # noqa: BLE001 - reported through the exit status
            print(f"child failed: {err!r}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return False
    assert os.WEXITSTATUS(status) == 0, "the write failed in the child instead of being killed"
    return True


@pytest.fixture
def kill_at_every_boundary():
    """``kill_at_every_boundary(action, check)``: for k = 1, 2, ... kills ``action`` at boundary k, then ``check()``.

    Stops when the action completes without reaching boundary k; returns the number of kills made.
    """
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")

    def run(action: Callable[[], object], check: Callable[[int], None], limit: int = 400) -> int:
        for k in range(1, limit):
            finished = _run_killed_at(action, k)
            check(k)
            if finished:
                return k - 1
        raise AssertionError(f"the write did not finish within {limit} boundaries")

    return run
