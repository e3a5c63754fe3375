"""Embeddings Φ_l: every layer's output at a site for a text, pooled, in one batched forward.

Two choices (docs/method.md §3): the readout `site` — `residual` (the decoder block's output, the
default: on SmolLM2 its pair differences steer the right way) or `mlp` (the MLP's output, the
paper's site) — and the pooling — `last` (the scripts: last token) or `mean` (mean over the
answer's tokens, or over the prompt's tokens for a query embedding).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from alignez_core.errors import FitCancelled

from .architecture import SITES, Site
from .model import LoadedModel

Pooling = Literal["last", "mean"]
POOLINGS: tuple[str, ...] = ("last", "mean")


def _pool_weights(
    mask: torch.Tensor, span_lengths: Sequence[int], pooling: Pooling
) -> torch.Tensor:
    """(B, T) weights: one-hot on the last real token, or uniform over the last `span` tokens."""
    batch, length = mask.shape
    weights = torch.zeros(batch, length, dtype=torch.float32, device=mask.device)
    for row, span in enumerate(span_lengths):
        if pooling == "last":
            weights[row, -1] = 1.0
        else:
            span = max(1, min(int(span), int(mask[row].sum())))
            weights[row, length - span :] = 1.0 / span
    return weights


def _token_count(lm: LoadedModel, text: str) -> int:
    return len(lm.encode(text)["input_ids"])


@torch.inference_mode()
def pooled_outputs(
    lm: LoadedModel,
    texts: Sequence[str],
    span_lengths: Sequence[int],
    pooling: Pooling,
    site: Site = "residual",
    batch_size: int = 16,
    on_batch: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """(N, L, d) float32: every layer's output at `site` per text, pooled over its last `span`."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}.")
    chunks = []
    for start in range(0, len(texts), batch_size):
        if cancel is not None and cancel.is_set():
            raise FitCancelled("Fit cancelled.")
        encoded = lm.encode_batch(texts[start : start + batch_size])
        weights = _pool_weights(
            encoded["attention_mask"], span_lengths[start : start + batch_size], pooling
        )
        with lm.hooks.capturing(weights, site) as captured:
            lm.backbone(**encoded, use_cache=False)
        chunks.append(torch.stack([captured[layer] for layer in range(lm.num_layers)], dim=1))
        if on_batch is not None:
            on_batch(min(start + batch_size, len(texts)), len(texts))
    return torch.cat(chunks).float().cpu()


def answer_embeddings(
    lm: LoadedModel,
    queries: Sequence[str],
    answers: Sequence[str],
    pooling: Pooling,
    site: Site = "residual",
    batch_size: int = 16,
    on_batch: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """Φ_l(`user: q / assistant: answer`) at `site`, pooled over the answer's tokens: (N, L, d)."""
    texts, spans = [], []
    for query, answer in zip(queries, answers, strict=True):
        prefix = lm.format_prompt(query)
        full = lm.format_prompt(query, answer)
        texts.append(full)
        spans.append(_token_count(lm, full) - _token_count(lm, prefix))
    return pooled_outputs(lm, texts, spans, pooling, site, batch_size, on_batch, cancel)


def prompt_end_embeddings(
    lm: LoadedModel,
    prompts: Sequence[str],
    site: Site = "residual",
    batch_size: int = 16,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """Φ_l at the last token of each chat-formatted prompt, where the answer is about to start:
    (N, L, d)."""
    texts = [lm.format_prompt(p) for p in prompts]
    return pooled_outputs(lm, texts, [1] * len(texts), "last", site, batch_size, cancel=cancel)


def query_embeddings(
    lm: LoadedModel,
    queries: Sequence[str],
    pooling: Pooling,
    site: Site = "residual",
    batch_size: int = 16,
) -> torch.Tensor:
    """Φ_l(q) at `site`, read on the (chat-formatted) prompt alone: (N, L, d).

    Cached per model, prompt, pooling and site (`lm.query_cache`): moving a slider and
    generating the same prompt again costs no extra forward pass.
    """
    keys = [(q, pooling, site) for q in queries]
    missing = list(dict.fromkeys(k for k in keys if lm.query_cache.get(k) is None))
    if missing:
        texts = [lm.format_prompt(q) for q, _, _ in missing]
        spans = [_token_count(lm, t) for t in texts]
        fresh = pooled_outputs(lm, texts, spans, pooling, site, batch_size)
        for key, embedding in zip(missing, fresh, strict=True):
            lm.query_cache.put(key, embedding)
    return torch.stack([lm.query_cache.get(k) for k in keys])
