"""MLP forward hooks whose edit state is per call, never global model state.

Hooks are installed on a model while at least one call is active and removed when the last
one leaves, on every exit path. Each hook reads the plan of the *calling* context from a
`ContextVar`, so two threads generating at once with different edits each get exactly their own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .edit import BatchPlan

_ACTIVE_PLAN: ContextVar[BatchPlan | None] = ContextVar("alignez_active_plan", default=None)


class EditHooks:
    """One set of MLP hooks per model, shared by concurrent calls, refcounted."""

    def __init__(self, mlps: Sequence[nn.Module]) -> None:
        self._mlps = tuple(mlps)
        self._lock = threading.Lock()
        self._users = 0
        self._handles: list[RemovableHandle] = []

    @property
    def installed(self) -> int:
        return len(self._handles)

    @contextmanager
    def applying(self, plan: BatchPlan | None) -> Iterator[None]:
        """Apply `plan` to every forward run by this context while the block runs."""
        token = _ACTIVE_PLAN.set(plan)
        self._acquire()
        try:
            yield
        finally:
            self._release()
            _ACTIVE_PLAN.reset(token)

    def _acquire(self) -> None:
        with self._lock:
            if self._users == 0:
                self._handles = [
                    mlp.register_forward_hook(_make_hook(index))
                    for index, mlp in enumerate(self._mlps)
                ]
            self._users += 1

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for handle in self._handles:
                    handle.remove()
                self._handles = []


def _make_hook(layer: int):
    def hook(module: nn.Module, args: tuple, output):
        plan = _ACTIVE_PLAN.get()
        if plan is None:
            return None
        if isinstance(output, tuple):  # MoE blocks return (hidden, router_logits)
            edited = plan.apply(layer, output[0])
            return None if edited is None else (edited, *output[1:])
        if isinstance(output, torch.Tensor):
            return plan.apply(layer, output)
        return None

    return hook
