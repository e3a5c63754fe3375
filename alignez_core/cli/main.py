"""Command line: `python -m alignez_core fit|generate|eval|info`; JSON out, progress on stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from alignez_core.engine.edit import slider_rule
from alignez_core.engine.warmup import enable_compile
from alignez_core.errors import AlignEZError
from alignez_core.steering.options import (
    parse_band,
    parse_floats,
    parse_layers,
    settings_from_text,
)

LOOP_GUARD = "never repeat one of the answer's own N-token spans verbatim (0 = off; default 8)"
PACK_HELP = (
    "an axis pack (.safetensors), or a preset that ships pre-fitted for the embedded model "
    "(cheerful, simple, concise, …)"
)


def _loop_guard(args: argparse.Namespace) -> dict[str, Any]:
    """The --loop-guard a user gave, else nothing (the library's default)."""
    return {} if args.loop_guard is None else {"loop_guard": args.loop_guard}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(stage: str, done: int, total: int) -> None:
    _log(f"[{stage}] {done}/{total}")


def _emit(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _load(spec: str | None, args: argparse.Namespace | None = None):
    import torch

    from alignez_core.engine.model import load_model

    dtype = getattr(torch, getattr(args, "dtype", None) or "float32")
    device_map = getattr(args, "device_map", None)
    if device_map and device_map.lstrip().startswith("{"):
        try:
            device_map = json.loads(device_map)
        except ValueError as exc:
            raise AlignEZError(f"--device-map is not valid JSON ({exc}).") from None
    kind = getattr(args, "model_kind", None)
    lm = load_model(spec, dtype=dtype, device_map=device_map or None, kind=kind)
    _log(f"loaded {lm.model_id} ({lm.source}, {dtype}) in {lm.load_seconds:.1f}s")
    if getattr(args, "compile", False):
        enable_compile(lm, warm_batches=())  # compiles on the first batch (cached on disk after)
        if lm.compile_note:
            _log(lm.compile_note)
    return lm


MODEL_HELP = (
    "smollm2-135m (the default) or gemma3-270m (pretrained; pip packages, see docs/models.md), "
    "a Hub id, a local folder or a .gguf file"
)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    from alignez_core.engine.catalog import MODEL_KINDS

    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument(
        "--model-kind",
        choices=MODEL_KINDS,
        default=None,
        help="override whether --model is instruction-tuned (chat template) or pretrained (a "
        "Human:/Assistant: frame; the answer ends at its turn). Default: the named model's, "
        "else a chat template's presence",
    )


def _add_speed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="model weights"
    )
    parser.add_argument(
        "--device-map",
        help='split the model across devices: "auto" (accelerate), or a JSON {module: device}',
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="decode batches of up to 4 rows with a compiled step (first call compiles, ~1 min)",
    )


def cmd_fit(args: argparse.Namespace) -> None:
    from alignez_core.axes.axis import Axis, preset
    from alignez_core.axes.queries import read_queries
    from alignez_core.fitting.fit import FitConfig, fit_axis

    if args.preset:
        axis = preset(args.preset)
    else:
        if args.positive is None or args.negative is None:
            raise AlignEZError("fit needs --preset NAME or both --positive and --negative.")
        axis = Axis(args.axis or f"{args.positive}-{args.negative}", args.positive, args.negative)
    queries = None
    if args.queries:
        query_set = read_queries(args.queries)
        for note in query_set.notes:
            _log(note)
        queries = query_set.queries
    lm = _load(args.model, args)
    defaults = FitConfig.for_kind(lm.effective_kind, method=args.method)  # what flags leave open
    given = {
        "answer_tokens": args.max_new_tokens,
        "samples_per_pole": args.samples_per_pole,
        "ask": args.ask,
        "select": args.select,
        "seed": args.seed,
    }
    config = replace(
        defaults,
        n_queries=args.n_queries,
        pooling=args.pooling,
        site=args.site,
        readout=args.readout or defaults.readout,
        pairs=replace(defaults.pairs, **{k: v for k, v in given.items() if v is not None}),
        calibration=None if args.no_calibrate else defaults.calibration,
        method=args.method,
        training=replace(defaults.training, objective=args.objective, seed=args.seed),
    )
    started = time.perf_counter()
    pack = fit_axis(lm, axis, queries, config, progress=_progress, settings=_settings(args))
    seconds = time.perf_counter() - started
    pack.save(args.out)
    _emit(
        {
            "axis": axis.name,
            "out": str(args.out),
            "pairs_total": len(pack.pairs),
            "pairs_kept_per_layer": pack.pairs_kept(),
            "rank_per_layer": pack.ranks(),
            "site": pack.site,
            "slider_calibration": (
                {"positive": pack.calibration.positive, "negative": pack.calibration.negative}
                if pack.calibration
                else None
            ),
            "seconds": round(seconds, 2),
            "timings": {k: round(v, 2) for k, v in pack.timings.items()},
            "method": config.method,
            "held_out_losses": (
                [round(x, 4) for x in pack.training.held_out_losses] if pack.training else None
            ),
        }
    )


def _settings(args: argparse.Namespace):
    return settings_from_text(
        rule=args.rule,
        layers=args.layers,
        band=args.band,
        top_n=args.top_n,
        positions=getattr(args, "positions", None),
        scale=args.scale,
        budget=getattr(args, "budget", "off"),
        separate=getattr(args, "separate", None),
    )


def _open_pack(spec: str, lm=None):
    """A pack file, or the name of a preset that ships pre-fitted (`cheerful`) where no file of
    that name exists."""
    from alignez_core.axes.pack import AxisPack
    from alignez_core.axes.prefit import prefitted_names, prefitted_pack

    if not Path(spec).exists() and spec in prefitted_names():
        return prefitted_pack(spec, lm)
    return AxisPack.load(spec, lm)


def _parse_axis_arg(value: str) -> tuple[str, float]:
    path, sep, strength = value.rpartition(":")
    if not sep or not path:
        raise AlignEZError(f"--axis expects PACK:STRENGTH, got {value!r}.")
    try:
        return path, float(strength)
    except ValueError:
        raise AlignEZError(f"--axis {value!r}: strength {strength!r} is not a number.") from None


def cmd_generate(args: argparse.Namespace) -> None:
    from alignez_core.axes.queries import read_queries
    from alignez_core.engine.generation import SamplingConfig
    from alignez_core.steering import generate

    if args.prompts:
        query_set = read_queries(args.prompts)
        for note in query_set.notes:
            _log(note)
        prompts = query_set.queries
    elif args.prompt is not None and args.prompt.strip():
        prompts = [args.prompt]
    else:
        raise AlignEZError("generate needs a non-empty --prompt or a --prompts file.")
    wanted = [_parse_axis_arg(value) for value in args.axis]
    settings = _settings(args)
    sampling = SamplingConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        repetition_penalty=args.repetition_penalty,
        **_loop_guard(args),
    )
    lm = _load(args.model, args)
    axes = {_open_pack(path, lm): strength for path, strength in wanted}
    for answer in generate(lm, prompts, axes, settings, sampling):
        _emit(
            {
                "prompt": answer.prompt,
                "base": answer.base,
                "edited": answer.edited,
                "layers": {k: list(v) for k, v in answer.layers.items()},
            }
        )


