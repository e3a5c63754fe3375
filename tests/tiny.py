"""Tiny randomly initialised models and a byte-level tokenizer, built in code (milliseconds)."""

from __future__ import annotations

import time

import torch
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from alignez_core import LoadedModel
from tests.toy import byte_tokenizer

ARCHES = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
    "gemma": (GemmaConfig, GemmaForCausalLM, {"head_dim": 16}),
}


def make_model(arch: str = "llama", layers: int = 3, hidden: int = 64, seed: int = 0, chat=True):
    tokenizer = byte_tokenizer(chat=chat)
    config_cls, model_cls, extra = ARCHES[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
        **extra,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    # Random init is near-uniform; sharpen the logits so greedy decoding is stable and varied.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
        model.lm_head.weight[tokenizer.eos_token_id].fill_(0.0)
    return LoadedModel.wrap(model, tokenizer, f"tiny-{arch}")


def wait_until_idle(lm, seconds: float = 30) -> None:
    """The batch's hooks are gone once it ends (a request may return before its batch does)."""
    deadline = time.monotonic() + seconds
    while lm.hooks.installed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lm.hooks.installed == 0
