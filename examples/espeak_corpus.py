"""Writes a folder of synthetic English speech with ``espeak-ng`` (offline; ``apt-get install espeak-ng``).

The 16 and 24 kHz audio configs train on it through the ``speech_folder`` data set, which resamples with soxr::

    python examples/espeak_corpus.py runs/espeak_speech --utterances 600
    vqtok train configs/audio_16k.yaml data.kwargs.root=runs/espeak_speech

Sentences are drawn from small word lists with a fixed seed and spoken by several voices, variants, speeds and
pitches, so the corpus is the same on every machine with the same espeak-ng. espeak-ng writes 22.05 kHz mono
16-bit WAVs. Synthetic speech is a stand-in: a codec trained on it is not a codec for human voices.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
from pathlib import Path

SUBJECTS = ["the old man", "a small dog", "my sister", "the pilot", "every student", "the red car", "our teacher",
            "the baker", "a quiet child", "the farmer", "this machine", "the river"]  # fmt: skip
VERBS = ["carried", "painted", "found", "watched", "counted", "opened", "followed", "repaired", "noticed", "sold"]
OBJECTS = ["seven green apples", "the broken window", "a heavy box", "twelve letters", "the morning paper",
           "a silver spoon", "the long bridge", "three yellow birds", "the kitchen door", "a warm coat"]  # fmt: skip
ENDINGS = ["before noon.", "in the rain.", "near the station.", "without a word.", "on Tuesday.", "at the market.",
           "after dinner.", "with great care.", "twice.", "by the lake."]  # fmt: skip
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-us+f2", "en-gb+f3", "en-us+m3", "en-gb+m5", "en-us+f4"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install espeak-ng")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for i in range(args.utterances):
        text = " ".join(rng.choice(words) for words in (SUBJECTS, VERBS, OBJECTS, ENDINGS)).capitalize()
        voice, speed, pitch = rng.choice(VOICES), rng.randint(130, 190), rng.randint(30, 70)
        path = args.out / f"espeak_{i:05d}.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{args.utterances} utterances in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
