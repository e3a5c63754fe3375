import torch

from alignez_core.engine.activations import answer_embeddings, pooled_outputs, query_embeddings


def manual_outputs(lm, text: str, site: str = "mlp") -> torch.Tensor:
    """(L, T, d) MLP or decoder-block outputs of one unpadded text, read with plain hooks."""
    outputs = {}

    def keep(i, output):
        outputs[i] = (output[0] if isinstance(output, tuple) else output)[0]

    modules = lm.layout.mlps if site == "mlp" else lm.layout.blocks
    handles = [
        module.register_forward_hook(lambda m, a, o, i=i: keep(i, o))
        for i, module in enumerate(modules)
    ]
    try:
        enc = lm.encode(text, return_tensors="pt")
        with torch.no_grad():
            lm.model(**enc)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([outputs[i] for i in range(lm.num_layers)])


def test_last_token_is_right_under_left_padding(tiny_any):
    texts = ["short", "a considerably longer text that forces padding"]
    batched = pooled_outputs(tiny_any, texts, [1, 1], "last", "mlp")
    for i, text in enumerate(texts):
        expected = manual_outputs(tiny_any, text)[:, -1]
        assert torch.allclose(batched[i], expected, atol=1e-4)
    assert batched.shape == (2, tiny_any.num_layers, tiny_any.hidden_size)


QUERY, ANSWER = "why?", "because it is so"


def pooled_answer_and_manual(lm, site: str):
    """Our mean-pooled answer embedding at `site`, the manual per-token reads, the prompt length."""
    pooled = answer_embeddings(
        lm, [QUERY, "x"], [ANSWER, "a much longer answer here"], "mean", site
    )
    full = lm.format_prompt(QUERY, ANSWER)
    prompt_len = len(lm.tokenizer(lm.format_prompt(QUERY))["input_ids"])
    return pooled, manual_outputs(lm, full, site), prompt_len


def test_mean_pools_over_the_answer_tokens_only(tiny_llama):
    pooled, per_token, prompt_len = pooled_answer_and_manual(tiny_llama, "mlp")
    assert torch.allclose(pooled[0], per_token[:, prompt_len:].mean(dim=1), atol=1e-4)


def test_residual_readout_is_the_decoder_layers_output_pooled(tiny_any):
    pooled, per_token, prompt_len = pooled_answer_and_manual(tiny_any, "residual")
    assert torch.allclose(pooled[0], per_token[:, prompt_len:].mean(dim=1), atol=1e-4)
    full = tiny_any.format_prompt(QUERY, ANSWER)
    # ... and it is not the MLP output: the two sites are different readouts.
    assert not torch.allclose(pooled[0], manual_outputs(tiny_any, full)[:, prompt_len:].mean(1))
    # The last hidden state HF reports is after the final norm; ours is the block's own output.
    enc = tiny_any.encode(full, return_tensors="pt")
    with torch.no_grad():
        states = tiny_any.backbone(**enc, output_hidden_states=True).hidden_states
    assert torch.allclose(pooled[0][0], states[1][0, prompt_len:].mean(0), atol=1e-4)


def test_query_embedding_reads_the_prompt_alone(tiny_llama):
    for site in ("mlp", "residual"):
        emb = query_embeddings(tiny_llama, ["hello there"], "last", site)
        prompt = tiny_llama.format_prompt("hello there")
        assert torch.allclose(emb[0], manual_outputs(tiny_llama, prompt, site)[:, -1], atol=1e-4)
    assert tiny_llama.hooks.installed == 0


def test_query_embeddings_are_cached_per_prompt_and_pooling(tiny_llama, monkeypatch):
    from alignez_core.engine import activations

    tiny_llama.query_cache.clear()
    calls = []
    real = activations.pooled_outputs
    monkeypatch.setattr(
        activations,
        "pooled_outputs",
        lambda lm, texts, *a: calls.append(texts) or real(lm, texts, *a),
    )
    first = query_embeddings(tiny_llama, ["a", "b", "a"], "last")
    again = query_embeddings(tiny_llama, ["b", "a"], "last")
    assert torch.equal(first[0], first[2]) and torch.equal(again[1], first[0])
    assert len(calls) == 1 and len(calls[0]) == 2  # "a" and "b" read once, in one batch
    query_embeddings(tiny_llama, ["a"], "mean")
    assert len(calls) == 2  # another pooling is another entry
    query_embeddings(tiny_llama, ["a"], "last", "mlp")
    assert len(calls) == 3  # and so is another site


def test_reading_activations_skips_the_lm_head(tiny_any):
    calls = []
    handle = tiny_any.model.lm_head.register_forward_hook(lambda *args: calls.append(1))
    try:
        pooled = pooled_outputs(tiny_any, ["a prompt", "another one"], [2, 2], "mean")
    finally:
        handle.remove()
    assert calls == []  # the backbone ran, not the vocabulary projection
    assert tiny_any.backbone is not tiny_any.model
    assert torch.isfinite(pooled).all()
