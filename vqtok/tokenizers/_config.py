"""Versioned dataclass configs that round-trip through dicts and JSON.

Every tokenizer family has one ``@dataclass`` config deriving from :class:`TokenizerConfig`. JSON has no
tuples, so :func:`config_from_dict` turns lists back into tuples where the field's default is a tuple;
unknown keys are rejected so that a typo in a config file never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["TokenizerConfig", "config_from_dict", "config_to_dict", "apply_overrides"]

C = TypeVar("C")


@dataclass
class TokenizerConfig:
    """Fields shared by every tokenizer.

    Attributes:
        version: Config schema version of the family; bumped when a field changes meaning.
        quantizer: Registered quantizer name (see :func:`vqtok.list_quantizers`).
        quantizer_kwargs: Constructor kwargs of that quantizer.
    """

    version: int = 1
    quantizer: str = "fsq"
    quantizer_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return config_from_dict(cls, data)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return config_from_dict(cls, json.loads(text))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-safe dict of a (possibly nested) dataclass config; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _retuple(value: Any) -> Any:
    return tuple(_retuple(v) for v in value) if isinstance(value, list) else value


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Builds dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Raises:
        ValueError: On unknown keys, on a non-dict, or when ``data['version']`` is newer than ``cls`` knows.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    defaults = cls()  # type: ignore[call-arg]
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = config_from_dict(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = _retuple(value)
        else:
            kwargs[name] = value
    if "version" in fields and "version" in kwargs:
        current = defaults.version  # type: ignore[attr-defined]
        if int(kwargs["version"]) > int(current):
            raise ValueError(
                f"{cls.__name__} version {kwargs['version']} is newer than this vqtok understands "
                f"(version {current}); upgrade vqtok"
            )
        # Older versions would be migrated here; version 1 is the first one.
        kwargs["version"] = current
    return cls(**kwargs)  # type: ignore[return-value]


def _parse_value(text: str) -> Any:
    """Parses an override value as YAML when available (numbers, bools, lists), else JSON, else a string."""
    try:
        import yaml

        return yaml.safe_load(text)
    except ImportError:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    except Exception:  # noqa: BLE001 - yaml raises several error types; an unparsable value is a plain string
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str], schema: Any | None = None) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides to a nested dict.

    Args:
        data: Nested config mapping; modified copy is returned.
        overrides: ``key=value`` strings; values are parsed as YAML scalars/lists.
        schema: Optional dataclass instance whose structure decides which keys exist. Keys under a
            free-form ``dict`` field (e.g. ``quantizer_kwargs``) are accepted as given.

    Raises:
        ValueError: On a malformed override or a key that the schema does not have.
    """
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        parts = key.split(".")
        if not all(parts):
            raise ValueError(f"bad override key {key!r}")
        if schema is not None:
            _check_key(schema, parts, key)
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r}: {p!r} is not a mapping")
        node[parts[-1]] = _parse_value(raw)
    return out


def _check_key(schema: Any, parts: list[str], key: str) -> None:
    node = schema
    for i, p in enumerate(parts):
        if dataclasses.is_dataclass(node):
            names = [f.name for f in dataclasses.fields(node)]
            if p not in names:
                raise ValueError(f"unknown config key {key!r}: {p!r} is not one of {names}")
            node = getattr(node, p)
        elif isinstance(node, dict):
            # Free-form mapping: anything below it is the owner's business (validated on construction).
            return
        else:
            raise ValueError(f"unknown config key {key!r}: {'.'.join(parts[:i])} is not a mapping")
