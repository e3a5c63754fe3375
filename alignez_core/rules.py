"""Edit rules: pure functions `(hidden, directions, strength) -> hidden`, by name.

`hidden` is (..., d), `directions` is (k, d), `strength` a finite float. Rules never modify
their inputs. New rules are added with `@register_rule("name")`; `get_rule` looks them up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EditRule = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

_RULES: dict[str, EditRule] = {}


def register_rule(*names: str) -> Callable[[EditRule], EditRule]:
    """Register a rule function under one or more names."""

    def decorate(fn: EditRule) -> EditRule:
        for name in names:
            _RULES[name] = fn
        return fn

    return decorate


def get_rule(name: str) -> EditRule:
    try:
        return _RULES[name]
    except KeyError:
        raise KeyError(f"Unknown edit rule {name!r}; known: {', '.join(rule_names())}.") from None


def rule_names() -> list[str]:
    return sorted(_RULES)


def _norm(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.norm(dim=-1, keepdim=True)


@register_rule("add")
def add(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·Σθ: plain activation addition; the directions carry their own scale."""
    return hidden + strength * directions.sum(dim=0)


@register_rule("paper", "project")
def project(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·Σ⟨x,θ⟩θ (METHOD §6, the paper's rule): s > 0 amplifies, s = −1 removes."""
    return hidden + strength * (hidden @ directions.T) @ directions


@register_rule("tanh")
def tanh(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·‖x‖·Σ tanh(⟨x,θ⟩/‖x‖)·θ: the blog's rule, scaled by ‖x‖ so it is not negligible."""
    norm = _norm(hidden).clamp_min(1e-6)
    return hidden + strength * norm * torch.tanh((hidden @ directions.T) / norm) @ directions


@register_rule("steer", "caa", "scaled_add")
def scaled_add(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·‖x‖·Σu: a signed push relative to the local norm (u unit, oriented to the + pole).

    `steer` and `caa` share this algebra and differ in the vector they are given: `steer` the
    mean difference restricted to the query's AlignEZ subspace, `caa` the plain mean difference.
    """
    return hidden + strength * _norm(hidden) * directions.sum(dim=0)
