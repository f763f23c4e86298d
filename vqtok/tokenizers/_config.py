"""The versioned config dataclass every tokenizer family derives from.

Dict/JSON round trips, typed parsing and unknown-key checks live in :mod:`vqtok._config`; the names are
re-exported here for code written against this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._config import apply_overrides, config_from_dict, config_to_dict

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
