"""Self-generated preference pairs: the model writes its own good and bad answers
(docs/method.md §2).

Two stages, both run by the model being steered, each as few batched `generate` calls:
1. insights: what a {pos} / {neg} assistant's answer to q should do (short);
2. answers: q answered while conditioned on that insight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alignez_core.axes.axis import Axis
from alignez_core.axes.pack import PreferencePair
from alignez_core.axes.queries import MAX_QUERY_CHARS
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitCancelled, FitError

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PairConfig:
    """How the model writes its own pairs. Sample 0 is greedy; later samples use temperature."""

    insight_tokens: int = 40
    answer_tokens: int = 64
    samples_per_pole: int = 1
    temperature: float = 0.7
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.samples_per_pole <= 8:
            raise FitError(f"samples_per_pole must be 1–8, got {self.samples_per_pole}.")
        if self.insight_tokens < 1 or self.answer_tokens < 1:
            raise FitError("insight_tokens and answer_tokens must be ≥ 1.")


def insight_prompt(axis: Axis, query: str, positive: bool) -> str:
    if positive:
        return f"{query}\nYou are a {axis.persona(True)}. Your answer to this query should: "
    return f"{query}\nPretend you are a {axis.persona(False)}. Your response to this query should: "


def persona_prompt(axis: Axis, query: str, positive: bool) -> str:
    """The pole asked for as an instruction before the query: what the `persona` readout reads
    (the recipe of steering-vectors / repeng users), with no answer generated."""
    return f"Act as a {axis.persona(positive)}. {query}"


def answer_prompt(axis: Axis, query: str, positive: bool, insight: str) -> str:
    role = (
        f"You are a {axis.persona(True)}"
        if positive
        else f"Pretend you are a {axis.persona(False)}"
    )
    return f"{role}. Your answer should {insight}\n{query}"


def _clean_insight(text: str, axis: Axis, positive: bool) -> str:
    text = " ".join(text.split()).strip()
    if not text:
        return f"be {axis.positive if positive else axis.negative}."
    return text if text.endswith((".", "!", "?")) else text + "."


def _run_batched(
    lm: LoadedModel,
    prompts: Sequence[str],
    sampling: Sequence[SamplingConfig],
    batch_size: int,
    stage: str,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> list[str]:
    """Generate prompts[i] with sampling[i], grouped by config and chunked into batches."""
    outputs: list[str | None] = [None] * len(prompts)
    groups: dict[SamplingConfig, list[int]] = {}
    for i, config in enumerate(sampling):
        groups.setdefault(config, []).append(i)
    done = 0
    for config, indices in groups.items():
        for start in range(0, len(indices), batch_size):
            if cancel is not None and cancel.is_set():
                raise FitCancelled("Fit cancelled.")
            chunk = indices[start : start + batch_size]
            results = generate_rows(lm, [Row(prompts[i]) for i in chunk], config, cancel)
            if cancel is not None and cancel.is_set():
                raise FitCancelled("Fit cancelled.")
            for i, result in zip(chunk, results, strict=True):
                outputs[i] = result.text
            done += len(chunk)
            if progress is not None:
                progress(stage, done, len(prompts))
    return [o or "" for o in outputs]


def generate_pairs(
    lm: LoadedModel,
    axis: Axis,
    queries: Sequence[str],
    config: PairConfig = PairConfig(),
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> list[PreferencePair]:
    """Both stages for every query × pole × sample; pairs whose answers are empty are dropped."""
    queries = [q.strip()[:MAX_QUERY_CHARS] for q in queries if q and q.strip()]
    if not queries:
        raise FitError("No queries to build pairs from.")
    samples = range(config.samples_per_pole)

    def sampling(sample: int, tokens: int) -> SamplingConfig:
        temperature = 0.0 if sample == 0 else config.temperature
        return SamplingConfig(tokens, temperature=temperature, seed=config.seed + sample)

    # Stage 1: one insight per query × pole × sample.
    keys = [(q, pole, s) for q in queries for s in samples for pole in (True, False)]
    insights_raw = _run_batched(
        lm,
        [insight_prompt(axis, q, pole) for q, pole, _ in keys],
        [sampling(s, config.insight_tokens) for _, _, s in keys],
        config.batch_size,
        "insights",
        progress,
        cancel,
    )
    insights = [
        _clean_insight(text, axis, pole)
        for text, (_, pole, _) in zip(insights_raw, keys, strict=True)
    ]
    # Stage 2: the conditioned answers.
    answers = _run_batched(
        lm,
        [
            answer_prompt(axis, q, pole, ins)
            for (q, pole, _), ins in zip(keys, insights, strict=True)
        ],
        [sampling(s, config.answer_tokens) for _, _, s in keys],
        config.batch_size,
        "answers",
        progress,
        cancel,
    )
    pairs = []
    for i in range(0, len(keys), 2):
        query, _, sample = keys[i]
        positive, negative = answers[i].strip(), answers[i + 1].strip()
        if positive and negative:
            pairs.append(
                PreferencePair(query, positive, negative, insights[i], insights[i + 1], sample)
            )
    if not pairs:
        raise FitError(
            f"The model produced no usable answer pairs for {axis.positive} ↔ {axis.negative} "
            f"({len(keys) // 2} tried): every answer for at least one pole was empty."
        )
    return pairs
