"""Regenerate docs/RESULTS.md: does each rule steer each axis, and at what fluency cost?

Fits cheerful ↔ gloomy, simple ↔ technical and concise ↔ verbose on the default model with the
default settings (the default readout, its own rule, band and positions, calibrated slider),
then evaluates the pack's own rule, `subspace` (per query), `mean_diff` (the mean difference of
the same pairs) and `project` at slider −2 … +2, beside the prompting baseline (the pole asked for
in words); the same axis fitted with the other readout, its rules as rows 'READOUT RULE'; and
the peers' own trained vectors; and the axis with its directions trained on its pairs (rows
'trained mean_diff': `refine_axis` on the pack, or `--method trained` where the pack steers with
subspace), on the dev prompt set (never used to fit or calibrate); then
every pair of the three at ±1, with the shared budget and without
(`alignez_core.evaluation.composition`). Writes docs/RESULTS.md (tables; the analysis section
is kept between the markers), docs/results.json and one figure per axis
(docs/results-cheerful.html and the like).

    python bench/results.py [--model gemma3-270m] [--queries 24] [--prompts 24] [--tokens 64]
                            [--compose-tokens 96]
                            [--no-compose] [--no-peers] [--no-trained] [--dtype bfloat16]

Another model writes its own files beside the default's, its name after `RESULTS-` and
`results-` in the file names (Markdown, JSON, one figure per axis).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from alignez_core import load_model  # noqa: E402
from alignez_core.axes.axis import preset, seed_queries  # noqa: E402
from alignez_core.axes.queries import read_queries  # noqa: E402
from alignez_core.engine.catalog import SMOLLM2  # noqa: E402
from alignez_core.engine.generation import SamplingConfig  # noqa: E402
from alignez_core.evaluation.composition import compose, composition_table  # noqa: E402
from alignez_core.evaluation.evaluate import EvalConfig, evaluate  # noqa: E402
from alignez_core.evaluation.report import eval_figure, markdown_table  # noqa: E402
from alignez_core.fitting.fit import (  # noqa: E402
    READOUT_SETTINGS,
    READOUTS,
    FitConfig,
    fit_axis,
    refine_axis,
)
from alignez_core.fitting.train import TrainConfig  # noqa: E402
from alignez_core.measure.judges import PRESET_JUDGES, make_judge  # noqa: E402
from alignez_core.steering import SteerSettings  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import peer_vectors  # noqa: E402
import versus_prompting  # noqa: E402

RULES = ("subspace", "mean_diff", "project")
STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)
DOCS = ROOT / "docs"
START, END = "<!-- analysis:start -->", "<!-- analysis:end -->"


def _file_name(model: str) -> str:
    """A model's name as a file-name part: a named model's own, else the id's last segment."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(model).name.lower())


def _make_command(args: argparse.Namespace, suffix: str) -> str:
    """The `make` line that writes this document again, with the parts it left out."""
    skipped = [
        f"--no-{part}" for part in ("compose", "peers", "trained") if getattr(args, f"no_{part}")
    ]
    return (
        "make results"
        + (f" MODEL={args.model}" if suffix else "")
        + (f' SKIP="{" ".join(skipped)}"' if skipped else "")
    )


def _progress(stage: str, done: int, total: int) -> None:
    print(f"[{stage}] {done}/{total}", file=sys.stderr, flush=True)


def _peer_rows(lm, pack, report, prompts, args) -> str:
    """Append the peers' own vectors at their calibrated ±1 to `report`; say what they are."""
    if not peer_vectors.available():
        return "(Peers' vectors: not installed, run `make results` to add them.) "
    band = SteerSettings().for_pack(pack).band_layers(pack.num_layers)
    queries = seed_queries()[: args.queries]
    notes = []
    for name, peer in peer_vectors.peer_packs(lm, pack.axis, queries, band).items():
        settings = peer_vectors.PEER_SETTINGS
        config = EvalConfig(strengths=(-1.0, 1.0), rules=(settings.rule,),
                            judges=report.config.judges, max_new_tokens=args.tokens,
                            band=settings.band, positions=settings.positions)  # fmt: skip
        for cell in evaluate(lm, peer, prompts, config, progress=_progress).cells:
            cell.rule = name
            report.cells.append(cell)
        edge = peer.calibration
        notes.append(f"{name} ±1 = {edge.positive:g} / {edge.negative:g} × its vector")
    return f"Peers' trained vectors, calibrated the same way: {'; '.join(notes)}. "


def _beside(pack) -> str:
    """The readout other than the one the pack was fitted with (its model kind's default)."""
    return next(r for r in READOUTS if r != pack.fit_config["readout"])


