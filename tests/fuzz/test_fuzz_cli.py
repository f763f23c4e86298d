"""Fuzz every CLI command in-process with hostile argument lists (issue 17).

Each command has a grammar that mixes valid and hostile values (missing, empty, corrupt and wrongly typed
files, folders where files belong, bad numbers, junk flags). The CLI must either succeed (exit 0, with a
readable output) or fail with exit status 2 and one last line ``vqtok ...: error: ...`` and no traceback;
with ``--debug`` only the documented user errors may escape. Commands that would start long jobs (``demo``
training Fashion-MNIST, ``bench`` running every benchmark) only get arguments that must fail fast.
"""

from __future__ import annotations

import io
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqtok.cli.__main__ import USER_ERRORS, build_parser, main
from vqtok.testing.configs import TINY_AUDIO, TINY_IMAGE2D, tiny_image_yaml
from vqtok.tokenizers import create_tokenizer

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
PIL = pytest.importorskip("PIL.Image")

CONFIG = tiny_image_yaml(
    "optim.warmup_steps=1", "optim.lr=0.003", "steps=2", "batch_size=8", "log_every=1", "ckpt_every=2"
)
NUMBERS = ["1", "2", "7", "0", "-1", "-5", "abc", "", "1e3", "2.5"]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _wav(n: int, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(n, "<i2").tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzzcli")
    torch.manual_seed(0)
    create_tokenizer("image2d", **TINY_IMAGE2D).save_pretrained(root / "image_model")
    create_tokenizer("audio", **TINY_AUDIO).save_pretrained(root / "audio_model")
    from vqtok.testing.graphs import karate
    from vqtok.tokenizers import FASTTokenizer, NodePieceTokenizer

    chunks = (0.3 * torch.randn(100, 2, 8, generator=torch.Generator().manual_seed(0))).cumsum(-1)
    FASTTokenizer(2, 8, scale=8.0, vocab_size=300).fit(chunks).save_pretrained(root / "fast_model")
    types = torch.tensor([i % 2 for i in range(78)])
    NodePieceTokenizer.fit(
        karate(), 34, types, num_anchors=6, anchors_per_node=3, relations_per_node=2
    ).save_pretrained(root / "graph_model")
    (root / "corrupt_model").mkdir()
    (root / "corrupt_model" / "config.json").write_text('{"architecture": "image2d", "config": {')
    (root / "empty_dir").mkdir()
    (root / "images").mkdir()
    (root / "images" / "a.png").write_bytes(_png(np.zeros((8, 8), np.uint8)))
    grey = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    rng = np.random.default_rng(0)
    blobs: dict[str, bytes | np.ndarray] = {
        "good.png": _png(grey),
        "big.png": _png(np.zeros((16, 16), np.uint8)),
        "odd.png": _png(np.zeros((9, 9), np.uint8)),
        "png16.png": _png(grey.astype(np.uint16) * 257),
        "rgb.png": _png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)),
        "truncated.png": _png(grey)[:40],
        "zero.png": b"",
        "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 64, dtype=np.uint8)),
        "good.wav": _wav(64),
        "rate.wav": _wav(64, rate=16000),
        "zero.wav": b"",
        "truncated.wav": _wav(64)[:50],
        "u8.npy": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
        "unit.npy": rng.random((2, 1, 8, 8)),
        "f255.npy": rng.random((2, 8, 8)) * 255,
        "i64.npy": rng.integers(0, 256, (2, 8, 8)),
        "complex.npy": np.ones((2, 8, 8), np.complex64),
        "strings.npy": np.array(["a", "b"]),
        "struct.npy": np.zeros(3, dtype=[("a", "f4")]),
        "empty.npy": np.zeros((0, 8, 8), np.uint8),
        "audio.npy": (rng.random((2, 1, 64)) - 0.5).astype(np.float32),
        "chunks.npy": chunks[:5].numpy(),
        "nodes.npy": np.array([0, 5, 33, 12]),
        "bad_nodes.npy": np.array([0, 99, -1]),
        "idx.npy": rng.integers(0, 32, (2, 4, 4)),
        "idx_float.npy": rng.random((2, 4, 4)),
        "idx_empty.npy": np.zeros((0, 7, 7), np.int64),
        "idx_shape.npy": rng.integers(0, 32, (2, 3, 4, 4)),
        "zero.npy": b"",
        "junk.npy": b"\x93NUMPY\x01\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000,), }\n",
        "junk.yaml": b"{{{: not yaml",
        "bad_keys.yaml": b"tokenizer: image2d\nnot_a_key: 3\n",
        "tiny.yaml": CONFIG.encode(),
        "file": b"just a file",
    }
    for name, value in blobs.items():
        if isinstance(value, np.ndarray):
            np.save(root / name, value)
        else:
            (root / name).write_bytes(value)
    pq.write_table(pa.table({"shape": [[4, 4]] * 2, "indices": [list(range(16))] * 2}), root / "idx.parquet")
    pq.write_table(pa.table({"indices": [list(range(16))]}), root / "noshape.parquet")
    pq.write_table(pa.table({"shape": [[4, 4]], "indices": [[0.5] * 16]}), root / "idx_float.parquet")
    pq.write_table(pa.table({"signal": [_png(grey)] * 3, "key": ["a", "b", "c"]}), root / "media.parquet")
    (root / "corrupt.parquet").write_bytes(b"PAR1 not really")
    return {p.name: p for p in root.iterdir()}


