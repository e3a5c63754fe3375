"""Axes: a named preference with two poles, e.g. helpful ↔ useless (METHOD §1)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from .errors import FitError


def _assets_folder() -> Path:
    """Presets, seed queries, judge anchors: inside the installed package (the wheel maps the
    repository's assets/ to alignez_core/assets), else the source tree's assets/."""
    here = Path(__file__).resolve().parent
    installed = here / "assets"
    return installed if (installed / "presets.json").is_file() else here.parent / "assets"


ASSETS = _assets_folder()
MAX_KEYWORD_CHARS = 80
MAX_DESCRIPTION_CHARS = 400


@dataclass(frozen=True)
class Axis:
    """Two poles named in plain words; descriptions are optional longer free text."""

    name: str
    positive: str
    negative: str
    positive_description: str = ""
    negative_description: str = ""

    def __post_init__(self) -> None:
        for field_name, limit in (
            ("name", MAX_KEYWORD_CHARS),
            ("positive", MAX_KEYWORD_CHARS),
            ("negative", MAX_KEYWORD_CHARS),
        ):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value.strip():
                raise FitError(f"Axis {field_name} must be a non-empty word or phrase.")
            if len(value) > limit:
                raise FitError(f"Axis {field_name} is {len(value)} characters; the cap is {limit}.")
            object.__setattr__(self, field_name, " ".join(value.split()))
        for field_name in ("positive_description", "negative_description"):
            value = " ".join(str(getattr(self, field_name) or "").split())
            if len(value) > MAX_DESCRIPTION_CHARS:
                raise FitError(
                    f"Axis {field_name} is {len(value)} characters; the cap is "
                    f"{MAX_DESCRIPTION_CHARS}."
                )
            object.__setattr__(self, field_name, value)
        if self.positive.lower() == self.negative.lower():
            raise FitError("The two poles of an axis must differ.")

    def persona(self, positive: bool) -> str:
        """'a cheerful assistant (sounds happy…)' — the role the model plays for a pole."""
        keyword = self.positive if positive else self.negative
        description = self.positive_description if positive else self.negative_description
        return f"{keyword} assistant" + (f" who {description}" if description else "")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Axis:
        keys = ("name", "positive", "negative", "positive_description", "negative_description")
        return cls(**{k: data[k] for k in keys if k in data})


@cache
def _preset_data() -> dict[str, dict]:
    return json.loads((ASSETS / "presets.json").read_text())


def preset_names() -> list[str]:
    return list(_preset_data())


def preset(name: str) -> Axis:
    """A built-in axis by name: the paper's helpful/harmless/humor and our additions."""
    data = _preset_data().get(name)
    if data is None:
        raise FitError(f"Unknown preset {name!r}; choose one of: {', '.join(preset_names())}.")
    return Axis(name=name, **{k: v for k, v in data.items() if k != "source"})


def seed_queries() -> list[str]:
    """The built-in, diverse seed query set used when the user gives no queries."""
    lines = (ASSETS / "seed_queries.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]
