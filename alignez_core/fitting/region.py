"""The clean region of two axes together: which slider pairs keep the answers fluent.

Each axis's ±1 is its own clean edge (`calibrate.py`), but two edits at once can cross it. The
region is a grid of (slider A, slider B), −2 … +2 by default, each cell answered on a few of the
axes' own fit queries in one batched pass with the base answers, and judged clean by the same
rule as calibration (perplexity within the bar, no more looping answers than base). It is what
the studio's pad shades; it measures, it does not change how the engine combines axes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitCancelled, FitError
from alignez_core.measure.judges import perplexities
from alignez_core.steering import SteerSettings, combine, plan_edits

from .calibrate import CalibrationConfig, calibration_for_kind, is_clean, measure_fluency

REGION_VALUES = (-2.0, -1.0, 0.0, 1.0, 2.0)
REGION_QUERIES = 3
REGION_TOKENS = 32
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RegionCell:
    """One point of the grid: both sliders, fluency against base, and the verdict."""

    first: float
    second: float
    perplexity_ratio: float
    looping: int
    clean: bool


@dataclass(frozen=True)
class CleanRegion:
    """A grid of slider pairs for two axes, each cell clean or not (module docstring)."""

    axes: tuple[str, str]
    values: tuple[float, ...]
    cells: tuple[RegionCell, ...]
    base_looping: int
    queries: int
    seconds: float

    def cell(self, first: float, second: float) -> RegionCell:
        return next(c for c in self.cells if (c.first, c.second) == (first, second))

    def nearest(self, first: float, second: float) -> RegionCell:
        """The grid cell closest to a slider pair (where the sliders are now)."""
        return min(self.cells, key=lambda c: (c.first - first) ** 2 + (c.second - second) ** 2)

    def to_dict(self) -> dict:
        return asdict(self)


def region_queries(first: AxisPack, second: AxisPack, n: int = REGION_QUERIES) -> list[str]:
    """Fit queries of both packs, taken in turn, without repeats: the axes' own, never an
    evaluation prompt."""
    taken: list[str] = []
    for a, b in itertools.zip_longest(first.pairs, second.pairs):
        for pair in (a, b):
            if pair is not None and pair.query.strip() and pair.query not in taken:
                taken.append(pair.query)
    if not taken:
        raise FitError("These packs carry no fit queries to measure the region on.")
    return taken[:n]


def clean_region(
    lm: LoadedModel,
    first: AxisPack,
    second: AxisPack,
    values: Sequence[float] = REGION_VALUES,
    settings: SteerSettings = SteerSettings(),
    queries: Sequence[str] | None = None,
    max_new_tokens: int = REGION_TOKENS,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> CleanRegion:
    """Answer the fit queries at every (first, second) slider pair and judge each cell clean by
    the calibration rule of the model's kind (perplexity bar and looping allowance)."""
    if first is second or first.name == second.name:
        raise FitError("The clean region needs two different axes.")
    for pack in (first, second):
        pack.check_compatible(lm)
    started = time.perf_counter()
    asked = list(queries) if queries is not None else region_queries(first, second)
    config: CalibrationConfig = replace(
        calibration_for_kind(lm.effective_kind), n_queries=len(asked), extra_looping=0
    )
    grid = [(a, b) for b in values for a in values]
    rows = [Row(q) for q in asked]
    for a, b in grid:
        for query, plan in zip(
            asked, plan_edits(lm, asked, {first: a, second: b}, settings), strict=True
        ):
            edit = combine(plan, settings)
            rows.append(Row(query, None if edit.is_empty else edit))
    base, measured_cells = fluency_per_cell(
        lm, rows, len(asked), config, max_new_tokens, batch_size, "region", progress, cancel
    )
    cells = []
    for (a, b), measured in zip(grid, measured_cells, strict=True):
        cells.append(
            RegionCell(
                a,
                b,
                measured["perplexity"] / base["perplexity"],
                measured["degenerate"],
                is_clean(measured, base, config),
            )
        )
    return CleanRegion(
        (first.name, second.name), tuple(values), tuple(cells), base["degenerate"], len(asked),
        time.perf_counter() - started,
    )  # fmt: skip


def fluency_per_cell(
    lm: LoadedModel,
    rows: Sequence[Row],
    n: int,
    config: CalibrationConfig,
    max_new_tokens: int,
    batch_size: int,
    stage: str,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> tuple[dict, list[dict]]:
    """Answer `rows` (the n base rows first, then cells of n) in batches, and measure each
    block's fluency by the calibration rule: (base, one per cell)."""
    texts: list[str] = []
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    for start in range(0, len(rows), batch_size):
        batch = generate_rows(lm, rows[start : start + batch_size], sampling, cancel)
        texts += [output.text for output in batch]
        if cancel is not None and cancel.is_set():
            raise FitCancelled(f"{stage.capitalize()} cancelled.")
        if progress is not None:
            progress(stage, len(texts), len(rows))
    ppl = perplexities(lm, [r.prompt for r in rows], texts, bf16_products=True)
    blocks = [measure_fluency(texts[k : k + n], ppl[k : k + n], config)
              for k in range(0, len(rows), n)]  # fmt: skip
    return blocks[0], blocks[1:]
