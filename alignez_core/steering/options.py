"""Steering options typed by a user (CLI flags, studio text boxes), parsed with one clear error,
and the one place that turns them into `SteerSettings`."""

from __future__ import annotations

from alignez_core.engine.edit import ALL_LAYERS
from alignez_core.errors import AlignEZError

from .settings import DEFAULT_BUDGET, SteerSettings


def parse_layers(value: str) -> tuple[int, ...] | None:
    """'auto' → None (the band / top-n choose), else a comma list like '8,9,10'."""
    if value.strip().lower() == "auto":
        return None
    try:
        layers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise AlignEZError(f"--layers expects 'auto' or a list like 8,9,10: {value!r}.") from None
    if not layers:
        raise AlignEZError("--layers list is empty.")
    return layers


def parse_floats(value: str, what: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise AlignEZError(f"{what} expects numbers separated by commas, got {value!r}.") from None
    if not numbers:
        raise AlignEZError(f"{what} is empty.")
    return numbers


def parse_band(value: str | None) -> tuple[float, float] | None:
    """None or 'fitted' → None (each pack's own band), 'all' → (0, 1) (every layer), else
    'FROM,TO' as fractions of depth, e.g. '0.25,0.7'."""
    if value is None or value.strip().lower() == "fitted":
        return None
    if value.strip().lower() in ("all", "none"):
        return ALL_LAYERS
    numbers = parse_floats(value, "--band")
    if len(numbers) != 2:
        raise AlignEZError(
            f"--band expects 'fitted', 'all' or two fractions like 0.25,0.7, got {value!r}."
        )
    return numbers[0], numbers[1]


def parse_budget(value: str) -> float | None:
    """'off' → None (raw sums), else a positive multiple of the strongest single push."""
    if value.strip().lower() in ("off", "none"):
        return None
    numbers = parse_floats(value, "--budget")
    number = numbers[0] if len(numbers) == 1 else None
    if number is None or not 0 < number <= 10:
        raise AlignEZError(f"--budget expects 'off' or a number in (0, 10], got {value!r}.")
    return number


def settings_from_text(
    rule: str | None = None,
    layers: str | None = None,
    band: str | None = None,
    top_n: int | None = None,
    positions: str | None = None,
    scale: float | None = None,
    budget: str | None = None,
    separate: str | None = None,
) -> SteerSettings:
    """SteerSettings from what a user typed: None leaves a choice open (each pack's own rule,
    band and positions; the default budget), `layers` 'auto' or '8,9', `band` 'fitted', 'all'
    or 'FROM,TO', `budget` 'off' or a number, `separate` 'ordered', 'symmetric' or 'assign'."""
    return SteerSettings(
        rule=rule or None,
        top_n=top_n,
        layers=parse_layers(layers) if layers is not None else None,
        band=parse_band(band),
        positions=positions or None,  # type: ignore[arg-type]  # SteerSettings checks it
        scale=scale,
        budget=DEFAULT_BUDGET if budget is None else parse_budget(budget),
        separate=separate or None,  # type: ignore[arg-type]  # SteerSettings checks it
    )
