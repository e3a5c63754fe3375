"""The studio page: lays the panels out and wires their events.

Each panel (model bar, axes, two-axes pad, manage, compare, plots, evaluate) owns its widgets
and handlers; every computation is a call into `alignez_core`. Components that show the
session's axes live in several panels and are recomputed together by `Studio.axes_view`.
"""

from __future__ import annotations

import os

import gradio as gr
import uvicorn
from fastapi import FastAPI

from alignez_core.server import AxisStore, openai_router
from ui.session import StudioSession

from .axes_panel import AxesPanel
from .compare_panel import ComparePanel
from .evaluate_panel import EvaluatePanel
from .manage_panel import ManagePanel
from .model_bar import ModelBar
from .pad_panel import PadPanel
from .plots_panel import PlotsPanel
from .render import CSS
from .shared import FitJobs, ModelHolder, serving_model

# Generate calls running at once: with batching they share decoding batches (up to the queue's
# size); without, each decodes alone and more than 4 at once only slows every one of them.
GENERATE_BATCHED = 32
GENERATE_ALONE = 4
INTRO = (
    "# AlignEZ Studio\nSteer a language model along axes you name in plain words: the model "
    "writes its own good and bad answers, and its hidden states are edited along the directions "
    "that separate them ([AlignEZ](https://arxiv.org/abs/2406.03642))."
)


