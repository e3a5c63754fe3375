"""Base and edited answers for prompts, from one batched pass.

`generate(lm, prompts, {pack_a: 0.8, pack_b: -0.5})` gives each prompt a base answer and an
edited answer (two rows of one batch); `stream` yields them as tokens arrive.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.activations import query_embeddings
from alignez_core.engine.generation import Row, SamplingConfig, generate_rows, stream_rows
from alignez_core.engine.model import LoadedModel
from alignez_core.errors import EditError

from .plan import AxisEdit, axis_edit, combine, plan_edits
from .prompting import prompted_row
from .settings import SteerSettings


@dataclass(frozen=True)
class SteeredAnswer:
    prompt: str
    base: str
    edited: str
    layers: dict[str, tuple[int, ...]]


def build_rows(
    lm: LoadedModel,
    prompts: Sequence[str],
    axes: Mapping[AxisPack, float],
    settings: SteerSettings,
) -> tuple[list[Row], list[list[AxisEdit]]]:
    """Two rows per prompt (base, then edited with every axis combined) and the plans."""
    if not prompts:
        raise EditError("No prompts given.")
    planned = plan_edits(lm, prompts, axes, settings)
    rows = []
    for prompt, edits in zip(prompts, planned, strict=True):
        rows.append(Row(prompt))
        rows.append(Row(prompt, combine(edits, settings)))
    return rows, planned


def steered_rows(
    lm: LoadedModel,
    prompts: Sequence[str],
    axes: Mapping[AxisPack, float],
    settings: SteerSettings,
) -> list[Row]:
    """One row per prompt with every axis combined (no axes: the base model's rows), to batch
    beside other such blocks (evaluation cells, calibration grids, studies)."""
    if not axes:
        return [Row(p) for p in prompts]
    planned = plan_edits(lm, prompts, axes, settings)
    return [Row(p, combine(edits, settings)) for p, edits in zip(prompts, planned, strict=True)]


@dataclass(frozen=True)
class ComparisonRows:
    """One prompt's rows for a side-by-side view, in order: base, then edited and prompted
    where there is an active axis (and the prompted column is wanted)."""

    rows: list[Row]
    plans: list[AxisEdit]
    edited: int | None  # index of the edited row, None with no active axis
    prompted: int | None  # index of the prompted row, None without one


def comparison_rows(
    lm: LoadedModel,
    prompt: str,
    axes: Mapping[AxisPack, float],
    settings: SteerSettings,
    with_prompted: bool = True,
) -> ComparisonRows:
    """Base, edited and prompted rows for one prompt, for one batch (the studio, the benches)."""
    active = {pack: strength for pack, strength in axes.items() if strength != 0}
    if not active:
        return ComparisonRows([Row(prompt)], [], None, None)
    rows, plans = build_rows(lm, [prompt], active, settings)
    if not with_prompted:
        return ComparisonRows(rows, plans[0], 1, None)
    return ComparisonRows([*rows, prompted_row(prompt, active)], plans[0], 1, 2)


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    axes: Mapping[AxisPack, float] | None = None,
    settings: SteerSettings = SteerSettings(),
    sampling: SamplingConfig = SamplingConfig(),
) -> list[SteeredAnswer]:
    """Base and edited answer for every prompt, as one batch of 2·N rows."""
    rows, planned = build_rows(lm, prompts, axes or {}, settings)
    outputs = generate_rows(lm, rows, sampling)
    return [
        SteeredAnswer(
            prompt,
            outputs[2 * i].text,
            outputs[2 * i + 1].text,
            {e.axis: e.layers for e in planned[i]},
        )
        for i, prompt in enumerate(prompts)
    ]


def stream(
    lm: LoadedModel,
    prompt: str,
    axes: Mapping[AxisPack, float] | None = None,
    settings: SteerSettings = SteerSettings(),
    sampling: SamplingConfig = SamplingConfig(),
) -> Iterator[tuple[str, str]]:
    """Yield (base, edited) text for one prompt as tokens arrive."""
    rows, _ = build_rows(lm, [prompt], axes or {}, settings)
    for texts in stream_rows(lm, rows, sampling):
        yield texts[0], texts[1]


def sweep_rows(
    lm: LoadedModel,
    prompt: str,
    pack: AxisPack,
    strengths: Sequence[float],
    settings: SteerSettings = SteerSettings(),
) -> list[Row]:
    """One prompt under one axis at several strengths: one row per strength, for one batch."""
    pack.check_compatible(lm)
    query = query_embeddings(lm, [prompt], pack.pooling, pack.site)[0]  # type: ignore[arg-type]
    return [Row(prompt, axis_edit(pack, s, query, settings).edit) for s in strengths]
