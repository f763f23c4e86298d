"""Builds, caches and calls the fused CPU nearest-code kernel (``_cpu_nearest.cpp``).

The kernel is plain C++ on raw float pointers (no torch headers), so it compiles in about a second with
``g++ -O3 -march=native`` on first use. The shared library is cached under
``$VQTOK_CACHE/ext/<hash>/`` (default ``~/.cache/vqtok/ext/<hash>/``), where the hash covers the
source and the kernels' shared headers (``*.h``), the flags, the compiler version and the CPU
(``-march=native`` code may not run on another CPU). It is written to a temporary file and renamed into
place, so concurrent processes (pytest workers) that compile at once never load a half-written file. It is
loaded with :mod:`ctypes`, which releases the GIL during the call: latents are split between
``torch.get_num_threads()`` Python threads (OpenMP is not used because torch ships its own runtime).

Without a compiler, when the build fails, or with ``VQTOK_DISABLE_CPU_EXT=1``, :func:`load` returns
``None`` (a warning is logged once per process for a failure, an info message for the opt-out) and
:func:`vqtok.kernels.nearest` uses its torch path.

Written for vqtok; no code was copied from other implementations.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from .._io import sha256_bytes

__all__ = [
    "LazyLibrary",
    "available",
    "build_library",
    "ext_search",
    "ext_topk",
    "load",
    "thread_pool",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("_cpu_nearest.cpp")
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
_LIB_NAME = "vqtok_cpu_nearest.so"
# Latents per thread below which another thread costs more than it saves: every thread transposes the
# whole codebook (K * D copies) once per call, which a few hundred latents amortise.
_MIN_ROWS_PER_THREAD = 256
# Default code tile: its transposed copy (ktile * D floats, one per thread) is kept near 256 KiB so that
# it stays in L2 while every latent block of the thread streams over it.
_TILE_BYTES = 256 * 1024
_DISABLED = "disabled by VQTOK_DISABLE_CPU_EXT=1"

_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib" or "reason" once load() has run
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, executor)


def load() -> ctypes.CDLL | None:
    """The compiled kernel library, building it on first use; ``None`` when it cannot be had."""
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            lib, reason = _build_and_load()
            # "lib" last: the unlocked fast path above must not see it before "reason".
            _state["reason"] = reason
            _state["lib"] = lib
            if lib is None:
                # An explicit opt-out is not worth a warning; a failed build is, once per process.
                log = logger.info if reason == _DISABLED else logger.warning
                log("vqtok CPU nearest-code kernel unavailable (%s); using the torch path", reason)
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the kernel can be used (builds it on first call)."""
    return load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`load` returned ``None``, or ``None`` when the kernel is loaded."""
    load()
    return _state.get("reason")  # type: ignore[return-value]


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_identity() -> str:
    # -march=native output depends on the CPU model and its feature flags, not only the architecture.
    fields = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    fields.append(line.strip())
                if len(fields) == 2:
                    break
    except OSError:
        pass
    return platform.machine() + "\n" + "\n".join(fields)


def _cache_dir(key: str) -> Path:
    root = Path(os.environ.get("VQTOK_CACHE", Path.home() / ".cache" / "vqtok"))
    return root / "ext" / key


def build_library(
    source: Path, lib_name: str, extra_flags: tuple[str, ...] = ()
) -> tuple[ctypes.CDLL | None, str | None]:
    """Compiles ``source`` (cached as described in the module docstring) and loads it.

    Shared by every C++ kernel of :mod:`vqtok.kernels`; ``extra_flags`` (e.g. a ``-D`` define selecting a portable
    variant) are added to the compiler flags and the cache key. Returns ``(library, None)`` or ``(None, reason)``.
    """
    flags = (*_FLAGS, *extra_flags)
    if os.environ.get("VQTOK_DISABLE_CPU_EXT", "0") == "1":
        return None, _DISABLED
    cxx = _compiler()
    if cxx is None:
        return None, "no C++ compiler found (set CXX or install g++)"
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
        # The kernels' shared headers are part of the source: a changed header must rebuild every kernel.
        code = b"\0".join(f.read_bytes() for f in [source, *sorted(source.parent.glob("*.h"))])
        key = sha256_bytes(
            b"\0".join([code, " ".join(flags).encode(), cxx.encode(), version.encode(), _cpu_identity().encode()])
        )[:24]
        target = _cache_dir(key) / lib_name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Not vqtok._io.atomic_open: the compiler writes the file itself, and atomic_open first deletes every
            # temporary of the same target, which here may be another process's build in progress (pytest
            # workers compile at once). A private mkstemp name per process plus os.replace keeps them apart.
            fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
            os.close(fd)
            try:
                out = subprocess.run([cxx, *flags, "-o", tmp, str(source)], capture_output=True, text=True, timeout=300)
                if out.returncode != 0:
                    return None, f"{cxx} failed: {out.stderr.strip()[-2000:]}"
                # Atomic on POSIX: another process either sees no file or a complete one.
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return ctypes.CDLL(str(target)), None
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"{type(err).__name__}: {err}"


class LazyLibrary:
    """A C++ kernel compiled and loaded on first use, once per process and thread-safe.

    Args:
        source: The ``.cpp`` file.
        lib_name: File name of the cached shared library.
        label: What the kernel is, for messages (``"fast-scan"``).
        setup: Declares the library's ``argtypes`` / ``restype`` once it is loaded.
        extra_flags: Added compiler flags (see :func:`build_library`).
    """

    def __init__(
        self,
        source: Path,
        lib_name: str,
        label: str,
        setup: Callable[[ctypes.CDLL], None],
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        self.source, self.lib_name, self.label, self.setup, self.extra_flags = (
            source,
            lib_name,
            label,
            setup,
            extra_flags,
        )
        self._lock = threading.Lock()
        self._done = False
        self._lib: ctypes.CDLL | None = None
        self.reason: str | None = None

    def get(self) -> ctypes.CDLL | None:
        """The library, building it on first call; ``None`` (with :attr:`reason`) when it cannot be had."""
        if self._done:
            return self._lib
        with self._lock:
            if not self._done:
                lib, self.reason = build_library(self.source, self.lib_name, self.extra_flags)
                if lib is not None:
                    self.setup(lib)
                else:
                    logger.info("vqtok %s kernel unavailable (%s); using the torch path", self.label, self.reason)
                self._lib = lib
                self._done = True  # last: the unlocked fast path above must not see it before the library
        return self._lib

    def require(self) -> ctypes.CDLL:
        """The library, or a ``RuntimeError`` that says why it could not be built."""
        lib = self.get()
        if lib is None:
            raise RuntimeError(f"the {self.label} kernel is unavailable: {self.reason}")
        return lib


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The kernels' shared pool of at least ``workers`` threads (ctypes calls release the GIL)."""
    return _executor(workers)


