"""Self-generated preference pairs: the model writes its own good and bad answers
(docs/method.md §2).

How an answer is asked for (`PairConfig.ask`), each as few batched `generate` calls:
- `insight`, two stages: what a {pos} / {neg} assistant's answer to q should do (short), then q
  answered while conditioned on that insight (the paper's; what an instruct model follows);
- `persona`, one stage: the pole as an instruction before q.

Which answers make a query's pair (`PairConfig.select`): `each` sample's two answers, or by
`contrast`: the model itself scores every answer it wrote for q, both poles' and every sample's,
and the pair is the one it finds most and least like the positive pole. A pretrained model
follows a pole instruction only now and then; choosing among samples is how its pairs come to
point the right way (docs/models.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from alignez_core.axes.axis import Axis
from alignez_core.axes.pack import PreferencePair
from alignez_core.axes.queries import MAX_QUERY_CHARS
from alignez_core.engine.catalog import ModelKind
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitCancelled, FitError
from alignez_core.measure.judges import perplexities

ProgressFn = Callable[[str, int, int], None]
Ask = Literal["insight", "persona"]
Select = Literal["each", "contrast"]
ASKS: tuple[str, ...] = ("insight", "persona")
SELECTS: tuple[str, ...] = ("each", "contrast")


@dataclass(frozen=True)
class PairConfig:
    """How the model writes its own pairs. Sample 0 is greedy; later samples use temperature.

    `ask` and `select` are described in the module's docstring; `contrast` makes one pair per
    query from all its samples (with one sample it orders the two greedy answers), `each` one
    pair per sample."""

    insight_tokens: int = 40
    answer_tokens: int = 64
    samples_per_pole: int = 1
    temperature: float = 0.7
    seed: int = 0
    batch_size: int = 32
    ask: Ask = "insight"
    select: Select = "each"

    def __post_init__(self) -> None:
        if not 1 <= self.samples_per_pole <= 8:
            raise FitError(f"samples_per_pole must be 1–8, got {self.samples_per_pole}.")
        if self.ask not in ASKS:
            raise FitError(f"ask must be one of {', '.join(ASKS)}, got {self.ask!r}.")
        if self.select not in SELECTS:
            raise FitError(f"select must be one of {', '.join(SELECTS)}, got {self.select!r}.")
        if self.insight_tokens < 1 or self.answer_tokens < 1:
            raise FitError("insight_tokens and answer_tokens must be ≥ 1.")


# A pretrained model follows "Act as a … assistant" only now and then, and an insight stage
# before the answer not at all: on Gemma 3 270M, 4 samples per pole chosen by contrast put the
# positive answer on the positive side for far more pairs than one greedy sample (docs/models.md).
BASE_PAIRS = PairConfig(ask="persona", samples_per_pole=4, select="contrast")


def pairs_for_kind(kind: ModelKind) -> PairConfig:
    """How a model of this kind writes its pairs unless told otherwise."""
    return BASE_PAIRS if kind == "base" else PairConfig()


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
    """Every query × pole × sample answered as `config.ask` says, then paired as `config.select`
    says; pairs whose answers are empty are dropped."""
    queries = [q.strip()[:MAX_QUERY_CHARS] for q in queries if q and q.strip()]
    if not queries:
        raise FitError("No queries to build pairs from.")
    samples = range(config.samples_per_pole)

    def sampling(sample: int, tokens: int) -> SamplingConfig:
        temperature = 0.0 if sample == 0 else config.temperature
        return SamplingConfig(tokens, temperature=temperature, seed=config.seed + sample)

    keys = [(q, pole, s) for q in queries for s in samples for pole in (True, False)]
    if config.ask == "insight":
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
        prompts = [
            answer_prompt(axis, q, pole, ins)
            for (q, pole, _), ins in zip(keys, insights, strict=True)
        ]
    else:
        insights = [""] * len(keys)
        prompts = [persona_prompt(axis, q, pole) for q, pole, _ in keys]
    answers = _run_batched(
        lm,
        prompts,
        [sampling(s, config.answer_tokens) for _, _, s in keys],
        config.batch_size,
        "answers",
        progress,
        cancel,
    )
    answers = [a.strip() for a in answers]
    if config.select == "contrast":
        pairs = _contrast_pairs(lm, axis, keys, answers, insights, progress, cancel)
    else:
        pairs = [
            PreferencePair(
                keys[i][0], answers[i], answers[i + 1], insights[i], insights[i + 1], keys[i][2]
            )
            for i in range(0, len(keys), 2)
            if answers[i] and answers[i + 1]
        ]
    if not pairs:
        raise FitError(
            f"The model produced no usable answer pairs for {axis.positive} ↔ {axis.negative} "
            f"({len(keys) // 2} tried): every answer for at least one pole was empty."
        )
    return pairs


def contrast_scores(lm: LoadedModel, axis: Axis, query: str, answers: Sequence[str]) -> list[float]:
    """How much likelier the model finds each answer to `query` when asked for the positive pole
    than for the negative: mean log-probability per token under the positive persona prompt
    minus under the negative one. The model's own judgement, no outside judge."""
    spaced = [lm.answer_after_prompt(a) for a in answers]
    positive = perplexities(lm, [persona_prompt(axis, query, True)] * len(spaced), spaced)
    negative = perplexities(lm, [persona_prompt(axis, query, False)] * len(spaced), spaced)
    return [math.log(n) - math.log(p) for p, n in zip(positive, negative, strict=True)]


def _contrast_pairs(
    lm: LoadedModel,
    axis: Axis,
    keys: Sequence[tuple[str, bool, int]],
    answers: Sequence[str],
    insights: Sequence[str],
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> list[PreferencePair]:
    """Per query, of all its distinct answers (both poles, every sample), the one scored most
    like the positive pole against the one scored least; a query with one distinct answer gives
    no pair."""
    by_query: dict[str, dict[str, int]] = {}
    for i, ((query, _, _), answer) in enumerate(zip(keys, answers, strict=True)):
        if answer:
            by_query.setdefault(query, {}).setdefault(answer, i)
    pairs = []
    for done, (query, first_of) in enumerate(by_query.items(), 1):
        if cancel is not None and cancel.is_set():
            raise FitCancelled("Fit cancelled.")
        if len(first_of) >= 2:
            texts = list(first_of)
            scores = contrast_scores(lm, axis, query, texts)
            ranked = sorted(range(len(texts)), key=lambda k: scores[k])
            best, worst = first_of[texts[ranked[-1]]], first_of[texts[ranked[0]]]
            pairs.append(
                PreferencePair(
                    query,
                    answers[best],
                    answers[worst],
                    insights[best],
                    insights[worst],
                    keys[best][2],
                )
            )
        if progress is not None:
            progress("contrast", done, len(by_query))
    return pairs
