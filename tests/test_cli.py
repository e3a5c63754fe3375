"""The CLI as a user runs it: a subprocess, a model folder on disk, JSON on stdout."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    return subprocess.run(
        [sys.executable, "-m", "alignez_core", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_fit_info_generate_round_trip(model_dir, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("first question?\nsecond question?\nthird one?\n")
    pack = tmp_path / "axis.safetensors"
    fit = run_cli(
        "fit", "--axis", "mood", "--positive", "cheerful", "--negative", "gloomy",
        "--queries", str(queries), "--max-new-tokens", "8", "--pooling", "last",
        "--readout", "answers", "--model", str(model_dir), "--out", str(pack),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    summary = json.loads(fit.stdout)
    assert summary["axis"] == "mood" and summary["pairs_total"] == 3
    assert len(summary["rank_per_layer"]) == 3 and "[answers]" in fit.stderr

    info = run_cli("info", str(pack))
    assert json.loads(info.stdout)["axis"]["negative"] == "gloomy"
    assert json.loads(info.stdout)["fit_config"]["readout"] == "answers"
    assert "readout_note" not in json.loads(info.stdout)

    # pin the layers whose pairs survived the filter (on a random tiny model, which they are
    # depends on its self-generated answers): the edit runs exactly there
    pinned = [layer for layer, rank in enumerate(summary["rank_per_layer"]) if rank > 0]
    assert pinned
    gen = run_cli(
        "generate", "--prompt", "hello", "--axis", f"{pack}:6", "--max-new-tokens", "8",
        "--rule", "mean_diff", "--layers", ",".join(map(str, pinned)), "--model", str(model_dir),
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    (line,) = gen.stdout.splitlines()
    result = json.loads(line)
    assert result["prompt"] == "hello" and result["base"] != result["edited"]
    assert result["layers"]["mood"] == pinned


def test_errors_exit_non_zero_with_one_clear_line(model_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        (["fit", "--positive", " ", "--negative", "x", "--out", "o"], "positive must be"),
        (["fit", "--preset", "cheerful", "--queries", str(empty), "--out", "o"], "has no queries"),
        (["info", str(empty)], "not a valid safetensors"),
        (["generate", "--prompt", "hi", "--axis", "nocolon"], "expects PACK:STRENGTH"),
        (["generate", "--prompt", "hi", "--axis", "p.safetensors:nan", "--model", str(model_dir)],
         "Cannot read axis pack"),
        (["generate", "--prompt", "hi", "--layers", "a,b"], "--layers expects"),
        (["generate", "--prompt", "hi", "--budget", "0"], "--budget expects 'off' or a number"),
    ]  # fmt: skip
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (args, last)


def test_eval_cli_writes_json_and_plot_and_refuses_bad_input(model_dir, tmp_path):
    from alignez_core.axes.axis import preset
    from alignez_core.engine.model import load_model
    from alignez_core.fitting.fit import FitConfig, fit_axis

    lm = load_model(str(model_dir))
    pack = fit_axis(
        lm, preset("cheerful"), ["a?", "b?", "c?"], FitConfig(n_queries=3, pooling="last")
    )
    pack_path = pack.save(tmp_path / "p.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nwhy?\n")
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    ok = run_cli(
        "eval", "--axis", str(pack_path), "--prompts", str(prompts), "--strengths=-4,0,4",
        "--rules", "mean_diff", "--judge", "words", "--max-new-tokens", "6",
        "--model", str(model_dir),
        "--json", str(out_json), "--plot", str(out_html),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert [c["strength"] for c in summary["cells"]] == [-4.0, 0.0, 4.0]
    assert json.loads(out_json.read_text())["prompts"] == ["hello", "why?"]
    assert "plotly" in out_html.read_text()
    own = run_cli(
        "eval", "--axis", str(pack_path), "--prompts", str(prompts), "--strengths=1",
        "--judge", "words", "--max-new-tokens", "4", "--model", str(model_dir),
    )  # fmt: skip
    assert own.returncode == 0, own.stderr
    # without --rules, the rule the pack was calibrated with (the persona readout's: caa)
    assert {c["rule"] for c in json.loads(own.stdout)["cells"]} == {"mean_diff"}

    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    base = ["eval", "--axis", str(pack_path), "--model", str(model_dir)]
    cases = [
        ([*base, "--prompts", str(empty)], "has no queries"),
        ([*base, "--prompts", str(prompts), "--judge", "vibes"], "Unknown judge 'vibes'"),
        ([*base, "--prompts", str(prompts), "--strengths", "1,two"], "--strengths expects"),
    ]  # fmt: skip
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]


def test_eval_with_several_axes_judges_every_pair_by_interaction(model_dir, tmp_path):
    from alignez_core.axes.axis import preset
    from alignez_core.engine.model import load_model
    from alignez_core.fitting.fit import FitConfig, fit_axis

    lm = load_model(str(model_dir))
    paths = [
        fit_axis(lm, preset(name), ["a?", "b?", "c?"], FitConfig(n_queries=3, pooling="last")).save(
            tmp_path / f"{name}.safetensors"
        )
        for name in ("cheerful", "concise")
    ]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nwhy?\n")
    axes = [arg for path in paths for arg in ("--axis", str(path))]
    base = ["eval", *axes, "--prompts", str(prompts), "--max-new-tokens", "6"]
    ok = run_cli(*base, "--strengths=4", "--budget", "off", "--model", str(model_dir))
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["axes"] == {"cheerful": "tone", "concise": "words"}  # each preset's own judge
    cells = data["composition"]
    # base, each alone, the pair once: --budget off leaves raw sums only
    assert [(c["sliders"], c["budget"]) for c in cells] == [
        ({}, None), ({"cheerful": 4.0}, None), ({"concise": 4.0}, None),
        ({"cheerful": 4.0, "concise": 4.0}, None),
    ]  # fmt: skip
    assert set(cells[-1]["interaction"]["cheerful"]) == {"tone", "pole"}
    assert "pair cells keep ≥ 70% of each axis by interaction" in ok.stderr
    wrong = run_cli(*base, "--judge", "tone", "--model", str(model_dir))
    assert wrong.returncode == 2
    assert "give one --judge per axis (2)" in wrong.stderr.strip().splitlines()[-1]
    twice = run_cli("eval", "--axis", str(paths[0]), "--axis", str(paths[0]), "--prompts",
                    str(prompts), "--model", str(model_dir))  # fmt: skip
    assert twice.returncode == 2 and "each axis once" in twice.stderr.strip().splitlines()[-1]


@pytest.mark.real_model
def test_eval_refuses_a_pack_for_another_model(tiny_pack, tmp_path):
    """With no --model, the embedded SmolLM2 loads, and a tiny model's pack is refused."""
    pack_path = tiny_pack.save(tmp_path / "p.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n")
    result = run_cli("eval", "--axis", str(pack_path), "--prompts", str(prompts))
    assert result.returncode == 2 and "has hidden size 576" in result.stderr.splitlines()[-1]


