"""The two defaults chosen on the 70 tuning prompts, measured again (docs/RESULTS.md).

The tuning prompts are the seed queries the shipped packs were not fitted on (25–46) and the 48
of `assets/tune_prompts.txt`; the dev prompts are kept for checking a choice after it is made.

    python bench/tune_studies.py loop-guard     # cheerful at c 0.02, guard 0 / 6 / 8 (~8 min)
    python bench/tune_studies.py concise-band   # concise +1, band × c (~6 min)
    python bench/tune_studies.py budget         # every pair at ±1, budget 1 / 1.4 / off (~40 min)
    python bench/tune_studies.py budget --separate symmetric   # the same, pushes kept orthogonal
    python bench/tune_studies.py budget --budgets 1            # one budget only (~15 min)
    python bench/tune_studies.py budget --budgets 1 --separate assign   # one axis per layer
    python bench/tune_studies.py budget --budgets off --joint  # each pair's common scale
    python bench/tune_studies.py budget --budgets 1,off --only dev_prompts --tokens 320
    python bench/tune_studies.py readout        # persona vs answers readout, fitted here (~20 min)
    python bench/tune_studies.py method         # shipped (mean) vs trained on its pairs (~60 min)
    python bench/tune_studies.py method --objective likelihood --presets cheerful --no-mean
    python bench/tune_studies.py prompt-positions [--presets simple]   # prompt-only axes in a pair
    python bench/tune_studies.py prompt-positions --grid 0.01,0.02,0.03,0.05,0.08 --trained
    python bench/tune_studies.py pair-trained --cells cheerful+1:simple+1   # trained as a pair
    python bench/tune_studies.py verbose-room   # answer length at caps 96 / 192 / 320 (~3 min)

Each prints a table (Δ judge vs base, looping answers, perplexity ÷ base), then one JSON object
as its last line. The `no_repeat_ngram_size` rows of the loop-guard table used transformers'
own option, which `SamplingConfig` does not expose; they are not rerun here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alignez_core import AxisPack, load_model
from alignez_core.axes.axis import ASSETS, preset
from alignez_core.axes.queries import read_queries
from alignez_core.engine.catalog import ModelKind
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.evaluation.composition import (
    CompositionCell,
    compose,
    goal_met,
    interaction_share,
)
from alignez_core.evaluation.evaluate import EvalConfig, EvalReport, evaluate, paired_difference
from alignez_core.fitting.fit import FitConfig, Readout, fit_axis, refine_axis
from alignez_core.fitting.joint import joint_calibration
from alignez_core.fitting.train import OBJECTIVES, TrainConfig
from alignez_core.measure.judges import (
    PRESET_DIRECTIONS,
    PRESET_JUDGES,
    Judge,
    degenerate,
    finite_mean,
    make_judge,
    perplexities,
    words,
)
from alignez_core.steering import SteerSettings, steer, steered_rows
from alignez_core.steering.prompting import prompted_row
from alignez_core.steering.settings import KEEP_APART

PACKS = Path(__file__).resolve().parent.parent / "assets" / "packs"
TRAINED_PACKS = (
    Path(__file__).resolve().parent.parent / "out" / "trained"
)  # not shipped (git-ignored)
FIT_QUERIES = 24  # the shipped packs are fitted on the first 24 seed queries (the CLI default)
LOOP_GUARDS = (0, 6, 8)
CONCISE_BANDS = (
    ((0.4, 0.85), 0.02),
    ((0.25, 0.7), 0.02),
    ((0.25, 0.7), 0.025),
    ((0.25, 0.7), 0.03),
    ((0.3, 0.75), 0.03),
    ((0.2, 0.6), 0.03),
)

BUDGETS = (1.0, 1.4, None)  # None: raw sums
RETAINED_GOAL = 0.7


def held_out_seeds() -> list[str]:
    return read_queries(ASSETS / "seed_queries.txt").queries[FIT_QUERIES:]


def tune_file_prompts() -> list[str]:
    return read_queries(ASSETS / "tune_prompts.txt").queries


def tuning_prompts() -> list[str]:
    return [*held_out_seeds(), *tune_file_prompts()]


def _cell(report: EvalReport, strength: float, judge: str) -> dict:
    cell = report.cell(report.config.rules[0], strength)
    shift = cell.differences[judge]
    return {
        "shift": round(shift.mean, 3),
        "interval": [round(shift.low, 3), round(shift.high, 3)],
        "looping": cell.fluency.degenerate,
        "perplexity_ratio": round(cell.fluency.perplexity / report.base_fluency.perplexity, 3),
    }


def loop_guard(lm, prompts: list[str]) -> dict:
    pack = AxisPack.load(PACKS / "cheerful.safetensors", lm)
    rows = {}
    for guard in LOOP_GUARDS:
        config = EvalConfig(strengths=(-1.0, 1.0), rules=(pack.rule_defaults["rule"],),
                            judges=("tone",), scale=0.02, loop_guard=guard)  # fmt: skip
        report = evaluate(lm, pack, prompts, config)
        rows[str(guard)] = {
            "-1": _cell(report, -1.0, "tone"),
            "+1": _cell(report, 1.0, "tone"),
            "base_looping": report.base_fluency.degenerate,
            "base_perplexity": round(report.base_fluency.perplexity, 3),
        }
        print(f"guard {guard}: −1 {rows[str(guard)]['-1']}  +1 {rows[str(guard)]['+1']}  "
              f"base {report.base_fluency.degenerate} looping, "
              f"perplexity {report.base_fluency.perplexity:.3f}", flush=True)  # fmt: skip
    return {"study": "loop-guard", "n_prompts": len(prompts), "c": 0.02, "guards": rows}


def concise_band(lm, prompts: list[str]) -> dict:
    pack = AxisPack.load(PACKS / "concise.safetensors", lm)
    rows = []
    for band, scale in CONCISE_BANDS:
        config = EvalConfig(strengths=(1.0,), rules=(pack.rule_defaults["rule"],),
                            judges=("words",), band=band, scale=scale)  # fmt: skip
        report = evaluate(lm, pack, prompts, config)
        row = {"band": list(band), "c": scale, "+1": _cell(report, 1.0, "words"),
               "base_words": round(report.base_scores["words"], 1)}  # fmt: skip
        rows.append(row)
        print(f"band {band} c {scale}: +1 {row['+1']}  (base {row['base_words']} words)",
              flush=True)  # fmt: skip
    return {"study": "concise-band", "n_prompts": len(prompts), "rows": rows}


def _budget_name(budget: float | None) -> str:
    return "off" if budget is None else f"{budget:g}"


def _budget_summary(
    cells: list[CompositionCell], n: int, looping_goal: int, budgets: tuple[float | None, ...]
) -> dict:
    """Per budget: looping over every pair cell, and the pair cells that meet the goal."""
    pairs = [c for c in cells if len(c.sliders) == 2]
    out: dict[str, dict] = {}
    for budget in budgets:
        mine = [c for c in pairs if c.budget == budget]
        meeting = [
            ", ".join(f"{name} {s:+g}" for name, s in c.sliders.items())
            for c in mine
            if c.degenerate <= looping_goal and all(r >= RETAINED_GOAL for r in c.retained.values())
        ]
        by_interaction = [goal_met(c) for c in mine]
        out[_budget_name(budget)] = {"looping": sum(c.degenerate for c in mine),
                                     "answers": n * len(mine), "meeting_goal": meeting,
                                     "meeting_goal_by_interaction": by_interaction.count(True),
                                     "no_clear_effect": by_interaction.count(None)}  # fmt: skip
    lowest = {name: 0 for name in out}
    for sliders in {tuple(c.sliders.items()) for c in pairs}:
        same = [c for c in pairs if tuple(c.sliders.items()) == sliders]
        lowest[_budget_name(min(same, key=lambda c: c.perplexity).budget)] += 1
    for name, count in lowest.items():
        out[name]["lowest_perplexity_cells"] = count
    return out


def budget(
    lm,
    prompts: list[str],
    separation: str | None = None,
    budgets: tuple[float | None, ...] = BUDGETS,
    joint: bool = False,
    only: str = "",
    tokens: int = 64,
) -> dict:
    """The shipped packs, every pair at ±1, budgets 1 / 1.4 / off: on the 48 prompts of
    tune_prompts.txt (goal ≤ 2 looping) and on seed queries 25–46 (goal ≤ 1), separately;
    `separation` keeps the pushes at shared layers apart first (`engine/separate.py`,
    `steering/assign.py`); `joint` measures each pair's joint calibration on its fit queries
    (`fitting/joint.py`) and steers every pair cell with its quadrant's common scale instead of a
    budget; `only` runs one of the two prompt sets, or the dev prompts (goal ≤ 1, the composition
    table's set: never by default); `tokens` is the answers' length."""
    axes = {
        name: (pack := AxisPack.load(PACKS / f"{name}.safetensors", lm), make_judge(j, pack.axis))
        for name, j in PRESET_JUDGES.items()
    }
    sets = {"tune_prompts": (tune_file_prompts(), 2), "seed_queries_25_46": (held_out_seeds(), 1)}
    if only == "dev_prompts":
        sets = {only: (read_queries(ASSETS / "dev_prompts.txt").queries, 1)}
    sets = {name: chosen for name, chosen in sets.items() if not only or name == only}
    out: dict[str, Any] = {"study": "budget", "budgets": [_budget_name(b) for b in budgets],
                           "separate": separation, "tokens": tokens}  # fmt: skip
    settings = SteerSettings(separate=separation)  # type: ignore[arg-type]
    pair_settings = None
    if joint:
        calibrations = {}
        for a, b in itertools.combinations(axes, 2):
            found = joint_calibration(lm, axes[a][0], axes[b][0], settings)
            calibrations[frozenset((a, b))] = found
            print(f"joint {a} + {b}: {found.scales} in {found.seconds:.0f} s", flush=True)
        out["joint"] = {" + ".join(c.axes): {"scales": c.scales, "seconds": round(c.seconds, 1),
                                             "points": c.points}
                        for c in calibrations.values()}  # fmt: skip

        def pair_settings(sliders: dict[str, float], chosen: SteerSettings) -> SteerSettings:
            return calibrations[frozenset(sliders)].settings_for(chosen, sliders)

    for name, (chosen, looping_goal) in sets.items():
        cells = compose(lm, axes, chosen, settings, budgets=budgets,
                        sampling=SamplingConfig(max_new_tokens=tokens),
                        pair_settings=pair_settings)  # fmt: skip
        summary = _budget_summary(cells, len(chosen), looping_goal, budgets)
        for cell in cells[1:]:
            own = _own_shares(cell)
            kept = {k: None if v is None else round(v.mean, 2) for k, v in own.items()}
            print(f"{name}: {cell.sliders} budget {_budget_name(cell.budget)}: "
                  f"retained {({k: round(v, 2) for k, v in cell.retained.items()})} "
                  f"by interaction {kept} "
                  f"perplexity {cell.perplexity:.2f} looping {cell.degenerate}/{len(chosen)}",
                  flush=True)  # fmt: skip
        for budget_name, row in summary.items():
            print(f"{name}: budget {budget_name}: {row}", flush=True)
        out[name] = {"n_prompts": len(chosen), "looping_goal": looping_goal, "budgets": summary,
                     "cells": [c.to_dict() for c in cells]}  # fmt: skip
    return out


def _own_shares(cell: CompositionCell) -> dict:
    """Each slider of a pair cell: its share by interaction on its axis's own (first) judge."""
    return {k: next(iter(v.values())) for k, v in cell.interaction.items()}


def fit_config_on_grid(kind: ModelKind, grid: str = "", **changes: Any) -> FitConfig:
    """The kind's fit defaults with `changes`, calibrated on `grid` (a comma list of strengths)
    where one is given."""
    config = FitConfig.for_kind(kind, **changes)
    if not grid or config.calibration is None:
        return config
    strengths = tuple(float(c) for c in grid.split(","))
    return replace(config, calibration=replace(config.calibration, grid=strengths))


def prompt_positions(
    lm, prompts: list[str], presets: str = "", grid: str = "", trained: bool = False
) -> dict:
    """Each preset in `presets` (default cheerful, simple) also fitted to edit the prompt's
    tokens only (calibrated so, on `grid` if given), then the shipped packs and those at +1,
    alone and in pairs, budget 1, on `prompts` (the 48 of tune_prompts.txt): does a prompt-only
    axis leave the other axis of a pair more of its effect? `trained`: the prompt-only
    directions trained on their pairs at their own clean edge (Bao et al.'s prompt-only vectors
    trained for reach, in our units) and recalibrated."""
    chosen = presets.split(",") if presets else ["cheerful", "simple"]
    axes: dict[str, tuple[AxisPack, Judge]] = {}
    directions: dict[str, float] = {}
    for name in dict.fromkeys(["cheerful", "simple", *chosen]):
        shipped = AxisPack.load(PACKS / f"{name}.safetensors", lm)
        axes[name] = (shipped, make_judge(PRESET_JUDGES[name], shipped.axis))
        directions[name] = PRESET_DIRECTIONS[name]
    edges, training = {}, {}
    config = fit_config_on_grid(lm.effective_kind, grid)
    for name in chosen:
        pack = fit_axis(lm, preset(name), config=config, settings=SteerSettings(positions="prompt"))
        assert pack.calibration is not None
        if trained:
            push = max(pack.calibration.negative, pack.calibration.positive)
            pack = refine_axis(lm, pack, TrainConfig(strength=push), progress=_quiet_progress)
            assert pack.training is not None
            training[f"{name}@prompt"] = {
                "strength": push,
                "best_epoch": pack.training.best_epoch,
                "held_out_losses": [round(x, 3) for x in pack.training.held_out_losses],
                "seconds": round(pack.training.seconds, 1),
            }
        assert pack.calibration is not None
        edges[f"{name}@prompt"] = (pack.calibration.negative, pack.calibration.positive)
        axes[f"{name}@prompt"] = (pack, axes[name][1])
        directions[f"{name}@prompt"] = PRESET_DIRECTIONS[name]
        print(f"{name}@prompt: edges −1 / +1 {edges[f'{name}@prompt']}", flush=True)
    cells = compose(lm, axes, prompts, budgets=(1.0,), strengths=(1.0,), directions=directions,
                    sampling=SamplingConfig(max_new_tokens=64))  # fmt: skip
    rows = {}
    for cell in cells[1:]:
        own = _own_shares(cell)
        rows[" + ".join(cell.sliders)] = row = {
            "shift": {k: round(v, 3) for k, v in cell.shifts.items()} if cell.shifts else None,
            "by_interaction": {
                k: None if v is None else [round(x, 2) for x in (v.mean, v.low, v.high)]
                for k, v in own.items()
            },
            "looping": cell.degenerate,
            "perplexity": round(cell.perplexity, 2),
        }
        print(f"{' + '.join(cell.sliders)} at +1: {row}", flush=True)
    assert config.calibration is not None
    return {"study": "prompt-positions", "n_prompts": len(prompts), "grid": config.calibration.grid,
            "edges": edges, "training": training, "base_perplexity": round(cells[0].perplexity, 2),
            "rows": rows}  # fmt: skip


def _trained_beside(
    lm, pack: AxisPack, sign: float, other: AxisPack, other_sign: float, anchor: float = 0.0
) -> AxisPack:
    """`pack`'s directions trained on its own pairs with `other` steering at `other_sign`
    meanwhile (its edit present in every forward, the reference included, so the loss asks what
    `pack` adds on top of `other` alone), at `pack`'s clean edge for `sign`; calibration kept."""
    assert pack.calibration is not None
    training = TrainConfig(strength=pack.calibration.for_sign(sign), anchor=anchor)
    with steer(lm, {other: other_sign}):
        trained = refine_axis(lm, pack, training, recalibrate=False)
    log = trained.training
    assert log is not None
    print(f"{pack.name} {sign:+g} beside {other.name} {other_sign:+g}: best epoch "
          f"{log.best_epoch}, held-out loss {[round(x, 3) for x in log.held_out_losses]}, "
          f"{log.seconds:.0f} s", flush=True)  # fmt: skip
    return trained


def pair_trained(
    lm,
    prompts: list[str],
    cells: str = "cheerful+1:simple+1",
    anchor: float = 0.0,
    scales: tuple[float, ...] = (),
) -> dict:
    """For each pair cell ("a+1:b-1,…"), each axis's directions trained beside the other's
    shipped edit (`_trained_beside`), then on `prompts`: base, each shipped axis alone, the
    shipped pair and the pair of trained-beside directions, at budget 1 and raw sums. Shares by
    interaction are taken against the shipped axes alone (what a user's single slider does);
    `anchor`: DPOP's penalty in the loss (`TrainConfig.anchor`); `scales`: both pairs also with
    every push at their shared layers scaled by each (`SteerSettings.shared_scale`), to compare
    them at equal fluency."""
    rows_out: dict[str, dict] = {}
    sampling = SamplingConfig(max_new_tokens=64)
    for spec in cells.split(","):
        (a, sa), (b, sb) = ((part[:-2], float(part[-2:])) for part in spec.split(":"))
        packs = {n: AxisPack.load(PACKS / f"{n}.safetensors", lm) for n in (a, b)}
        judges = {n: make_judge(PRESET_JUDGES[n], packs[n].axis) for n in (a, b)}
        paired = {a: _trained_beside(lm, packs[a], sa, packs[b], sb, anchor),
                  b: _trained_beside(lm, packs[b], sb, packs[a], sa, anchor)}  # fmt: skip
        variants: list[tuple[str, dict[AxisPack, float], SteerSettings]] = [
            ("base", {}, SteerSettings()),
            (f"{a} alone", {packs[a]: sa}, SteerSettings()),
            (f"{b} alone", {packs[b]: sb}, SteerSettings()),
        ]
        pair_settings = {f"budget {_budget_name(v)}": SteerSettings(budget=v) for v in (1.0, None)}
        pair_settings |= {f"scale {x:g}": SteerSettings(shared_scale=x) for x in scales}
        for name, chosen in pair_settings.items():
            variants += [
                (f"shipped pair, {name}", {packs[a]: sa, packs[b]: sb}, chosen),
                (f"trained pair, {name}", {paired[a]: sa, paired[b]: sb}, chosen),
            ]
        rows: list[Row] = []
        for _, chosen_axes, settings in variants:
            rows += steered_rows(lm, prompts, chosen_axes, settings)
        texts = [o.text for o in generate_rows(lm, rows, sampling)]
        n = len(prompts)
        blocks = {label: texts[k * n : (k + 1) * n] for k, (label, _, _) in enumerate(variants)}
        ppl = perplexities(lm, [p for _ in variants for p in prompts], texts)
        scores = {label: {m: judges[m].score(block) for m in (a, b)}
                  for label, block in blocks.items()}  # fmt: skip
        base_ppl = finite_mean(ppl[:n])
        cell_out: dict[str, Any] = {}
        for k, (label, _, _) in enumerate(variants):
            row: dict[str, Any] = {
                "shift": {m: round(float(np.mean(scores[label][m]) - np.mean(scores["base"][m])),
                                   3) for m in (a, b)},
                "looping": sum(map(degenerate, blocks[label])),
                "perplexity_ratio": round(finite_mean(ppl[k * n : (k + 1) * n]) / base_ppl, 3),
            }  # fmt: skip
            if "pair" in label:
                shares = {}
                for me, other in ((a, f"{b} alone"), (b, f"{a} alone")):
                    share = interaction_share(
                        scores[label][me],
                        scores[other][me],
                        scores[f"{me} alone"][me],
                        scores["base"][me],
                    )
                    shares[me] = [round(x, 2) for x in (share.mean, share.low, share.high)]
                row["by_interaction"] = shares
            cell_out[label] = row
            print(f"{spec}: {label}: {row}", flush=True)
        cell_out["training"] = {
            m: {"best_epoch": p.training.best_epoch, "seconds": round(p.training.seconds, 1),
                "held_out_losses": [round(x, 3) for x in p.training.held_out_losses]}
            for m, p in paired.items() if p.training is not None
        }  # fmt: skip
        rows_out[spec] = cell_out
    return {"study": "pair-trained", "n_prompts": len(prompts), "anchor": anchor,
            "cells": rows_out}  # fmt: skip


VERBOSE_CAPS = (96, 192, 320)


def verbose_room(lm, prompts: list[str]) -> dict:
    """Is there a token cap that leaves room for concise −1 (verbose) to lengthen an answer?
    Base, concise at −1 and −2, and the prompted verbose pole at each cap: mean words, answers
    that reach the cap, answers that loop (on the dev prompts: the composition table's)."""
    pack = AxisPack.load(PACKS / "concise.safetensors", lm)
    settings = SteerSettings()
    out: dict[str, dict] = {}
    for cap in VERBOSE_CAPS:
        rows = [Row(p) for p in prompts]
        for strength in (-1.0, -2.0):
            rows += steered_rows(lm, prompts, {pack: strength}, settings)
        rows += [prompted_row(p, {pack: -1.0}) for p in prompts]
        outputs = generate_rows(lm, rows, SamplingConfig(max_new_tokens=cap))
        n = len(prompts)
        for k, label in enumerate(("base", "concise -1", "concise -2", "prompted -1")):
            block = outputs[k * n : (k + 1) * n]
            counts = words([o.text for o in block])
            row = {
                "words": round(float(np.mean(counts)), 1),
                "at_cap": sum(len(o.token_ids) >= cap for o in block),
                "looping": sum(degenerate(o.text) for o in block),
            }
            out[f"{cap} {label}"] = row
            print(f"cap {cap}, {label}: {row} of {n}", flush=True)
    return {"study": "verbose-room", "n_prompts": len(prompts), "rows": out}


def readout(lm, prompts: list[str]) -> dict:
    """Each preset fitted here with each readout on seed queries 1–24 and calibrated as a user
    gets it, then judged at ±1 on seed queries 25–46 only (the readout default's held-out set)."""
    held_out = held_out_seeds()
    rows: dict[str, dict] = {}
    for name, judge in PRESET_JUDGES.items():
        for chosen in get_args(Readout):
            pack = fit_axis(lm, preset(name), config=FitConfig(readout=chosen))
            judges = (judge, "refusal") if judge == "grade" else (judge,)
            config = EvalConfig(strengths=(-1.0, 1.0), rules=(pack.rule_defaults["rule"],),
                                judges=judges)  # fmt: skip
            report = evaluate(lm, pack, held_out, config)
            row = {
                "rule": pack.rule_defaults["rule"],
                "band": pack.fitted_band(),
                "-1": _cell(report, -1.0, judge),
                "+1": _cell(report, 1.0, judge),
            }
            if "refusal" in judges:
                row["+1_refusals"] = round(report.cell(config.rules[0], 1.0).scores["refusal"], 2)
            rows[f"{name} {chosen}"] = row
            print(f"{name}, {chosen} readout: {row}", flush=True)
    return {"study": "readout", "n_prompts": len(held_out), "fit_queries": FIT_QUERIES,
            "rows": rows}  # fmt: skip


def method(
    lm, prompts: list[str], objective: str = "bipo", presets: str = "", with_mean: bool = True
) -> dict:
    """Each shipped pack (mean difference) against the same pack trained on its own pairs and
    recalibrated (`refine_axis`, the default `TrainConfig` with `objective`), both judged at ±1;
    `presets` (comma list) limits the axes, `with_mean=False` judges the trained packs only."""
    rows: dict[str, dict] = {}
    chosen = presets.split(",") if presets else list(PRESET_JUDGES)
    training = TrainConfig(objective=objective)  # type: ignore[arg-type]
    for name in chosen:
        judge = PRESET_JUDGES[name]
        shipped = AxisPack.load(PACKS / f"{name}.safetensors", lm)
        trained = refine_axis(lm, shipped, training, progress=_quiet_progress)
        trained.save(TRAINED_PACKS / f"{name}-{objective}.safetensors")
        packs = (("mean", shipped),) if with_mean else ()
        reports: dict[str, EvalReport] = {}
        for label, pack in (*packs, (f"trained ({objective})", trained)):
            config = EvalConfig(strengths=(-1.0, 1.0), rules=(pack.fitted_rule(),), judges=(judge,))
            report = reports[label] = evaluate(lm, pack, prompts, config)
            row: dict[str, Any] = {
                "-1": _cell(report, -1.0, judge),
                "+1": _cell(report, 1.0, judge),
            }
            assert pack.calibration is not None
            row["edges"] = (pack.calibration.negative, pack.calibration.positive)
            if pack.training is not None:
                row["training"] = {
                    "seconds": round(pack.training.seconds, 1),
                    "best_epoch": pack.training.best_epoch,
                    "held_out_losses": [round(x, 3) for x in pack.training.held_out_losses],
                }
            rows[f"{name} {label}"] = row
            print(f"{name}, {label}: {row}", flush=True)
        if with_mean:
            paired = _paired(reports["mean"], reports[f"trained ({objective})"], name, judge)
            rows[f"{name} trained − mean"] = paired
            print(f"{name}, trained − mean (paired per prompt): {paired}", flush=True)
    return {"study": "method", "n_prompts": len(prompts), "objective": objective, "rows": rows}


def _paired(first: EvalReport, second: EvalReport, name: str, judge_name: str) -> dict:
    """Per sign, second − first judged prompt by prompt, with a 95 % bootstrap interval."""
    judge = make_judge(judge_name, preset(name))
    paired = {}
    for strength in (-1.0, 1.0):
        older, newer = (r.cell(r.config.rules[0], strength).texts for r in (first, second))
        shift = paired_difference(judge, newer, older, first.config.bootstrap, first.config.seed)
        paired[f"{strength:+g}"] = [round(x, 3) for x in (shift.mean, shift.low, shift.high)]
    return paired


def _quiet_progress(stage: str, done: int, total: int) -> None:
    if done == total:
        print(f"[{stage}] {done}/{total}", file=sys.stderr, flush=True)


STUDIES: dict[str, Callable[..., dict]] = {
    "loop-guard": loop_guard,
    "concise-band": concise_band,
    "budget": budget,
    "readout": readout,
    "method": method,
    "prompt-positions": prompt_positions,
    "pair-trained": pair_trained,
    "verbose-room": verbose_room,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("study", choices=tuple(STUDIES))
    parser.add_argument("--objective", choices=OBJECTIVES, default="bipo", help="method study")
    parser.add_argument("--presets", default="", help="method study: a comma list (default all)")
    parser.add_argument("--no-mean", action="store_true", help="method study: trained rows only")
    parser.add_argument(
        "--separate", choices=KEEP_APART, default=None, help="budget study: orthogonal pushes"
    )
    parser.add_argument(
        "--budgets", default="1,1.4,off", help="budget study: a comma list, off = raw sums"
    )
    parser.add_argument(
        "--joint", action="store_true", help="budget study: pairs at their joint calibration"
    )
    parser.add_argument(
        "--only", choices=("tune_prompts", "seed_queries_25_46", "dev_prompts"), default="",
        help="budget study: one prompt set",
    )  # fmt: skip
    parser.add_argument(
        "--grid", default="", help="prompt-positions: the calibration grid, a comma list"
    )
    parser.add_argument(
        "--trained", action="store_true", help="prompt-positions: train the prompt-only axes"
    )
    parser.add_argument(
        "--cells", default="cheerful+1:simple+1", help="pair-trained: pair cells, a comma list"
    )
    parser.add_argument("--anchor", type=float, default=0.0, help="pair-trained: DPOP's λ")
    parser.add_argument(
        "--scales", default="", help="pair-trained: common scales at shared layers, a comma list"
    )
    parser.add_argument("--tokens", type=int, default=64, help="budget study: answer length")
    args = parser.parse_args()
    budgets = tuple(None if b == "off" else float(b) for b in args.budgets.split(","))
    lm = load_model()
    if args.study == "method":
        result = method(lm, tuning_prompts(), args.objective, args.presets, not args.no_mean)
    elif args.study == "prompt-positions":
        result = prompt_positions(lm, tune_file_prompts(), args.presets, args.grid, args.trained)
    elif args.study == "pair-trained":
        result = pair_trained(
            lm,
            tune_file_prompts(),
            args.cells,
            args.anchor,
            tuple(float(x) for x in args.scales.split(",") if x),
        )
    elif args.study == "verbose-room":
        result = verbose_room(lm, read_queries(ASSETS / "dev_prompts.txt").queries)
    elif args.study == "budget":
        result = budget(
            lm, tuning_prompts(), args.separate, budgets, args.joint, args.only, args.tokens
        )
    else:
        result = STUDIES[args.study](lm, tuning_prompts())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
