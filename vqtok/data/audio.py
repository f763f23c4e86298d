"""Speech data sets served as fixed-length float waveform segments ``(C, T)`` in ``[-1, 1]``.

* ``asterisk_en``: the English voice prompts of the Asterisk PBX (Allison Smith's recordings, CC BY-SA 3.0),
  as installed by the Debian package ``asterisk-core-sounds-en-wav`` under ``/usr/share/asterisk/sounds/en``
  (override with ``VQTOK_ASTERISK_SOUNDS_DIR``). Only the top-level ``*.wav`` files are used: 358 mono
  16-bit 8 kHz prompts, about 21 minutes. A file goes to the test split when the first byte of the SHA-1
  of its name is below 10% of 256, so the split is stable across machines and package versions.

Files are read by the audio modality's reader (:func:`vqtok.modalities.read_wav`, standard library :mod:`wave`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..modalities.audio import read_wav
from ._registry import check_split, register_dataset

__all__ = ["AudioSegmentDataset", "asterisk_en", "is_test_file", "read_wav", "speech_folder"]

ASTERISK_DIR = "/usr/share/asterisk/sounds/en"
ASTERISK_APT = "asterisk-core-sounds-en-wav"
TEST_FRACTION = 0.1


def is_test_file(name: str, fraction: float = TEST_FRACTION) -> bool:
    """Deterministic held-out assignment of a file by the SHA-1 of its base name."""
    return hashlib.sha1(Path(name).name.encode()).digest()[0] < round(256 * fraction)


class AudioSegmentDataset(Dataset):
    """Whole recordings cut into fixed-length segments.

    Items are ``(C, segment)`` float32. The whole files stay available in ``waveforms`` (with ``names``)
    for file-level evaluation at their natural lengths.

    Args:
        waveforms: ``(C, T_i)`` recordings at ``sample_rate``.
        names: One name per recording.
        sample_rate: Hz.
        segment: Samples per item.
        hop: Samples between segment starts (``segment``: no overlap). A leftover tail of at least half a
            segment gets one more segment aligned to the recording's end (zero-padded if the recording is
            shorter than ``segment``).
    """

    def __init__(self, waveforms: list[Tensor], names: list[str], sample_rate: int, segment: int, hop: int) -> None:
        if segment < 1 or hop < 1:
            raise ValueError(f"segment and hop must be positive, got {segment} and {hop}")
        self.waveforms = waveforms
        self.names = names
        self.sample_rate = sample_rate
        self.segment = segment
        spans: list[tuple[int, int]] = []
        for i, wav in enumerate(waveforms):
            length = wav.shape[-1]
            starts = list(range(0, length - segment + 1, hop))
            covered = starts[-1] + segment if starts else 0
            if length - covered >= segment // 2:
                # The tail gets one segment aligned to the end (zero-padded when the file is short).
                starts.append(max(0, length - segment))
            spans += [(i, s) for s in starts]
        self.spans = spans

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> Tensor:
        i, start = self.spans[index]
        piece = self.waveforms[i][:, start : start + self.segment]
        if piece.shape[-1] < self.segment:
            piece = torch.nn.functional.pad(piece, (0, self.segment - piece.shape[-1]))
        return piece


@register_dataset("asterisk_en")
def asterisk_en(
    split: str = "train",
    root: str | None = None,
    segment_seconds: float = 1.0,
    overlap: float = 0.5,
) -> AudioSegmentDataset:
    """Asterisk English prompts, 8 kHz mono; ``(1, segment)`` items.

    Args:
        split: ``"train"`` (90% of files) or ``"test"`` (10%, chosen by :func:`is_test_file`).
        root: Directory of the ``*.wav`` prompts (default ``$VQTOK_ASTERISK_SOUNDS_DIR`` or the Debian path).
        segment_seconds: Length of one item.
        overlap: Fraction of a segment shared by consecutive items in the training split (the test split
            never overlaps).

    Raises:
        FileNotFoundError: When the prompts are missing; names the apt package to install.
        ValueError: On a bad split, segment length or overlap, or mixed sample rates.
    """
    check_split(split)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    directory = Path(root or os.environ.get("VQTOK_ASTERISK_SOUNDS_DIR", ASTERISK_DIR))
    files = sorted(directory.glob("*.wav")) if directory.is_dir() else []
    recordings = _read_split(
        files,
        split,
        missing=f"no Asterisk prompts (*.wav) in {str(directory)!r}. Install them with `sudo apt-get install "
        f"{ASTERISK_APT}` (Debian/Ubuntu), or set VQTOK_ASTERISK_SOUNDS_DIR to a directory of 16-bit PCM WAV files",
    )
    rates = {rate for _, _, rate in recordings}
    if len(rates) > 1:
        raise ValueError(f"{str(directory)!r} mixes sample rates {sorted(rates)}")
    rate = rates.pop() if rates else 8000
    waveforms = [wav for _, wav, _ in recordings]
    return _segments(waveforms, [f.name for f, _, _ in recordings], rate, split, segment_seconds, overlap)


@register_dataset("speech_folder")
def speech_folder(
    split: str = "train",
    root: str | None = None,
    sample_rate: int = 16000,
    segment_seconds: float = 1.0,
    overlap: float = 0.5,
) -> AudioSegmentDataset:
    """Every 16-bit PCM WAV under ``root`` (recursively), mixed to mono and resampled to ``sample_rate`` with
    ``soxr``; ``(1, segment)`` items, split by :func:`is_test_file` like ``asterisk_en``.

    Any recordings that ship offline serve: the Asterisk prompts (8 kHz, so upsampled audio has no content above
    4 kHz), or speech synthesised by ``espeak-ng`` (22.05 kHz; ``python examples/espeak_corpus.py DIR``).

    Args:
        split: ``"train"`` or ``"test"``.
        root: The folder (default ``$VQTOK_SPEECH_DIR``).
        sample_rate: Rate of the items in Hz.
        segment_seconds: Length of one item.
        overlap: Fraction shared by consecutive training items.

    Raises:
        FileNotFoundError: When ``root`` holds no WAV file.
        ValueError: On a bad split, rate, segment length or overlap.
        ImportError: When a file needs resampling and ``soxr`` is missing.
    """
    check_split(split)
    if sample_rate < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"need sample_rate >= 1 and overlap in [0, 1), got {sample_rate} and {overlap}")
    directory = Path(root or os.environ.get("VQTOK_SPEECH_DIR", ""))
    files = sorted(directory.rglob("*.wav")) if str(directory) and directory.is_dir() else []
    recordings = _read_split(
        files,
        split,
        missing=f"no *.wav under {str(directory)!r}: pass data.kwargs.root (or set VQTOK_SPEECH_DIR) to a folder of "
        f"16-bit WAVs, e.g. {ASTERISK_DIR} (apt-get install {ASTERISK_APT}) or one made by "
        "examples/espeak_corpus.py (apt-get install espeak-ng)",
    )
    waveforms = []
    for _, wav, rate in recordings:
        wav = wav.mean(0, keepdim=True)
        if rate != sample_rate:
            from ..tokenizers.audio_input import resample

            wav = resample(wav, rate, sample_rate)
        waveforms.append(wav)
    names = [str(f.relative_to(directory)) for f, _, _ in recordings]
    return _segments(waveforms, names, sample_rate, split, segment_seconds, overlap)


def _read_split(files: list[Path], split: str, missing: str) -> list[tuple[Path, Tensor, int]]:
    """``(file, (C, T) waveform, sample rate)`` of each of ``files`` in ``split`` (by :func:`is_test_file`).

    Raises:
        FileNotFoundError: With the message ``missing`` when ``files`` is empty.
    """
    if not files:
        raise FileNotFoundError(missing)
    return [(f, *read_wav(f)) for f in files if is_test_file(f.name) == (split == "test")]


def _segments(
    waveforms: list[Tensor], names: list[str], rate: int, split: str, segment_seconds: float, overlap: float
) -> AudioSegmentDataset:
    """Cuts ``segment_seconds`` items; test items do not overlap, training ones share ``overlap`` of their length."""
    segment = int(round(segment_seconds * rate))
    if segment < 1:
        raise ValueError(f"segment_seconds={segment_seconds} is shorter than one sample")
    hop = segment if split == "test" else max(1, int(round(segment * (1 - overlap))))
    return AudioSegmentDataset(waveforms, names, rate, segment, hop)
