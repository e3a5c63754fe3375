"""Slider values from the page: the range every axis slider shares, checked before use."""

from __future__ import annotations

import math
from collections.abc import Sequence

from alignez_core import AlignEZError
from ui.session import StudioSession

SLIDER_RANGE = 2.0


def apply_sliders(session: StudioSession, strengths: Sequence[float | None]) -> None:
    """Slider values as the page shows them now, in axis order, into the session."""
    names = session.names()
    values = [None if v is None else float(v) for v in strengths]
    for i, value in enumerate(values):  # every slider, shown or not: nothing odd gets in
        if value is not None and not (math.isfinite(value) and abs(value) <= SLIDER_RANGE):
            which = names[i] if i < len(names) else f"#{i + 1}"
            raise AlignEZError(
                f"The slider for {which} is {value}: use a number from −{SLIDER_RANGE:g} to "
                f"{SLIDER_RANGE:g}."
            )
    for name, value in zip(names, values, strict=False):
        if value is not None:
            session.strengths[name] = value
