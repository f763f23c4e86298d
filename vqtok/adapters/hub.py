"""``hf:`` sources: a Hugging Face repo id in the local cache, or a folder, loaded behind the right adapter.

``load_hf("facebook/encodec_24khz")`` looks the repo up in the local Hugging Face cache (``HF_HUB_CACHE``,
default ``~/.cache/huggingface/hub``) and never downloads: vqtok runs offline whatever ``HF_HUB_OFFLINE``
says, and a repo that is not on disk raises an error that gives the command to fetch it. ``org/name@rev``
picks a revision (branch, tag or commit) of the cache. A folder (``hf:./my_model``) is read directly.

The adapter is chosen by the ``model_type`` of the folder's ``config.json``; a vqtok checkpoint folder is
handed to :meth:`Tokenizer.from_pretrained` instead. Weights are loaded by ``transformers`` itself (which
knows each model's historical weight names), strictly: a missing, unexpected or mis-shaped tensor is an
error that names it, never a randomly initialised layer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..tokenizers import CheckpointError, Tokenizer
from .base import HFAdapter, adapter_classes

__all__ = ["adapter_for_model", "from_hf_model", "load_hf", "resolve_hf"]

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _fetch_hint(repo: str) -> str:
    return f"fetch it with `hf download {repo}` (older huggingface_hub: `huggingface-cli download {repo}`)"


def resolve_hf(source: str) -> Path:
    """The local folder of ``source``: an existing folder, or the cached snapshot of repo id ``source``.

    Raises:
        CheckpointError: When the folder does not exist or the repo is not in the local cache.
    """
    if not source.strip():
        raise CheckpointError("hf: needs a repo id (org/name) or a folder after the colon")
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise CheckpointError(f"hf:{source}: folder {str(path)!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    repo, _, revision = source.partition("@")
    # Read at call time: the library's constant is frozen when huggingface_hub is first imported.
    cache = os.environ.get("HF_HUB_CACHE") or None
    try:
        folder = snapshot_download(repo, revision=revision or None, cache_dir=cache, local_files_only=True)
    except HFValidationError as err:
        raise CheckpointError(f"hf:{source}: {repo!r} is neither a folder nor a valid repo id ({err})") from err
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as err:
        where = cache or "the Hugging Face cache"
        raise CheckpointError(
            f"hf:{source}: {repo!r} is not in the local Hugging Face cache ({where}) and vqtok never downloads; "
            + _fetch_hint(repo)
        ) from err
    return Path(folder)


def adapter_for_model(model: nn.Module) -> type[HFAdapter]:
    """The adapter class for a ``transformers`` model instance.

    Raises:
        TypeError: When no adapter wraps that model class.
    """
    name = type(model).__name__
    for cls in adapter_classes().values():
        if cls.hf_model_class == name:
            return cls
    known = sorted(c.hf_model_class for c in adapter_classes().values())
    raise TypeError(f"no vqtok adapter for model class {name!r}; adapters exist for {known}")


def from_hf_model(model: nn.Module) -> HFAdapter:
    """Wraps an in-memory ``transformers`` model (weights shared) in its adapter."""
    return adapter_for_model(model).from_hf_model(model)


def load_hf(source: str, map_location: str | torch.device = "cpu") -> Tokenizer:
    """Loads ``source`` (a repo id in the local cache or a folder) as a vqtok tokenizer.

    Raises:
        CheckpointError: When the source is not on disk, has no usable ``config.json`` or weights, has a
            ``model_type`` without an adapter, or its weights do not match the model (keys named).
    """
    folder = resolve_hf(source)
    repo = source.partition("@")[0]
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"hf:{source}: {str(config_path)!r} is missing; " + _fetch_hint(repo))
    try:
        payload = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"hf:{source}: {str(config_path)!r} is corrupt: {err}") from err
    if isinstance(payload, dict) and payload.get("format") == "vqtok-tokenizer":
        return Tokenizer.from_pretrained(folder, map_location=map_location)
    model_type = payload.get("model_type") if isinstance(payload, dict) else None
    adapters = adapter_classes()
    if model_type not in adapters:
        archs = payload.get("architectures") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"hf:{source}: no vqtok adapter for model_type {model_type!r} (architectures {archs}); "
            f"adapters exist for model types {sorted(adapters)}"
        )
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise CheckpointError(
            f"hf:{source}: no weights in {str(folder)!r} (looked for {list(_WEIGHT_FILES)}); " + _fetch_hint(repo)
        )
    cls = adapters[model_type]
    import transformers

    model_class = getattr(transformers, cls.hf_model_class)
    try:
        # Mismatched shapes are collected (not raised by transformers) so that the error below can name them.
        model, info = model_class.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True
        )
    except (OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"hf:{source}: {cls.hf_model_class} could not load {str(folder)!r}: {err}") from err
    problems = []
    for key, label in (("missing_keys", "missing keys"), ("unexpected_keys", "unexpected keys")):
        keys = sorted(info.get(key) or [])
        if keys:
            problems.append(f"{label} {keys[:8]}{' ...' if len(keys) > 8 else ''}")
    mismatched = sorted(str(m) for m in info.get("mismatched_keys") or [])
    if mismatched:
        problems.append(f"shape mismatches {mismatched[:8]}")
    if problems:
        raise CheckpointError(f"hf:{source}: weights do not match {cls.hf_model_class}: " + "; ".join(problems))
    return cls.from_hf_model(model).to(map_location)