def cmd_eval(args: argparse.Namespace) -> None:
    from alignez_core.axes.queries import read_queries
    from alignez_core.evaluation.evaluate import EvalConfig, evaluate
    from alignez_core.measure.judges import JUDGE_NAMES

    if len(args.axis) > 1:
        _eval_combinations(args)
        return
    strengths = parse_floats(args.strengths or "-2,-1,0,1,2", "--strengths")
    rules = tuple(r.strip() for r in args.rules.split(",") if r.strip())  # EvalConfig checks
    judges = tuple(args.judge or ["tone"])
    unknown = [j for j in judges if j not in JUDGE_NAMES]
    if unknown:
        raise AlignEZError(f"Unknown judge {unknown[0]!r}; choose from {', '.join(JUDGE_NAMES)}.")
    prompts = read_queries(args.prompts)
    for note in prompts.notes:
        _log(note)
    config = EvalConfig(strengths=strengths, rules=rules or ("subspace",), judges=judges,
                        max_new_tokens=args.max_new_tokens, seed=args.seed, top_n=args.top_n,
                        band=parse_band(args.band), layers=parse_layers(args.layers),
                        scale=args.scale, prompted=args.prompted,
                        repetition_penalty=args.repetition_penalty,
                        **_loop_guard(args))  # fmt: skip
    lm = _load(args.model)
    pack = _open_pack(args.axis[0], lm)
    if not rules:  # the rule the pack's slider was calibrated with
        config = replace(config, rules=(pack.fitted_rule(),))
    report = evaluate(lm, pack, prompts.queries, config, progress=_progress)
    data = report.to_dict(texts=bool(args.json))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    if args.plot:
        from alignez_core.evaluation.report import eval_figure

        eval_figure(report).write_html(args.plot, include_plotlyjs="cdn")
    summary = report.to_dict(texts=False)
    _emit(summary)