def test_fit_reads_at_the_persona_prompt_when_asked(model_dir, tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_text("first question?\nsecond question?\nthird one?\n")
    pack = tmp_path / "persona.safetensors"
    fit = run_cli(
        "fit", "--preset", "cheerful", "--queries", str(queries), "--max-new-tokens", "8",
        "--readout", "persona", "--model", str(model_dir), "--out", str(pack),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    info = json.loads(run_cli("info", str(pack)).stdout)
    assert info["fit_config"]["readout"] == "persona" and "mean_diff" in info["readout_note"]
    # the slider was calibrated with the readout's own settings, which the pack keeps as its own
    calibrated = info["calibration"]["settings"]
    assert (calibrated["rule"], calibrated["positions"], calibrated["band"]) == (
        "mean_diff", "all", [0.4, 0.85]
    )  # fmt: skip
    assert info["rule_defaults"]["rule"] == "mean_diff" and info["rule_defaults"]["band"] == [
        0.4,
        0.85,
    ]
    # the tiny model's tokenizer has a chat template, so it fits as a chat model; --model-kind
    # base gives it a base model's calibration
    assert info["fit_config"]["calibration"]["extra_looping"] == 0
    as_base = tmp_path / "base.safetensors"
    fit = run_cli(
        "fit", "--preset", "cheerful", "--queries", str(queries), "--max-new-tokens", "8",
        "--model", str(model_dir), "--model-kind", "base", "--out", str(as_base),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    base = json.loads(run_cli("info", str(as_base)).stdout)["fit_config"]
    assert (base["calibration"]["n_queries"], base["calibration"]["extra_looping"]) == (8, 1)
    # ... and a base model's pairs: 4 persona samples per pole, chosen by the model's contrast
    chat = info["fit_config"]["pairs"]
    assert (chat["ask"], chat["select"], chat["samples_per_pole"]) == ("insight", "each", 1)
    assert (base["pairs"]["ask"], base["pairs"]["select"], base["pairs"]["samples_per_pole"]) == (
        "persona", "contrast", 4
    )  # fmt: skip
    refused = run_cli(
        "fit", "--preset", "cheerful", "--select", "contrast", "--samples-per-pole", "9",
        "--model", str(model_dir), "--out", str(tmp_path / "no.safetensors"),
    )  # fmt: skip
    assert refused.returncode != 0 and "samples_per_pole must be 1–8" in refused.stderr


def test_fit_with_method_trained_stores_its_training_and_a_bad_objective_is_refused(
    model_dir, tmp_path
):
    pack = tmp_path / "trained.safetensors"
    fit = run_cli(
        "fit", "--preset", "cheerful", "--n-queries", "4", "--max-new-tokens", "8",
        "--method", "trained", "--objective", "likelihood", "--model", str(model_dir),
        "--out", str(pack),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    out = json.loads(fit.stdout)
    assert out["method"] == "trained" and len(out["held_out_losses"]) >= 2
    assert "training" in out["timings"]
    info = json.loads(run_cli("info", str(pack)).stdout)
    assert info["fit_config"]["method"] == "trained"
    assert info["fit_config"]["training"]["objective"] == "likelihood"
    assert info["training"]["held_out_pairs"] == 1 and info["training"]["train_pairs"] == 3
    refused = run_cli(
        "fit", "--preset", "cheerful", "--method", "trained", "--objective", "dpo",
        "--model", str(model_dir), "--out", str(tmp_path / "no.safetensors"),
    )  # fmt: skip
    assert refused.returncode != 0 and "invalid choice: 'dpo'" in refused.stderr


def test_generate_with_bf16_and_a_device_map_and_a_bad_one(model_dir, tmp_path):
    pack = tmp_path / "axis.safetensors"
    fit = run_cli(
        "fit", "--axis", "mood", "--positive", "cheerful", "--negative", "gloomy",
        "--n-queries", "2", "--max-new-tokens", "8", "--model", str(model_dir), "--out", str(pack),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    gen = run_cli(
        "generate", "--prompt", "hello", "--axis", f"{pack}:1", "--max-new-tokens", "4",
        "--model", str(model_dir), "--dtype", "bfloat16", "--device-map", '{"": "cpu"}',
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    assert "torch.bfloat16" in gen.stderr and json.loads(gen.stdout)["prompt"] == "hello"
    bad = run_cli("generate", "--prompt", "hi", "--axis", f"{pack}:1", "--model", str(model_dir),
                  "--device-map", "{nope")  # fmt: skip
    assert bad.returncode == 2 and "--device-map is not valid JSON" in bad.stderr
