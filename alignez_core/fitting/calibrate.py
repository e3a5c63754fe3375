"""Per-axis, per-sign slider calibration at fit time (docs/method.md §7).

The usable strength differs per axis, per sign and per layer band, so no fixed slider scale fits
every axis. After a fit, a few of the axis's *own* fit queries (never evaluation prompts) are
answered at a grid of strengths c (push per edited layer as a fraction of its residual norm), in
one batch with the base answers; slider +1 and −1 each map to the last c whose answers stay
fluent: perplexity under the unedited model within `max_perplexity_ratio` × base, and no more
degenerate answers than base (distinct-2 below `min_distinct_2`, or looping: raw/zlib size above
`max_repetition`) beyond `extra_looping`. A base model gets its own (`calibration_for_kind`).
The answers are generated in the model's own dtype (what a user gets); only their scoring runs its
matrix products in bfloat16 where that is native (`judges.native_bf16`), about 1 s of an 8 s
calibration, ratios within 0.5 % of float32's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from alignez_core.axes.pack import AxisPack, SliderCalibration
from alignez_core.engine.catalog import ModelKind
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitCancelled, FitError
from alignez_core.measure.judges import (
    DEGENERATE_DISTINCT_2,
    DEGENERATE_REPETITION,
    degenerate,
    finite_mean,
    perplexities,
)
from alignez_core.steering import SteerSettings, plan_edits


@dataclass(frozen=True)
class CalibrationConfig:
    """How the clean edge is searched; the grid is in units of the layer's residual norm."""

    n_queries: int = 3
    # Measured on SmolLM2 (docs/RESULTS.md): clean edges fall between 0.01 and 0.03 (0.06 loops
    # on every axis tried; 24-token answers hid loops that 32 tokens show). With the persona
    # readout the edge often lies between 0.01 and 0.02: on held-out seed queries simple −1 is
    # clean at 0.015 (FK +2.8 at 1.15× perplexity) and over the bar at 0.02 (1.30×), so 0.015 is
    # a grid point; four points at 32 tokens stay ≤ 30 % of an 8-query fit (`make bench`).
    grid: tuple[float, ...] = (0.01, 0.015, 0.02, 0.03)
    max_new_tokens: int = 32
    max_perplexity_ratio: float = 1.25
    min_distinct_2: float = DEGENERATE_DISTINCT_2
    max_repetition: float = DEGENERATE_REPETITION
    # looping answers a strength may add to the base answers' count and stay clean
    extra_looping: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_queries <= 16:
            raise FitError(f"calibration n_queries must be 1–16, got {self.n_queries}.")
        if not 0 <= self.extra_looping < self.n_queries:
            raise FitError(
                f"calibration extra_looping must be 0–{self.n_queries - 1}, "
                f"got {self.extra_looping}."
            )
        if not self.grid or any(not 0 < c < 10 for c in self.grid):
            raise FitError(f"calibration grid must be strengths in (0, 10), got {self.grid}.")
        if list(self.grid) != sorted(set(self.grid)):
            raise FitError("calibration grid must be strictly increasing.")


# A pretrained model's edits loop a few answers in 24 at every strength that moves it (Gemma 3
# 270M: 1–3 of 24 at c 0.01–0.03 against 0 unedited, perplexity within 1.3×; docs/models.md),
# so three queries that must not loop at all put both edges below the grid. Eight queries with
# one looping answer allowed, under the 1.3× bar the base-model goals use.
BASE_CALIBRATION = CalibrationConfig(n_queries=8, max_perplexity_ratio=1.3, extra_looping=1)


def calibration_for_kind(kind: ModelKind) -> CalibrationConfig:
    """The calibration a model of this kind gets unless told otherwise."""
    return BASE_CALIBRATION if kind == "base" else CalibrationConfig()


def measure_fluency(texts: Sequence[str], ppl: Sequence[float], config: CalibrationConfig) -> dict:
    """Mean perplexity and the count of degenerate answers, as `is_clean` compares them."""
    return {
        "perplexity": finite_mean(ppl),
        "degenerate": sum(
            degenerate(t, config.min_distinct_2, config.max_repetition) for t in texts
        ),
    }


def is_clean(measured: dict, base: dict, config: CalibrationConfig) -> bool:
    """Within the perplexity bar, and no more degenerate answers than base beyond the allowance."""
    return (
        measured["perplexity"] <= config.max_perplexity_ratio * base["perplexity"]
        and measured["degenerate"] <= base["degenerate"] + config.extra_looping
    )


def _last_clean(points: list[dict], sign: int, grid: Sequence[float]) -> float:
    """The largest c of the clean run that starts at the grid's bottom; half the bottom if none."""
    chosen = grid[0] / 2
    for c in grid:
        point = next(p for p in points if p["sign"] == sign and p["c"] == c)
        if not point["clean"]:
            break
        chosen = c
    return chosen


def calibrate(
    lm: LoadedModel,
    pack: AxisPack,
    queries: Sequence[str],
    settings: SteerSettings = SteerSettings(),
    config: CalibrationConfig = CalibrationConfig(),
    cancel: threading.Event | None = None,
) -> SliderCalibration:
    """Measure the clean edge of `pack` per sign on `queries` (the fit's own) with `settings`."""
    started = time.perf_counter()
    queries = [q for q in queries if q.strip()][: config.n_queries]
    if not queries:
        raise FitError("No queries to calibrate the slider on.")
    grid = config.grid
    combos = [(sign, c) for sign in (1, -1) for c in grid]
    rows = [Row(q) for q in queries]
    for sign, c in combos:
        planned = plan_edits(lm, queries, {pack: float(sign)}, replace(settings, scale=c))
        rows += [Row(q, edits[0].edit) for q, edits in zip(queries, planned, strict=True)]
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
    texts = [o.text for o in generate_rows(lm, rows, sampling, cancel)]
    if cancel is not None and cancel.is_set():
        raise FitCancelled("Fit cancelled.")
    n = len(queries)
    # one call: each query's prompt is run once and shared by all its rows
    ppl = perplexities(lm, [r.prompt for r in rows], texts, bf16_products=True)
    base = measure_fluency(texts[:n], ppl[:n], config)
    points = []
    for k, (sign, c) in enumerate(combos):
        cell = slice(n * (k + 1), n * (k + 2))
        measured = measure_fluency(texts[cell], ppl[cell], config)
        points.append({"sign": sign, "c": c, **measured, "clean": is_clean(measured, base, config)})
    return SliderCalibration(
        positive=_last_clean(points, 1, grid),
        negative=_last_clean(points, -1, grid),
        points=tuple(points),
        base=base,
        queries=n,
        # as JSON stores it (tuples become lists), so a loaded pack equals the fitted one
        settings=json.loads(json.dumps(asdict(settings) | {"calibration": asdict(config)})),
        seconds=time.perf_counter() - started,
    )
