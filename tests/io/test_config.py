"""vqtok._config: typed parsing of YAML values and overrides, clear errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from vqtok._config import apply_overrides, config_from_dict, config_to_dict
from vqtok.train import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_yaml_exponent_without_dot_is_a_float(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    # YAML 1.1 reads 1e-3 as the string "1e-3"; the field's type makes it a float.
    path.write_text("steps: 7\noptim:\n  lr: 1e-3\n  weight_decay: 0\n  betas: [0.5, 1]\n")
    cfg = load_config(path, ["optim.min_lr_ratio=5e-2", "seed=3.0"])
    assert cfg.optim.lr == 1e-3 and type(cfg.optim.lr) is float
    assert cfg.optim.weight_decay == 0.0 and type(cfg.optim.weight_decay) is float
    assert cfg.optim.betas == (0.5, 1.0) and all(type(b) is float for b in cfg.optim.betas)
    assert cfg.optim.min_lr_ratio == 0.05 and cfg.seed == 3 and type(cfg.seed) is int
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 1e-3
    assert load_config(None, ["eval_data=null", "run_dir=2024"]).run_dir == "2024"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps=abc", r"'steps' expects int, got 'abc'"),
        ("steps=2.5", r"'steps' expects int"),
        ("optim.lr=fast", r"'optim.lr' expects float"),
        ("optim.lr=true", r"'optim.lr' expects float"),
        ("optim.betas=[0.9]", r"'optim.betas' expects 2 values"),
        ("optim.betas=[0.9, x]", r"'optim.betas\[1\]' expects float"),
        ("find_unused_parameters=maybe", r"'find_unused_parameters' expects bool"),
        ("data=3", r"'data' expects DataConfig"),
        ("optim.lrr=1", r"unknown config key 'optim.lrr'"),
        ("model.image_size=abc", r"'model.image_size' expects tuple\[int, int\]"),
        ("model.widht=3", r"unknown key\(s\) \['model.widht'\]"),
    ],
)
def test_bad_values_name_the_key_and_the_type(override, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, ["model.quantizer=vq", override])


def test_yaml_file_errors_name_the_key(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: abc\n")
    with pytest.raises(ValueError, match="'optim.lr' expects float"):
        load_config(path)
    path.write_text("optim: [1, 2\n")
    with pytest.raises(ValueError, match=r"c\.yaml.*not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load_and_round_trip(path) -> None:
    cfg = load_config(path)
    assert load_config(None, [f"{k}={v}" for k, v in _flat(cfg.to_dict())]) == cfg


def _flat(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    import json

    out = []
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("model", "kwargs"):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", json.dumps(value)))
    return out


@dataclass
class _Inner:
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    scale: float | None = None
    names: list[str] = field(default_factory=list)


def test_nested_literal_optional_and_variable_tuples() -> None:
    cfg = config_from_dict(_Outer, {"inner": {"mode": "b", "sizes": [3, "4"]}, "scale": "2e0", "names": ["x"]})
    assert cfg == _Outer(_Inner("b", (3, 4)), 2.0, ["x"])
    import numpy as np

    numpy_cfg = config_from_dict(_Outer, {"inner": {"sizes": np.array([5, 6])}, "scale": np.float32(0.5)})
    assert numpy_cfg.inner.sizes == (5, 6) and type(numpy_cfg.inner.sizes[0]) is int and numpy_cfg.scale == 0.5
    assert config_from_dict(_Outer, config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match=r"'inner.mode' must be one of \['a', 'b'\]"):
        config_from_dict(_Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ValueError, match=r"'names' expects list\[str\]"):
        config_from_dict(_Outer, {"names": "x"})
    with pytest.raises(ValueError, match="not of the form key=value"):
        apply_overrides({}, ["scale"])