def _eval_combinations(args: argparse.Namespace) -> None:
    """Several --axis: every pair at each sign combination, with the shared budget and without,
    each axis read by its own judge and its pole judge (`evaluation/composition.py`)."""
    from alignez_core.axes.queries import read_queries
    from alignez_core.engine.generation import SamplingConfig
    from alignez_core.evaluation.composition import compose, composition_table
    from alignez_core.measure.judges import PRESET_JUDGES, make_judge

    prompts = read_queries(args.prompts)
    strengths = parse_floats(args.strengths or "1,-1", "--strengths")
    settings = settings_from_text(layers=args.layers, band=args.band, top_n=args.top_n,
                                  scale=args.scale, budget=args.budget,
                                  separate=args.separate)  # fmt: skip
    lm = _load(args.model)
    packs = [_open_pack(spec, lm) for spec in args.axis]
    names = [pack.axis.name for pack in packs]
    if len(set(names)) < len(names):
        raise AlignEZError(f"--axis: each axis once; these share a name: {', '.join(names)}.")
    judges = args.judge or [PRESET_JUDGES.get(name, "pole") for name in names]
    if len(judges) != len(packs):
        raise AlignEZError(
            f"With several --axis, give one --judge per axis ({len(packs)}) in the same order, "
            f"or none; got {len(judges)}."
        )
    axes = {
        name: (pack, make_judge(judge, pack.axis))
        for name, pack, judge in zip(names, packs, judges, strict=True)
    }
    cells = compose(lm, axes, prompts.queries, settings,
                    budgets=tuple(dict.fromkeys((settings.budget, None))), strengths=strengths,
                    sampling=SamplingConfig(max_new_tokens=args.max_new_tokens),
                    progress=_progress, poles=True)  # fmt: skip
    _log(composition_table(cells, len(prompts.queries)))
    data = {"axes": dict(zip(names, judges, strict=True)), "n_prompts": len(prompts.queries),
            "composition": [cell.to_dict() for cell in cells]}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    _emit(data)


def cmd_info(args: argparse.Namespace) -> None:
    _emit(_open_pack(args.pack).info())


def cmd_export(args: argparse.Namespace) -> None:
    from alignez_core.interop import export_control_vector

    pack = _open_pack(args.pack)
    path = export_control_vector(pack, args.out, args.strength, _settings(args))
    _emit({"axis": pack.name, "out": str(path), "strength": args.strength,
           "layers": sorted(_gguf_layers(path))})  # fmt: skip


def _gguf_layers(path) -> list[int]:
    import gguf

    return [int(t.name.split(".")[1]) for t in gguf.GGUFReader(str(path)).tensors]


def cmd_import(args: argparse.Namespace) -> None:
    from alignez_core.interop import load_axis_file

    pack = load_axis_file(args.file, _load(args.model), args.name)
    pack.save(args.out)
    edited = [i for i, rank in enumerate(pack.ranks()) if rank]
    _emit({"axis": pack.name, "out": str(args.out), "model_hint": pack.model_id, "layers": edited})


