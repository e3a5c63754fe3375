"""Does it steer? Judge scores and fluency per rule × strength, paired against the base model.

All rows (base + every rule × strength) for a prompt share one batch, the same seed and the same
prompt, so a difference is the edit's doing. Strength 0 is the base model exactly. The
`prompted` baseline (rule name "prompted", strengths ±1) asks for each pole in words, no edit;
its fluency is scored against the plain prompt like every other cell.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.activations import query_embeddings
from alignez_core.engine.edit import Positions, check_strength, slider_rule
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import AlignEZError
from alignez_core.measure.judges import (
    Judge,
    degenerate,
    distinct_2,
    finite_mean,
    make_judge,
    perplexities,
    refusal,
    repetition,
)
from alignez_core.steering import SLIDER_RULES, SteerSettings, axis_edit
from alignez_core.steering.prompting import prompted_row

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalConfig:
    strengths: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    rules: tuple[str, ...] = ("subspace",)
    judges: tuple[str, ...] = ("tone",)
    max_new_tokens: int = 64
    seed: int = 0
    repetition_penalty: float = 1.0
    loop_guard: int = SamplingConfig.loop_guard
    top_n: int | None = None
    band: tuple[float, float] | None = None  # None: each pack's own
    layers: tuple[int, ...] | None = None
    scale: float | None = None  # None: each pack's calibration
    positions: Positions | None = None  # None: the pack's; "all" also edits the prompt's tokens
    prompted: bool = False  # add the prompting baseline at ±1
    batch_size: int = 48
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        if not self.strengths:
            raise AlignEZError("No strengths to evaluate.")
        for s in self.strengths:
            check_strength(s)
        if not self.rules:
            raise AlignEZError(f"No rules to evaluate; choose from {', '.join(SLIDER_RULES)}.")
        # today's names (an older one is translated), or an error naming the unknown one
        object.__setattr__(self, "rules", tuple(slider_rule(r) for r in self.rules))
        self.settings(self.rules[0])  # validate the layer choice before anything runs

    def settings(self, rule: str) -> SteerSettings:
        return SteerSettings(
            rule=rule,
            top_n=self.top_n,
            layers=self.layers,
            band=self.band,
            scale=self.scale,
            positions=self.positions,
        )


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass
class Fluency:
    perplexity: float
    distinct_2: float
    repetition: float
    refusal_rate: float
    degenerate: int = 0  # answers that loop or are empty (`judges.degenerate`)


@dataclass
class Cell:
    """One rule at one strength: judge means, paired differences vs base, fluency, texts."""

    rule: str
    strength: float
    scores: dict[str, float]
    differences: dict[str, Interval]
    fluency: Fluency
    texts: list[str] = field(repr=False)


@dataclass
class EvalReport:
    axis: str
    model_id: str
    prompts: list[str]
    config: EvalConfig
    base_scores: dict[str, float]
    base_fluency: Fluency
    base_texts: list[str]
    cells: list[Cell]

    def to_dict(self, texts: bool = False) -> dict:
        data: dict[str, Any] = {
            "axis": self.axis,
            "model": self.model_id,
            "n_prompts": len(self.prompts),
            "config": asdict(self.config),
            "base": {"scores": self.base_scores, "fluency": asdict(self.base_fluency)},
            "cells": [
                {
                    "rule": c.rule,
                    "strength": c.strength,
                    "scores": c.scores,
                    "difference_vs_base": {k: asdict(v) for k, v in c.differences.items()},
                    "fluency": asdict(c.fluency),
                    **({"texts": c.texts} if texts else {}),
                }
                for c in self.cells
            ],
        }
        if texts:
            data["prompts"] = self.prompts
            data["base"]["texts"] = self.base_texts
        return data

    def cell(self, rule: str, strength: float) -> Cell:
        return next(c for c in self.cells if c.rule == rule and c.strength == strength)


def bootstrap_interval(differences: Sequence[float], rounds: int, seed: int) -> Interval:
    """Mean of paired differences with a 95 % percentile bootstrap interval over prompts."""
    values = np.asarray(differences, dtype=float)
    mean = float(values.mean())
    if len(values) < 2 or rounds < 1:
        return Interval(mean, mean, mean)
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, len(values), size=(rounds, len(values)))].mean(axis=1)
    return Interval(mean, float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)))


def paired_difference(
    judge: Judge, texts: Sequence[str], others: Sequence[str], rounds: int, seed: int
) -> Interval:
    """judge(texts) − judge(others), the same prompts answered two ways, paired prompt by prompt,
    with a 95 % bootstrap interval (one interval, not two overlapping ones)."""
    differences = [a - b for a, b in zip(judge.score(texts), judge.score(others), strict=True)]
    return bootstrap_interval(differences, rounds, seed)


def _fluency(texts: Sequence[str], ppl: Sequence[float]) -> Fluency:
    return Fluency(
        perplexity=finite_mean(ppl),
        distinct_2=distinct_2(texts),
        repetition=statistics.mean(repetition(t) for t in texts) if texts else 0.0,
        refusal_rate=statistics.mean(refusal(texts)) if texts else 0.0,
        degenerate=sum(map(degenerate, texts)),
    )


def _row(pack: AxisPack, prompt: str, strength: float, query, rule: str, config: EvalConfig):
    if rule == "prompted":
        return prompted_row(prompt, {pack: strength})
    edit = axis_edit(pack, strength, query, config.settings(rule)).edit
    return Row(prompt, None if edit.is_empty else edit)


def evaluate(
    lm: LoadedModel,
    pack: AxisPack,
    prompts: Sequence[str],
    config: EvalConfig = EvalConfig(),
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Generate base + every rule × strength for every prompt, then judge and compare."""
    prompts = [p for p in prompts if p and p.strip()]
    if not prompts:
        raise AlignEZError("No prompts to evaluate: the prompt list is empty.")
    pack.check_compatible(lm)
    judges = [make_judge(name, pack.axis) for name in config.judges]
    queries = query_embeddings(lm, prompts, pack.pooling, pack.site)  # type: ignore[arg-type]
    combos = [(rule, s) for rule in config.rules for s in config.strengths]
    if config.prompted:
        combos += [("prompted", -1.0), ("prompted", 1.0)]
    # Strength 0 is rule-independent: one zero row per prompt serves every rule's 0 cell.
    generated = [(rule, s) for rule, s in combos if s != 0]
    zero = 0.0 in config.strengths
    rows: list[Row] = []
    for i, prompt in enumerate(prompts):
        rows.append(Row(prompt))
        if zero:
            rows.append(_row(pack, prompt, 0.0, queries[i], config.rules[0], config))
        for rule, strength in generated:
            rows.append(_row(pack, prompt, strength, queries[i], rule, config))
    sampling = SamplingConfig(
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        repetition_penalty=config.repetition_penalty,
        loop_guard=config.loop_guard,
    )
    texts: list[str] = []
    for start in range(0, len(rows), config.batch_size):
        chunk = rows[start : start + config.batch_size]
        texts.extend(o.text for o in generate_rows(lm, chunk, sampling))
        if progress is not None:
            progress("generate", len(texts), len(rows))
    width = 1 + zero + len(generated)
    # under the unedited model and the plain prompt, every prompt's rows in one call
    ppl = perplexities(lm, [p for p in prompts for _ in range(width)], texts)
    base_texts = texts[0::width]
    column = {("zero", 0.0): 1} if zero else {}
    column.update({combo: 1 + zero + k for k, combo in enumerate(generated)})
    base_scores = {j.name: j.score(base_texts) for j in judges}
    cells = []
    fluency: dict[int, Fluency] = {}
    for k, (rule, strength) in enumerate(combos):
        index = column[("zero", 0.0)] if strength == 0 else column[(rule, strength)]
        cell_texts = texts[index::width]
        scores, differences = {}, {}
        for judge in judges:
            values = judge.score(cell_texts)
            scores[judge.name] = statistics.mean(values)
            paired = [v - b for v, b in zip(values, base_scores[judge.name], strict=True)]
            differences[judge.name] = bootstrap_interval(paired, config.bootstrap, config.seed)
        if index not in fluency:
            fluency[index] = _fluency(cell_texts, ppl[index::width])
        cells.append(Cell(rule, strength, scores, differences, fluency[index], cell_texts))
        if progress is not None:
            progress("judge", k + 1, len(combos))
    return EvalReport(
        axis=pack.name,
        model_id=lm.model_id,
        prompts=list(prompts),
        config=config,
        base_scores={name: statistics.mean(v) for name, v in base_scores.items()},
        base_fluency=_fluency(base_texts, ppl[0::width]),
        base_texts=base_texts,
        cells=cells,
    )
