"""Control-vector GGUF out and in, steering-vectors files in: the file holds the vectors and
reads back the same edit."""

import json
from pathlib import Path

import pytest
import torch

from alignez_core.engine.edit import ALL_LAYERS, Edit, LayerEdit
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.errors import PackError
from alignez_core.interop import (
    control_vectors,
    export_control_vector,
    import_control_vector,
    import_steering_vector,
    load_axis_file,
    save_steering_vector,
)
from alignez_core.steering import SteerSettings, generate
from tests.test_cli import run_cli
from tests.tiny import make_model

GREEDY = SamplingConfig(max_new_tokens=12, min_new_tokens=12)


@pytest.mark.parametrize("strength", [1.0, -1.5])
def test_export_writes_the_packs_vectors_at_the_calibrated_strength(tiny_pack, tmp_path, strength):
    import gguf

    path = export_control_vector(tiny_pack, tmp_path / "axis.gguf", strength)
    reader = gguf.GGUFReader(str(path))
    read = {t.name: torch.tensor(t.data).flatten() for t in reader.tensors}
    expected = control_vectors(tiny_pack, strength)
    assert set(read) == {f"direction.{layer}" for layer in expected}
    c = tiny_pack.calibration.for_sign(strength)
    for layer, vector in expected.items():
        assert torch.allclose(read[f"direction.{layer}"], vector)
        norm = strength * c * tiny_pack.residual_norms[layer]
        assert float(vector.norm()) == pytest.approx(abs(norm), rel=1e-5)
    field = reader.get_field("general.architecture")
    assert bytes(field.parts[-1]).decode() == "controlvector"


def test_export_never_writes_block_0_which_llama_cpp_refuses(tiny_pack):
    every_layer = control_vectors(tiny_pack, 1.0, SteerSettings(band=ALL_LAYERS))
    assert sorted(every_layer) == [1, 2] and tiny_pack.layers[0].rank > 0


def test_import_gives_the_same_edit_as_the_original_token_for_token(
    tiny_llama, tiny_pack, tmp_path
):
    path = export_control_vector(tiny_pack, tmp_path / "axis.gguf", 1.0)
    imported = import_control_vector(path, tiny_llama)
    assert imported.axis == tiny_pack.axis and imported.hidden_size == tiny_pack.hidden_size
    settings = SteerSettings(rule="mean_diff")
    (original,) = generate(tiny_llama, ["hi"], {tiny_pack: 1.0}, settings, sampling=GREEDY)
    (again,) = generate(tiny_llama, ["hi"], {imported: 1.0}, settings, sampling=GREEDY)
    assert (
        again.edited == original.edited and again.layers["cheerful"] == original.layers["cheerful"]
    )
    saved = imported.save(tmp_path / "imported.safetensors")  # an ordinary pack from here on
    assert type(imported).load(saved, tiny_llama).residual_norms == imported.residual_norms


def test_import_refuses_another_models_vectors_and_non_control_vector_files(tiny_pack, tmp_path):
    path = export_control_vector(tiny_pack, tmp_path / "axis.gguf", 1.0)
    with pytest.raises(PackError, match=r"hidden size 64, .* has hidden size 96"):
        import_control_vector(path, make_model(hidden=96))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF but not really")
    with pytest.raises(PackError, match="not a readable GGUF"):
        import_control_vector(junk)


def test_cli_export_then_import(tiny_pack, tmp_path, model_dir):
    pack = tiny_pack.save(tmp_path / "p.safetensors")
    exported = run_cli("export", str(pack), "--out", str(tmp_path / "p.gguf"), "--strength", "-1")
    assert exported.returncode == 0, exported.stderr
    layers = json.loads(exported.stdout)["layers"]
    back = tmp_path / "back.safetensors"
    imported = run_cli("import", str(tmp_path / "p.gguf"), "--out", str(back), "--model",
                       str(model_dir))  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["layers"] == layers


def _peer_reference(peer: str) -> dict[float, float]:
    """The VADER shift the peer's own code gave with its file (`bench/interop_reference.py`,
    which trained both files in tests/data and wrote tests/data/peer-reference.log)."""
    log = (Path(__file__).parent / "data" / "peer-reference.log").read_text().splitlines()
    return {float(k): v for k, v in json.loads(log[-1])[peer]["own"].items()}


