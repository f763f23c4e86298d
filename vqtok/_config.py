"""Private bottom layer for configs: dataclass <-> dict, typed parsing, dotted ``key=value`` overrides.

Values arrive from JSON, YAML and the command line, where ``1e-3`` is a string (YAML 1.1 needs a dot for a
float), tuples are lists and every number may be an int. :func:`config_from_dict` therefore converts each value
to its field's annotated type (``float``, ``int``, ``bool``, ``str``, ``X | None``, ``tuple[...]``, ``list[...]``,
``dict[...]``, ``Literal[...]``, nested dataclasses) and raises one ``ValueError`` naming the dotted key and the
expected type when it cannot. Unknown keys are rejected, so that a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["apply_overrides", "config_from_dict", "config_to_dict", "parse_override_value"]

C = TypeVar("C")
_MISSING = object()


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-safe dict of a (possibly nested) dataclass config; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is left unchecked, not fatal
        return {}


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _fail(key: str, hint: Any, value: Any) -> ValueError:
    return ValueError(f"config key {key!r} expects {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to ``hint``, or ValueError naming ``key``."""
    if hint is Any or hint is object or hint is _MISSING:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        # A value that already has one of the member types keeps it ("1e-3" stays a string for ``str | float``).
        for member in members:
            if isinstance(member, type) and type(value) is member:
                return value
        for member in members:
            try:
                return _coerce(value, member, key)
            except ValueError:
                continue
        raise _fail(key, hint, value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"config key {key!r} must be one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        if hasattr(value, "tolist") and not isinstance(value, (list, tuple, str)):
            value = value.tolist()  # numpy arrays and tensors hold the values as a nested list
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise _fail(key, hint, value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"config key {key!r} expects {len(args)} values ({_type_name(hint)}), got {value!r}")
            items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise _fail(key, hint, value)
        return dict(value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return config_from_dict(hint, dict(value), prefix=f"{key}.")
        raise _fail(key, hint, value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _fail(key, hint, value)
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # numpy integers included
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise _fail(key, hint, value)
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _fail(key, hint, value)
    if hint is str:
        if isinstance(value, str):
            return value
        # YAML reads `run_dir: 2024` as a number; a scalar in a string field is meant as its text.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(key, hint, value)
    return value  # an annotation this function does not know: left to the dataclass's own validation


def config_from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Builds dataclass ``cls`` from ``data``, converting every value to its field's type.

    Args:
        cls: The dataclass.
        data: Its fields, possibly nested mappings for nested dataclasses.
        prefix: Dotted path of ``data`` inside a larger config (``"model."``), used in error messages.

    Raises:
        ValueError: On unknown keys, on a non-mapping, on a value that does not fit its field's type (the message
            names the dotted key and the type), or when ``data['version']`` is newer than ``cls`` knows.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ValueError(f"{prefix.rstrip('.') or cls.__name__} expects a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        shown = [f"{prefix}{k}" for k in unknown]
        raise ValueError(f"unknown key(s) {shown} for {cls.__name__}; valid keys: {sorted(fields)}")
    hints = _hints(cls)
    defaults = cls()  # type: ignore[call-arg]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        hint = hints.get(name, _MISSING)
        if hint is _MISSING and dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            kwargs[name] = config_from_dict(type(default), value, prefix=f"{prefix}{name}.")
        elif hint is _MISSING and isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
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


def parse_override_value(text: str) -> Any:
    """Parses an override value as YAML when available (numbers, bools, lists), else JSON, else a string.

    The field's type then decides the final value (``"1e-3"`` becomes a float for a ``float`` field).
    """
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


def apply_overrides(data: Mapping[str, Any], overrides: list[str], schema: Any | None = None) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides to a nested dict.

    Args:
        data: Nested config mapping; a modified copy is returned.
        overrides: ``key=value`` strings; values are parsed by :func:`parse_override_value`.
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
        node[parts[-1]] = parse_override_value(raw)
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
