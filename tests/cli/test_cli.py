"""The ``vqtok`` CLI, run in-process on tiny configs in ``tmp_path``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqtok.cli.__main__ import main
from vqtok.testing.configs import tiny_image_yaml

CONFIG = tiny_image_yaml("optim.lr=0.003", "steps=6", "batch_size=16", "log_every=3", "ckpt_every=3")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(CONFIG)
    assert main(["train", str(root / "tiny.yaml"), f"run_dir={root / 'run'}", "--no-progress"]) == 0
    return root


def test_train_outputs(trained) -> None:
    run = trained / "run"
    assert (run / "model" / "config.json").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_train_refuses_and_rejects(trained, capsys) -> None:
    cfg = str(trained / "tiny.yaml")
    assert main(["train", cfg, f"run_dir={trained / 'run'}", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", cfg, "optim.lrr=1"]) == 2
    assert "lrr" in capsys.readouterr().err


def test_encode_decode_npy_and_parquet(trained, capsys) -> None:
    images = (np.random.default_rng(0).random((5, 8, 8)) * 255).astype(np.uint8)
    np.save(trained / "in.npy", images)
    model = str(trained / "run" / "model")
    assert main(["encode", "--model", model, str(trained / "in.npy"), "-o", str(trained / "idx.npy")]) == 0
    indices = np.load(trained / "idx.npy")
    assert indices.shape == (5, 4, 4) and indices.dtype == np.int64
    assert main(["encode", "--model", model, str(trained / "in.npy"), "-o", str(trained / "idx.npy")]) == 2
    assert "--force" in capsys.readouterr().err

    assert main(["encode", "--model", model, str(trained / "in.npy"), "-o", str(trained / "idx.parquet")]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(trained / "idx.parquet").to_pydict()
    assert table["item"] == list(range(5)) and table["shape"][0] == [4, 4]
    assert np.array_equal(np.array(table["indices"]).reshape(5, 4, 4), indices)

    for src in ("idx.npy", "idx.parquet"):
        out = trained / f"rec-{src}.npy"
        assert main(["decode", "--model", model, str(trained / src), "-o", str(out)]) == 0
        assert np.load(out).shape == (5, 1, 8, 8)
    assert np.array_equal(np.load(trained / "rec-idx.npy.npy"), np.load(trained / "rec-idx.parquet.npy"))


def test_eval_writes_report(trained, capsys) -> None:
    out = trained / "eval"
    args = ["eval", "--model", str(trained / "run" / "model"), "--data", "synthetic", "-o", str(out)]
    assert main([*args, "--max-examples", "64"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "usage", "perplexity", "tokens_per_example", "bits_per_example", "compression_ratio"):
        assert key in metrics, key
    assert metrics["tokens_per_example"] == 16 and metrics["examples"] == 64
    assert metrics["bits_per_example"] == pytest.approx(16 * 5)
    assert metrics["compression_ratio"] == pytest.approx(64 * 8 / 80)
    report = out / "report"
    assert {"index.html", "recon_grid.png", "codebook_usage.png", "metrics.json"} <= {p.name for p in report.iterdir()}
    html = (report / "index.html").read_text()
    assert "recon_grid.png" in html and "codebook_usage.png" in html
    assert "report:" in capsys.readouterr().out


def test_list_and_missing_data(capsys, monkeypatch, tmp_path) -> None:
    assert main(["list"]) == 0
    assert "image2d" in capsys.readouterr().out
    monkeypatch.setenv("VQTOK_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    assert main(["eval", "--model", str(tmp_path), "--data", "fashion_mnist"]) == 2
    err = capsys.readouterr().err
    # Checkpoint problems are reported before data; data errors name the apt package.
    assert "checkpoint" in err or "dataset-fashion-mnist" in err
    from vqtok.data import create_dataset

    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        create_dataset("fashion_mnist", "test")