class Studio:
    """Builds the Blocks app; handlers read per-session state from `gr.State`."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder
        self.jobs = FitJobs()
        self.axes = AxesPanel(holder, self.jobs)
        self.model_bar = ModelBar(holder, self.axes.kind_updates)
        self.manage = ManagePanel(holder)
        self.plots = PlotsPanel(holder)
        self.compare = ComparePanel(holder, self.plots)
        self.evaluate = EvaluatePanel(holder)
        self.pad = PadPanel(holder, self.axes)
        self.panels = (self.axes, self.manage, self.compare, self.plots, self.evaluate, self.pad)

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="AlignEZ Studio") as demo:
            self.session = gr.State(StudioSession())  # deep-copied for each browser session
            gr.Markdown(INTRO)
            self.model_bar.build()
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=320):
                    self.axes.build()
                    self.pad.build()
                    self.manage.build()
                with gr.Column(scale=3, min_width=420):
                    self.compare.build()
            self.plots.build()
            self.evaluate.build()
            self.axes.view = self.manage.view = self.axes_view
            self.manage.outputs = self.axes_outputs()
            self._wire()
            # the model line as it is now (compiled decoding warms up after the page is built)
            demo.load(self.model_bar.model_text, None, self.model_bar.info, api_name="model_info")
        return demo

    def axes_outputs(self) -> list:
        """Every component that shows the session's axes, in a fixed order."""
        shared = [self.session, self.axes.fit_status, self.manage.status]
        return shared + [c for panel in self.panels for c in panel.axes_outputs()]

    def axes_view(
        self,
        session: StudioSession,
        fit_status: str | None = None,
        axes_status: str = "",
        focus: str | None = None,
    ) -> dict:
        """Every axes output recomputed from the session, focused on one axis (default: last)."""
        names = session.names()
        focus = focus if focus in names else (names[-1] if names else None)
        pack = session.axes.get(focus) if focus else None
        view: dict = {self.session: session, self.manage.status: axes_status}
        if fit_status is not None:
            view[self.axes.fit_status] = fit_status
        for panel in self.panels:
            view.update(panel.axes_view(session, pack))
        return view

    def _wire(self) -> None:
        axes, manage, compare, plots, evaluate, pad = self.panels
        state, outputs = self.session, self.axes_outputs()
        axes.preset.input(
            axes.on_preset,
            axes.preset,
            [axes.positive, axes.negative, axes.name, axes.positive_desc, axes.negative_desc,
             axes.name_typed, axes.prefit_button],
        )  # fmt: skip
        for pole in (axes.positive, axes.negative):
            pole.input(
                axes.on_pole_typed,
                [axes.positive, axes.negative, axes.name_typed],
                [axes.preset, axes.name, axes.prefit_button],
                trigger_mode="always_last",  # each keystroke fires: the last value must win
            )
        axes.name.input(lambda: True, None, axes.name_typed)
        self.model_bar.load.click(
            self.model_bar.on_load_model,
            [self.model_bar.spec, state],
            [self.model_bar.info, plots.layer, axes.samples, axes.readout],
        )
        axes.fit_button.click(axes.on_fit, [*axes.fit_inputs(), state], outputs, api_name="fit",
                              concurrency_limit=2, concurrency_id="fit")  # fmt: skip
        axes.prefit_button.click(
            manage.on_prefitted, [axes.preset, state], outputs, api_name="use_prefitted"
        )
        manage.refit_button.click(
            axes.on_refit, [manage.axis, state], outputs, concurrency_id="fit", api_name="refit"
        )
        axes.cancel_button.click(axes.on_cancel, None, axes.fit_status, api_name="cancel_fit")
        pad_inputs = [pad.first, pad.second, state, *axes.sliders]
        for i, slider in enumerate(axes.sliders):
            slider.change(axes.slider_handler(i), [slider, state], state)
            slider.change(pad.on_pick, pad_inputs, pad.cells, api_visibility="private")
        for pick in (pad.first, pad.second):
            pick.input(pad.on_pick, pad_inputs, pad.cells, api_visibility="private")
        pad.map_button.click(pad.on_map, pad_inputs, [state, pad.status, *pad.cells],
                             api_name="map_region", concurrency_id="fit")  # fmt: skip
        for i, cell in enumerate(pad.cells):
            cell.click(pad.cell_handler(i), pad_inputs,
                       [state, pad.status, *axes.sliders, *pad.cells],
                       api_visibility="private")  # fmt: skip
        manage.remove_button.click(
            manage.on_remove, [manage.axis, state], outputs, api_name="remove"
        )
        manage.rename_button.click(manage.on_rename, [manage.axis, manage.new_name, state], outputs)
        manage.upload_pack.upload(
            manage.on_upload_pack, [manage.upload_pack, state], outputs, api_name="upload_pack"
        )
        manage.download_button.click(
            manage.on_download_pack, [manage.axis, state], [manage.pack_file, manage.status]
        )
        settings = compare.settings()
        manage.export_button.click(
            manage.on_export,
            [*settings, state, *axes.sliders],
            [manage.session_file, manage.status],
            api_name="export_session",
        )
        manage.import_session.upload(
            manage.on_import,
            [manage.import_session, state],
            [*outputs, *settings],
            api_name="import_session",
        )
        # The sliders are inputs: an answer always uses the values the page shows at the click.
        # Batching on: every waiting request reaches the scheduler, which decodes them together.
        generating = GENERATE_BATCHED if self.holder.batching else GENERATE_ALONE
        generate_inputs = [
            *settings, compare.sweep, compare.sweep_axis, compare.show_prompted,
            plots.axis, plots.layer, plots.trajectory, state, *axes.sliders,
        ]  # fmt: skip
        compare.generate_button.click(compare.on_generate, generate_inputs, compare.outputs(),
                                      api_name="generate", concurrency_limit=generating,
                                      concurrency_id="generate")  # fmt: skip
        compare.prompt.submit(compare.on_generate, generate_inputs, compare.outputs(),
                              api_visibility="private", concurrency_limit=generating,
                              concurrency_id="generate")  # fmt: skip
        evaluate.button.click(
            evaluate.on_evaluate,
            [*evaluate.inputs(), state],
            [evaluate.status, evaluate.plot, evaluate.table],
            concurrency_id="fit",
        )
        for trigger in (plots.axis.change, plots.layer.release, plots.trajectory.change):
            trigger(
                plots.on_plot,
                [plots.axis, plots.layer, plots.trajectory, state],
                [plots.projection, plots.spectrum],
            )


def build_app(holder: ModelHolder | None = None) -> gr.Blocks:
    holder = holder or ModelHolder(serving_model(os.environ.get("ALIGNEZ_MODEL") or None))
    return Studio(holder).build()


def launch() -> None:
    """The studio's page and the OpenAI-compatible `/v1` routes, one process, one scheduler."""
    holder = ModelHolder(serving_model(os.environ.get("ALIGNEZ_MODEL") or None))
    demo = build_app(holder).queue(default_concurrency_limit=2, max_size=64)
    app = FastAPI(title="AlignEZ Studio")
    app.include_router(openai_router(holder, AxisStore()))  # before the page's catch-all mount
    app = gr.mount_gradio_app(app, demo, path="/", css=CSS, show_error=True)
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
