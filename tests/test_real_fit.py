"""AlignEZ fitting on the embedded SmolLM2-135M-Instruct."""

import json
import statistics

import pytest

from alignez_core.axes.axis import ASSETS
from alignez_core.engine.generation import SamplingConfig
from alignez_core.steering import SteerSettings, generate
from tests.test_cli import run_cli

pytestmark = pytest.mark.real_model


def test_cheerful_axis_fits_with_pairs_and_ranks(real_cheerful):
    assert len(real_cheerful.pairs) == 8
    assert sum(r > 0 for r in real_cheerful.ranks()) >= 20
    assert all(p.positive and p.negative for p in real_cheerful.pairs)


def test_pack_round_trip_in_a_new_process_gives_identical_generations(
    real_lm, real_cheerful, tmp_path
):
    path = real_cheerful.save(tmp_path / "cheerful.safetensors")
    prompt = "What should I do this weekend?"
    (here,) = generate(
        real_lm, [prompt], {real_cheerful: 1.0}, SteerSettings(), SamplingConfig(max_new_tokens=24)
    )
    result = run_cli(
        "generate", "--prompt", prompt, "--axis", f"{path}:1", "--max-new-tokens", "24"
    )
    assert result.returncode == 0, result.stderr
    there = json.loads(result.stdout)
    assert (there["base"], there["edited"]) == (here.base, here.edited)
    assert tuple(there["layers"]["cheerful"]) == here.layers["cheerful"]


def test_cheerful_at_minus_one_lowers_the_tone_of_prompts_it_never_saw(real_lm, real_cheerful):
    """The slider steers held-out text: dev prompts, never fit or calibration queries."""
    from alignez_core.axes.axis import seed_queries
    from alignez_core.axes.queries import read_queries
    from alignez_core.measure.judges import tone

    prompts = read_queries(ASSETS / "dev_prompts.txt").queries[:6]
    assert not set(prompts) & set(seed_queries())
    assert real_cheerful.site == "residual" and real_cheerful.calibration is not None
    answers = generate(real_lm, prompts, {real_cheerful: -1.0}, sampling=SamplingConfig(48))
    base = statistics.mean(tone([a.base for a in answers]))
    edited = statistics.mean(tone([a.edited for a in answers]))
    assert edited <= base - 0.3, (base, edited, [a.edited for a in answers])


def test_the_shipped_cheerful_pack_steers_held_out_prompts_both_ways(real_lm):
    """The demo path, no fit: measured −0.46 / +0.43 on these 6 prompts at 48 tokens."""
    from alignez_core.axes.prefit import prefitted_pack
    from alignez_core.axes.queries import read_queries
    from alignez_core.measure.judges import tone

    pack = prefitted_pack("cheerful", real_lm)
    prompts = read_queries(ASSETS / "dev_prompts.txt").queries[:6]
    shift = {}
    for strength in (-1.0, 1.0):
        answers = generate(real_lm, prompts, {pack: strength}, sampling=SamplingConfig(48))
        base = statistics.mean(tone([a.base for a in answers]))
        shift[strength] = statistics.mean(tone([a.edited for a in answers])) - base
    assert shift[-1.0] <= -0.3 and shift[1.0] >= 0.2, shift