def _add_layer_args(parser: argparse.ArgumentParser, rule: bool = True) -> None:
    from alignez_core.steering import DEFAULT_BAND, DEFAULT_BUDGET, SLIDER_RULES
    from alignez_core.steering.settings import KEEP_APART

    if rule:
        parser.add_argument(
            "--rule",
            type=slider_rule,  # an older name (steer, caa, paper) reads as today's
            choices=SLIDER_RULES,
            default=None,
            help="edit rule (default: each pack's own, the one its slider was calibrated with)",
        )
    parser.add_argument(
        "--layers", default="auto", help="'auto' (the band, or its top-n) or pinned: 8,9,10"
    )
    parser.add_argument(
        "--band",
        default=None,
        help="layers to edit as fractions of depth, FROM,TO, or 'all' (default: each pack's own; "
        f"fitting: the readout's, {DEFAULT_BAND} for packs that store none)",
    )
    parser.add_argument(
        "--top-n", type=int, default=None, help="keep the per-query best N layers of the band"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="strength per slider unit (default: the pack's calibrated edge per sign)",
    )
    parser.add_argument(
        "--budget",
        default=str(DEFAULT_BUDGET),
        help="several axes at one layer push at most BUDGET × the strongest alone "
        "(default %(default)s), or 'off' for raw sums",
    )
    parser.add_argument(
        "--separate",
        choices=KEEP_APART,
        default=None,
        help="several axes at one layer: make their pushes orthogonal first, in the order "
        "given (ordered) or all at once (symmetric), or give the layer to the axis strongest "
        "there (assign); default: as fitted",
    )


