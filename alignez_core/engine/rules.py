"""Edit rules: pure functions `(hidden, directions, strength) -> hidden`, by name.

`hidden` is (..., d), `directions` is (k, d), `strength` a finite float. Rules never modify
their inputs. New rules are added with `@register_rule("name")`; `get_rule` looks them up.

The pure rule is the definition. What runs per token is its *kernel*: `edit_kernel` turns a
rule, its directions and strength into an in-place edit of a (n, d) view with everything that
does not depend on the hidden state computed once. Built-in rules register a kernel of one to
three tensor ops (`@register_kernel`); any other rule runs through a generic kernel that calls
the pure function. On a GPU, where decoding is bound by kernel launches, the op count is the cost.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EditRule = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
InPlaceEdit = Callable[[torch.Tensor], None]  # edits a (n, d) view of the hidden state in place
KernelFactory = Callable[[torch.Tensor, float], InPlaceEdit]  # (float32 directions, strength)

_RULES: dict[str, EditRule] = {}
_KERNELS: dict[EditRule, KernelFactory] = {}  # keyed by the function: re-registering a name
# with a new function drops its kernel, so the pure rule always stays the definition


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


def register_kernel(rule: EditRule) -> Callable[[KernelFactory], KernelFactory]:
    """Give `rule` an in-place kernel for the per-token path; it must compute the same thing."""

    def decorate(factory: KernelFactory) -> KernelFactory:
        _KERNELS[rule] = factory
        return factory

    return decorate


def edit_kernel(name: str, directions: torch.Tensor, strength: float) -> InPlaceEdit:
    """The rule `name` as an in-place edit of a (n, d) view; math in float32 whatever its dtype.

    `directions` is (k, d) float32 on the model's device.
    """
    rule = get_rule(name)
    factory = _KERNELS.get(rule)
    if factory is not None:
        return factory(directions, strength)

    def generic(view: torch.Tensor) -> None:
        view.copy_(rule(view.float(), directions, strength))

    return generic


def _norm(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.norm(dim=-1, keepdim=True)


@register_rule("add")
def add(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·Σθ: plain activation addition; the directions carry their own scale."""
    return hidden + strength * directions.sum(dim=0)


@register_rule("project")
def project(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·Σ⟨x,θ⟩θ (docs/method.md §6, the paper's rule): s > 0 amplifies, s = −1 removes."""
    return hidden + strength * (hidden @ directions.T) @ directions


@register_rule("tanh")
def tanh(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·‖x‖·Σ tanh(⟨x,θ⟩/‖x‖)·θ: the blog's rule, scaled by ‖x‖ so it is not negligible."""
    norm = _norm(hidden).clamp_min(1e-6)
    return hidden + strength * norm * torch.tanh((hidden @ directions.T) / norm) @ directions


@register_rule("scaled_add")
def scaled_add(hidden: torch.Tensor, directions: torch.Tensor, strength: float) -> torch.Tensor:
    """x + s·‖x‖·Σu: a signed push relative to the local norm (u unit, oriented to the + pole);
    what the slider rules `subspace` and `mean_diff` run on MLP-site packs."""
    return hidden + strength * _norm(hidden) * directions.sum(dim=0)


# Kernels: in-place forms of the rules above. Mixed-dtype in-place ops (bf16 view, float32
# operands) compute in float32 and round once on the write, as the pure rules on `.float()` do.


def norm32(view: torch.Tensor) -> torch.Tensor:
    """Each row's norm in float32, whatever the view's dtype (kernels and the compiled step)."""
    return torch.linalg.vector_norm(view, dim=-1, keepdim=True, dtype=torch.float32)


@register_kernel(add)
def _add_kernel(directions: torch.Tensor, strength: float) -> InPlaceEdit:
    shift = strength * directions.sum(dim=0)

    def apply(view: torch.Tensor) -> None:
        view.add_(shift)

    return apply


@register_kernel(scaled_add)
def _scaled_add_kernel(directions: torch.Tensor, strength: float) -> InPlaceEdit:
    shift = strength * directions.sum(dim=0)

    def apply(view: torch.Tensor) -> None:
        view.addcmul_(norm32(view), shift)

    return apply


def _add_coefficients(
    view: torch.Tensor, x: torch.Tensor, coefficients: torch.Tensor, scaled: torch.Tensor
) -> None:
    """view ← x + coefficients @ scaled, where x is `view` in float32 (the view itself if it is)."""
    if x is view:
        view.addmm_(coefficients, scaled)
    else:
        view.copy_(torch.addmm(x, coefficients, scaled))


@register_kernel(project)
def _project_kernel(directions: torch.Tensor, strength: float) -> InPlaceEdit:
    transposed, scaled = directions.T.contiguous(), strength * directions

    def apply(view: torch.Tensor) -> None:
        x = view.float()
        _add_coefficients(view, x, x @ transposed, scaled)

    return apply


@register_kernel(tanh)
def _tanh_kernel(directions: torch.Tensor, strength: float) -> InPlaceEdit:
    transposed, scaled = directions.T.contiguous(), strength * directions

    def apply(view: torch.Tensor) -> None:
        x = view.float()
        norm = norm32(x).clamp_min_(1e-6)
        _add_coefficients(view, x, (x @ transposed).div_(norm).tanh_().mul_(norm), scaled)

    return apply
