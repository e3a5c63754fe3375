"""Cross-session batching: the rows of concurrent requests decode together in shared batches.

Why: one decoding step costs about as much for 24 rows as for 2 on a CPU (it is bound by reading
the weights and dispatching ops, not by the rows), and every row of a batch already carries its
own edit (`edit.py`), so users with different axes and strengths can share a step exactly.

A request (its rows, one `SamplingConfig`, optional traces) is submitted and streams back
through its `Ticket`. One worker thread gathers what is waiting (until no request has arrived
for `gather_seconds`, at most `max_gather_seconds`; up to `max_rows` rows whose configs share
`batch_key`) into one batch, decodes it and fans each step's tokens out to the tickets. Rows
join at batch boundaries: transformers' left-padded cache cannot take a new row mid-decode
without re-laying it out. A row ends on its own (end-of-sequence, its token limit, its turn on
a base model, its caller cancelling or disconnecting) while the others go on; the batch ends
when its last row does.

Isolation: a row's tokens depend on its own prompt, edit and sampling, and on the batch's shape
(padding, row count), never on another row's edit — `tests/test_scheduler.py` changes every
neighbour's steering and checks the row's greedy tokens stay the same.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers.generation.streamers import BaseStreamer

from alignez_core.errors import AlignEZError

from .architecture import Site
from .edit import compile_plan
from .generation import (
    Row,
    RowTexts,
    SamplingConfig,
    batch_key,
    decode_batch,
    prepare_batch,
    stopping_rules,
)
from .model import LoadedModel

MAX_ROWS = 96  # rows per shared batch: a burst of 24 studio requests (3 rows each) fits one
GATHER_SECONDS = 0.05  # a batch starts once no request has arrived for this long …
MAX_GATHER_SECONDS = 0.5  # … or this long after the first one waiting


@dataclass
class Ticket:
    """One request's place in the scheduler: its rows stream back here, in submission order."""

    rows: tuple[Row, ...]
    config: SamplingConfig
    trace_layers: tuple[int, ...] = ()
    trace_site: Site = "residual"
    traces: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    batch_rows: int = 0  # how many rows its batch decoded (set when the batch starts)
    path: str = ""  # "compiled" or why the batch decoded eagerly
    token_ids: list[list[int]] = field(default_factory=list)  # each row's tokens so far
    _steps: queue.Queue = field(default_factory=queue.Queue, repr=False)
    _cancelled: bool = False

    def cancel(self) -> None:
        """Stop this request's rows after the current step; the rest of its batch goes on."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class _FanOut(BaseStreamer):
    """Hands each step's new tokens of a shared batch to the ticket each row belongs to."""

    def __init__(self, tickets: Sequence[Ticket], cancelled: list[bool]) -> None:
        self.cancelled = cancelled  # read by the batch's `RowStops` right after each put
        self.spans: list[tuple[Ticket, int, int]] = []
        start = 0
        for ticket in tickets:
            self.spans.append((ticket, start, start + len(ticket.rows)))
            start += len(ticket.rows)
        self._prompt_seen = False
        self.started = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        self.started = True
        tokens = value.reshape(-1).tolist()
        for ticket, start, stop in self.spans:
            ticket._steps.put(tokens[start:stop])
            if ticket.cancelled:  # its rows end at this step; the others go on
                self.cancelled[start:stop] = [True] * (stop - start)

    def end(self) -> None:
        pass  # the worker ends each ticket's stream once the batch's traces are handed out


