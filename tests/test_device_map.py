"""A model split by accelerate's device_map (CPU + disk offload here) steers exactly like the
whole model: edits run on their layer's device, activations gather onto one."""

from __future__ import annotations

import torch

from alignez_core import load_model
from alignez_core.engine.activations import answer_embeddings
from alignez_core.engine.edit import Edit, LayerEdit
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from tests.tiny import make_model


def _split(tmp_path):
    whole = make_model("llama", layers=4, hidden=64)
    folder = tmp_path / "tiny"
    whole.model.save_pretrained(folder)
    whole.tokenizer.save_pretrained(folder)
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "disk",
        "model.layers.3": "cpu",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    split = load_model(str(folder), device_map=device_map, offload_folder=tmp_path / "offload")
    return whole, split


def test_split_model_edits_equal_the_whole_model_token_for_token(tmp_path):
    whole, split = _split(tmp_path)
    assert set(split.model.hf_device_map.values()) == {"cpu", "disk"}
    # offloaded weights wait on "meta" between calls; the edit still runs where the layer runs
    assert next(split.layout.blocks[1].parameters()).device.type == "meta"
    assert split.layer_device("residual", 1) == torch.device("cpu")
    torch.manual_seed(0)
    direction = torch.randn(1, 64)
    edit = Edit(
        tuple(
            LayerEdit(i, direction / direction.norm(), 0.8, "scaled_add", "residual")
            for i in (1, 2)
        ),
        positions="all",
    )
    rows = [Row("hello there"), Row("hello there", edit)]
    config = SamplingConfig(max_new_tokens=16)
    expected = [o.token_ids for o in generate_rows(whole, rows, config)]
    assert expected[0] != expected[1]
    assert [o.token_ids for o in generate_rows(split, rows, config)] == expected
    got = answer_embeddings(split, ["q"], ["an answer"], "mean")
    want = answer_embeddings(whole, ["q"], ["an answer"], "mean")
    torch.testing.assert_close(got, want)


def test_each_layer_edit_is_compiled_for_its_own_layers_device(monkeypatch):
    """Layers on distinct devices, as accelerate's hooks report them (the CPU and "meta", both
    real torch devices here): every edit's directions go to its own layer's device, not the
    model's — a router that always answered the input device would put them all on the CPU."""
    from types import SimpleNamespace

    from alignez_core.engine import edit as edit_module

    lm = make_model("llama", layers=4, hidden=64)
    where = ["cpu", "meta", "cpu", "meta"]
    lm.model.hf_device_map = {f"model.layers.{i}": d for i, d in enumerate(where)}
    for block, device in zip(lm.layout.blocks, where, strict=True):
        block._hf_hook = SimpleNamespace(execution_device=device)  # accelerate's AlignDevicesHook
    lm.model.get_input_embeddings()._hf_hook = SimpleNamespace(execution_device="cpu")
    assert lm.device == torch.device("cpu")
    assert [lm.layer_device("residual", i).type for i in range(4)] == where
    placed: list[str] = []
    original = edit_module.edit_kernel

    def recording(rule, directions, strength):
        placed.append(directions.device.type)
        return original(rule, directions, strength)

    monkeypatch.setattr(edit_module, "edit_kernel", recording)
    items = tuple(LayerEdit(i, torch.ones(1, 64), 1.0, "add", "residual") for i in range(4))
    edit_module.compile_plan([Edit(items)], lm.num_layers, lm.hidden_size, lm.layer_device)
    assert placed == where
