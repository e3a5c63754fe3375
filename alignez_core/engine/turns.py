"""Where a base model's answer ends: at the first line that starts a new turn of the frame.

A pretrained model answers in the plain `Human: … / Assistant:` frame (`LoadedModel.format_prompt`)
and, having no end-of-turn token, goes on to invent the next turns until the token limit. The
answer is what comes before the first line that opens a turn: "Human:", "User:", "Assistant:" in
any case, or after the first line a speaker's name and a colon ("Teacher: …"). Generation stops
there per row (the rest of the batch goes on), and the marker is not part of the answer. Chat
models end their turn with their own token and are not touched.
"""

from __future__ import annotations

import re
from typing import cast

import torch
from transformers.generation.stopping_criteria import StoppingCriteria

# A line (or the answer itself) that opens a turn: the frame's own markers and common variants.
TURN_MARKERS = ("human", "user", "assistant")
_TURN_START = re.compile(r"(?:^|\n)[ \t]*(?:" + "|".join(TURN_MARKERS) + r")[ \t]*:", re.IGNORECASE)
# A later line that opens with a speaker's name ("Teacher: …", "Bee: …"): a base model that has
# answered goes on to invent a dialogue. On Gemma 3 270M's answers to the 94 dev and tuning
# prompts every such line was an invented turn (6 of 6); the first line is never cut this way.
_NAME = r"[A-Z][A-Za-z]{0,15}"
_SPEAKER = re.compile(rf"\n[ \t]*{_NAME}(?: {_NAME})?[ \t]*:[ \t]*\S")
_MAYBE_SPEAKER = re.compile(rf"{_NAME}(?: {_NAME})?[ \t]*:?[ \t]*")


def turn_end(text: str) -> int | None:
    """The index where the answer in `text` ends (the start of its turn-opening line), or None."""
    ends = [m.start() for m in (_TURN_START.search(text), _SPEAKER.search(text)) if m is not None]
    return min(ends) if ends else None


def answer_of_turn(text: str) -> str:
    """`text` cut before the first new turn, trailing whitespace removed where it was cut."""
    end = turn_end(text)
    return text if end is None else text[:end].rstrip()


def answer_so_far(text: str) -> str:
    """What a stream shows of a growing answer: its turn, less a last line that may be the
    start of a marker still arriving ("\nHum" before "an:", "\nTeacher" before ":"), so no
    marker flickers into view."""
    text = answer_of_turn(text)
    line_start = text.rfind("\n") + 1
    last = text[line_start:].strip()
    maybe_marker = last and any(m.startswith(last.lower()) for m in TURN_MARKERS)
    maybe_speaker = line_start > 0 and _MAYBE_SPEAKER.fullmatch(last) is not None
    if maybe_marker or maybe_speaker:
        return text[:line_start].rstrip()
    return text


def tokens_of_turn(tokens: list[int], tokenizer) -> list[int]:
    """The longest prefix of `tokens` that stays inside the answer's turn (for scoring it)."""
    end = turn_end(str(tokenizer.decode(tokens, skip_special_tokens=True)))
    if end is None:
        return tokens
    kept = 0
    for count in range(1, len(tokens) + 1):
        if len(str(tokenizer.decode(tokens[:count], skip_special_tokens=True))) > end:
            break
        kept = count
    return tokens[:kept]


class TurnEnd(StoppingCriteria):
    """Stops each row of a `generate` call once its new text opens a turn.

    Pass it to your own `model.generate(..., stopping_criteria=[TurnEnd(tokenizer, n)])` with `n`
    the prompt's length in tokens; the answer is then `answer_of_turn(decoded_text)`. Only the
    last `window` tokens are decoded each step: a marker is a few tokens after a newline.
    """

    def __init__(self, tokenizer, prompt_length: int, window: int = 12) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.window = window

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_length :]
        start = max(0, new.shape[1] - self.window)
        stop = []
        for row in new[:, start:].tolist():
            text = str(self.tokenizer.decode(row, skip_special_tokens=True))
            # mid-answer, a match must follow a newline: the window's own start is not a line's
            stop.append(turn_end(text if start == 0 else "\x00" + text) is not None)
        return cast(torch.BoolTensor, torch.tensor(stop, dtype=torch.bool, device=input_ids.device))
