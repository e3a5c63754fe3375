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


def _tiny(arch: str, vocab: int, pad: int):
    """A 2-layer random model of each layout the README names, built in code."""
    import transformers as tf

    common = {"vocab_size": vocab, "num_hidden_layers": 2, "hidden_size": 32,
              "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
              "pad_token_id": pad}  # fmt: skip
    # no logit soft-capping: it flattens the sharpened random logits to one token
    gemma = {"head_dim": 16, "final_logit_softcapping": None, "tie_word_embeddings": False}
    built = {
        "gemma2": lambda: tf.Gemma2ForCausalLM(tf.Gemma2Config(**common, **gemma)),
        "gemma3": lambda: tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**common, **gemma)),
        "phi3": lambda: tf.Phi3ForCausalLM(tf.Phi3Config(**common)),
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(**common)),
        "gpt_neox": lambda: tf.GPTNeoXForCausalLM(
            tf.GPTNeoXConfig(
                vocab_size=vocab,
                num_hidden_layers=2,
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=2,
            )
        ),
        "gpt2": lambda: tf.GPT2LMHeadModel(
            tf.GPT2Config(vocab_size=vocab, n_layer=2, n_embd=32, n_head=2)
        ),
    }
    torch.manual_seed(0)
    return built[arch]()


@pytest.mark.parametrize("arch", ["gemma2", "gemma3", "phi3", "mistral", "gpt_neox", "gpt2"])
def test_every_named_layout_generates_with_a_per_row_edit(arch):
    """README names these layouts: each is found, and an edit changes only its own row."""
    from alignez_core.engine import Edit, LayerEdit, LoadedModel, Row, SamplingConfig, generate_rows
    from tests.toy import byte_tokenizer

    tokenizer = byte_tokenizer(chat=False)
    model = _tiny(arch, len(tokenizer), tokenizer.pad_token_id)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)  # sharper logits: stable greedy tokens
        model.get_output_embeddings().weight[tokenizer.eos_token_id].fill_(0.0)
    lm = LoadedModel.wrap(model, tokenizer, f"tiny-{arch}")
    assert lm.num_layers == 2
    direction = torch.randn(1, 32)
    edit = Edit(tuple(LayerEdit(i, direction, 8.0, "add", "residual") for i in (0, 1)), "all")
    config = SamplingConfig(max_new_tokens=8, min_new_tokens=8)
    base, edited = generate_rows(lm, [Row("hi"), Row("hi", edit)], config)
    (alone,) = generate_rows(lm, [Row("hi")], config)
    assert base.token_ids == alone.token_ids and edited.token_ids != base.token_ids
    mlp_edit = Edit((LayerEdit(0, direction, 8.0, "add", "mlp"),), "all")
    (mlp,) = generate_rows(lm, [Row("hi", mlp_edit)], config)
    assert mlp.token_ids != base.token_ids  # the MLP site is found and edited too
