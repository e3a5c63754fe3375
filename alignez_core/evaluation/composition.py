"""Several axes at once: does each keep its effect next to another, and does the text stay fluent?

For every pair of the given axes and every sign combination, the pair's answers are judged by
each axis's own judges. Two shares say how much of an axis's effect survives the pair:

- *retained* (against base): A's judge shift in the pair ÷ its shift alone at the same sign;
- *interaction*: A's effect added on top of B alone, (A+B − B alone) ÷ (A alone − base), with a
  bootstrap interval over prompts, read only where A alone clearly moves its judge the way its
  slider points (`CLEAR_SHIFTS`). Unlike the first, B moving A's judge by itself does not count
  as A's effect.

Pairs run with the shared budget and without (raw sums), in the same batches as the base and
single-axis answers, greedy, so every difference is the edit's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.evaluation.evaluate import Interval
from alignez_core.measure.judges import (
    CLEAR_SHIFTS,
    PRESET_DIRECTIONS,
    Judge,
    degenerate,
    finite_mean,
    perplexities,
    pole_judge,
)
from alignez_core.steering import DEFAULT_BUDGET, SteerSettings, steered_rows

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
    # per slider in a pair, per judge of that axis: its share by interaction (module docstring),
    # None where the axis alone does not clearly move that judge
    interaction: dict[str, dict[str, Interval | None]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def interaction_share(
    pair: Sequence[float],
    other_alone: Sequence[float],
    alone: Sequence[float],
    base: Sequence[float],
    rounds: int = 1000,
    seed: int = 0,
) -> Interval:
    """(mean(pair − other alone)) ÷ (mean(alone − base)), per-prompt scores of one judge, with a
    95 % percentile bootstrap interval that resamples the prompts of both means together."""
    added = np.asarray(pair, dtype=float) - np.asarray(other_alone, dtype=float)
    effect = np.asarray(alone, dtype=float) - np.asarray(base, dtype=float)
    share = float(added.mean() / effect.mean())
    if len(added) < 2 or rounds < 1:
        return Interval(share, share, share)
    picks = np.random.default_rng(seed).integers(0, len(added), size=(rounds, len(added)))
    with np.errstate(divide="ignore", invalid="ignore"):
        samples = added[picks].mean(axis=1) / effect[picks].mean(axis=1)
    samples = samples[np.isfinite(samples)]
    return Interval(share, float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)))


def clearly_moves(judge: str, shift: float, direction: float) -> bool:
    """Whether a shift alone is an effect worth taking a share of: at least the judge's clear
    minimum, and the way the slider points where that is known (`direction` 0: either way)."""
    if direction and shift * direction <= 0:
        return False
    return abs(shift) >= CLEAR_SHIFTS.get(judge, 0.0) and shift != 0


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
    poles: bool = False,
    directions: Mapping[str, float] = PRESET_DIRECTIONS,
    pair_settings: Callable[[dict[str, float], SteerSettings], SteerSettings] | None = None,
) -> list[CompositionCell]:
    """Base, every axis alone at each strength, every pair at each sign combination × budget.
    `poles` also reads each axis with its pole judge (shares by interaction only); `directions`
    says which way slider +1 moves an axis's own judge (axes not in it: either way counts);
    `pair_settings` gives a pair's cell its own settings (a joint calibration's common scale)."""
    cells: list[tuple[dict[str, float], float | None]] = [({}, None)]
    cells += [({name: s}, None) for name in axes for s in strengths]
    for a, b in itertools.combinations(axes, 2):
        for sa, sb in itertools.product(strengths, repeat=2):
            cells += [({a: sa, b: sb}, budget) for budget in budgets]
    rows: list[Row] = []
    for sliders, budget in cells:
        chosen_axes = {axes[name][0]: s for name, s in sliders.items()}
        chosen = replace(settings, budget=budget)
        if pair_settings is not None and len(sliders) == 2:
            chosen = pair_settings(sliders, chosen)
        rows += steered_rows(lm, prompts, chosen_axes, chosen)
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        texts += [o.text for o in generate_rows(lm, rows[start : start + batch_size], sampling)]
        if progress is not None:
            progress("compose", len(texts), len(rows))
    n = len(prompts)
    ppl = perplexities(lm, [p for _ in cells for p in prompts], texts)
    judges = {
        name: [(judge, directions.get(name, 0.0))]
        + ([(pole_judge(pack.axis), 1.0)] if poles and judge.name != "pole" else [])
        for name, (pack, judge) in axes.items()
    }
    # per cell, per axis, per judge: one score per prompt
    scores = [
        {
            name: {j.name: j.score(texts[k * n : (k + 1) * n]) for j, _ in readers}
            for name, readers in judges.items()
        }
        for k in range(len(cells))
    ]
    alone = {
        next(iter(sliders.items())): k for k, (sliders, _) in enumerate(cells) if len(sliders) == 1
    }

    def shift(k: int, name: str, judge: str) -> float:
        return float(np.mean(scores[k][name][judge]) - np.mean(scores[0][name][judge]))

    out = []
    for k, (sliders, budget) in enumerate(cells):
        shifts = {name: shift(k, name, axes[name][1].name) for name in axes}
        retained = {}
        for name, s in sliders.items():
            own = shift(alone[name, s], name, axes[name][1].name)
            retained[name] = shifts[name] / own if own else float("nan")
        interaction: dict[str, dict[str, Interval | None]] = {}
        for name, s in sliders.items() if len(sliders) > 1 else ():
            (other,) = ((o, t) for o, t in sliders.items() if o != name)
            interaction[name] = {}
            for judge, direction in judges[name]:
                pair, with_other, by_itself, base = (
                    scores[c][name][judge.name] for c in (k, alone[other], alone[name, s], 0)
                )
                moves = clearly_moves(
                    judge.name, shift(alone[name, s], name, judge.name), s * direction
                )
                interaction[name][judge.name] = (
                    interaction_share(pair, with_other, by_itself, base) if moves else None
                )
        block = texts[k * n : (k + 1) * n]
        out.append(
            CompositionCell(
                sliders, budget, shifts, retained, finite_mean(ppl[k * n : (k + 1) * n]),
                sum(map(degenerate, block)), interaction,
            )
        )  # fmt: skip
    return out


RETAINED_GOAL = 0.7  # issue 33: each axis keeps at least 70 % of its effect next to another


def _capped(share: Interval) -> str:
    """A share for a summary: above 100 % reads as 100 % (more than alone is not "more kept")."""
    low, mean, high = (min(x, 1.0) for x in (share.low, share.mean, share.high))
    return f"{mean:.0%} [{low:.0%}, {high:.0%}]"


def _interaction_text(cell: CompositionCell) -> str:
    return "; ".join(
        f"{name} "
        + ", ".join(
            f"{judge} {_capped(share) if share else '– (alone < clear)'}"
            for judge, share in shares.items()
        )
        for name, shares in cell.interaction.items()
    )


def goal_met(cell: CompositionCell, goal: float = RETAINED_GOAL) -> bool | None:
    """Whether every axis of a pair keeps ≥ goal of its own judge's effect by interaction; None
    where an axis alone does not clearly move its judge (no effect to keep a share of)."""
    own = [next(iter(shares.values())) for shares in cell.interaction.values()]
    if any(share is None for share in own):
        return None
    return all(share is not None and share.mean >= goal for share in own)


def composition_table(cells: Sequence[CompositionCell], n_prompts: int) -> str:
    """Markdown: one row per cell, both shares per axis, fluency; then how many pair cells per
    budget keep ≥ 70 % of each axis by interaction."""
    base = cells[0]
    lines = [
        "| sliders | budget | retained against base (shift ÷ alone) | kept by interaction, "
        "capped at 100 % [95 %] | perplexity | degenerate |",
        "|---|---|---|---|---|---|",
        f"| base | – | – | – | {base.perplexity:.2f} | {base.degenerate}/{n_prompts} |",
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
            f"| {sliders} | {budget} | {kept} | {_interaction_text(cell) or '–'} | "
            f"{cell.perplexity:.2f} | {cell.degenerate}/{n_prompts} |"
        )
    pairs = [c for c in cells if len(c.sliders) > 1]
    for shared in dict.fromkeys(c.budget for c in pairs):
        verdicts = [goal_met(c) for c in pairs if c.budget == shared]
        label = "off (raw sums)" if shared is None else f"{shared:g}"
        lines.append(
            f"\nBudget {label}: {verdicts.count(True)} of {len(verdicts)} pair cells keep "
            f"≥ {RETAINED_GOAL:.0%} of each axis by interaction"
            + (
                f" ({verdicts.count(None)} with an axis that alone does not clearly move its judge)"
                if None in verdicts
                else ""
            )
            + "."
        )
    return "\n".join(lines)
