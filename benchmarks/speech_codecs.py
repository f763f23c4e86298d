"""vqtok's audio codec against codec2 and Opus on the held-out Asterisk prompts: STOI and PESQ-NB, delay-aligned.

Held-out set: every WAV of Debian's ``asterisk-core-sounds-en-wav`` (all folders) whose base name the project's
SHA-1 rule (:func:`vqtok.data.audio.is_test_file`) puts in the test split: 52 files, about 175 s of 8 kHz speech.
Every codec sees each whole file once; its output is aligned to the original by the lag (within +-50 ms) that
maximises their cross-correlation, both are cut to the common span, and PESQ-NB (ITU-T P.862, ``pesq``) and STOI
(``pystoi``) are averaged over files.

* codec2 (Debian ``codec2``): ``c2enc MODE in.raw out.bit`` / ``c2dec`` at 700C, 1300, 1600, 2400, 3200 bit/s.
* Opus (Debian ``opus-tools``): ``opusenc --hard-cbr --bitrate K`` on raw 8 kHz input, ``opusdec --rate 8000``.
* vqtok: each ``--model DIR[=LABEL]`` (a ``save_pretrained`` folder, e.g. ``runs/audio_asterisk/model``) at
  residual depths 1, 2, 4, 8 (1.6 kbps per level for the 8 kHz configs); pass two folders trained for the same
  steps with and without ``gan_weight`` to get the GAN comparison.

Run::

    python benchmarks/speech_codecs.py --model runs/audio_asterisk/model=demo --out benchmarks/results/speech_codecs

writes ``<out>.json`` and ``<out>.md`` (the Markdown table). The actual bitrates (from the coded file sizes for
codec2 and Opus, container overhead included for Opus) are reported next to the nominal ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vqtok._io import atomic_write_bytes
from vqtok.data.audio import ASTERISK_APT, ASTERISK_DIR, is_test_file, read_wav
from vqtok.tokenizers import Tokenizer

RATE = 8000
CODEC2_MODES = ("700C", "1300", "1600", "2400", "3200")
OPUS_KBPS = (6, 8, 12)
MAX_LAG = RATE // 20  # 50 ms


def held_out_files(root: str | os.PathLike[str] = ASTERISK_DIR) -> list[Path]:
    """The held-out WAVs of every folder of the package, sorted."""
    files = sorted(p for p in Path(root).rglob("*.wav") if is_test_file(p.name))
    if not files:
        raise FileNotFoundError(f"no Asterisk prompts under {str(root)!r}: apt-get install {ASTERISK_APT}")
    return files


def align(ref: np.ndarray, deg: np.ndarray, max_lag: int = MAX_LAG) -> tuple[np.ndarray, np.ndarray, int]:
    """Shifts ``deg`` by the lag in ``[-max_lag, max_lag]`` with the highest cross-correlation to ``ref``.

    Returns:
        ``(ref, deg)`` cut to their common span after the shift, and the lag (``deg`` is late by ``lag``).
    """
    n = min(len(ref), len(deg))
    if n == 0:
        raise ValueError("cannot align an empty signal")
    size = 1 << int(np.ceil(np.log2(len(ref) + len(deg))))
    corr = np.fft.irfft(np.fft.rfft(deg, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(corr[lags])])
    if lag >= 0:
        deg = deg[lag:]
    else:
        ref = ref[-lag:]
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n], lag


def score(ref: np.ndarray, deg: np.ndarray) -> dict[str, float]:
    """PESQ-NB and STOI of one aligned pair (PESQ is NaN when it finds no utterance)."""
    from pesq import pesq
    from pystoi import stoi

    ref, deg, lag = align(ref.astype(np.float64), deg.astype(np.float64))
    try:
        p = float(pesq(RATE, ref, deg, "nb"))
    except Exception:  # noqa: BLE001 - pesq raises its own NoUtterancesError/BufferTooShortError
        p = float("nan")
    return {"pesq_nb": p, "stoi": float(stoi(ref, deg, RATE)), "lag": lag}


def _pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def codec2(x: np.ndarray, mode: str, tmp: Path) -> tuple[np.ndarray, int]:
    """Encodes and decodes with codec2; returns ``(decoded, coded bytes)``."""
    raw, bit, out = tmp / "in.raw", tmp / "c2.bit", tmp / "c2.raw"
    raw.write_bytes(_pcm16(x))
    _run(["c2enc", mode, str(raw), str(bit)])
    _run(["c2dec", mode, str(bit), str(out)])
    return np.frombuffer(out.read_bytes(), "<i2").astype(np.float32) / 32768, bit.stat().st_size


def opus(x: np.ndarray, kbps: int, tmp: Path) -> tuple[np.ndarray, int]:
    """Encodes with ``opusenc --hard-cbr`` and decodes at 8 kHz; returns ``(decoded, coded bytes)``."""
    raw, ogg, out = tmp / "in.raw", tmp / "o.opus", tmp / "o.wav"
    raw.write_bytes(_pcm16(x))
    _run(["opusenc", "--quiet", "--hard-cbr", "--bitrate", str(kbps), "--raw", "--raw-rate", str(RATE),
          "--raw-chan", "1", str(raw), str(ogg)])  # fmt: skip
    _run(["opusdec", "--quiet", "--rate", str(RATE), str(ogg), str(out)])
    wav, rate = read_wav(out)
    assert rate == RATE, rate
    return wav[0].numpy(), ogg.stat().st_size


@torch.no_grad()
def vqtok_codec(model: Tokenizer, signals: list[np.ndarray], levels: list[int]) -> dict[int, list[np.ndarray]]:
    """All files as one zero-padded batch, encoded once at full depth and decoded at every depth in ``levels``.

    Padding on the right changes nothing before it for a causal model; a centred one sees at most a hop of the
    padding at each file's end. The first ``n`` residual levels of a full-depth code are the ``n``-level code.
    """
    lengths = [len(s) for s in signals]
    batch = torch.zeros(len(signals), 1, max(lengths))
    for i, s in enumerate(signals):
        batch[i, 0, : len(s)] = torch.from_numpy(s)
    indices = model.encode(batch)
    out = {}
    for n in levels:
        recon = model.decode(indices[..., :n]).clamp(-1, 1)
        out[n] = [recon[i, 0, :length].numpy() for i, length in enumerate(lengths)]
    return out


def _mean(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def _row(codec: str, nominal: float, actual: float, scores: list[dict[str, float]], **extra) -> dict:
    return {"codec": codec, "nominal_kbps": nominal, "actual_kbps": actual, "stoi": _mean(scores, "stoi"),
            "pesq_nb": _mean(scores, "pesq_nb"), "pesq_failures": sum(not np.isfinite(s["pesq_nb"]) for s in scores),
            "median_lag": float(np.median([s["lag"] for s in scores])), **extra}  # fmt: skip


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| codec | nominal kbps | actual kbps | STOI | PESQ-NB |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['codec']} | {r['nominal_kbps']:g} | {r['actual_kbps']:.2f} | {r['stoi']:.3f} | {r['pesq_nb']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="DIR[=LABEL]", help="vqtok model folder")
    parser.add_argument("--root", default=os.environ.get("VQTOK_ASTERISK_SOUNDS_DIR", ASTERISK_DIR))
    parser.add_argument("--levels", default="1,2,4,8", help="residual depths of each vqtok model")
    parser.add_argument("--max-files", type=int, default=None, help="first N held-out files only (smoke tests)")
    parser.add_argument("--no-reference", action="store_true", help="skip codec2 and Opus")
    parser.add_argument("--codec2-modes", default=",".join(CODEC2_MODES))
    parser.add_argument("--opus-kbps", default=",".join(map(str, OPUS_KBPS)))
    parser.add_argument("--out", default="benchmarks/results/speech_codecs", help="output path without suffix")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    files = held_out_files(args.root)[: args.max_files]
    signals = []
    for f in files:
        wav, rate = read_wav(f)
        if rate != RATE:
            raise ValueError(f"{str(f)!r} is {rate} Hz, expected {RATE}")
        signals.append(wav.mean(0).numpy())
    seconds = sum(len(s) for s in signals) / RATE
    rows: list[dict] = []
    t0 = time.perf_counter()
    if not args.no_reference:
        missing = [tool for tool in ("c2enc", "c2dec", "opusenc", "opusdec") if shutil.which(tool) is None]
        if missing:
            raise FileNotFoundError(f"missing {missing}: apt-get install codec2 opus-tools (or pass --no-reference)")
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            for mode in filter(None, args.codec2_modes.split(",")):
                coded = [codec2(s, mode, tmp) for s in signals]
                scores = [score(s, d) for s, (d, _) in zip(signals, coded, strict=True)]
                actual = 8 * sum(b for _, b in coded) / seconds / 1000
                nominal = 0.7 if mode == "700C" else int(mode) / 1000
                rows.append(_row(f"codec2 {mode}", nominal, actual, scores))
            for kbps in [int(k) for k in filter(None, args.opus_kbps.split(","))]:
                coded = [opus(s, kbps, tmp) for s in signals]
                scores = [score(s, d) for s, (d, _) in zip(signals, coded, strict=True)]
                rows.append(_row(f"Opus {kbps} kbps", kbps, 8 * sum(b for _, b in coded) / seconds / 1000, scores))
    levels = [int(v) for v in args.levels.split(",")]
    models = {}
    for spec in args.model:
        path, _, label = spec.partition("=")
        model = Tokenizer.from_pretrained(path).eval()
        cfg = model.config
        models[label or path] = {"path": path, "config": cfg.to_dict()}
        usable = [n for n in levels if n <= model.quantizer.num_levels]
        t1 = time.perf_counter()
        decoded = vqtok_codec(model, signals, usable)
        models[label or path]["codec_seconds"] = time.perf_counter() - t1
        for n in usable:
            scores = [score(s, d) for s, d in zip(signals, decoded[n], strict=True)]
            kbps = model.bitrate_kbps(n)
            name = f"vqtok {label or path}, {n} level{'s' * (n > 1)}"
            flags = {"gan": bool(getattr(cfg, "gan_weight", 0)), "causal": bool(getattr(cfg, "causal", False))}
            rows.append(_row(name, kbps, kbps, scores, **flags))
    header = (
        f"Held-out Asterisk prompts: {len(files)} files, {seconds:.1f} s at 8 kHz; PESQ-NB and STOI, delay-aligned "
        "(benchmarks/speech_codecs.py)."
    )
    result = {"files": len(files), "seconds": seconds, "rows": rows, "models": models,
              "wall_seconds": time.perf_counter() - t0, "load_average_1_5_15_min": os.getloadavg()}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(result, indent=2).encode())
    table = markdown(rows, header)
    atomic_write_bytes(out.with_suffix(".md"), table.encode())
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
