"""AlignEZ fitting on the embedded SmolLM2-135M-Instruct."""

import json

import pytest

from alignez_core.generation import SamplingConfig
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