def _other_readout_rows(lm, pack, report, prompts, args) -> str:
    """Fit the same axis with the readout beside the model kind's default; append its rules'
    cells as 'READOUT RULE'."""
    started = time.perf_counter()
    readout = _beside(pack)
    other = fit_axis(
        lm,
        pack.axis,
        config=FitConfig.for_kind(lm.effective_kind, n_queries=args.queries, readout=readout),
    )
    seconds = time.perf_counter() - started
    config = EvalConfig(strengths=STRENGTHS, rules=RULES, judges=report.config.judges,
                        max_new_tokens=args.tokens)  # fmt: skip
    for cell in evaluate(lm, other, prompts, config, progress=_progress).cells:
        if cell.strength != 0:
            cell.rule = f"{readout} {cell.rule}"
            report.cells.append(cell)
    edge = other.calibration
    return (
        f"The {readout} readout (rows '{readout} …', its pack fitted in {seconds:.0f} s on the "
        f"same queries, steered on band {other.fitted_band()}): ±1 = {edge.positive:g} / "
        f"{edge.negative:g}·‖h‖. "
    )


def _trained_rows(lm, pack, report, prompts, args) -> tuple[str, str]:
    """The axis with trained directions, its cells appended as 'trained mean_diff': the pack
    trained on its own pairs (`refine_axis`, the default `TrainConfig`) where it steers with
    mean_diff, else the axis fitted with `--method trained` (a base model's default steers with
    subspace, which training does not apply to; trained fits read the persona readout). Returns
    what training did, and the rows it is to be compared with (those it was trained from)."""
    if pack.fitted_rule() == "mean_diff":
        trained, source = refine_axis(lm, pack, TrainConfig(), progress=_progress), "mean_diff"
    else:
        fit = FitConfig.for_kind(lm.effective_kind, n_queries=args.queries, method="trained")
        trained = fit_axis(lm, pack.axis, config=fit, progress=_progress)
        source = f"{trained.fit_config['readout']} mean_diff"
    config = EvalConfig(strengths=STRENGTHS, rules=(trained.fitted_rule(),),
                        judges=report.config.judges, max_new_tokens=args.tokens)  # fmt: skip
    for cell in evaluate(lm, trained, prompts, config, progress=_progress).cells:
        if cell.strength != 0:
            cell.rule = f"trained {cell.rule}"
            report.cells.append(cell)
    edge, log = trained.calibration, trained.training
    assert edge is not None and log is not None
    losses, objective = log.held_out_losses, log.config["objective"]
    what = (
        f"Trained (rows 'trained …', `--method trained`, trained from the rows '{source}'): "
        f"{log.seconds:.0f} s of {objective} training, held-out loss {losses[0]:.3f} → "
        f"{min(losses):.3f} (epoch {log.best_epoch} kept); ±1 = {edge.positive:g} / "
        f"{edge.negative:g}·‖h‖. "
    )
    return what, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=24, help="fit queries per axis")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--compose-tokens", type=int, default=96, help="pairs of axes: answer length"
    )
    parser.add_argument("--no-compose", action="store_true", help="skip the pairs of axes")
    parser.add_argument("--no-peers", action="store_true", help="skip repeng / steering-vectors")
    parser.add_argument("--no-trained", action="store_true", help="skip the trained rows")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--model",
        default=os.environ.get("ALIGNEZ_MODEL") or SMOLLM2.name,
        help="a named model, Hub id or path (default: the embedded SmolLM2)",
    )
    args = parser.parse_args()
    lm = load_model(args.model, dtype=getattr(torch, args.dtype))
    suffix = "" if args.model in (SMOLLM2.name, SMOLLM2.model_id) else f"-{_file_name(args.model)}"
    doc = DOCS / f"RESULTS{suffix}.md"
    prompts = read_queries(ROOT / "assets" / "dev_prompts.txt").queries[: args.prompts]
    sections, data, packs = [], {}, {}
    for name, judge in PRESET_JUDGES.items():
        started = time.perf_counter()
        pack = packs[name] = fit_axis(
            lm, preset(name), config=FitConfig.for_kind(lm.effective_kind, n_queries=args.queries)
        )
        fit_seconds = time.perf_counter() - started
        own = pack.fitted_rule()
        config = EvalConfig(strengths=STRENGTHS, rules=tuple(dict.fromkeys((own, *RULES))),
                            judges=(judge, "pole"), max_new_tokens=args.tokens,
                            prompted=True)  # fmt: skip
        report = evaluate(lm, pack, prompts, config, progress=_progress)
        other = _other_readout_rows(lm, pack, report, prompts, args)
        peers = _peer_rows(lm, pack, report, prompts, args) if not args.no_peers else ""
        trained, trained_from = (
            _trained_rows(lm, pack, report, prompts, args) if not args.no_trained else ("", None)
        )
        calibration = pack.calibration
        data[name] = (
            report.to_dict(texts=True)
            | {
                "fit_seconds": fit_seconds,
                "timings": pack.timings,
                "calibration": calibration.to_dict() if calibration else None,
            }
            | ({"trained_from": trained_from} if trained_from else {})
        )
        figure = DOCS / f"results{suffix}-{name}.html"
        eval_figure(report).write_html(figure, include_plotlyjs="cdn")
        axis = pack.axis
        example = report.prompts[0]
        beside = _beside(pack)
        edge = (
            f"slider +1 = {calibration.positive:g}·‖h‖, −1 = {calibration.negative:g}·‖h‖ "
            f"per edited layer (calibrated in {calibration.seconds:.0f} s)"
            if calibration
            else "not calibrated"
        )
        sections.append(
            f"### {axis.positive} ↔ {axis.negative} (judge: {judge})\n\n"
            f"Fit ({pack.fit_config['readout']} readout, steered with {own} on "
            f"{pack.fitted_positions()} positions, band {pack.fitted_band()}): "
            f"{len(pack.pairs)} pairs from {args.queries} queries in {fit_seconds:.0f} s; "
            f"{edge}. Base mean {judge} = {report.base_scores[judge]:.3f}. {other}{peers}{trained}"
            f"Figure: [`{figure.name}`]({figure.name}).\n\n{markdown_table(report)}\n\n"
            f"Example, prompt *{example}*:\n\n"
            f"- base: {report.base_texts[0][:240]!r}\n"
            + "".join(
                f"- {rule} {s:+g}: {report.cell(rule, s).texts[0][:240]!r}\n"
                for rule in (
                    own,
                    "prompted",
                    f"{beside} {READOUT_SETTINGS[beside].rule}",
                    "repeng",
                    "steering-vectors",
                    versus_prompting.TRAINED,
                )
                for s in (-1.0, 1.0)
                if any(c.rule == rule and c.strength == s for c in report.cells)
            )
        )
    if not args.no_compose:
        axes = {
            name: (packs[name], make_judge(judge, packs[name].axis))
            for name, judge in PRESET_JUDGES.items()
        }
        sampling = SamplingConfig(max_new_tokens=args.compose_tokens)
        cells = compose(lm, axes, prompts, sampling=sampling, progress=_progress, poles=True)
        data["composition"] = [c.to_dict() for c in cells]
        sections.append(
            "### Several axes at once\n\nEvery pair of the three axes at ±1, with the shared "
            "budget (1 = the combined push at a shared layer is at most the strongest single "
            "push) and without (raw sums), "
            f"{args.compose_tokens} new tokens (at 96, 21 of 24 base answers reach the cap, so "
            "concise −1 has little room to be verbose: `bench/tune_studies.py verbose-room`). "
            "Retained "
            "against base = the axis's judge shift in the pair ÷ its shift alone at the same "
            "sign; kept by interaction = what the axis adds on top of the other alone ÷ its "
            "shift alone, 95 % bootstrap over prompts, read only where the axis alone clearly "
            "moves the judge (tone ≥ 0.05, grade ≥ 0.5, words ≥ 3, pole ≥ 0.01, its own way); "
            "each axis by its own judge and its pole judge (same prompts, same batches).\n\n"
            + composition_table(cells, len(prompts))
        )
    sections.append(
        "### Steering vs prompting, paired per prompt\n\nPer dev prompt, the steered answer's "
        "judge score minus the prompted answer's at the same slider, 95 % bootstrap "
        "(`bench/versus_prompting.py`).\n\n" + versus_prompting.table(data)
    )
    if trained_table := versus_prompting.table(data, "trained"):
        sections.append(
            "### Mean difference vs trained, paired per prompt\n\nPer dev prompt, the "
            "mean-difference answer minus the answer with the same axis's directions trained on "
            "its pairs, at the same slider, 95 % bootstrap.\n\n" + trained_table
        )
    (DOCS / f"results{suffix}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    previous = doc.read_text() if doc.exists() else ""
    analysis = (
        previous[previous.index(START) : previous.index(END) + len(END)]
        if START in previous and END in previous
        else f"{START}\n(analysis to be written from the tables below)\n{END}"
    )
    doc.write_text(
        "# Does it steer? Measured results\n\n"
        f"Model: {lm.model_id}, {lm.effective_kind} (CPU, greedy with the "
        f"{SamplingConfig.loop_guard}-token loop guard, "
        f"{args.tokens} new tokens), {len(prompts)} dev "
        f"prompts (`assets/dev_prompts.txt`), strengths {', '.join(f'{s:+g}' for s in STRENGTHS)},"
        f" rules {', '.join(RULES)} (each pack steered on its own band and positions unless the"
        " row says otherwise) and the prompting baseline at ±1. Regenerate with "
        f"`{_make_command(args, suffix)}` (writes this file and "
        f"`docs/results{suffix}.json` with every text). Δ is the paired mean difference vs the "
        "base model on the same prompts, with a 95 % bootstrap interval; fluency is perplexity "
        "under the unedited model (base answers score the same way), distinct-2 over all answers, "
        "repetition = raw/zlib size, refusal = share of answers with a refusal phrase, degenerate "
        "= answers that loop (distinct-2 < 0.6 or raw/zlib > 2.2) or are empty.\n\n"
        f"{analysis}\n\n## Tables\n\n" + "\n\n".join(sections)
    )
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