class Scheduler:
    """Decodes the rows of concurrent requests together; `stream` is `stream_rows` through it.

    One worker thread per scheduler, started on the first request; `close` stops it. Requests
    whose configs differ in `batch_key` wait for a batch of their own.
    """

    def __init__(
        self,
        lm: LoadedModel,
        max_rows: int = MAX_ROWS,
        gather_seconds: float = GATHER_SECONDS,
        max_gather_seconds: float = MAX_GATHER_SECONDS,
    ) -> None:
        self.lm = lm
        self.max_rows = max_rows
        self.gather_seconds = gather_seconds
        self.max_gather_seconds = max(max_gather_seconds, gather_seconds)
        self._waiting: list[Ticket] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # batches decoded so far

    def submit(
        self,
        rows: Sequence[Row],
        config: SamplingConfig = SamplingConfig(),
        trace_layers: Sequence[int] = (),
        trace_site: Site = "residual",
    ) -> Ticket:
        """Queue one request's rows (at most `max_rows`); read them back with `stream`."""
        if not rows:
            raise AlignEZError("Nothing to generate: no rows given.")
        if len(rows) > self.max_rows:
            raise AlignEZError(f"{len(rows)} rows in one request; the cap is {self.max_rows}.")
        lm = self.lm  # a bad edit (another model's size) is refused here, not in a shared batch
        compile_plan([row.edit for row in rows], lm.num_layers, lm.hidden_size, lm.layer_device)
        ticket = Ticket(tuple(rows), config, tuple(trace_layers), trace_site)
        with self._ready:
            if self._closed:
                raise AlignEZError("The scheduler is closed.")
            self._waiting.append(ticket)
            if self._worker is None:
                # a fresh context: nothing of the first caller's (a `steer()` block) comes along
                self._worker = threading.Thread(
                    target=contextvars.Context().run, args=(self._run,), daemon=True
                )
                self._worker.start()
            self._ready.notify()
        return ticket

    def stream(
        self,
        rows: Sequence[Row],
        config: SamplingConfig = SamplingConfig(),
        traces: dict[int, list[torch.Tensor]] | None = None,
        trace_site: Site = "residual",
    ) -> Iterator[list[str]]:
        """Like `generation.stream_rows`, decoded in a shared batch. Closing the iterator early
        cancels this request's rows only."""
        ticket = self.submit(rows, config, tuple(traces or ()), trace_site)
        try:
            yield from self.read(ticket)
        finally:
            ticket.cancel()
        if traces is not None:
            for layer in traces:
                traces[layer].extend(ticket.traces.get(layer, []))

    def read(self, ticket: Ticket) -> Iterator[list[str]]:
        """The growing texts of `ticket`'s rows as its batch decodes, until they all end (a traced
        request waits for its batch's traces); errors are raised here."""
        answers = RowTexts(self.lm, len(ticket.rows), ticket.config.max_new_tokens)
        ticket.token_ids = answers.tokens
        while (step := ticket._steps.get()) is not None:
            if isinstance(step, BaseException):
                raise step
            yield answers.add(step)
            if all(answers.done) and not ticket.trace_layers:
                break  # its answers are whole: no need to wait for the batch's longest row
        if (final := answers.final()) is not None:
            yield final

    def close(self) -> None:
        """Stop the worker after the batch in flight; later submissions are refused."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._worker is not None:
            self._worker.join()

    def _take(self) -> list[Ticket] | None:
        """Wait for requests, gather while they keep arriving, then take one batch's worth."""
        with self._ready:
            while not self._waiting and not self._closed:
                self._ready.wait()
            if self._closed:
                self._refuse_waiting()
                return None
            started = time.monotonic()
            seen = len(self._waiting)
            while not self._closed:  # a burst's requests arrive over tens of milliseconds
                left = started + self.max_gather_seconds - time.monotonic()
                self._ready.wait(min(self.gather_seconds, max(left, 0.0)))
                if len(self._waiting) == seen or left <= 0:
                    break
                seen = len(self._waiting)
            if self._closed:
                self._refuse_waiting()
                return None
            key = batch_key(self._waiting[0].config)
            site: Site | None = None  # one trace site per batch (the hooks read one)
            taken: list[Ticket] = []
            rows = 0
            for ticket in list(self._waiting):
                if ticket.cancelled:
                    self._waiting.remove(ticket)
                    ticket._steps.put(None)
                    continue
                traced = ticket.trace_site if ticket.trace_layers else None
                if (
                    batch_key(ticket.config) != key
                    or rows + len(ticket.rows) > self.max_rows
                    or (traced is not None and site is not None and traced != site)
                ):
                    continue
                site = site or traced
                taken.append(ticket)
                rows += len(ticket.rows)
                self._waiting.remove(ticket)
            return taken

    def _refuse_waiting(self) -> None:
        """Closing: requests not yet decoding hear why instead of waiting forever."""
        for ticket in self._waiting:
            ticket._steps.put(AlignEZError("The server switched models; send the request again."))
        self._waiting.clear()

    def _run(self) -> None:
        while (tickets := self._take()) is not None:
            if tickets:
                self._decode(tickets)

    def _decode(self, tickets: list[Ticket]) -> None:
        """One shared batch: every ticket's rows, each with its own edit and sampling."""
        rows = [row for t in tickets for row in t.rows]
        configs = [t.config for t in tickets for _ in t.rows]
        cancelled = [False] * len(rows)
        fan_out = _FanOut(tickets, cancelled)
        layers = sorted({layer for t in tickets for layer in t.trace_layers})
        site: Site = next((t.trace_site for t in tickets if t.trace_layers), "residual")
        traces: dict[int, list[torch.Tensor]] | None = {layer: [] for layer in layers} or None

        def on_path(path: str) -> None:  # heard before decoding starts
            for ticket in tickets:
                ticket.batch_rows, ticket.path = len(rows), path

        try:
            prepared = prepare_batch(self.lm, rows, configs, cancelled)
            edits = [row.edit for row in rows]
            self.batches += 1
            kwargs = dict(prepared["kwargs"]) | {"streamer": fan_out}
            kwargs["stopping_criteria"] = stopping_rules(prepared, None)
            with torch.inference_mode():
                decode_batch(self.lm, prepared, edits, kwargs, traces, site, on_path)
        except BaseException as exc:  # every request in the batch hears why
            for ticket in tickets:
                ticket._steps.put(exc)
            return
        for ticket, start, stop in fan_out.spans:
            if traces is not None:
                ticket.traces = {
                    layer: [step[start:stop] for step in traces[layer]]
                    for layer in ticket.trace_layers
                }
            ticket._steps.put(None)