def _build_and_load() -> tuple[ctypes.CDLL | None, str | None]:
    lib, reason = build_library(_SOURCE, _LIB_NAME)
    if lib is None:
        return None, reason
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.vqtok_nearest_scratch.argtypes = [i32, i32]
    lib.vqtok_nearest_scratch.restype = i64
    lib.vqtok_nearest_f32.argtypes = [ptr, i64, i32, ptr, ptr, i64, i32, ptr, ptr, ptr]
    lib.vqtok_nearest_f32.restype = i32
    lib.vqtok_topk_f32.argtypes = [ptr, i64, i32, ptr, ptr, i64, i32, i32, ptr, ptr, ptr]
    lib.vqtok_topk_f32.restype = i32
    return lib, None


def _executor(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads, rebuilt after a fork (the child has none of them)."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < workers:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)  # too small: its idle threads exit, queued work still runs
            _pool = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="vqtok-nearest"))
        return _pool[2]


def tile_codes(dim: int) -> int:
    """Default codes per tile for dimension ``dim``: about 256 KiB of transposed codes."""
    return max(256, min(8192, _TILE_BYTES // (4 * dim)))


def ext_search(x: Tensor, c: Tensor, cn: Tensor, tile_k: int | None = None) -> tuple[Tensor, Tensor]:
    """``min_k cn[k] - 2 <x, c_k>`` and its lowest argmin for each row of ``x``.

    Args:
        x: ``(N, D)`` fp32 contiguous CPU latents.
        c: ``(K, D)`` fp32 contiguous CPU codes.
        cn: ``(K,)`` fp32 contiguous per-code bias.
        tile_k: Codes per tile (default :func:`tile_codes`).

    Returns:
        ``(N,)`` fp32 values and ``(N,)`` int64 indices.

    Raises:
        RuntimeError: When the kernel cannot be built.
        ValueError: On operands the kernel cannot read as raw pointers (wrong dtype, device, layout
            or shapes).
    """
    return _call(x, c, cn, 1, tile_k)


def ext_topk(x: Tensor, c: Tensor, cn: Tensor, k: int, tile_k: int | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest ``cn[j] - 2 <x, c_j>`` of each row of ``x``, ordered by (value, index).

    Args:
        x, c, cn, tile_k: As for :func:`ext_search`.
        k: Number of codes per row, ``1 <= k <= K``.

    Returns:
        ``(N, k)`` fp32 values and ``(N, k)`` int64 indices; exact ties keep the lowest indices.

    Raises:
        RuntimeError: When the kernel cannot be built.
        ValueError: As for :func:`ext_search`, or ``k`` out of range.
    """
    if not 1 <= k <= c.shape[0]:
        raise ValueError(f"ext_topk needs 1 <= k <= {c.shape[0]}, got k={k}")
    return _call(x, c, cn, k, tile_k)


def _call(x: Tensor, c: Tensor, cn: Tensor, k: int, tile_k: int | None) -> tuple[Tensor, Tensor]:
    """Checks the operands and runs the k = 1 or the top-k kernel on row chunks, one per thread."""
    lib = load()
    if lib is None:
        raise RuntimeError(f"the CPU nearest-code kernel is unavailable: {unavailable_reason()}")
    # The kernel reads raw pointers: anything but the exact layout would read out of bounds.
    for name, t in (("x", x), ("c", c), ("cn", cn)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"ext_search needs fp32 contiguous CPU tensors; {name} is {t.dtype} on {t.device}")
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1] or cn.shape != (c.shape[0],) or c.shape[0] == 0:
        raise ValueError(f"ext_search got x {tuple(x.shape)}, c {tuple(c.shape)}, cn {tuple(cn.shape)}")
    n, dim = x.shape
    num_codes = c.shape[0]
    # Never more than the codebook: the per-thread scratch is ktile * D floats.
    ktile = min(tile_k or tile_codes(dim), num_codes)
    best_d = torch.empty(n, k, dtype=torch.float32)
    best_i = torch.empty(n, k, dtype=torch.long)
    if n == 0:
        return (best_d[:, 0], best_i[:, 0]) if k == 1 else (best_d, best_i)

    def run(r0: int, r1: int) -> int:
        scratch = torch.empty(lib.vqtok_nearest_scratch(dim, ktile), dtype=torch.float32)
        args = (x.data_ptr() + r0 * dim * 4, r1 - r0, dim, c.data_ptr(), cn.data_ptr(), num_codes, ktile)
        outs = (scratch.data_ptr(), best_d.data_ptr() + r0 * k * 4, best_i.data_ptr() + r0 * k * 8)
        if k == 1:
            return lib.vqtok_nearest_f32(*args, *outs)
        return lib.vqtok_topk_f32(*args, k, *outs)

    threads = max(1, min(torch.get_num_threads(), n // _MIN_ROWS_PER_THREAD))
    if threads == 1:
        codes = [run(0, n)]
    else:
        step = ((n + threads - 1) // threads + 7) // 8 * 8
        bounds = [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]
        codes = list(_executor(len(bounds)).map(lambda b: run(*b), bounds))
    if any(codes):
        raise RuntimeError(
            f"the CPU nearest-code kernel failed (codes {codes}) for N={n}, K={num_codes}, D={dim}, k={k}"
        )
    return (best_d[:, 0], best_i[:, 0]) if k == 1 else (best_d, best_i)