@pytest.mark.real_model
def test_a_repeng_written_control_vector_steers_our_engine_with_repengs_sign(real_lm):
    """tests/data/repeng-cheerful.gguf: trained and written by repeng 0.4.0 on the embedded
    SmolLM2 (cheerful vs gloomy personas, 24 seed queries, layers 1–29). Our engine with the
    imported file (mean_diff, every layer, every position, as repeng applies it) moves VADER as
    repeng's own ControlModel did at ±2 on these prompts (+0.178 / −0.440 in the log)."""
    pack = import_control_vector(Path(__file__).parent / "data" / "repeng-cheerful.gguf", real_lm)
    reference = _peer_reference("repeng")
    shift = _tone_shift_as_peers_apply(real_lm, pack, tuple(reference))
    for strength, own in reference.items():
        assert shift[strength] == pytest.approx(own, abs=0.02), strength
    assert reference[2.0] > 0 > reference[-2.0]


def test_a_steering_vector_file_adds_exactly_its_vectors_at_every_position(tiny_llama, tmp_path):
    torch.manual_seed(3)
    vectors = {0: torch.randn(64), 2: 0.5 * torch.randn(64)}
    path = save_steering_vector(vectors, tmp_path / "sv.safetensors", model_hint="tiny")
    pack = import_steering_vector(path, tiny_llama, name="mine")
    assert pack.name == "mine" and pack.ranks() == [1, 0, 1]
    # steered as its makers apply it (a plain add at every position) unless told otherwise
    settings = SteerSettings(band=ALL_LAYERS)
    for strength in (1.0, -2.0):
        (ours,) = generate(tiny_llama, ["hi"], {pack: strength}, settings, sampling=GREEDY)
        by_hand = Edit(
            tuple(
                LayerEdit(i, strength * v[None], 1.0, "add", "residual") for i, v in vectors.items()
            ),
            positions="all",
        )
        (expected,) = generate_rows(tiny_llama, [Row("hi", by_hand)], GREEDY)
        assert ours.edited == expected.text and ours.edited != ours.base
    assert load_axis_file(path, tiny_llama).layers[2].mean_difference.allclose(vectors[2])


def test_load_axis_file_tells_packs_steering_vectors_and_foreign_files_apart(
    tiny_llama, tiny_pack, tmp_path
):
    from safetensors.torch import save_file

    saved = tiny_pack.save(tmp_path / "pack.safetensors")
    assert load_axis_file(saved, tiny_llama).axis == tiny_pack.axis
    save_file({"model.embed.weight": torch.zeros(2, 64)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(PackError, match="not named by a layer index"):
        load_axis_file(tmp_path / "weights.safetensors", tiny_llama)
    save_file({"3": torch.zeros(64)}, str(tmp_path / "attn.safetensors"), {"layer_type": "attn"})
    with pytest.raises(PackError, match="only 'decoder_block'"):
        load_axis_file(tmp_path / "attn.safetensors")
    path = save_steering_vector({5: torch.ones(64)}, tmp_path / "deep.safetensors")
    with pytest.raises(PackError, match="layers up to 5"):
        load_axis_file(path, tiny_llama)
    with pytest.raises(PackError, match="Cannot read"):
        import_steering_vector(tmp_path / "missing.safetensors")


@pytest.mark.real_model
def test_a_steering_vectors_file_steers_our_engine_as_steering_vectors_does(real_lm):
    """tests/data/steering-vectors-cheerful.safetensors: trained by steering-vectors 0.12.2 on the
    embedded SmolLM2 (cheerful vs gloomy persona prompts, 24 seed queries, last prompt token,
    layers 8–20) and saved with `save_steering_vector`. Our engine moves VADER as
    steering-vectors' own `apply` did at multiplier ±0.5 (+0.436 / −0.511 in the log)."""
    path = Path(__file__).parent / "data" / "steering-vectors-cheerful.safetensors"
    reference = _peer_reference("steering_vectors")
    shift = _tone_shift_as_peers_apply(real_lm, load_axis_file(path, real_lm), tuple(reference))
    for strength, own in reference.items():
        assert shift[strength] == pytest.approx(own, abs=0.02), strength
    assert reference[0.5] > 0 > reference[-0.5]


def _tone_shift_as_peers_apply(lm, pack, strengths) -> dict[float, float]:
    """Mean VADER edited − base on 6 dev prompts (48 tokens), the file applied as repeng and
    steering-vectors apply theirs: `caa`, every layer it holds, every position."""
    import statistics

    from alignez_core.axes.axis import ASSETS
    from alignez_core.axes.queries import read_queries
    from alignez_core.measure.judges import tone

    prompts = read_queries(ASSETS / "dev_prompts.txt").queries[:6]
    settings = SteerSettings(rule="mean_diff", band=ALL_LAYERS, positions="all")
    shift = {}
    for strength in strengths:
        # plain greedy, as the peers' own generate decoded their reference numbers
        answers = generate(
            lm, prompts, {pack: strength}, settings, SamplingConfig(48, loop_guard=0)
        )
        base = statistics.mean(tone([a.base for a in answers]))
        shift[strength] = statistics.mean(tone([a.edited for a in answers])) - base
    return shift
