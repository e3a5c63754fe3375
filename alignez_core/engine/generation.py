"""Batched generation where every row carries its own edit, with streaming.

One call runs N rows (prompt, edit) as one left-padded batch: base vs edited costs one batched
pass, not two runs. Sampling uses one generator per row seeded alike, so a base row and an
edited row of the same prompt draw the same random numbers and differ only by the edit.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from alignez_core.errors import AlignEZError

from .architecture import Site
from .edit import Edit, compile_plan
from .model import LoadedModel
from .turns import TurnEnd, answer_of_turn, answer_so_far, tokens_of_turn, turn_end

LOOP_GUARD_SPANS = range(2, 65)  # span lengths the loop guard takes (0 in a config: off)


@dataclass(frozen=True)
class SamplingConfig:
    """How to decode. temperature 0 means greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    min_new_tokens: int = 0
    repetition_penalty: float = 1.0  # > 1 discourages repeating tokens already in the text
    # An answer never repeats one of its own spans of this many tokens word for word (0: off).
    # Greedy decoding on a small model falls into loops that restate a sentence verbatim, the
    # more so under a strong edit; 8 tokens almost never recur in a fluent answer. Measured on
    # 70 held-out prompts (docs/RESULTS.md): cheerful at c 0.02 loops 8 → 2 of 70 at −1, base
    # answers unchanged in tone and perplexity (+0.2 %).
    loop_guard: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise AlignEZError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}.")
        if not 0.0 <= self.temperature <= 5.0:
            raise AlignEZError(f"temperature must be in [0, 5], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise AlignEZError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not 1.0 <= self.repetition_penalty <= 2.0:
            raise AlignEZError(
                f"repetition_penalty must be in [1, 2], got {self.repetition_penalty}."
            )
        if self.loop_guard != 0 and self.loop_guard not in LOOP_GUARD_SPANS:
            raise AlignEZError(f"loop_guard must be 0 (off) or 2–64 tokens, got {self.loop_guard}.")


@dataclass(frozen=True)
class Row:
    """One row of a batch: the user's prompt and what to edit (None = the base model)."""

    prompt: str
    edit: Edit | None = None
    raw: bool = False  # True: `prompt` is already the full model input (no chat template)


@dataclass(frozen=True)
class RowOutput:
    text: str
    token_ids: tuple[int, ...]


class _RowSampler(LogitsProcessor):
    """Sample each row with its own generator, then mask so greedy picks that token.

    Row i's draws depend only on its own settings, seed and logits, not on the other rows; a
    row at temperature 0 takes the most likely token (what greedy decoding would).
    """

    def __init__(self, configs: Sequence[SamplingConfig]) -> None:
        self.configs = list(configs)
        self.generators = [torch.Generator().manual_seed(c.seed) for c in self.configs]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        draws = []
        for row, (config, generator) in enumerate(zip(self.configs, self.generators, strict=True)):
            if config.temperature == 0:
                draws.append(scores[row].argmax(-1, keepdim=True).cpu())
                continue
            probs = torch.softmax(scores[row].float() / config.temperature, dim=-1).cpu()
            if config.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                drop = sorted_probs.cumsum(dim=-1) - sorted_probs > config.top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            draws.append(torch.multinomial(probs, 1, generator=generator))
        # rows past these are the padding a compiled batch adds (`compiled.py`): greedy, discarded
        draws += [p.argmax(-1, keepdim=True).cpu() for p in scores[len(self.configs) :]]
        chosen = torch.stack(draws).to(scores.device)
        masked = torch.full_like(scores, float("-inf"))
        return cast(torch.FloatTensor, masked.scatter(-1, chosen, 0.0))


class LoopGuard(LogitsProcessor):
    """Ban the token that would complete a verbatim repeat of a `size`-token span of the answer.

    Only the answer's own tokens count (an answer may quote its prompt). Each row keeps its
    answer and, for every (size − 1)-token span seen, the tokens that followed it; a step reads
    only the tokens added since the last one. `prompt_length` None: the length of the first
    call's input (a `transformers` `generate` call's prompt); one instance serves one call.
    """

    def __init__(self, size: int = 8, prompt_length: int | None = None) -> None:
        if size not in LOOP_GUARD_SPANS:
            raise AlignEZError(f"loop_guard must be 2–64 tokens, got {size}.")
        self.size = size
        self.start = prompt_length
        self.answers: list[list[int]] = []
        self.followers: list[dict[tuple[int, ...], set[int]]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        if not self.answers:
            self.answers = [[] for _ in range(input_ids.shape[0])]
            self.followers = [{} for _ in range(input_ids.shape[0])]
        fresh = input_ids[:, self.start + len(self.answers[0]) :].tolist()
        span = self.size - 1
        rows = zip(self.answers, self.followers, fresh, strict=True)
        for i, (answer, followers, tokens) in enumerate(rows):
            for token in tokens:
                answer.append(token)
                if len(answer) >= self.size:
                    followers.setdefault(tuple(answer[-self.size : -1]), set()).add(token)
            banned = followers.get(tuple(answer[-span:])) if len(answer) >= span else None
            if banned:
                scores[i, list(banned)] = float("-inf")
        return scores


class _Cancel(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        stop = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
        return cast(torch.BoolTensor, stop)


class RowStops(StoppingCriteria):
    """Per-row ends inside a shared batch: a row's own token limit, or its caller gone.

    `cancelled` is read every step (the scheduler flips a row's flag when its caller cancels
    or disconnects); a finished row pads while the others go on.
    """

    def __init__(self, limits: Sequence[int], prompt_length: int, cancelled: list[bool]) -> None:
        self.limits = torch.tensor(list(limits))
        self.prompt_length = prompt_length
        self.cancelled = cancelled

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        n = len(self.limits)
        made = input_ids.shape[1] - self.prompt_length
        stop = torch.ones(input_ids.shape[0], dtype=torch.bool)  # compiled padding rows: done
        stop[:n] = (self.limits <= made) | torch.tensor(self.cancelled[:n], dtype=torch.bool)
        return cast(torch.BoolTensor, stop.to(input_ids.device))


class _QueueStreamer(BaseStreamer):
    """Receives each step's (batch,) new tokens from `generate` and queues them."""

    def __init__(self, rows: int) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.rows = rows  # a compiled batch may carry padding rows after these
        self._prompt_seen = False
        self.started = False  # a token has been handed on

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        self.started = True
        self.queue.put(value.reshape(-1).tolist()[: self.rows])

    def end(self) -> None:
        self.queue.put(None)


class RowTexts:
    """Each row's answer as its tokens arrive, for a stream: a row ends at end-of-sequence, at
    `limit` tokens, or (a base model) where it opens a new turn; later tokens are not its own."""

    def __init__(self, lm: LoadedModel, rows: int, limit: int | None = None) -> None:
        self.tokenizer = lm.tokenizer
        self.eos = set(eos_ids(lm))
        self.ends_at_turn = not lm.is_chat
        self.limit = limit
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.texts = [""] * rows
        self.done = [False] * rows

    def add(self, step: Sequence[int]) -> list[str]:
        """Take one decoding step's tokens (one per row); the texts to show now."""
        if not all(self.done):
            for i, token in enumerate(step):
                if self.done[i]:
                    continue
                if token in self.eos:
                    self.done[i] = True
                else:
                    self.tokens[i].append(token)
            self.texts = [str(self.tokenizer.decode(t, skip_special_tokens=True))
                          for t in self.tokens]  # fmt: skip
            self.done = [
                d
                or (self.limit is not None and len(t) >= self.limit)
                or (self.ends_at_turn and turn_end(x) is not None)
                for d, t, x in zip(self.done, self.tokens, self.texts, strict=True)
            ]
        # a base model's stream holds back a last line that may be a turn marker arriving
        return [answer_so_far(t) for t in self.texts] if self.ends_at_turn else list(self.texts)

    def final(self) -> list[str] | None:
        """A base model's whole answers at the end (as `generate_rows` gives them); else None."""
        return [answer_of_turn(t) for t in self.texts] if self.ends_at_turn else None


def eos_ids(lm: LoadedModel) -> list[int]:
    ids = lm.model.generation_config.eos_token_id
    if ids is None:
        ids = lm.tokenizer.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return [int(i) for i in ids if i is not None]


SHARED_FIELDS = ("min_new_tokens", "repetition_penalty", "loop_guard")  # one per batch


def batch_key(config: SamplingConfig) -> tuple:
    """What rows must share to decode in one batch; the rest of a config is per row."""
    return tuple(getattr(config, name) for name in SHARED_FIELDS)


def prepare_batch(
    lm: LoadedModel,
    rows: Sequence[Row],
    configs: Sequence[SamplingConfig],
    cancelled: list[bool] | None = None,
) -> dict:
    """The batch's inputs, plan and `generate` settings; `configs` holds one config per row
    (equal in `SHARED_FIELDS`). `cancelled` (one flag per row) lets a caller end rows early."""
    if not rows:
        raise AlignEZError("Nothing to generate: no rows given.")
    if len(configs) != len(rows) or len({batch_key(c) for c in configs}) != 1:
        raise AlignEZError(f"One batch needs one config per row, equal in {SHARED_FIELDS}.")
    config = configs[0]
    texts = [row.prompt if row.raw else lm.format_prompt(row.prompt) for row in rows]
    encoded = lm.encode_batch(texts)
    prompt_length = encoded["input_ids"].shape[1]
    plan = compile_plan([row.edit for row in rows], lm.num_layers, lm.hidden_size, lm.layer_device)
    eos = eos_ids(lm)
    limits = [c.max_new_tokens for c in configs]
    generation_config = GenerationConfig(
        max_new_tokens=max(limits),
        min_new_tokens=config.min_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=config.repetition_penalty,
        pad_token_id=lm.tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    processors = LogitsProcessorList()
    if config.loop_guard:  # before sampling, so a sampled row never draws a banned token
        processors.append(LoopGuard(config.loop_guard, prompt_length))
    if any(c.temperature > 0 for c in configs):
        processors.append(_RowSampler(configs))
    stops: list[StoppingCriteria] = []
    if not lm.is_chat:  # a base model's answer ends where it opens the frame's next turn
        stops.append(TurnEnd(lm.tokenizer, prompt_length))
    if cancelled is not None or len(set(limits)) > 1:
        stops.append(RowStops(limits, prompt_length, cancelled or [False] * len(rows)))
    return {
        "inputs": dict(encoded),
        "plan": plan,
        "eos": set(eos),
        "ends_at_turn": not lm.is_chat,
        "kwargs": {"generation_config": generation_config, "logits_processor": processors},
        "stops": stops,
    }


def stopping_rules(prepared: dict, cancel: threading.Event | None) -> StoppingCriteriaList:
    """The call's stopping rules: the turn end (base models) and the caller's cancel switch."""
    stops = list(prepared["stops"])
    if cancel is not None:
        stops.append(_Cancel(cancel))
    return StoppingCriteriaList(stops)


def decode_batch(
    lm: LoadedModel,
    prepared: dict,
    edits: Sequence[Edit | None],
    kwargs: dict,
    traces: dict[int, list[torch.Tensor]] | None = None,
    trace_site: Site = "residual",
    on_path: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """`generate` through the compiled decoder where it can take this batch, else eagerly.

    Traces need the streamer (`stream_rows` passes one). `on_path` hears the path before
    decoding starts: "compiled", or "eager: " and why.
    """
    inputs, plan = prepared["inputs"], prepared["plan"]
    report = on_path or (lambda path: None)
    decoder = lm.compiled
    why: str | None
    if decoder is None:
        why = "compiled decoding is off"
    elif traces is not None and "streamer" not in kwargs:
        why = "a traced call without a streamer"
    else:
        why = decoder.supports(edits, *inputs["input_ids"].shape)
    if decoder is not None and why is None:
        started = functools.partial(report, "compiled")
        try:
            output = decoder.generate(
                inputs, edits, plan, traces=traces, trace_site=trace_site, started=started, **kwargs
            )
        except Exception as exc:  # compiling failed here: say why once, decode eagerly
            lm.disable_compile(f"it failed ({type(exc).__name__}: {exc})")
            streamer = kwargs.get("streamer")
            if streamer is not None and streamer.started:
                raise
            output, why = None, "compiling it failed"
        if output is not None:
            return output
        why = why or "the compiled step is busy with another batch"
    report(f"eager: {why}")
    with lm.hooks.applying(plan, traces, trace_site):
        return lm.model.generate(**inputs, **kwargs)  # type: ignore[operator]


def _trim(tokens: Sequence[int], eos: set[int]) -> list[int]:
    out: list[int] = []
    for token in tokens:
        if token in eos:
            break
        out.append(token)
    return out


def generate_rows(
    lm: LoadedModel,
    rows: Sequence[Row],
    config: SamplingConfig = SamplingConfig(),
    cancel: threading.Event | None = None,
) -> list[RowOutput]:
    """Generate every row in one batched pass; each row gets only its own edit.

    Setting `cancel` stops generation after the current token (the partial text is returned).
    """
    prepared = prepare_batch(lm, rows, [config] * len(rows))
    kwargs = dict(prepared["kwargs"])
    kwargs["stopping_criteria"] = stopping_rules(prepared, cancel)
    with torch.inference_mode():
        output = decode_batch(lm, prepared, [row.edit for row in rows], kwargs)
    start = prepared["inputs"]["input_ids"].shape[1]
    results = []
    for sequence in output[:, start:].tolist():
        tokens = _trim(sequence, prepared["eos"])
        text = str(lm.tokenizer.decode(tokens, skip_special_tokens=True))
        if prepared["ends_at_turn"]:
            text, tokens = answer_of_turn(text), tokens_of_turn(tokens, lm.tokenizer)
        results.append(RowOutput(text=text, token_ids=tuple(tokens)))
    return results


def stream_rows(
    lm: LoadedModel,
    rows: Sequence[Row],
    config: SamplingConfig = SamplingConfig(),
    traces: dict[int, list[torch.Tensor]] | None = None,
    trace_site: Site = "residual",
) -> Iterator[list[str]]:
    """Yield the growing text of every row as tokens arrive (one batched pass).

    Closing the iterator early stops generation; an exception in generation is re-raised here.
    `traces` ({layer: []}) collects each step's last-position state at `trace_site` (the site an
    axis was read at, so its directions project it; see `EditHooks`).
    """
    prepared = prepare_batch(lm, rows, [config] * len(rows))
    streamer = _QueueStreamer(len(rows))
    cancel = threading.Event()
    failure: list[BaseException] = []
    kwargs = dict(prepared["kwargs"])
    kwargs["stopping_criteria"] = stopping_rules(prepared, cancel)

    def run() -> None:
        try:
            with torch.inference_mode():
                edits = [row.edit for row in rows]
                with_streamer = kwargs | {"streamer": streamer}
                decode_batch(lm, prepared, edits, with_streamer, traces, trace_site)
        except BaseException as exc:  # handed to the consumer below
            failure.append(exc)
            streamer.end()

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(run,), daemon=True)
    worker.start()
    answers = RowTexts(lm, len(rows))
    try:
        while (step := streamer.queue.get()) is not None:
            yield answers.add(step)
        if failure:
            raise failure[0]
        if (final := answers.final()) is not None:
            yield final
    finally:
        cancel.set()
        worker.join()


def generate_grid(
    lm: LoadedModel,
    prompts: Sequence[str],
    edits: Sequence[Edit | None] = (None,),
    config: SamplingConfig = SamplingConfig(),
) -> list[list[str]]:
    """Every prompt under every edit, as one batch: `result[prompt_index][edit_index]`."""
    rows = [Row(prompt, edit) for prompt in prompts for edit in edits]
    outputs = generate_rows(lm, rows, config)
    width = len(edits)
    return [[o.text for o in outputs[i * width : (i + 1) * width]] for i in range(len(prompts))]
