"""Trained directions: each layer's mean difference refined by gradient descent on the fit's own
self-generated pairs, with the model's weights frozen (`FitConfig(method="trained")`).

The objective is BiPO's (Cao et al. 2024, arXiv 2406.00045, "bipo"): adding the vectors should
make the positive pole's answer likelier than the negative's, relative to the unedited model, and
subtracting them the reverse. The alternative measured beside it ("likelihood") only raises each
answer's own likelihood under its sign. The vectors keep the pack's units: at layer l the edit is
`sign · strength · residual_norm_l · u_l` with u_l a unit vector, so training chooses directions
and cannot buy reach with a longer push; the slider's clean edge is then calibrated as for any
pack. A quarter of the pairs is held out, and the directions kept are those of the epoch with
the lowest held-out loss (the mean difference itself when no epoch beats it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from alignez_core.axes.pack import PreferencePair, TrainingLog
from alignez_core.engine.edit import Positions
from alignez_core.engine.hooks import hidden_of, with_hidden
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import FitCancelled, FitError

FitMethod = Literal["mean", "trained"]
FIT_METHODS: tuple[str, ...] = ("mean", "trained")
Objective = Literal["bipo", "likelihood"]
OBJECTIVES: tuple[str, ...] = ("bipo", "likelihood")
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """How the directions are trained (used when `FitConfig.method` is "trained")."""

    objective: Objective = "bipo"
    # the push the directions are trained at, × each layer's residual norm: the clean edge the
    # calibration finds for SmolLM2's presets (0.015–0.03), so they are shaped where the slider
    # will use them
    strength: float = 0.02
    beta: float = 0.1  # BiPO's temperature on the log-likelihood ratios
    # DPOP's penalty (Pal et al. 2024, arXiv 2402.13228; 50 there): per nat the preferred answer
    # loses against the reference, taken off its margin, so the edit cannot win the preference by
    # making both answers unlikely (what costs fluency). 0: plain BiPO.
    anchor: float = 0.0
    epochs: int = 4
    learning_rate: float = 0.05
    batch_pairs: int = 4
    held_out: float = 0.25  # share of the pairs kept out of training, for stopping early
    patience: int = 2  # epochs without a better held-out loss before training stops
    max_answer_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise FitError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}."
            )
        checks = {
            "strength": 0 < self.strength <= 0.5,
            "beta": 0 < self.beta <= 10,
            "anchor": 0 <= self.anchor <= 1000,
            "epochs": 1 <= self.epochs <= 50,
            "learning_rate": 0 < self.learning_rate <= 1,
            "batch_pairs": 1 <= self.batch_pairs <= 64,
            "held_out": 0 <= self.held_out < 1,
            "patience": 1 <= self.patience <= 50,
            "max_answer_tokens": 1 <= self.max_answer_tokens <= 512,
        }
        for name, ok in checks.items():
            if not ok or not math.isfinite(float(getattr(self, name))):
                raise FitError(f"training {name} is out of range: {getattr(self, name)!r}.")


@dataclass(frozen=True)
class _Batch:
    """Prompt + answer rows, left-padded; each pair gives four rows: (positive, +), (negative, +),
    (positive, −), (negative, −)."""

    input_ids: torch.Tensor  # (R, T)
    attention_mask: torch.Tensor  # (R, T)
    answer_mask: torch.Tensor  # (R, T): 1 where the token is an answer token (predicted)
    edit_mask: torch.Tensor  # (R, T, 1): where the vectors are added
    signs: torch.Tensor  # (R, 1, 1)


def _encode_rows(
    lm: LoadedModel, pairs: Sequence[PreferencePair], positions: Positions, max_tokens: int
) -> _Batch:
    rows: list[tuple[list[int], list[int], float]] = []
    for pair in pairs:
        prompt = lm.encode(lm.format_prompt(pair.query))["input_ids"]
        answers = [
            lm.tokenizer(lm.answer_after_prompt(a), add_special_tokens=False)["input_ids"]
            for a in (pair.positive, pair.negative)
        ]
        answers = [answer[:max_tokens] for answer in answers]
        for sign in (1.0, -1.0):
            rows += [(prompt, answer, sign) for answer in answers]
    width = max(len(p) + len(a) for p, a, _ in rows)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention, answer_mask, edit_mask = (torch.zeros(len(rows), width) for _ in range(3))
    for r, (prompt, answer, _) in enumerate(rows):
        start = width - len(prompt) - len(answer)
        ids[r, start:] = torch.tensor(prompt + answer)
        attention[r, start:] = 1
        answer_mask[r, start + len(prompt) :] = 1
        begin = {"all": start, "last": start + len(prompt) - 1, "prompt": start}[positions]
        end = start + len(prompt) if positions == "prompt" else width
        edit_mask[r, begin:end] = 1
    signs = torch.tensor([sign for _, _, sign in rows])[:, None, None]
    device = lm.device
    return _Batch(
        ids.to(device),
        attention.long().to(device),
        answer_mask.to(device),
        edit_mask[..., None].to(device),
        signs.to(device),
    )


class _Vectors:
    """The trained unit directions and the hooks that add them, acting only inside `adding` on
    the calling thread (another call generating on the same model meanwhile is untouched)."""

    def __init__(
        self, lm: LoadedModel, initial: Mapping[int, torch.Tensor], norms: Sequence[float]
    ) -> None:
        self.lm = lm
        self.layers = tuple(sorted(initial))
        start = torch.stack([initial[i].float() / initial[i].float().norm() for i in self.layers])
        self.weights = start.to(lm.device).requires_grad_(True)
        self.norms = torch.tensor([norms[i] for i in self.layers], device=lm.device)[:, None]
        self._batch: _Batch | None = None
        self._strength = 0.0
        self._owner: int | None = None

    def units(self) -> torch.Tensor:
        return self.weights / self.weights.norm(dim=-1, keepdim=True)

    @contextmanager
    def adding(self, batch: _Batch | None, strength: float) -> Iterator[None]:
        """Run forwards with the vectors at `strength` (rows signed by the batch); None: off."""
        handles = [
            self.lm.layout.blocks[layer].register_forward_hook(self._hook(slot))
            for slot, layer in enumerate(self.layers)
        ]
        self._batch, self._strength, self._owner = batch, strength, threading.get_ident()
        try:
            yield
        finally:
            self._batch, self._owner = None, None
            for handle in handles:
                handle.remove()

    def _hook(self, slot: int):
        def hook(module: torch.nn.Module, args: tuple, output: Any):
            batch = self._batch
            hidden = hidden_of(output)
            if batch is None or hidden is None or self._owner != threading.get_ident():
                return None
            push = self._strength * self.norms[slot] * self.units()[slot]
            edited = hidden + (batch.signs * batch.edit_mask * push).to(hidden.dtype)
            return with_hidden(output, edited)

        return hook


def _answer_logprobs(lm: LoadedModel, batch: _Batch) -> torch.Tensor:
    """(R,) summed log-probability of each row's answer tokens given everything before them."""
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp_min(0)
    width = int(batch.answer_mask.sum(-1).max()) + 1
    logits = (
        lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=positions,
            logits_to_keep=width,
        )
        .logits[:, :-1]
        .float()
    )
    targets = batch.input_ids[:, -width + 1 :]
    mask = batch.answer_mask[:, -width + 1 :]
    picked = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    return (picked * mask).sum(-1)


