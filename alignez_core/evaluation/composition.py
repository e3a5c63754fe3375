"""Several axes at once: does each keep its effect next to another, and does the text stay fluent?

For every pair of the given axes and every sign combination, the pair's answers are judged by
each axis's own judge; an axis's *retention* is its judge shift in the pair as a share of its
shift alone at the same sign. Pairs run with the shared budget and without (raw sums), in the
same batches as the base and single-axis answers, greedy, so every difference is the edit's.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.measure.judges import Judge, degenerate, finite_mean, perplexities
from alignez_core.steering import DEFAULT_BUDGET, SteerSettings, combine, plan_edits

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CompositionCell:
    """One combination of sliders: each axis's judge shift vs base, and fluency."""

    sliders: dict[str, float]
    budget: float | None
    shifts: dict[str, float]  # per axis of the whole set: its judge's mean shift vs base
    retained: dict[str, float]  # per slider in this cell: shift ÷ the axis's shift alone
    perplexity: float
    degenerate: int

    def to_dict(self) -> dict:
        return asdict(self)


def compose(
    lm: LoadedModel,
    axes: Mapping[str, tuple[AxisPack, Judge]],
    prompts: Sequence[str],
    settings: SteerSettings = SteerSettings(),
    budgets: Sequence[float | None] = (DEFAULT_BUDGET, None),
    strengths: Sequence[float] = (1.0, -1.0),
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=64),
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> list[CompositionCell]:
    """Base, every axis alone at each strength, every pair at each sign combination × budget."""
    cells: list[tuple[dict[str, float], float | None]] = [({}, None)]
    cells += [({name: s}, None) for name in axes for s in strengths]
    for a, b in itertools.combinations(axes, 2):
        for sa, sb in itertools.product(strengths, repeat=2):
            cells += [({a: sa, b: sb}, budget) for budget in budgets]
    rows: list[Row] = []
    for sliders, budget in cells:
        chosen_axes = {axes[name][0]: s for name, s in sliders.items()}
        chosen = replace(settings, budget=budget)
        plans = (
            plan_edits(lm, prompts, chosen_axes, chosen) if chosen_axes else [[] for _ in prompts]
        )
        rows += [
            Row(p, combine(plan, chosen) if plan else None)
            for p, plan in zip(prompts, plans, strict=True)
        ]
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        texts += [o.text for o in generate_rows(lm, rows[start : start + batch_size], sampling)]
        if progress is not None:
            progress("compose", len(texts), len(rows))
    n = len(prompts)
    ppl = perplexities(lm, [p for _ in cells for p in prompts], texts)
    scores = [
        {
            name: statistics.mean(judge.score(texts[k * n : (k + 1) * n]))
            for name, (_, judge) in axes.items()
        }
        for k in range(len(cells))
    ]
    shifts = [{name: s[name] - scores[0][name] for name in axes} for s in scores]
    alone = {
        (name, strength): shifts[k][name]
        for k, (sliders, _) in enumerate(cells)
        if len(sliders) == 1
        for name, strength in sliders.items()
    }
    out = []
    for k, (sliders, budget) in enumerate(cells):
        retained = {
            name: shifts[k][name] / alone[name, s] if alone.get((name, s)) else float("nan")
            for name, s in sliders.items()
        }
        block = texts[k * n : (k + 1) * n]
        out.append(
            CompositionCell(
                sliders, budget, shifts[k], retained, finite_mean(ppl[k * n : (k + 1) * n]),
                sum(map(degenerate, block)),
            )
        )  # fmt: skip
    return out


def composition_table(cells: Sequence[CompositionCell], n_prompts: int) -> str:
    """Markdown: one row per pair cell, retention per axis and degenerate answers."""
    base = cells[0]
    lines = [
        "| sliders | budget | retained (each axis's shift ÷ alone) | perplexity | degenerate |",
        "|---|---|---|---|---|",
        f"| base | – | – | {base.perplexity:.2f} | {base.degenerate}/{n_prompts} |",
    ]
    for cell in cells[1:]:
        sliders = ", ".join(f"{name} {s:+g}" for name, s in cell.sliders.items())
        budget = (
            "–" if len(cell.sliders) < 2 else ("off" if cell.budget is None else f"{cell.budget:g}")
        )
        kept = (
            ", ".join(f"{name} {r:.0%}" for name, r in cell.retained.items())
            if len(cell.sliders) > 1
            else ", ".join(f"{name} {cell.shifts[name]:+.3f}" for name in cell.sliders)
            + " (shift alone)"
        )
        lines.append(
            f"| {sliders} | {budget} | {kept} | {cell.perplexity:.2f} | "
            f"{cell.degenerate}/{n_prompts} |"
        )
    return "\n".join(lines)
