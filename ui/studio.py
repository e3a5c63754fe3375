"""The studio page: define axes, fit them live, one slider per axis, base vs edited, plots.

Only layout and wiring live here; every computation is a call into `alignez_core`.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import astuple, fields
from pathlib import Path

import gradio as gr
import torch

from alignez_core import AlignEZError, SamplingConfig
from alignez_core.axis import Axis, preset, preset_names
from alignez_core.errors import FitCancelled
from alignez_core.evaluate import EvalConfig, evaluate
from alignez_core.explain import best_layer, layer_report
from alignez_core.fit import FitConfig, fit_axis
from alignez_core.generation import Row, stream_rows
from alignez_core.judges import JUDGE_NAMES
from alignez_core.pack import AxisPack
from alignez_core.pairs import PairConfig
from alignez_core.parse import parse_floats, parse_layers
from alignez_core.queries import parse_queries
from alignez_core.report import eval_figure, markdown_table
from alignez_core.session import MAX_AXES, StudioSession, StudioSettings
from alignez_core.steering import (
    DEFAULT_BAND,
    STEER_RULES,
    SteerSettings,
    build_rows,
    sweep_rows,
)

from . import plots
from .render import CSS, side_by_side
from .shared import FitJobs, ModelHolder

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 256
SLIDER_RANGE = 2.0
SWEEP_STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)
DEFAULT_FIT_QUERIES = 16
EXAMPLES = [
    "What should I do this weekend?",
    "Describe your morning commute.",
    "How do I make a good cup of coffee?",
    "Tell me about the city where you live.",
]
CUSTOM = "(custom: type the poles)"
LAYER_MODES = ("band", "band top-n", "top-n (paper)", "pinned")
LAYER_MODES_INFO = (
    "band: every middle layer; band top-n: the prompt's best n of them; "
    "top-n (paper): the best n of all layers; pinned: the layers you type"
)
EVAL_MAX_PROMPTS = 24
EVAL_PROMPTS = [
    "What should I do this weekend?",
    "Describe your morning commute.",
    "How do I make a good cup of coffee?",
    "Tell me about autumn.",
]


def _message(text: str, kind: str = "info") -> str:
    prefix = {"info": "", "ok": "**Done.** ", "error": "**Error:** ", "busy": "**Working…** "}[kind]
    return prefix + text


class Studio:
    """Builds the Blocks app; handlers read per-session state from `gr.State`."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder
        self.jobs = FitJobs()

    # --- layout ---------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="AlignEZ Studio") as demo:
            self.session = gr.State(StudioSession())  # deep-copied for each browser session
            gr.Markdown(
                "# AlignEZ Studio\nSteer a language model along axes you name in plain words: "
                "the model writes its own good and bad answers, and its hidden states are "
                "edited along the directions that separate them "
                "([AlignEZ](https://arxiv.org/abs/2406.03642))."
            )
            self._model_bar()
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=320):
                    self._axes_panel()
                with gr.Column(scale=3, min_width=420):
                    self._compare_panel()
            self._plots_panel()
            self._evaluate_panel()
            self._wire()
        return demo

    def _model_bar(self) -> None:
        with gr.Row(equal_height=True):
            self.model_info = gr.Markdown(self._model_text(), elem_id="model-info")
            self.model_spec = gr.Textbox(
                label="Load another model",
                placeholder="Hub id, local folder or .gguf path (empty: embedded SmolLM2)",
                scale=2,
            )
            self.model_load = gr.Button("Load model", scale=0)

    def _axes_panel(self) -> None:
        gr.Markdown("## Axes")
        self.preset = gr.Dropdown(
            [*preset_names(), CUSTOM], value="cheerful", label="Preset", elem_id="preset"
        )
        start = preset("cheerful")
        with gr.Group():
            with gr.Row():
                self.positive = gr.Textbox(
                    start.positive, label="Positive pole", elem_id="positive"
                )
                self.negative = gr.Textbox(
                    start.negative, label="Negative pole", elem_id="negative"
                )
            self.axis_name = gr.Textbox(
                start.name, label="Axis name (optional)", elem_id="axis-name"
            )
        with gr.Accordion("Descriptions and seed queries (optional)", open=False):
            self.positive_desc = gr.Textbox(
                start.positive_description, label="Positive pole description", lines=2
            )
            self.negative_desc = gr.Textbox(
                start.negative_description, label="Negative pole description", lines=2
            )
            self.queries = gr.Textbox(
                label="Seed queries, one per line (empty: the built-in set)", lines=4
            )
        with gr.Row():
            self.n_queries = gr.Slider(
                2, 48, value=DEFAULT_FIT_QUERIES, step=1, label="Queries", elem_id="n-queries"
            )
            self.samples = gr.Slider(1, 4, value=1, step=1, label="Samples per pole")
        with gr.Row():
            self.fit_button = gr.Button("Fit axis", variant="primary", elem_id="fit")
            self.cancel_button = gr.Button("Cancel fit", elem_id="cancel-fit")
        self.fit_status = gr.Markdown(elem_id="fit-status")

        gr.Markdown(f"### Sliders (up to {MAX_AXES} axes)")
        self.no_axes_note = gr.Markdown("No axes yet: fit one above or upload a pack.")
        self.sliders = [
            gr.Slider(
                -SLIDER_RANGE,
                SLIDER_RANGE,
                value=0.0,
                step=0.1,
                visible=False,
                elem_id=f"slider-{i}",
                info="← toward the negative pole · toward the positive pole →",
            )
            for i in range(MAX_AXES)
        ]
        with gr.Accordion("Manage axes", open=False):
            self.selected_axis = gr.Dropdown([], label="Axis", elem_id="selected-axis")
            with gr.Row():
                self.new_name = gr.Textbox(label="Rename to", scale=2)
                self.rename_button = gr.Button("Rename", scale=0)
            with gr.Row():
                self.refit_button = gr.Button("Re-fit")
                self.remove_button = gr.Button("Remove", variant="stop")
                self.download_button = gr.Button("Download pack")
            self.pack_file = gr.File(label="Axis pack (.safetensors)", visible=False)
            self.upload_pack = gr.UploadButton(
                "Upload axis pack", file_types=[".safetensors"], elem_id="upload-pack"
            )
            with gr.Row():
                self.export_button = gr.Button("Export session")
                self.import_session = gr.UploadButton(
                    "Import session", file_types=[".zip"], elem_id="import-session"
                )
            self.session_file = gr.File(label="Session file", visible=False)
            self.axes_status = gr.Markdown(elem_id="axes-status")
        with gr.Accordion("Generated pairs and per-layer stats", open=False):
            self.pairs_table = gr.Dataframe(
                headers=["query", "positive answer", "negative answer"], wrap=True
            )
            self.stats_table = gr.Dataframe(
                headers=["layer", "pairs kept", "rank k", "explained"], wrap=True
            )

    def _compare_panel(self) -> None:
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
            self.rule = gr.Dropdown(list(STEER_RULES), value="steer", label="Edit rule")
            with gr.Row():
                self.layer_mode = gr.Radio(
                    list(LAYER_MODES), value="band", label="Layers", info=LAYER_MODES_INFO
                )
                self.top_n = gr.Slider(1, 12, value=5, step=1, label="Top-n layers (top-n modes)")
            self.pinned = gr.Textbox(label="Pinned layers (e.g. 8,9,10)")
            self.positions = gr.Radio(["last", "all"], value="last", label="Edit positions")
            with gr.Row():
                self.sweep = gr.Checkbox(label="Sweep one axis at several strengths")
                self.sweep_axis = gr.Dropdown([], label="Sweep axis")
        self.generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
        self.gen_status = gr.Markdown(elem_id="gen-status")
        base_html, edited_html = side_by_side("", "", "Edited")
        with gr.Row(equal_height=True):
            self.base_out = gr.HTML(base_html, elem_id="base-answer")
            self.edited_out = gr.HTML(edited_html, elem_id="edited-answer")
        self.sweep_table = gr.Dataframe(
            headers=["strength", "answer"], visible=False, wrap=True, elem_id="sweep-table"
        )

    def _plots_panel(self) -> None:
        gr.Markdown("## Why it moved")
        with gr.Row():
            self.plot_axis = gr.Dropdown([], label="Axis to plot", elem_id="plot-axis")
            self.plot_layer = gr.Slider(
                0, self.holder.lm.num_layers - 1, value=0, step=1, label="Layer"
            )
        with gr.Row():
            self.projection_plot = gr.Plot(plots.projection_figure(None, 0), elem_id="projection")
            self.spectrum_plot = gr.Plot(plots.spectrum_figure(None), elem_id="spectrum")
        self.overlap_plot = gr.Plot(plots.overlap_figure([]), elem_id="overlap")

    def _evaluate_panel(self) -> None:
        with gr.Accordion("Evaluate: does the slider steer? (independent judges)", open=False):
            with gr.Row():
                self.eval_axis = gr.Dropdown([], label="Axis", elem_id="eval-axis")
                self.eval_judges = gr.CheckboxGroup(
                    list(JUDGE_NAMES), value=["tone", "pole"], label="Judges"
                )
                self.eval_rules = gr.CheckboxGroup(
                    list(STEER_RULES), value=["steer", "caa"], label="Rules"
                )
            with gr.Row():
                self.eval_strengths = gr.Textbox("-2,-1,0,1,2", label="Strengths")
                self.eval_tokens = gr.Slider(8, 128, value=32, step=8, label="Max new tokens")
            self.eval_prompts = gr.Textbox(
                "\n".join(EVAL_PROMPTS), lines=4, label="Prompts, one per line"
            )
            self.eval_button = gr.Button("Evaluate", elem_id="evaluate")
            self.eval_status = gr.Markdown(elem_id="eval-status")
            self.eval_plot = gr.Plot(elem_id="eval-plot")
            self.eval_table = gr.Markdown()

    # --- wiring ---------------------------------------------------------------------------

    def _wire(self) -> None:
        self.preset.change(
            self.on_preset,
            self.preset,
            [self.positive, self.negative, self.axis_name, self.positive_desc, self.negative_desc],
        )
        self.model_load.click(
            self.on_load_model, [self.model_spec, self.session], [self.model_info, self.plot_layer]
        )
        fit_inputs = [
            self.preset,
            self.axis_name,
            self.positive,
            self.negative,
            self.positive_desc,
            self.negative_desc,
            self.queries,
            self.n_queries,
            self.samples,
            self.session,
        ]
        self.fit_button.click(
            self.on_fit, fit_inputs, self._axes_outputs(), concurrency_limit=2, concurrency_id="fit"
        )
        self.refit_button.click(
            self.on_refit,
            [self.selected_axis, self.session],
            self._axes_outputs(),
            concurrency_id="fit",
        )
        self.cancel_button.click(self.on_cancel, None, self.fit_status)
        for i, slider in enumerate(self.sliders):
            slider.change(self._slider_handler(i), [slider, self.session], self.session)
        self.remove_button.click(
            self.on_remove, [self.selected_axis, self.session], self._axes_outputs()
        )
        self.rename_button.click(
            self.on_rename, [self.selected_axis, self.new_name, self.session], self._axes_outputs()
        )
        self.upload_pack.upload(
            self.on_upload_pack, [self.upload_pack, self.session], self._axes_outputs()
        )
        self.download_button.click(
            self.on_download_pack,
            [self.selected_axis, self.session],
            [self.pack_file, self.axes_status],
        )
        settings = [
            self.prompt,
            self.rule,
            self.layer_mode,
            self.pinned,
            self.top_n,
            self.positions,
            self.max_tokens,
            self.temperature,
            self.seed,
        ]
        self.export_button.click(
            self.on_export, [*settings, self.session], [self.session_file, self.axes_status]
        )
        self.import_session.upload(
            self.on_import, [self.import_session, self.session], [*self._axes_outputs(), *settings]
        )
        for trigger in (self.generate_button.click, self.prompt.submit):
            trigger(
                self.on_generate,
                [
                    *settings,
                    self.sweep,
                    self.sweep_axis,
                    self.plot_axis,
                    self.plot_layer,
                    self.session,
                ],
                self._generate_outputs(),
                concurrency_limit=4,
                concurrency_id="generate",
            )
        self.eval_button.click(
            self.on_evaluate,
            [
                self.eval_axis,
                self.eval_judges,
                self.eval_rules,
                self.eval_strengths,
                self.eval_tokens,
                self.eval_prompts,
                self.session,
            ],
            [self.eval_status, self.eval_plot, self.eval_table],
            concurrency_id="fit",
        )
        for trigger in (self.plot_axis.change, self.plot_layer.release):
            trigger(
                self.on_plot,
                [self.plot_axis, self.plot_layer, self.session],
                [self.projection_plot, self.spectrum_plot],
            )

    def _generate_outputs(self) -> list:
        return [self.base_out, self.edited_out, self.gen_status, self.sweep_table,
                self.projection_plot, self.spectrum_plot, self.session]  # fmt: skip

    def _axes_outputs(self) -> list:
        return [
            self.session,
            self.fit_status,
            self.axes_status,
            self.no_axes_note,
            *self.sliders,
            self.selected_axis,
            self.sweep_axis,
            self.plot_axis,
            self.eval_axis,
            self.plot_layer,
            self.pairs_table,
            self.stats_table,
            self.projection_plot,
            self.spectrum_plot,
            self.overlap_plot,
        ]

    # --- helpers --------------------------------------------------------------------------

    def _model_text(self) -> str:
        lm = self.holder.lm
        return (
            f"**Model:** `{lm.model_id}` · {lm.num_layers} layers · hidden size "
            f"{lm.hidden_size} · {'chat' if lm.is_chat else 'base'} model"
        )

    def _axes_view(
        self,
        session: StudioSession,
        fit_status: str | None = None,
        axes_status: str = "",
        focus: str | None = None,
    ) -> dict:
        """Every axes-related output, recomputed from the session."""
        names = session.names()
        focus = focus if focus in names else (names[-1] if names else None)
        pack = session.axes.get(focus) if focus else None
        layer = best_layer(pack) if pack else 0
        view = {
            self.session: session,
            self.axes_status: axes_status,
            self.no_axes_note: gr.update(visible=not names),
            self.selected_axis: gr.update(choices=names, value=focus),
            self.sweep_axis: gr.update(choices=names, value=focus),
            self.plot_axis: gr.update(choices=names, value=focus),
            self.eval_axis: gr.update(choices=names, value=focus),
            self.plot_layer: gr.update(value=layer, maximum=self.holder.lm.num_layers - 1),
            self.pairs_table: self._pairs_rows(pack),
            self.stats_table: self._stats_rows(pack),
            self.projection_plot: plots.projection_figure(pack, layer),
            self.spectrum_plot: plots.spectrum_figure(pack),
            self.overlap_plot: plots.overlap_figure(list(session.axes.values())),
        }
        if fit_status is not None:
            view[self.fit_status] = fit_status
        for i, slider in enumerate(self.sliders):
            if i < len(names):
                pack = session.axes[names[i]]
                axis = pack.axis
                view[slider] = gr.update(
                    visible=True,
                    value=session.strengths.get(names[i], 0.0),
                    label=f"{axis.name}: {axis.negative} ← → {axis.positive}",
                    info=pack.slider_note(),
                )
            else:
                view[slider] = gr.update(visible=False, value=0.0)
        return view

    @staticmethod
    def _pairs_rows(pack: AxisPack | None) -> list[list[str]]:
        if pack is None:
            return []
        return [[p.query, p.positive, p.negative] for p in pack.pairs]

    @staticmethod
    def _stats_rows(pack: AxisPack | None) -> list[list]:
        if pack is None:
            return []
        return [
            [i, layer.pairs_kept, layer.rank, round(layer.explained, 3)]
            for i, layer in enumerate(pack.layers)
        ]

    @staticmethod
    def _session_key(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "local"

    # --- handlers -------------------------------------------------------------------------

    def on_preset(self, name: str):
        if name == CUSTOM or not name:
            return "", "", "", "", ""
        axis = preset(name)
        return (
            axis.positive,
            axis.negative,
            axis.name,
            axis.positive_description,
            axis.negative_description,
        )

    def on_load_model(self, spec: str, session: StudioSession, progress=gr.Progress()):
        progress(0, desc=f"Loading {spec or 'the embedded model'}…")
        previous = self.holder.lm.model_id
        try:
            lm = self.holder.load(spec or "")
        except AlignEZError as exc:
            return (
                self._model_text() + f"\n\n{_message(f'{exc} Still using {previous}.', 'error')}",
                gr.update(),
            )
        stale = [n for n, p in session.axes.items() if p.hidden_size != lm.hidden_size]
        note = f" Axes fitted on another model: {', '.join(stale)} (re-fit them)." if stale else ""
        return (
            self._model_text()
            + f"\n\n{_message('Loaded in ' + f'{lm.load_seconds:.1f}s.' + note, 'ok')}",
            gr.update(value=0, maximum=lm.num_layers - 1),
        )

    def on_fit(
        self,
        preset_name,
        name,
        positive,
        negative,
        positive_desc,
        negative_desc,
        queries_text,
        n_queries,
        samples,
        session,
        request: gr.Request,
        progress=gr.Progress(),
    ) -> Iterator[dict]:
        try:
            axis = Axis(
                name=(name or "").strip()
                or f"{(positive or '').strip()}-{(negative or '').strip()}",
                positive=positive or "",
                negative=negative or "",
                positive_description=positive_desc or "",
                negative_description=negative_desc or "",
            )
            queries = (
                parse_queries(queries_text, "seed queries").queries
                if queries_text and queries_text.strip()
                else None
            )
            config = FitConfig(
                n_queries=int(n_queries), pairs=PairConfig(samples_per_pole=int(samples))
            )
            if axis.name not in session.axes and len(session.axes) >= MAX_AXES:
                raise AlignEZError(f"A session holds at most {MAX_AXES} axes; remove one first.")
        except AlignEZError as exc:
            yield {self.fit_status: _message(str(exc), "error")}
            return
        yield from self._run_fit(axis, queries, config, session, request, progress)

    def on_refit(self, name, session, request: gr.Request, progress=gr.Progress()):
        pack = session.axes.get(name)
        if pack is None:
            yield {self.fit_status: _message("Pick an axis to re-fit.", "error")}
            return
        config = FitConfig(
            n_queries=int(pack.fit_config.get("n_queries", DEFAULT_FIT_QUERIES)),
            pooling=pack.pooling,
        )
        yield from self._run_fit(pack.axis, None, config, session, request, progress)

    def _run_fit(self, axis, queries, config, session, request, progress) -> Iterator[dict]:
        key = self._session_key(request)
        cancel = self.jobs.start(key)
        if cancel is None:  # the running fit keeps the status line; this one says so in a toast
            message = "A fit is already running in this session: wait for it or cancel it."
            gr.Warning(message)
            yield {self.axes_status: _message(message, "error")}
            return
        lm = self.holder.lm
        events: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["pack"] = fit_axis(
                    lm, axis, queries, config, lambda *a: events.put(a), cancel
                )
            except BaseException as exc:  # reported below
                outcome["error"] = exc

        started = time.perf_counter()
        worker = threading.Thread(target=work, daemon=True)
        try:
            worker.start()
            yield {self.fit_status: _message(f"Fitting {axis.name}: starting…", "busy")}
            while worker.is_alive() or not events.empty():
                try:
                    stage, done, total = events.get(timeout=0.25)
                except queue.Empty:
                    continue
                progress((done, total), desc=f"{stage}")
                yield {
                    self.fit_status: _message(
                        f"Fitting {axis.name}: {stage} {done}/{total}", "busy"
                    )
                }
            worker.join()
        finally:
            if worker.is_alive():  # the page went away mid-fit: stop the worker too
                cancel.set()
            self.jobs.finish(key)
        error = outcome.get("error")
        if isinstance(error, FitCancelled):
            yield {self.fit_status: _message("Fit cancelled; your other axes are unchanged.")}
            return
        if error is not None:
            text = str(error) if isinstance(error, AlignEZError) else f"Fit failed: {error!r}"
            yield {self.fit_status: _message(text, "error")}
            return
        pack: AxisPack = outcome["pack"]
        session.add(pack)
        seconds = time.perf_counter() - started
        fitted = sum(r > 0 for r in pack.ranks())
        status = _message(
            f"Fitted {axis.name} in {seconds:.1f}s: {len(pack.pairs)} pairs, "
            f"{fitted}/{pack.num_layers} layers with directions.",
            "ok",
        )
        yield self._axes_view(session, status, focus=pack.name)

    def on_cancel(self, request: gr.Request):
        if self.jobs.cancel(self._session_key(request)):
            return _message("Cancelling…", "busy")
        return _message("No fit is running.")

    @staticmethod
    def _slider_handler(index: int):
        def on_slider(value: float, session: StudioSession) -> StudioSession:
            names = session.names()
            if index < len(names) and value is not None:
                session.strengths[names[index]] = float(value)
            return session

        return on_slider

    def on_remove(self, name, session):
        if name not in session.axes:
            return self._axes_view(
                session, axes_status=_message("Pick an axis to remove.", "error")
            )
        session.remove(name)
        return self._axes_view(session, axes_status=_message(f"Removed {name}.", "ok"))

    def on_rename(self, name, new_name, session):
        try:
            session.rename(name or "", new_name or "")
        except AlignEZError as exc:
            return self._axes_view(session, axes_status=_message(str(exc), "error"), focus=name)
        return self._axes_view(
            session,
            axes_status=_message(f"Renamed to {new_name.strip()}.", "ok"),
            focus=" ".join(new_name.split()),
        )

    def on_upload_pack(self, file, session):
        try:
            pack = AxisPack.load(_path(file), self.holder.lm)
            session.add(pack)
        except AlignEZError as exc:
            return self._axes_view(session, axes_status=_message(str(exc), "error"))
        return self._axes_view(
            session, axes_status=_message(f"Loaded axis {pack.name}.", "ok"), focus=pack.name
        )

    def on_download_pack(self, name, session):
        pack = session.axes.get(name)
        if pack is None:
            return gr.update(visible=False), _message("Pick an axis to download.", "error")
        folder = Path(tempfile.mkdtemp(prefix="alignez-pack-"))
        path = pack.save(folder / f"{_safe_filename(pack.name)}.safetensors")
        return gr.update(value=str(path), visible=True), _message(f"Pack for {name} ready.", "ok")

    def on_export(self, *values):
        *settings, session = values
        session.settings = StudioSettings(*settings)
        folder = Path(tempfile.mkdtemp(prefix="alignez-session-"))
        path = session.save(folder / "alignez-session.zip")
        return gr.update(value=str(path), visible=True), _message("Session exported.", "ok")

    def on_import(self, file, session):
        """Replace the session from a file; the settings widgets follow `StudioSettings` order."""
        try:
            loaded = StudioSession.load(_path(file), self.holder.lm)
        except (AlignEZError, OSError, TypeError, ValueError) as exc:
            view = self._axes_view(session, axes_status=_message(str(exc), "error"))
            settings = [gr.update()] * len(fields(StudioSettings))
            return [view.get(c, gr.update()) for c in self._axes_outputs()] + settings
        view = self._axes_view(
            loaded, axes_status=_message(f"Imported a session with {len(loaded.axes)} axes.", "ok")
        )
        return [view.get(c, gr.update()) for c in self._axes_outputs()] + list(
            astuple(loaded.settings)
        )

    def _steer_settings(self, rule, layer_mode, pinned, top_n, positions) -> SteerSettings:
        layers = parse_layers(pinned or "") if layer_mode == "pinned" else None
        band = None if layer_mode == "top-n (paper)" else DEFAULT_BAND
        top = int(top_n) if layer_mode in ("band top-n", "top-n (paper)") else None
        return SteerSettings(rule, top, layers, band, positions)

    def on_generate(
        self,
        prompt,
        rule,
        layer_mode,
        pinned,
        top_n,
        positions,
        max_tokens,
        temperature,
        seed,
        sweep,
        sweep_axis,
        plot_axis,
        plot_layer,
        session: StudioSession,
    ):
        lm = self.holder.lm
        prompt = prompt or ""
        try:
            if not prompt.strip():
                raise AlignEZError("Type a prompt first.")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise AlignEZError(
                    f"The prompt is {len(prompt)} characters; the cap is "
                    f"{MAX_PROMPT_CHARS}. Shorten it and try again."
                )
            if layer_mode == "pinned" and not (pinned or "").strip():
                raise AlignEZError("Pinned layers are empty: type e.g. 8,9,10 or choose band.")
            settings = self._steer_settings(rule, layer_mode, pinned, top_n, positions)
            sampling = SamplingConfig(
                max_new_tokens=int(max_tokens), temperature=float(temperature), seed=int(seed or 0)
            )
            for pack in session.axes.values():
                pack.check_compatible(lm)
        except AlignEZError as exc:
            yield {self.gen_status: _message(str(exc), "error")}
            return
        if sweep:
            yield from self._sweep(lm, prompt, session.axes.get(sweep_axis), settings, sampling)
            return
        steer = session.steer()
        active = {p: s for p, s in steer.items() if s != 0}
        note = "" if active else " No axis is active (fit one and move its slider): base only."
        label = (
            "Edited: " + ", ".join(f"{p.name} {s:+.1f}" for p, s in active.items())
            if active
            else "Edited (no axis active)"
        )
        plot_pack = session.axes.get(plot_axis)
        layer = int(plot_layer or 0)
        traces = {layer: []} if plot_pack is not None else None
        started = time.perf_counter()
        first_token = None
        try:
            if active:
                rows, _ = build_rows(lm, [prompt], active, settings)
            else:
                rows = [Row(prompt)]
            site = plot_pack.site if plot_pack is not None else "residual"
            for texts in stream_rows(lm, rows, sampling, traces, site):
                first_token = first_token or time.perf_counter() - started
                base, edited = texts[0], (texts[1] if active else "")
                base_html, edited_html = side_by_side(base, edited, label)
                yield {
                    self.base_out: base_html,
                    self.edited_out: edited_html,
                    self.gen_status: _message("Generating…", "busy"),
                    self.sweep_table: gr.update(visible=False),
                }
        except AlignEZError as exc:
            yield {self.gen_status: _message(str(exc), "error")}
            return
        total = time.perf_counter() - started
        done = _message(
            f"Done in {total:.1f}s (first token after {first_token or 0:.2f}s).{note}", "ok"
        )
        view = {self.gen_status: done, self.session: session}
        if plot_pack is not None and traces and traces[layer]:
            steps = torch.stack(traces[layer])  # (T, B, d)
            session.last_traces = {"base": steps[:, 0]}
            if active:
                session.last_traces["edited"] = steps[:, 1]
            strength = steer.get(plot_pack, 0.0)
            report = layer_report(lm, prompt, plot_pack, strength, settings)
            view[self.projection_plot] = plots.projection_figure(
                plot_pack, layer, session.last_traces
            )
            view[self.spectrum_plot] = plots.spectrum_figure(plot_pack, report)
        yield view

    def _sweep(self, lm, prompt, pack, settings, sampling):
        if pack is None:
            yield {self.gen_status: _message("Pick a fitted axis to sweep.", "error")}
            return
        strengths = SWEEP_STRENGTHS
        rows = sweep_rows(lm, prompt, pack, strengths, settings)
        try:
            for texts in stream_rows(lm, rows, sampling):
                table = [[f"{s:+.1f}", t] for s, t in zip(strengths, texts, strict=True)]
                yield {
                    self.sweep_table: gr.update(value=table, visible=True),
                    self.gen_status: _message(f"Sweeping {pack.name}…", "busy"),
                }
        except AlignEZError as exc:
            yield {self.gen_status: _message(str(exc), "error")}
            return
        yield {
            self.gen_status: _message(
                f"Swept {pack.name} at {len(strengths)} strengths in one batch.", "ok"
            )
        }

    def on_evaluate(
        self, name, judges, rules, strengths, tokens, prompts_text, session, progress=gr.Progress()
    ):
        pack = session.axes.get(name)
        try:
            if pack is None:
                raise AlignEZError("Pick a fitted axis to evaluate.")
            prompts = parse_queries(prompts_text or "", "prompts").queries[:EVAL_MAX_PROMPTS]
            config = EvalConfig(
                strengths=parse_floats(strengths or "", "Strengths"),
                rules=tuple(rules or ()),
                judges=tuple(judges or ()),
                max_new_tokens=int(tokens),
            )
            if not config.judges:
                raise AlignEZError("Pick at least one judge.")
            report = evaluate(
                self.holder.lm,
                pack,
                prompts,
                config,
                lambda stage, done, total: progress((done, total), desc=stage),
            )
        except AlignEZError as exc:
            return _message(str(exc), "error"), gr.update(), gr.update()
        done = _message(f"Evaluated {pack.name} on {len(prompts)} prompts.", "ok")
        return done, eval_figure(report), markdown_table(report)

    def on_plot(self, name, layer, session):
        pack = session.axes.get(name)
        layer = int(layer or 0)
        if pack is not None and layer >= pack.num_layers:
            layer = 0
        traces = getattr(session, "last_traces", None)
        return plots.projection_figure(pack, layer, traces), plots.spectrum_figure(pack)


def _path(file) -> str:
    return file if isinstance(file, str) else getattr(file, "name", str(file))


def _safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "axis"


def build_app(holder: ModelHolder | None = None) -> gr.Blocks:
    from alignez_core import load_model

    holder = holder or ModelHolder(load_model(os.environ.get("ALIGNEZ_MODEL") or None))
    return Studio(holder).build()


def launch() -> None:
    demo = build_app()
    demo.queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        css=CSS,
        show_error=True,
    )