def build_parser() -> argparse.ArgumentParser:
    from alignez_core.axes.axis import preset_names
    from alignez_core.engine.architecture import SITES
    from alignez_core.engine.edit import POSITIONS
    from alignez_core.fitting.fit import READOUTS
    from alignez_core.fitting.pairs import ASKS, SELECTS
    from alignez_core.fitting.train import FIT_METHODS, OBJECTIVES
    from alignez_core.steering import SLIDER_RULES

    parser = argparse.ArgumentParser(prog="alignez", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit an axis from self-generated pairs and write a pack")
    fit.add_argument("--preset", choices=preset_names())
    fit.add_argument("--axis", help="axis name (default: POSITIVE-NEGATIVE)")
    fit.add_argument("--positive")
    fit.add_argument("--negative")
    fit.add_argument("--queries", help="text file, one query per line")
    fit.add_argument("--n-queries", type=int, default=24)
    fit.add_argument("--max-new-tokens", type=int, default=64, help="answer length per pole")
    fit.add_argument(
        "--samples-per-pole", type=int, default=None, help="default: the model kind's (1 or 4)"
    )
    fit.add_argument(
        "--ask",
        choices=ASKS,
        default=None,
        help="how an answer is asked for: insight, then answer (chat default) or persona (base)",
    )
    fit.add_argument(
        "--select",
        choices=SELECTS,
        default=None,
        help="pair each sample's answers (chat default) or the model's own contrast (base)",
    )
    fit.add_argument("--pooling", choices=("mean", "last"), default="mean")
    fit.add_argument(
        "--site", choices=SITES, default="residual", help="readout: residual stream or MLP output"
    )
    fit.add_argument(
        "--readout",
        choices=READOUTS,
        default=None,
        help="read Φ at the end of the persona prompt or on the self-generated answers "
        "(default: the model kind's)",
    )
    fit.add_argument(
        "--positions",
        choices=POSITIONS,
        default=None,
        help="positions the calibration edits, stored as the pack's (default: the readout's)",
    )
    fit.add_argument(
        "--no-calibrate", action="store_true", help="skip the per-sign slider calibration"
    )
    fit.add_argument(
        "--method",
        choices=FIT_METHODS,
        default="mean",
        help="each layer's direction: the pairs' mean difference, or that trained on the pairs "
        "by a preference loss (slower; docs/method.md)",
    )
    fit.add_argument(
        "--objective", choices=OBJECTIVES, default="bipo", help="the loss of --method trained"
    )
    _add_layer_args(fit)
    fit.add_argument("--seed", type=int, default=0)
    _add_model_args(fit)
    fit.add_argument("--out", required=True)
    fit.set_defaults(run=cmd_fit)

    gen = sub.add_parser("generate", help="base vs edited answers from one batch")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt")
    source.add_argument("--prompts", help="text file, one prompt per line")
    gen.add_argument("--axis", action="append", default=[], metavar="PACK:STRENGTH", help=PACK_HELP)
    _add_layer_args(gen)
    gen.add_argument(
        "--positions", choices=POSITIONS, default=None, help="default: each pack's own"
    )
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off; try 1.2")
    gen.add_argument("--loop-guard", type=int, default=None, help=LOOP_GUARD)
    gen.add_argument("--seed", type=int, default=0)
    _add_model_args(gen)
    _add_speed_args(gen)
    gen.set_defaults(run=cmd_generate)

    ev = sub.add_parser("eval", help="judge an axis (or several together): scores and fluency")
    ev.add_argument(
        "--axis",
        required=True,
        action="append",
        metavar="PACK",
        help=PACK_HELP + "; repeat it to judge every pair of the axes together",
    )
    ev.add_argument("--prompts", required=True, help="text file, one prompt per line")
    ev.add_argument(
        "--strengths",
        default=None,
        help="e.g. --strengths=-2,-1,0,1,2 (the default; several axes: 1,-1)",
    )
    ev.add_argument(
        "--rules",
        default="",
        help="comma list of " + ",".join(SLIDER_RULES) + " (default: the pack's own rule)",
    )
    ev.add_argument(
        "--judge",
        action="append",
        help="tone, grade, words, pole, refusal; several axes: one per axis, in order "
        "(default: a preset's own judge, else pole)",
    )
    ev.add_argument(
        "--prompted", action="store_true", help="add the prompting baseline (poles asked in words)"
    )
    _add_layer_args(ev, rule=False)
    ev.add_argument("--max-new-tokens", type=int, default=64)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off; try 1.2")
    ev.add_argument("--loop-guard", type=int, default=None, help=LOOP_GUARD)
    ev.add_argument("--json", help="write the full report (with texts) here")
    ev.add_argument("--plot", help="write an HTML plot here")
    _add_model_args(ev)
    ev.set_defaults(run=cmd_eval)

    info = sub.add_parser("info", help="print an axis pack's metadata")
    info.add_argument("pack", help=PACK_HELP)
    info.set_defaults(run=cmd_info)

    export = sub.add_parser("export", help="write a pack as a llama.cpp control vector (GGUF)")
    export.add_argument("pack", help=PACK_HELP)
    export.add_argument("--format", choices=("gguf",), default="gguf")
    export.add_argument("--out", required=True)
    export.add_argument("--strength", type=float, default=1.0, help="the slider value to bake in")
    _add_layer_args(export, rule=False)
    export.set_defaults(run=cmd_export, rule="subspace")

    imp = sub.add_parser(
        "import",
        help="read a control-vector GGUF (llama.cpp, repeng) or a steering-vectors "
        "safetensors file as a pack",
    )
    imp.add_argument("file")
    imp.add_argument("--out", required=True)
    imp.add_argument("--name", help="axis name (default: the file's, or its stem)")
    imp.add_argument("--model", help="check the vectors against this model (default: embedded)")
    imp.set_defaults(run=cmd_import)

    serve = sub.add_parser(
        "serve", help="an OpenAI-compatible API with steering per request (docs/serving.md)"
    )
    _add_model_args(serve)
    _add_speed_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode concurrent requests in shared batches (default on)",
    )
    serve.set_defaults(run=cmd_serve)
    return parser


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from alignez_core.server import ServedModel, openai_app

    lm = _load(args.model, args)
    app = openai_app(ServedModel(lm, batching=args.batching))
    _log(f"serving {lm.model_id} at http://{args.host}:{args.port}/v1 (batching "
         f"{'on' if args.batching else 'off'})")  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except AlignEZError as exc:
        _log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _log("error: interrupted")
        return 130
    return 0