def _pick(data: st.DataObject, files: dict[str, Path], names: list[str], label: str) -> str:
    name = data.draw(st.sampled_from(names), label=label)
    return str(files[name]) if name in files else name


def _out(data: st.DataObject, files: dict[str, Path], work: Path, suffixes: list[str]) -> str:
    choice = data.draw(st.sampled_from(["new", "new", "existing", "folder", "missing_parent", "bad_suffix"]))
    suffix = data.draw(st.sampled_from(suffixes))
    if choice == "existing":
        (work / f"exists{suffix}").write_bytes(b"an older output")
    return {
        "new": str(work / f"out{suffix}"),
        "existing": str(work / f"exists{suffix}"),
        "folder": str(files["empty_dir"]),
        "missing_parent": str(work / "no" / "such" / f"out{suffix}"),
        "bad_suffix": str(work / "out.txt"),
    }[choice]


def _options(data: st.DataObject, flags: dict[str, list[str]]) -> list[str]:
    argv: list[str] = []
    for flag, values in flags.items():
        if data.draw(st.booleans(), label=f"use {flag}"):
            argv += [flag] if not values else [flag, data.draw(st.sampled_from(values), label=flag)]
    return argv


MODELS = ["image_model", "image_model", "audio_model", "fast_model", "graph_model", "corrupt_model", "empty_dir"]
MODELS += ["missing_model", "good.png"]
SIGNALS = [
    *["good.png", "big.png", "odd.png", "png16.png", "rgb.png", "truncated.png", "zero.png", "garbage.png"],
    *["good.wav", "rate.wav", "zero.wav", "truncated.wav", "u8.npy", "unit.npy", "f255.npy", "i64.npy"],
    *["complex.npy", "strings.npy", "struct.npy", "empty.npy", "audio.npy", "zero.npy", "junk.npy", "images"],
    *["missing.png", "file", "chunks.npy", "nodes.npy", "bad_nodes.npy"],
]
INDICES = [
    *["idx.npy", "idx.parquet", "idx_float.npy", "idx_empty.npy", "idx_shape.npy", "noshape.parquet"],
    *["idx_float.parquet", "corrupt.parquet", "zero.npy", "junk.npy", "strings.npy", "u8.npy", "missing.npy"],
]


