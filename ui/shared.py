"""Server-side objects every session shares: the loaded model and the running-fit registry."""

from __future__ import annotations

import os
import threading

import torch

from alignez_core import LoadedModel, load_model
from alignez_core.engine.warmup import enable_compile
from alignez_core.errors import ModelLoadError
from alignez_core.server import ServedModel

DTYPES = ("float32", "bfloat16")


def serving_model(spec: str | None) -> LoadedModel:
    """The studio's model: weights in $ALIGNEZ_DTYPE (float32 unless set), split by
    $ALIGNEZ_DEVICE_MAP (accelerate's, e.g. "auto") when set, and, unless $ALIGNEZ_COMPILE=0,
    compiled decoding for the studio's batches (base + edited: 2 rows; with the prompting
    column: 3, run as 4): float32 base + edited 2.6× eager on a 2-core CPU, the same tokens. The
    cold compile runs in a child process at the lowest priority (`warmup.py`); requests decode
    eagerly until it is warm (README, Performance)."""
    dtype = os.environ.get("ALIGNEZ_DTYPE", "float32")
    if dtype not in DTYPES:
        raise ModelLoadError(f"ALIGNEZ_DTYPE must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    device_map = os.environ.get("ALIGNEZ_DEVICE_MAP") or None  # "auto": across every GPU
    lm = load_model(spec, dtype=getattr(torch, dtype), device_map=device_map)
    if os.environ.get("ALIGNEZ_COMPILE", "1") != "0":
        enable_compile(lm, warm_batches=(2, 4))
    return lm


def batching_on() -> bool:
    """Cross-session batching (`engine/scheduler.py`) unless $ALIGNEZ_BATCHING=0."""
    return os.environ.get("ALIGNEZ_BATCHING", "1") != "0"


class ModelHolder(ServedModel):
    """The studio's model: loaded as `serving_model` loads it, batched unless turned off."""

    def __init__(self, lm: LoadedModel, batching: bool | None = None) -> None:
        super().__init__(lm, batching_on() if batching is None else batching, serving_model)


class FitJobs:
    """At most one running fit per browser session, each with its own cancel switch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    def start(self, session: str) -> threading.Event | None:
        with self._lock:
            if session in self._running:
                return None
            event = self._running[session] = threading.Event()
            return event

    def cancel(self, session: str) -> bool:
        with self._lock:
            event = self._running.get(session)
        if event is None:
            return False
        event.set()
        return True

    def finish(self, session: str) -> None:
        with self._lock:
            self._running.pop(session, None)
