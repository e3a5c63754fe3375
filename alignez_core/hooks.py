"""MLP forward hooks whose state is per call, never global model state.

Hooks are installed on a model while at least one call is active and removed when the last
one leaves, on every exit path. Each hook reads the state of the *calling* context from a
`ContextVar`, so two threads generating (or reading activations) at once with different edits
each get exactly their own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .edit import BatchPlan


@dataclass
class _CallState:
    plan: BatchPlan | None = None
    pool_weights: torch.Tensor | None = None  # (B, T): read pooled MLP outputs into `captured`
    captured: dict[int, torch.Tensor] = field(default_factory=dict)
    traces: dict[int, list[torch.Tensor]] | None = None  # layer → last-position state per forward


_STATE: ContextVar[_CallState | None] = ContextVar("alignez_call_state", default=None)


class EditHooks:
    """MLP hooks per model, shared by concurrent calls and refcounted per layer.

    A call hooks only the layers it edits or traces, so unedited layers cost nothing.
    """

    def __init__(self, mlps: Sequence[nn.Module]) -> None:
        self._mlps = tuple(mlps)
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}
        self._handles: dict[int, RemovableHandle] = {}

    @property
    def installed(self) -> int:
        return len(self._handles)

    @contextmanager
    def applying(
        self, plan: BatchPlan | None, traces: dict[int, list[torch.Tensor]] | None = None
    ) -> Iterator[None]:
        """Apply `plan` to every forward run by this context while the block runs.

        With `traces` ({layer: []}), each forward's (edited) last-position MLP output at those
        layers is appended, (B, d) per step: the trajectory of the prompt and generated tokens.
        """
        layers = set(plan.ops_by_layer if plan is not None else ()) | set(traces or ())
        if not layers:  # nothing to do: no hooks, no per-layer overhead
            yield
            return
        with self._active(_CallState(plan=plan, traces=traces), layers):
            yield

    @contextmanager
    def capturing(self, pool_weights: torch.Tensor) -> Iterator[dict[int, torch.Tensor]]:
        """Collect each layer's MLP output pooled with (B, T) weights: {layer: (B, d)}."""
        state = _CallState(pool_weights=pool_weights)
        with self._active(state, set(range(len(self._mlps)))):
            yield state.captured

    @contextmanager
    def _active(self, state: _CallState, layers: set[int]) -> Iterator[None]:
        token = _STATE.set(state)
        self._acquire(layers)
        try:
            yield
        finally:
            self._release(layers)
            _STATE.reset(token)

    def _acquire(self, layers: set[int]) -> None:
        with self._lock:
            for layer in layers:
                if self._users.get(layer, 0) == 0:
                    self._handles[layer] = self._mlps[layer].register_forward_hook(
                        _make_hook(layer)
                    )
                self._users[layer] = self._users.get(layer, 0) + 1

    def _release(self, layers: set[int]) -> None:
        with self._lock:
            for layer in layers:
                self._users[layer] -= 1
                if self._users[layer] == 0:
                    del self._users[layer]
                    self._handles.pop(layer).remove()


def _make_hook(layer: int):
    def hook(module: nn.Module, args: tuple, output):
        state = _STATE.get()
        if state is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output  # MoE: (hidden, router)
        if not isinstance(hidden, torch.Tensor):
            return None
        edited = state.plan.apply(layer, hidden) if state.plan is not None else None
        if state.pool_weights is not None:
            current = hidden if edited is None else edited
            weights = state.pool_weights.to(current.dtype)
            state.captured[layer] = torch.einsum("bt,btd->bd", weights, current).float()
        if state.traces is not None and layer in state.traces:
            current = hidden if edited is None else edited
            state.traces[layer].append(current[:, -1].detach().float().cpu())
        if edited is None:
            return None
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    return hook
