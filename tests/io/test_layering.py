"""The bottom layers import nothing above them, and the file/dist/config helpers exist once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "vqtok"
# What each bottom package may import from inside vqtok (besides itself).
ALLOWED = {
    "_io": set(),
    "_dist": set(),
    "_config": set(),
    "kernels": {"_io", "_dist", "_config"},
    "layers": {"_io", "_dist", "_config", "kernels"},
    "metrics": {"_io", "_dist", "_config", "kernels", "layers"},
}


def _modules(package: str) -> list[Path]:
    single = ROOT / f"{package}.py"
    return [single] if single.is_file() else sorted((ROOT / package).rglob("*.py"))


def _vqtok_imports(path: Path) -> set[str]:
    """First component below ``vqtok`` of every import in ``path`` (relative or absolute, at any depth)."""
    package_parts = path.relative_to(ROOT).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - (node.level - 1)])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts] if parts else [[alias.name] for alias in node.names]
            elif node.module and node.module.split(".")[0] == "vqtok":
                names = [node.module.split(".")[1:] or [alias.name for alias in node.names]]
            else:
                continue
            out |= {n[0] for n in names if n}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("vqtok.")}
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_bottom_layers_import_only_downward(package) -> None:
    for path in _modules(package):
        upward = _vqtok_imports(path) - ALLOWED[package] - {package, "version"}
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)} from above its layer"


def test_helpers_are_defined_once() -> None:
    """atomic writes, SHA-256 of files, JSON manifests and rank helpers live in vqtok._io / vqtok._dist only."""
    names = {"atomic_open", "atomic_save_torch", "sha256_file", "_sha256", "_write_json", "_read_json", "_barrier"}
    names |= {"_dist_rank_world", "get_rank", "get_world_size"}
    for path in sorted(ROOT.rglob("*.py")):
        if path.name in ("_io.py", "_dist.py"):
            continue
        defined = {
            n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)
        }
        assert not defined & names, f"{path.relative_to(ROOT)} defines {sorted(defined & names)}: use vqtok._io/_dist"
