"""A base for the models' frozen dataclass configs: dict round trip with strict keys.

Checkpoints store a model's config as a plain dict (JSON in safetensors
metadata); `from_dict` rebuilds it and names any key the class does not know,
so a checkpoint from another version fails loudly instead of loading wrong.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self


class DictConfig:
    """Mixin for `@dataclass(frozen=True)` configs; adds `to_dict` and `from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from a dict; unknown keys are an error naming them."""
        unknown = set(values) - {field.name for field in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**values)
