import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

from alignez_core.engine.architecture import find_decoder_layout
from alignez_core.errors import UnsupportedModelError


def test_layout_found_for_llama_qwen2_gemma(tiny_any):
    layout = tiny_any.layout
    assert layout.num_layers == 3
    assert layout.layers_path.endswith("layers")
    assert all(type(m).__name__.endswith("MLP") for m in layout.mlps)


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (
            GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50)),
            "transformer.h",
        ),
        (
            MistralForCausalLM(
                MistralConfig(
                    num_hidden_layers=2,
                    hidden_size=32,
                    intermediate_size=64,
                    num_attention_heads=2,
                    num_key_value_heads=1,
                    vocab_size=50,
                )
            ),
            "model.layers",
        ),
    ],
)
def test_layout_found_for_gpt2_and_mistral(model, path):
    layout = find_decoder_layout(model)
    assert layout.layers_path == path
    assert layout.num_layers == 2


def test_unmappable_model_names_its_class():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(UnsupportedModelError, match="model class Odd"):
        find_decoder_layout(Odd())
