"""The Axes panel: define an axis by its poles, fit it live with progress, one slider per axis."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import gradio as gr

from alignez_core import AlignEZError
from alignez_core.axes.axis import Axis, preset, preset_band, preset_names
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_names
from alignez_core.axes.queries import parse_queries
from alignez_core.engine.memory import release_freed_memory
from alignez_core.errors import FitCancelled
from alignez_core.fitting.fit import READOUTS, FitConfig, fit_axis, readout_for_kind
from alignez_core.fitting.pairs import pairs_for_kind
from alignez_core.fitting.train import FIT_METHODS
from ui.session import MAX_AXES, StudioSession

from .render import status
from .shared import FitJobs, ModelHolder
from .sliders import SLIDER_RANGE

DEFAULT_FIT_QUERIES = 16
# what training adds to a fit, per query, on SmolLM2 on a 2-core CPU: 61 s at 8 queries, 151 s
# at 24, alone (docs/RESULTS.md, "Trained directions"); rounded up for a busy machine
TRAIN_SECONDS_PER_QUERY = 8
CUSTOM = "(custom: type the poles)"
AxesView = Callable[..., dict]  # (session, fit_status=, axes_status=, focus=) → every axes output


def default_name(positive: str, negative: str) -> str:
    """The name an axis gets when the user typed none: its poles."""
    return f"{(positive or '').strip()}-{(negative or '').strip()}"


def has_prefit(preset_name: str | None, model_id: str) -> bool:
    """Whether the preset ships a pack fitted on the model (`alignez_core.axes.prefit`)."""
    return preset_name in prefitted_names(model_id)


def session_key(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


class AxesPanel:
    def __init__(self, holder: ModelHolder, jobs: FitJobs) -> None:
        self.holder = holder
        self.jobs = jobs
        self.view: AxesView = lambda session, **_: {}  # the studio's full view, set at wiring

    def samples_default(self) -> dict:
        """The samples slider's value and note for the loaded model's kind: an instruct model
        pairs one greedy answer per pole; a base model chooses among 4 by its own contrast."""
        pairs = pairs_for_kind(self.holder.lm.effective_kind)
        note = (
            "the model's own contrast picks each query's pair from all of them"
            if pairs.select == "contrast"
            else "one pair per sample"
        )
        return {"value": pairs.samples_per_pole, "info": note}

    def readout_default(self) -> str:
        """The readout radio's value for the loaded model's kind (`readout_for_kind`)."""
        return readout_for_kind(self.holder.lm.effective_kind)

    def kind_updates(self) -> tuple[dict, dict]:
        """The samples slider's and the readout radio's updates when another model loads."""
        return gr.update(**self.samples_default()), gr.update(value=self.readout_default())

    def build(self) -> None:
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
            self.name = gr.Textbox(start.name, label="Axis name (optional)", elem_id="axis-name")
        self.name_typed = gr.State(False)  # the user typed a name: pole edits no longer rename
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
            self.samples = gr.Slider(
                1, 8, step=1, label="Samples per pole", **self.samples_default()
            )
            self.readout = gr.Radio(
                list(READOUTS), value=self.readout_default(), label="Read the axis from",
                info="persona: the model reading each pole as an instruction; answers: its own "
                "pole answers (AlignEZ's pairs)", elem_id="readout",
            )  # fmt: skip
            self.method = gr.Radio(
                list(FIT_METHODS), value=FitConfig().method, label="Directions",
                info="mean: the pairs' mean difference; trained: that, then trained on the same "
                f"pairs (persona readout; about {TRAIN_SECONDS_PER_QUERY:g} s more per query on "
                "a 2-core CPU)", elem_id="method",
            )  # fmt: skip
        with gr.Row():
            self.fit_button = gr.Button("Fit axis", variant="primary", elem_id="fit")
            self.prefit_button = gr.Button(
                "Use pre-fitted (instant)",
                elem_id="use-prefitted",
                visible=has_prefit(start.name, self.holder.lm.model_id),
            )
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
            )
            for i in range(MAX_AXES)
        ]

    def fit_inputs(self) -> list:
        return [self.preset, self.name, self.positive, self.negative, self.positive_desc,
                self.negative_desc, self.queries, self.n_queries, self.samples,
                self.readout, self.method]  # fmt: skip

    def axes_outputs(self) -> list:
        return [self.no_axes_note, *self.sliders]

    def axes_view(self, session: StudioSession, focus: AxisPack | None) -> dict:
        names = session.names()
        view: dict = {self.no_axes_note: gr.update(visible=not names)}
        for i, slider in enumerate(self.sliders):
            if i >= len(names):
                view[slider] = gr.update(visible=False, value=0.0)
                continue
            pack = session.axes[names[i]]
            axis = pack.axis
            calibrated = pack.calibration is not None
            view[slider] = gr.update(
                visible=True,
                value=session.strengths.get(names[i], 0.0),
                label=f"{axis.name}: {axis.negative} ← → {axis.positive}",
                info=pack.slider_note() + (" · shaded: past the clean edge" if calibrated else ""),
                elem_classes=["calibrated"] if calibrated else [],
            )
        return view

    # --- handlers -------------------------------------------------------------------------

    def on_preset(self, name: str):
        """A preset fills the poles; choosing 'custom' keeps what is typed."""
        shipped = gr.update(visible=has_prefit(name, self.holder.lm.model_id))
        if name == CUSTOM or not name:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), False, shipped
        axis = preset(name)
        return (axis.positive, axis.negative, axis.name, axis.positive_description,
                axis.negative_description, False, shipped)  # fmt: skip

    @staticmethod
    def on_pole_typed(positive: str, negative: str, name_typed: bool):
        """Typed poles make a custom axis; its name follows them unless the user typed one."""
        name = gr.update() if name_typed else default_name(positive, negative)
        return CUSTOM, name, gr.update(visible=False)

    def on_fit(
        self, preset_name, name, positive, negative, positive_desc, negative_desc, queries_text,
        n_queries, samples, readout, method, session: StudioSession, request: gr.Request,
        progress=gr.Progress(),
    ) -> Iterator[dict]:  # fmt: skip
        try:
            axis = Axis(
                name=(name or "").strip() or default_name(positive, negative),
                positive=positive or "",
                negative=negative or "",
                positive_description=positive_desc or "",
                negative_description=negative_desc or "",
            )
            axis = replace(axis, band=preset_band(preset_name, axis))
            queries = (
                parse_queries(queries_text, "seed queries").queries
                if queries_text and queries_text.strip()
                else None
            )
            kind = self.holder.lm.effective_kind
            chosen = {"readout": readout, "method": method}  # unset radios: the kind's defaults
            config = FitConfig.for_kind(
                kind,
                n_queries=int(n_queries),
                pairs=replace(pairs_for_kind(kind), samples_per_pole=int(samples)),
                **{key: value for key, value in chosen.items() if value},
            )
            if axis.name not in session.axes and len(session.axes) >= MAX_AXES:
                raise AlignEZError(f"A session holds at most {MAX_AXES} axes; remove one first.")
        except AlignEZError as exc:
            yield {self.fit_status: status(str(exc), "error")}
            return
        yield from self.run_fit(axis, queries, config, session, request, progress)

    def on_refit(self, name, session: StudioSession, request: gr.Request, progress=gr.Progress()):
        pack = session.axes.get(name) if name else None
        if pack is None:
            yield {self.fit_status: status("Pick an axis to re-fit.", "error")}
            return
        config = FitConfig.for_kind(
            self.holder.lm.effective_kind,
            n_queries=int(pack.fit_config.get("n_queries", DEFAULT_FIT_QUERIES)),
            pooling=pack.pooling,
            readout=pack.fit_config.get("readout", "answers"),  # packs before readouts: answers
        )
        yield from self.run_fit(pack.axis, None, config, session, request, progress)

    def run_fit(
        self, axis: Axis, queries: Sequence[str] | None, config: FitConfig,
        session: StudioSession, request: gr.Request | None, progress,
    ) -> Iterator[dict]:  # fmt: skip
        """Fit in a worker thread, streaming its progress; a closed page cancels the worker."""
        key = session_key(request)
        cancel = self.jobs.start(key)
        if cancel is None:  # the running fit keeps the status line; this one says so in a toast
            message = "A fit is already running in this session: wait for it or cancel it."
            gr.Warning(message)
            yield self.view(session, axes_status=status(message, "error"))
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

        expect = ""
        if config.method == "trained":
            minutes = TRAIN_SECONDS_PER_QUERY * config.n_queries / 60
            expect = f" (training adds about {minutes:.0f} min on a 2-core CPU)"
        started = time.perf_counter()
        worker = threading.Thread(target=work, daemon=True)
        try:
            worker.start()
            yield {self.fit_status: status(f"Fitting {axis.name}: starting…{expect}", "busy")}
            while worker.is_alive() or not events.empty():
                try:
                    stage, done, total = events.get(timeout=0.25)
                except queue.Empty:
                    continue
                progress((done, total), desc=f"{stage}")
                yield {
                    self.fit_status: status(f"Fitting {axis.name}: {stage} {done}/{total}", "busy")
                }
            worker.join()
        finally:
            if worker.is_alive():  # the page went away mid-fit: stop the worker too
                cancel.set()
            self.jobs.finish(key)
            release_freed_memory()  # the fit's batches, kept by glibc otherwise
        error = outcome.get("error")
        if isinstance(error, FitCancelled):
            yield {self.fit_status: status("Fit cancelled; your other axes are unchanged.")}
            return
        if error is not None:
            text = str(error) if isinstance(error, AlignEZError) else f"Fit failed: {error!r}"
            yield {self.fit_status: status(text, "error")}
            return
        pack: AxisPack = outcome["pack"]
        session.add(pack)
        fitted = sum(r > 0 for r in pack.ranks())
        done = status(
            f"Fitted {axis.name} in {time.perf_counter() - started:.1f}s: {len(pack.pairs)} "
            f"pairs, {fitted}/{pack.num_layers} layers with directions.",
            "ok",
        )
        yield self.view(session, fit_status=done, focus=pack.name)

    def on_cancel(self, request: gr.Request):
        if self.jobs.cancel(session_key(request)):
            return status("Cancelling…", "busy")
        return status("No fit is running.")

    @staticmethod
    def slider_handler(index: int):
        def on_slider(value: float, session: StudioSession) -> StudioSession:
            names = session.names()
            if index < len(names) and value is not None:
                session.strengths[names[index]] = float(value)
            return session

        return on_slider