def _losses(
    logprobs: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair, the objective's loss and the preference margin, from its four rows' log-probs
    (edited and unedited) in `_Batch` order."""
    edited, base = logprobs.view(-1, 4), reference.view(-1, 4)
    gain = edited - base
    prefer_plus = gain[:, 0] - gain[:, 1]  # vectors added: positive over negative
    prefer_minus = gain[:, 3] - gain[:, 2]  # subtracted: negative over positive
    margin = (prefer_plus + prefer_minus) / 2
    if config.anchor:
        prefer_plus = prefer_plus - config.anchor * F.relu(-gain[:, 0])
        prefer_minus = prefer_minus - config.anchor * F.relu(-gain[:, 3])
    if config.objective == "bipo":
        loss = -F.logsigmoid(config.beta * prefer_plus) - F.logsigmoid(config.beta * prefer_minus)
    else:  # likelihood: each sign's own answer, per token
        counts = lengths.view(-1, 4).clamp_min(1)
        loss = -(edited[:, 0] / counts[:, 0] + edited[:, 3] / counts[:, 3])
    return loss, margin


def train_directions(
    lm: LoadedModel,
    pairs: Sequence[PreferencePair],
    initial: Mapping[int, torch.Tensor],
    residual_norms: Sequence[float],
    positions: Positions,
    config: TrainConfig,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> tuple[dict[int, torch.Tensor], TrainingLog]:
    """Unit directions per layer of `initial` (the layers' mean differences), trained on `pairs`
    added at `positions` (as the slider will add them), and the log of how training went."""
    if not initial:
        raise FitError("Nothing to train: the axis has no direction on the layers it steers.")
    if not pairs:
        raise FitError("Nothing to train on: the fit wrote no pairs.")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(pairs), generator=generator).tolist()
    held_count = 0
    if config.held_out > 0 and len(pairs) >= 2:
        held_count = min(len(pairs) - 1, max(1, round(config.held_out * len(pairs))))
    held = [pairs[i] for i in order[:held_count]]
    train = [pairs[i] for i in order[held_count:]]
    vectors = _Vectors(lm, initial, residual_norms)
    optimiser = torch.optim.Adam([vectors.weights], lr=config.learning_rate)

    def chunks(items: Sequence[PreferencePair]) -> list[Sequence[PreferencePair]]:
        step = config.batch_pairs
        return [items[i : i + step] for i in range(0, len(items), step)]

    def encoded(items: Sequence[PreferencePair]) -> list[tuple[_Batch, torch.Tensor]]:
        out = []
        for chunk in chunks(items):
            batch = _encode_rows(lm, chunk, positions, config.max_answer_tokens)
            with torch.no_grad(), vectors.adding(None, 0.0):
                out.append((batch, _answer_logprobs(lm, batch)))
        return out

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise FitCancelled("Fit cancelled.")

    def evaluate(items: list[tuple[_Batch, torch.Tensor]]) -> tuple[float, float]:
        if not items:
            return math.nan, math.nan
        losses, margins = [], []
        with torch.no_grad():
            for batch, reference in items:
                check_cancel()
                with vectors.adding(batch, config.strength):
                    logprobs = _answer_logprobs(lm, batch)
                loss, margin = _losses(logprobs, reference, batch.answer_mask.sum(-1), config)
                losses.append(loss)
                margins.append(margin)
        return float(torch.cat(losses).mean()), float(torch.cat(margins).mean())

    train_batches, held_batches = encoded(train), encoded(held)
    total = config.epochs * len(train_batches)
    train_loss, _ = evaluate(train_batches)
    held_loss, held_margin = evaluate(held_batches)
    train_losses, held_losses, held_margins = [train_loss], [held_loss], [held_margin]
    best = (held_loss if held_batches else train_loss, 0, vectors.units().detach().clone())
    for epoch in range(1, config.epochs + 1):
        shuffled = torch.randperm(len(train_batches), generator=generator).tolist()
        epoch_losses = []
        for done, index in enumerate(shuffled, 1):
            check_cancel()
            batch, reference = train_batches[index]
            with torch.enable_grad(), vectors.adding(batch, config.strength):
                logprobs = _answer_logprobs(lm, batch)
                loss, _ = _losses(logprobs, reference, batch.answer_mask.sum(-1), config)
                loss = loss.mean()
                (gradient,) = torch.autograd.grad(loss, [vectors.weights])
            optimiser.zero_grad(set_to_none=True)
            vectors.weights.grad = gradient
            optimiser.step()
            epoch_losses.append(float(loss.detach()))
            if progress is not None:
                progress("training", (epoch - 1) * len(train_batches) + done, total)
        held_loss, held_margin = evaluate(held_batches)
        train_losses.append(sum(epoch_losses) / len(epoch_losses))
        held_losses.append(held_loss)
        held_margins.append(held_margin)
        score = held_loss if held_batches else train_losses[-1]
        if score < best[0]:
            best = (score, epoch, vectors.units().detach().clone())
        elif epoch - best[1] >= config.patience:
            break
    units = best[2].cpu()
    log = TrainingLog(
        config=asdict(config),
        layers=vectors.layers,
        train_losses=tuple(train_losses),
        held_out_losses=tuple(held_losses),
        held_out_margins=tuple(held_margins),
        best_epoch=best[1],
        train_pairs=len(train),
        held_out_pairs=len(held),
        seconds=time.perf_counter() - started,
    )
    return {layer: units[slot] for slot, layer in enumerate(vectors.layers)}, log
