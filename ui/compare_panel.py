"""The Compare panel: one prompt answered by the base model, the edited model and the prompting
baseline (the poles asked for in words), streamed from one batch; or one axis swept."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr
import torch

from alignez_core import AlignEZError, SamplingConfig
from alignez_core.axes.pack import AxisPack
from alignez_core.engine.budget import budget_summary
from alignez_core.engine.edit import POSITIONS
from alignez_core.steering import (
    SLIDER_RULES,
    SteerSettings,
    comparison_rows,
    layer_budgets,
    sweep_rows,
)
from alignez_core.steering.explain import layer_report
from alignez_core.steering.options import settings_from_text
from alignez_core.steering.prompting import prompted_row
from ui.session import AS_FITTED, MAX_AXES, StudioSession

from . import plots
from .plots_panel import PlotsPanel
from .render import answer_columns, status
from .sliders import apply_sliders

MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class GenerateRequest:
    """What the page sent with Generate, in the order of its widgets (`studio.py`)."""

    prompt: str
    rule: str | None
    layer_mode: str
    pinned: str | None
    top_n: float
    positions: str | None
    max_tokens: float
    temperature: float
    seed: float | None
    budget: bool
    sweep: bool
    sweep_axis: str | None
    show_prompted: bool
    plot_axis: str | None
    plot_layer: float | None
    trajectory: bool


MAX_NEW_TOKENS = 256
SWEEP_STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)
EXAMPLES = [
    "What should I do this weekend?",
    "Describe your morning commute.",
    "How do I make a good cup of coffee?",
    "Tell me about the city where you live.",
]
LAYER_MODES = ("band", "band top-n", "top-n (paper)", "pinned")
LAYER_MODES_INFO = (
    "band: every layer of each axis's own band; band top-n: the prompt's best n of them; "
    "top-n (paper): the best n of all layers; pinned: the layers you type"
)


def steer_settings(rule, layer_mode, pinned, top_n, positions, budget) -> SteerSettings:
    return settings_from_text(
        rule=None if rule == AS_FITTED else rule,
        layers=(pinned or "") if layer_mode == "pinned" else None,
        band="all" if layer_mode == "top-n (paper)" else None,  # None: each axis's own band
        top_n=int(top_n) if layer_mode in ("band top-n", "top-n (paper)") else None,
        positions=None if positions == AS_FITTED else positions,
        budget=None if budget else "off",
    )


def edited_label(active: dict[AxisPack, float]) -> str:
    if not active:
        return "Edited (no axis active)"
    parts = [
        f"{p.name} {s:+.1f}" + (" (past the clean edge)" if abs(s) > 1 and p.calibration else "")
        for p, s in active.items()
    ]
    return "Edited: " + ", ".join(parts)


class ComparePanel:
    def __init__(self, holder, plots_panel: PlotsPanel) -> None:
        self.holder = holder
        self.plots = plots_panel

    def build(self) -> None:
        gr.Markdown("## Compare")
        self.prompt = gr.Textbox(
            label="Prompt", lines=3, elem_id="prompt", placeholder="Ask the model something…"
        )
        gr.Examples(EXAMPLES, inputs=self.prompt)
        gr.Markdown(
            f"<small>Caps: prompt ≤ {MAX_PROMPT_CHARS} characters · ≤ {MAX_NEW_TOKENS} new "
            f"tokens · ≤ {MAX_AXES} axes.</small>"
        )
        with gr.Row():
            self.max_tokens = gr.Slider(8, MAX_NEW_TOKENS, value=64, step=8, label="Max new tokens")
            self.temperature = gr.Slider(0, 1.5, value=0.0, step=0.05, label="Temperature")
            self.seed = gr.Number(value=0, precision=0, label="Seed")
        with gr.Accordion("Advanced steering settings", open=False):
            self.rule = gr.Dropdown(
                [AS_FITTED, *SLIDER_RULES], value=AS_FITTED, label="Edit rule",
                info="as fitted: each axis's own, the one its slider was calibrated with",
            )  # fmt: skip
            with gr.Row():
                self.layer_mode = gr.Radio(
                    list(LAYER_MODES), value="band", label="Layers", info=LAYER_MODES_INFO
                )
                self.top_n = gr.Slider(1, 12, value=5, step=1, label="Top-n layers (top-n modes)")
            self.pinned = gr.Textbox(label="Pinned layers (e.g. 8,9,10)")
            with gr.Row():
                self.positions = gr.Radio(
                    [AS_FITTED, *POSITIONS], value=AS_FITTED, label="Edit positions"
                )
                self.budget = gr.Checkbox(
                    value=True, label="Shared budget", elem_id="budget",
                    info="several axes at one layer push no harder together than the strongest "
                    "alone; off: raw sums",
                )  # fmt: skip
            with gr.Row():
                self.sweep = gr.Checkbox(label="Sweep one axis at several strengths")
                self.sweep_axis = gr.Dropdown([], label="Sweep axis")
        with gr.Row():
            self.generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
            self.show_prompted = gr.Checkbox(
                value=True, label="Prompted column", elem_id="show-prompted",
                info="the same poles asked for in words, no edit",
            )  # fmt: skip
        self.status = gr.Markdown(elem_id="gen-status")
        columns = answer_columns("", "", "Edited")
        with gr.Row(equal_height=True):
            self.base_out = gr.HTML(columns[0], elem_id="base-answer")
            self.edited_out = gr.HTML(columns[1], elem_id="edited-answer")
            self.prompted_out = gr.HTML(columns[2], elem_id="prompted-answer")
        self.sweep_table = gr.Dataframe(
            headers=["strength", "answer"], visible=False, wrap=True, elem_id="sweep-table"
        )

    def settings(self) -> list:
        """The widgets saved with a session, in `StudioSettings` order."""
        return [self.prompt, self.rule, self.layer_mode, self.pinned, self.top_n, self.positions,
                self.max_tokens, self.temperature, self.seed, self.budget]  # fmt: skip

    def axes_outputs(self) -> list:
        return [self.sweep_axis]

    def axes_view(self, session: StudioSession, focus: AxisPack | None) -> dict:
        names = session.names()
        return {self.sweep_axis: gr.update(choices=names, value=focus.name if focus else None)}

    def outputs(self) -> list:
        return [self.base_out, self.edited_out, self.prompted_out, self.status, self.sweep_table,
                self.plots.projection, self.plots.spectrum, self.plots.budget_note]  # fmt: skip

    def on_generate(
        self, prompt, rule, layer_mode, pinned, top_n, positions, max_tokens, temperature, seed,
        budget, sweep, sweep_axis, show_prompted, plot_axis, plot_layer, trajectory,
        session: StudioSession, *strengths,
    ):  # fmt: skip
        """Generate with the sliders' values as the page shows them (`strengths`, axis order)."""
        request = GenerateRequest(
            prompt or "", rule, layer_mode, pinned, top_n, positions, max_tokens, temperature,
            seed, budget, bool(sweep), sweep_axis, bool(show_prompted), plot_axis, plot_layer,
            bool(trajectory),
        )  # fmt: skip
        try:
            settings, sampling = self._checked(request, session, strengths)
        except AlignEZError as exc:
            yield {self.status: status(str(exc), "error")}
            return
        if request.sweep:
            pack = session.axes.get(request.sweep_axis) if request.sweep_axis else None
            yield from self._sweep(
                self.holder.lm, request.prompt, pack, settings, sampling, request.show_prompted
            )
            return
        yield from self._compare(request, session, settings, sampling)

    def _checked(
        self, request: GenerateRequest, session: StudioSession, strengths: tuple
    ) -> tuple[SteerSettings, SamplingConfig]:
        """The request's settings, after every check that can refuse it (nothing has run)."""
        prompt = request.prompt
        if not prompt.strip():
            raise AlignEZError("Type a prompt first.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise AlignEZError(
                f"The prompt is {len(prompt)} characters; the cap is "
                f"{MAX_PROMPT_CHARS}. Shorten it and try again."
            )
        if not 1 <= int(request.max_tokens or 0) <= MAX_NEW_TOKENS:  # API calls skip the slider
            raise AlignEZError(f"New tokens must be 1–{MAX_NEW_TOKENS}, got {request.max_tokens}.")
        if request.layer_mode == "pinned" and not (request.pinned or "").strip():
            raise AlignEZError("Pinned layers are empty: type e.g. 8,9,10 or choose band.")
        apply_sliders(session, strengths)
        settings = steer_settings(
            request.rule, request.layer_mode, request.pinned, request.top_n, request.positions,
            request.budget,
        )  # fmt: skip
        sampling = SamplingConfig(
            max_new_tokens=int(request.max_tokens),
            temperature=float(request.temperature),
            seed=int(request.seed or 0),
        )
        for pack in session.axes.values():
            pack.check_compatible(self.holder.lm)
        return settings, sampling

    def _compare(self, request, session, settings, sampling):
        """Base, edited and prompted answers streamed from one batch, then the plots."""
        lm, prompt = self.holder.lm, request.prompt
        strengths = session.pack_strengths()
        active = {p: s for p, s in strengths.items() if s != 0}
        note = "" if active else " No axis is active (fit one and move its slider): base only."
        label = edited_label(active)
        instruction_label = "Prompted: " + ", ".join(
            f"{p.axis.positive if s > 0 else p.axis.negative}" for p, s in active.items()
        )
        plot_pack = session.axes.get(request.plot_axis) if request.plot_axis else None
        layer = int(request.plot_layer or 0)
        traces: dict[int, list[torch.Tensor]] | None = {layer: []} if plot_pack else None
        started = time.perf_counter()
        first_token = None
        columns = answer_columns("", "", label)
        try:
            batch = comparison_rows(lm, prompt, active, settings, request.show_prompted)
            shared = budget_summary(layer_budgets(batch.plans, settings), settings.budget)
            site = plot_pack.site if plot_pack is not None else "residual"
            for texts in self.holder.stream(lm, batch.rows, sampling, traces, site):
                first_token = first_token or time.perf_counter() - started
                edited = texts[batch.edited] if batch.edited is not None else ""
                shown = texts[batch.prompted] if batch.prompted is not None else ""
                columns = answer_columns(texts[0], edited, label, shown, instruction_label)
                yield {
                    self.base_out: columns[0],
                    self.edited_out: columns[1],
                    self.prompted_out: gr.update(value=columns[2], visible=request.show_prompted),
                    self.status: status("Generating…", "busy"),
                    self.sweep_table: gr.update(visible=False),
                }
        except AlignEZError as exc:
            yield {self.status: status(str(exc), "error")}
            return
        total = time.perf_counter() - started
        view = {
            self.status: status(
                f"Done in {total:.1f}s (first token after {first_token or 0:.2f}s).{note}", "ok"
            ),
            self.plots.budget_note: shared,
            # the final answers again: an API client reads them from the last update
            self.base_out: columns[0],
            self.edited_out: columns[1],
            self.prompted_out: gr.update(value=columns[2], visible=request.show_prompted),
        }
        if plot_pack is not None and traces and traces[layer]:
            view |= self._plots(session, plot_pack, layer, traces[layer], request, settings)
        yield view

    def _plots(self, session, plot_pack, layer, steps_at_layer, request, settings) -> dict:
        """The projection and spectrum of the answers just generated, at the plotted layer."""
        steps = torch.stack(steps_at_layer)  # (T, B, d)
        names = ["base", "edited", "prompted"][: steps.shape[1]]
        session.last_traces = {n: steps[:, i] for i, n in enumerate(names)}
        session.last_traces |= {"axis": plot_pack.name, "layer": layer}
        strength = session.pack_strengths().get(plot_pack, 0.0)
        report = layer_report(self.holder.lm, request.prompt, plot_pack, strength, settings)
        return {
            self.plots.projection: plots.projection_figure(
                plot_pack, layer, session.last_traces, request.trajectory
            ),
            self.plots.spectrum: plots.spectrum_figure(plot_pack, report),
        }

    def _sweep(self, lm, prompt, pack, settings, sampling, with_prompted: bool):
        if pack is None:
            yield {self.status: status("Pick a fitted axis to sweep.", "error")}
            return
        labels = [f"{s:+.1f}" for s in SWEEP_STRENGTHS]
        rows = sweep_rows(lm, prompt, pack, SWEEP_STRENGTHS, settings)
        if with_prompted:
            for sign, pole in ((-1.0, pack.axis.negative), (1.0, pack.axis.positive)):
                rows.append(prompted_row(prompt, {pack: sign}))
                labels.append(f"prompted: {pole}")
        try:
            for texts in self.holder.stream(lm, rows, sampling):
                table = [[label, t] for label, t in zip(labels, texts, strict=True)]
                yield {
                    self.sweep_table: gr.update(value=table, visible=True),
                    self.status: status(f"Sweeping {pack.name}…", "busy"),
                }
        except AlignEZError as exc:
            yield {self.status: status(str(exc), "error")}
            return
        yield {self.status: status(f"Swept {pack.name}: {len(rows)} rows in one batch.", "ok")}