def _encode(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    inputs = [_pick(data, files, SIGNALS, "input") for _ in range(data.draw(st.integers(1, 3)))]
    model = _pick(data, files, MODELS, "model")
    out = _out(data, files, work, [".npy", ".parquet"])
    return ["encode", "--model", model, *inputs, "-o", out, *_options(data, {"-f": [], "--batch-size": NUMBERS})]


def _decode(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    model = _pick(data, files, MODELS, "model")
    argv = ["decode", "--model", model, _pick(data, files, INDICES, "indices"), "-o", _out(data, files, work, [".npy"])]
    return [*argv, *_options(data, {"-f": [], "--batch-size": NUMBERS})]


def _eval(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    argv = ["eval", "--model", _pick(data, files, MODELS, "model")]
    argv += ["--data", data.draw(st.sampled_from(["synthetic", "synthetic", "no_such_data", ""]))]
    argv += ["-o", str(work / "eval"), "--max-examples", data.draw(st.sampled_from(NUMBERS))]
    return [*argv, *_options(data, {"--batch-size": NUMBERS, "--split": ["train", "test", "valid"]})]


def _export(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    sources = ["images", "u8.npy", "unit.npy", "f255.npy", "complex.npy", "empty.npy", "media.parquet"]
    sources += ["corrupt.parquet", "idx.parquet", "empty_dir", "file", "synthetic", "missing_dir", "good.wav"]
    sources += ["chunks.npy", "nodes.npy"]
    out = data.draw(st.sampled_from([str(work / "export"), str(files["file"]), str(files["empty_dir"])]))
    argv = ["export", _pick(data, files, sources, "source"), "-o", out, "--no-progress"]
    argv += ["--model", _pick(data, files, MODELS, "model")]
    flags = {"--shard-size": NUMBERS, "--batch-size": NUMBERS, "--max-shards": NUMBERS, "-f": []}
    flags |= {"--column": ["signal", "nope"], "--split": ["train", "test"]}
    return [*argv, *_options(data, flags)]


def _train(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    config = _pick(
        data, files, ["tiny.yaml", "tiny.yaml", "junk.yaml", "bad_keys.yaml", "missing.yaml", "images"], "config"
    )
    overrides = data.draw(
        st.lists(
            st.sampled_from(["steps=abc", "steps=-3", "optim.lr=1e-3", "batch_size=0", "bogus=1", "steps=1", "=", "x"]),
            max_size=2,
        )
    )
    return ["train", config, f"run_dir={work / 'run'}", *overrides, "--no-progress"]


def _demo(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    # Only configs that must fail before training starts: a valid one would train the Fashion-MNIST demo.
    config = _pick(data, files, ["junk.yaml", "bad_keys.yaml", "missing.yaml", "empty_dir"], "config")
    return ["demo", "--config", config, f"run_dir={work / 'demo'}", "--no-progress"]


def _bench(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    # Never a valid name list: `vqtok bench` with no or valid names runs benchmark scripts for minutes.
    if data.draw(st.booleans()):
        return ["bench", "--list"]
    return ["bench", data.draw(st.sampled_from(["no_such_bench", "", "../etc"]))]


def _export_onnx(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    # Mostly arguments that must fail before tracing (a valid export takes seconds); never --check.
    model = _pick(data, files, ["image_model", "corrupt_model", "empty_dir", "missing_model", "file"], "model")
    part = data.draw(st.sampled_from(["both", "encoder", "decoder", "neither"]), label="part")
    out = data.draw(
        st.sampled_from([str(work / "onnx"), str(work / "e.onnx"), str(work / "e.txt"), str(files["file"])])
    )
    argv = ["export-onnx", "--model", model, "-o", out, "--part", part]
    flags = {"--example": [str(files[n]) for n in ("u8.npy", "complex.npy", "zero.npy", "junk.npy", "strings.npy")]}
    flags |= {"--opset": ["17", "0", "-1", "abc"], "--num-levels": ["0", "-2", "x"]}
    return [*argv, *_options(data, flags)]


def _list(data: st.DataObject, files: dict[str, Path], work: Path) -> list[str]:
    return ["list", *data.draw(st.lists(st.sampled_from(["--bogus", "x"]), max_size=1))]


GRAMMARS: dict[str, Callable[[st.DataObject, dict[str, Path], Path], list[str]]] = {
    "encode": _encode,
    "decode": _decode,
    "eval": _eval,
    "export": _export,
    "export-onnx": _export_onnx,
    "train": _train,
    "demo": _demo,
    "bench": _bench,
    "list": _list,
}


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")  # noqa: SLF001 - argparse has no public API
    return sorted(sub.choices)


def test_every_command_has_a_grammar() -> None:
    assert set(_commands()) == set(GRAMMARS), "add a fuzz grammar for each new CLI command"


def _run(argv: list[str]) -> tuple[int, BaseException | None]:
    try:
        return int(main(argv)), None
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else 1), None
    except BaseException as err:  # noqa: BLE001 - returned for the assertions
        return -1, err


@pytest.mark.parametrize("command", sorted(GRAMMARS))
@settings(max_examples=settings.default.max_examples * 2)
@given(data=st.data())
def test_command(command: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str], data: st.DataObject) -> None:
    debug = data.draw(st.booleans(), label="debug")
    junk = data.draw(st.sampled_from([[], [], [], ["--bogus-flag"], ["extra-positional"]]), label="junk")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        argv = [*(["--debug"] if debug else []), *GRAMMARS[command](data, files, work), *junk]
        capsys.readouterr()
        rc, err = _run(argv)
        stderr = capsys.readouterr().err
        if err is not None:
            assert debug and isinstance(err, USER_ERRORS), f"{argv}: {type(err).__name__}: {err}"
            return
        assert rc in (0, 2), f"{argv}: exit status {rc}\n{stderr}"
        if rc == 2:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            assert "error:" in last, f"{argv}: last stderr line {last!r}"
            assert "Traceback" not in stderr and "BytesIO" not in stderr, f"{argv}:\n{stderr}"
            return
        if command in ("encode", "decode"):
            out = Path(argv[argv.index("-o") + 1])
            if out.suffix == ".npy":
                arr = np.load(out)
                assert arr.size and (arr.dtype.kind == "i" or np.isfinite(arr).all()), argv
