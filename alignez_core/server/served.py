"""The model a server holds and the scheduler its requests share, swapped as one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import torch

from alignez_core.engine import LoadedModel, Row, SamplingConfig, load_model, stream_rows
from alignez_core.engine.architecture import Site
from alignez_core.engine.scheduler import Scheduler


class ServedModel:
    """One loaded model and, with batching on, one `Scheduler` every request goes through.

    Loading another model is atomic: a failed load keeps the current one, and requests already
    decoding finish on the model they started with.
    """

    def __init__(
        self,
        lm: LoadedModel,
        batching: bool = True,
        loader: Callable[[str | None], LoadedModel] = load_model,
    ) -> None:
        self.batching = batching
        self._loader = loader
        self._lm = lm
        self._scheduler = Scheduler(lm) if batching else None
        self._lock = threading.Lock()

    @property
    def lm(self) -> LoadedModel:
        return self._lm

    @property
    def scheduler(self) -> Scheduler | None:
        return self._scheduler

    def load(self, spec: str) -> LoadedModel:
        with self._lock:  # one load at a time; generation keeps using the old model meanwhile
            new = self._loader(spec.strip() or None)
            old, self._lm = self._scheduler, new
            self._scheduler = Scheduler(new) if self.batching else None
        if old is not None:  # its batch in flight finishes for its callers
            threading.Thread(target=old.close, daemon=True).start()
        return new

    def stream(
        self,
        lm: LoadedModel,
        rows: Sequence[Row],
        sampling: SamplingConfig,
        traces: dict[int, list[torch.Tensor]] | None = None,
        site: Site = "residual",
    ) -> Iterator[list[str]]:
        """`stream_rows` on `lm`, through the shared scheduler when it serves that model."""
        scheduler = self._scheduler
        if scheduler is not None and scheduler.lm is lm:
            return scheduler.stream(rows, sampling, traces, site)
        return stream_rows(lm, rows, sampling, traces, site)
