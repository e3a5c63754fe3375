"""Axes: a named preference with two poles, e.g. helpful ↔ useless (docs/method.md §1)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alignez_core.errors import FitError


def _assets_folder() -> Path:
    """Presets, seed queries, judge anchors: inside the installed package (the wheel maps the
    repository's assets/ to alignez_core/assets), else the source tree's assets/."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "assets"
    return installed if (installed / "presets.json").is_file() else package.parent / "assets"


ASSETS = _assets_folder()
MAX_KEYWORD_CHARS = 80
MAX_DESCRIPTION_CHARS = 400


@dataclass(frozen=True)
class Axis:
    """Two poles named in plain words; descriptions are optional longer free text.

    `band` (fractions of depth) is where the axis steers best where that was measured (some
    presets: length sits earlier in the network than tone, docs/RESULTS.md); None: the fit's
    default band for its readout."""

    name: str
    positive: str
    negative: str
    positive_description: str = ""
    negative_description: str = ""
    band: tuple[float, float] | None = None

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
        if self.band is not None:
            object.__setattr__(self, "band", _check_band(self.band))
        if self.positive.lower() == self.negative.lower():
            raise FitError("The two poles of an axis must differ.")

    def persona(self, positive: bool) -> str:
        """'a cheerful assistant (sounds happy…)' — the role the model plays for a pole."""
        keyword = self.positive if positive else self.negative
        description = self.positive_description if positive else self.negative_description
        return f"{keyword} assistant" + (f" who {description}" if description else "")

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.band is None:  # packs and files of axes without one read as before
            del data["band"]
        else:
            data["band"] = list(self.band)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Axis:
        keys = ("name", "positive", "negative", "positive_description", "negative_description")
        return cls(**{k: data[k] for k in keys if k in data}, band=data.get("band"))


def _check_band(band: Any) -> tuple[float, float]:
    """A band as two fractions of depth, 0 ≤ from < to ≤ 1, or a FitError naming it."""
    try:
        low, high = (float(b) for b in band)
    except (TypeError, ValueError):
        raise FitError(f"An axis band must be two fractions of depth, got {band!r}.") from None
    if not 0 <= low < high <= 1:
        raise FitError(f"An axis band must satisfy 0 ≤ from < to ≤ 1, got {band!r}.")
    return low, high


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
    return Axis.from_dict({"name": name, **data})


def preset_band(name: str | None, axis: Axis) -> tuple[float, float] | None:
    """The band of preset `name` if `axis` still has its poles (edited poles make a custom axis,
    which steers on the default band); None otherwise."""
    if name not in _preset_data():
        return None
    known = preset(name)
    same = (axis.positive, axis.negative) == (known.positive, known.negative)
    return known.band if same else None


def seed_queries() -> list[str]:
    """The built-in, diverse seed query set used when the user gives no queries."""
    lines = (ASSETS / "seed_queries.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]
