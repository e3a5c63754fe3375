"""Forward hooks at each layer's readout/edit site, whose state is per call, never global.

A site is the decoder block's output (`residual`) or its MLP's output (`mlp`); hooks are keyed
by (site, layer).

Hooks are installed on a model while at least one call is active and removed when the last
one leaves, on every exit path. Each hook reads the state of the *calling* context from a
`ContextVar`, so two threads generating (or reading activations) at once with different edits
each get exactly their own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .architecture import DecoderLayout, Site
from .edit import BatchPlan

SiteLayer = tuple[str, int]


@dataclass
class _CallState:
    plan: BatchPlan | None = None
    pool_weights: torch.Tensor | None = None  # (B, T): read pooled outputs into `captured`
    captured: dict[int, torch.Tensor] = field(default_factory=dict)
    traces: dict[int, list[torch.Tensor]] | None = None  # layer → last-position state per forward
    trace_site: str = "residual"
    capture_site: str = "residual"


_STATE: ContextVar[_CallState | None] = ContextVar("alignez_call_state", default=None)


def active_plan() -> BatchPlan | None:
    """The plan applied to forwards run by the calling context now (None outside any call)."""
    state = _STATE.get()
    return state.plan if state is not None else None


class EditHooks:
    """Hooks per model, shared by concurrent calls and refcounted per (site, layer).

    A call hooks only the layers it edits or traces, so unedited layers cost nothing.
    """

    def __init__(self, layout: DecoderLayout) -> None:
        self._modules: dict[str, Sequence[nn.Module]] = {
            "mlp": layout.mlps,
            "residual": layout.blocks,
        }
        self._lock = threading.Lock()
        self._users: dict[SiteLayer, int] = {}
        self._handles: dict[SiteLayer, RemovableHandle] = {}

    @property
    def installed(self) -> int:
        return len(self._handles)

    @contextmanager
    def applying(
        self,
        plan: BatchPlan | None,
        traces: dict[int, list[torch.Tensor]] | None = None,
        trace_site: Site = "residual",
    ) -> Iterator[None]:
        """Apply `plan` to every forward run by this context while the block runs.

        With `traces` ({layer: []}), each forward's (edited) last-position state at those layers'
        `trace_site` is appended, (B, d) per step: the trajectory of the prompt and generated
        tokens.
        """
        keys = set(plan.ops_by_site if plan is not None else ())
        keys |= {(trace_site, layer) for layer in traces or ()}
        # With no keys nothing is hooked (no per-layer cost), and this call's own state still
        # replaces any enclosing `steer()` block's, so that block's edit never reaches it.
        with self._active(_CallState(plan=plan, traces=traces, trace_site=trace_site), keys):
            yield

    @contextmanager
    def capturing(
        self, pool_weights: torch.Tensor, site: Site = "residual"
    ) -> Iterator[dict[int, torch.Tensor]]:
        """Collect each layer's output at `site` pooled with (B, T) weights: {layer: (B, d)}."""
        state = _CallState(pool_weights=pool_weights, capture_site=site)
        with self._active(state, {(site, i) for i in range(len(self._modules[site]))}):
            yield state.captured

    @contextmanager
    def _active(self, state: _CallState, keys: set[SiteLayer]) -> Iterator[None]:
        token = _STATE.set(state)
        self._acquire(keys)
        try:
            yield
        finally:
            self._release(keys)
            _STATE.reset(token)

    def _acquire(self, keys: set[SiteLayer]) -> None:
        with self._lock:
            for key in keys:
                if self._users.get(key, 0) == 0:
                    site, layer = key
                    self._handles[key] = self._modules[site][layer].register_forward_hook(
                        _make_hook(site, layer)
                    )
                self._users[key] = self._users.get(key, 0) + 1

    def _release(self, keys: set[SiteLayer]) -> None:
        with self._lock:
            for key in keys:
                self._users[key] -= 1
                if self._users[key] == 0:
                    del self._users[key]
                    self._handles.pop(key).remove()


_BY_MODEL: weakref.WeakKeyDictionary[nn.Module, EditHooks] = weakref.WeakKeyDictionary()
_BY_MODEL_LOCK = threading.Lock()


def hooks_for(model: nn.Module, layout: DecoderLayout) -> EditHooks:
    """The one `EditHooks` of `model`: every caller that edits it (the engine, `steer()`) shares
    it, so a layer never carries two hooks that would both apply the calling context's plan."""
    with _BY_MODEL_LOCK:
        hooks = _BY_MODEL.get(model)
        if hooks is None:
            hooks = _BY_MODEL[model] = EditHooks(layout)
        return hooks


def hidden_of(output: object) -> torch.Tensor | None:
    """The hidden state in a block's or MLP's output: MoE MLPs return (hidden, router logits),
    some decoder blocks (hidden, ...)."""
    hidden = output[0] if isinstance(output, tuple) else output
    return hidden if isinstance(hidden, torch.Tensor) else None


def with_hidden(output: object, edited: torch.Tensor) -> object:
    """`output` with its hidden state replaced by `edited`."""
    return (edited, *output[1:]) if isinstance(output, tuple) else edited


def apply_and_trace(
    plan: BatchPlan | None,
    key: SiteLayer,
    hidden: torch.Tensor,
    traces: dict[int, list[torch.Tensor]] | None,
    trace_site: str,
    rows: int | None = None,
) -> torch.Tensor | None:
    """Apply `plan` at (site, layer) and append the first `rows` rows' last-position state to
    `traces`; the edited state, or None when the plan has no edit here."""
    edited = plan.apply(key, hidden) if plan is not None else None
    site, layer = key
    if traces is not None and site == trace_site and layer in traces:
        current = hidden if edited is None else edited
        traces[layer].append(current[:rows, -1].detach().float().cpu())
    return edited


def _make_hook(site: str, layer: int):
    key = (site, layer)

    def hook(module: nn.Module, args: tuple, output):
        state = _STATE.get()
        hidden = hidden_of(output) if state is not None else None
        if state is None or hidden is None:
            return None
        edited = apply_and_trace(state.plan, key, hidden, state.traces, state.trace_site)
        if state.pool_weights is not None and site == state.capture_site:
            current = hidden if edited is None else edited
            weights = state.pool_weights.to(current.device, current.dtype)
            pooled = torch.einsum("bt,btd->bd", weights, current).float()
            state.captured[layer] = pooled.to(state.pool_weights.device)  # one device for all
        return None if edited is None else with_hidden(output, edited)

    return hook
