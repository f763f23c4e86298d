"""Audio: waveforms ``(C, T)`` float in ``[-1, 1]``.

Files: ``.wav`` (PCM 8/16/24/32-bit, standard library :mod:`wave`, always available); ``.flac`` and ``.ogg``
through ``soundfile`` when it is installed. No resampling is ever done: a file at another rate than the
tokenizer's is an error.

Value rule, for files and arrays alike: signed integers are divided by ``2**(bits - 1)`` (int16 by 32768),
``uint8`` is ``(x - 128) / 128`` (8-bit WAV is offset binary), floats are taken as they are and must lie in
``[-1, 1]``; other dtypes, NaN and Inf are errors naming the file.

Channel rule, to the ``C`` the tokenizer takes: equal counts pass, mono is copied to every channel,
``C = 1`` takes the mean of all channels (down-mix); anything else is an error.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..metrics.audio import audio_metrics, speech_metrics, streaming_rtf
from ..metrics.report import Panel
from ._arrays import scale_integers_and_check_floats
from ._registry import register_modality
from .base import Modality, ReadOptions

__all__ = ["AUDIO", "audio_from_array", "read_wav", "to_audio_channels"]

_INTEGER_SCALES = {
    "uint8": (128.0, 128.0),
    "int16": (0.0, 32768.0),
    "int32": (0.0, 2147483648.0),
}
# Sample width in bytes -> the numpy dtype whose scale the value rule defines.
_NATIVE = {1: np.uint8, 2: np.int16, 4: np.int32}


def audio_from_array(arr: np.ndarray, source: str) -> Tensor:
    """The audio value rule (module docstring) applied to raw values; the layout is left as it is."""
    return scale_integers_and_check_floats(arr, source, _INTEGER_SCALES, (-1.0, 1.0))


def read_wav(file: str | os.PathLike[str] | bytes, source: str | None = None) -> tuple[Tensor, int]:
    """Reads a PCM ``.wav`` (8, 16, 24 or 32-bit) from a path or from the file's bytes.

    Args:
        file: Path, or the bytes of the file.
        source: Name of the file in error messages (default: the path, or ``"<bytes>"``).

    Returns:
        ``(waveform (C, T) float32 in [-1, 1], sample_rate)``.

    Raises:
        ValueError: On an empty, truncated, non-PCM or otherwise unreadable file; the message names it.
    """
    if isinstance(file, (bytes, bytearray)):
        data, source = bytes(file), source or "<bytes>"
    else:
        data, source = Path(file).read_bytes(), source or repr(str(file))
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes)")
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError, OSError, ValueError, ArithmeticError, RuntimeError) as err:
        # wave raises a bare RuntimeError when a chunk size points past the end of the file.
        raise ValueError(f"{source}: not a readable PCM .wav file ({type(err).__name__}: {err})") from err
    if channels < 1 or rate < 1 or width not in (1, 2, 3, 4):
        raise ValueError(f"{source}: unsupported .wav layout ({channels} channel(s), {rate} Hz, {8 * width}-bit)")
    if len(raw) != frames * channels * width or frames == 0:
        raise ValueError(
            f"{source}: truncated or empty .wav: the header promises {frames} frame(s), the file holds "
            f"{len(raw) // (channels * width)}"
        )
    if width == 3:
        # 24-bit little-endian: widen each sample to int32 by putting it in the top three bytes.
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        ints = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16 | b[:, 2].astype(np.int32) << 24) >> 8
        x = ints.astype(np.float32) / 8388608.0
    else:
        x = audio_from_array(np.frombuffer(raw, {1: "u1", 2: "<i2", 4: "<i4"}[width]).astype(_NATIVE[width]), source)
        x = x.numpy()
    return _from_interleaved(x, channels), rate


def _from_interleaved(x: np.ndarray, channels: int) -> Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, channels).T, dtype=np.float32))


def to_audio_channels(x: Tensor, channels: int | None, source: str) -> Tensor:
    """Applies the channel rule (module docstring) to a ``(C, T)`` waveform.

    Raises:
        ValueError: When the counts differ and neither side is mono.
    """
    if channels is None or x.shape[0] == channels:
        return x
    if channels == 1:
        return x.mean(0, keepdim=True)
    if x.shape[0] == 1:
        return x.expand(channels, -1).contiguous()
    raise ValueError(f"{source}: {x.shape[0]} audio channels cannot be read for a {channels}-channel model")


def _check_rate(rate: int, options: ReadOptions, source: str) -> None:
    if options.sample_rate is not None and rate != options.sample_rate:
        raise ValueError(
            f"{source}: audio at {rate} Hz, but the tokenizer expects {options.sample_rate} Hz (resample it first)"
        )


def _read_wav_example(data: bytes, source: str, options: ReadOptions) -> Tensor:
    x, rate = read_wav(data, source)
    _check_rate(rate, options, source)
    return to_audio_channels(x, options.channels, source)


def _read_soundfile_example(data: bytes, source: str, options: ReadOptions) -> Tensor:
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, OSError, soundfile.LibsndfileError) as err:
        # libsndfile names the BytesIO object; the message names the file instead.
        why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the file", str(err))
        raise ValueError(f"{source}: not a readable audio file ({type(err).__name__}: {why})") from err
    if samples.size == 0:
        raise ValueError(f"{source}: the audio file holds no samples")
    _check_rate(rate, options, source)
    return to_audio_channels(_from_interleaved(samples, samples.shape[1]), options.channels, source)


def _report(directory: Path, originals: Tensor, recons: Tensor, context: Mapping[str, Any]) -> list[Panel]:
    from ..metrics.report import save_wav

    rate = context.get("sample_rate")
    if originals.ndim != 3 or not rate:
        return []
    (directory / "audio").mkdir(exist_ok=True)
    pairs = []
    for i in range(min(int(context.get("audio_examples", 4)), originals.shape[0], recons.shape[0])):
        for kind, wav in (("original", originals[i]), ("recon", recons[i])):
            save_wav(wav, rate, directory / "audio" / f"{kind}_{i}.wav")
        pairs.append((f"audio/original_{i}.wav", f"audio/recon_{i}.wav"))
    return [Panel("Audio (before / after)", sounds=tuple(pairs))]


def _speech_metrics(model: Any, recon: Tensor, target: Tensor) -> dict[str, Tensor]:
    rate = getattr(getattr(model, "config", None), "sample_rate", None)
    return speech_metrics(recon, target, rate) if rate else {}


def _summary(model: Any) -> dict[str, float]:
    """Bitrate, algorithmic latency and, for streamable (causal) codecs on the CPU, the one-thread real-time factor
    of ``encode_stream`` + ``decode_stream`` in hop-sized chunks."""
    import torch

    out: dict[str, float] = {}
    if hasattr(model, "bitrate_kbps"):
        out["bitrate_kbps"] = float(model.bitrate_kbps())
    latency = getattr(model, "algorithmic_latency_ms", None)
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if latency is not None and on_cpu:
        out["algorithmic_latency_ms"] = float(latency)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out["stream_rtf_1thread"] = streaming_rtf(model, model.config.sample_rate, seconds=2.0)
        finally:
            torch.set_num_threads(threads)
    return out


def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"fLaC":
        return ".flac"
    return ".ogg" if head[:4] == b"OggS" else None


_READERS = {".wav": _read_wav_example}
if importlib.util.find_spec("soundfile") is not None:
    _READERS.update({".flac": _read_soundfile_example, ".ogg": _read_soundfile_example})

AUDIO = register_modality(
    Modality(
        name="audio",
        example_ndim=2,
        readers=_READERS,
        from_array=audio_from_array,
        value_range=(-1.0, 1.0),
        metrics=audio_metrics,
        # 16-bit PCM.
        raw_bits_per_value=16.0,
        report=_report,
        read_options=lambda config: ReadOptions(
            channels=getattr(config, "in_channels", None), sample_rate=getattr(config, "sample_rate", None)
        ),
        sniff=_sniff,
        model_metrics=_speech_metrics,
        model_summary=_summary,
    )
)
