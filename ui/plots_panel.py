"""The 'Why it moved' panel: projection of the answers onto an axis, spectrum, overlap."""

from __future__ import annotations

import gradio as gr

from alignez_core.axes.pack import AxisPack
from alignez_core.steering.explain import best_layer
from ui.session import StudioSession

from . import plots
from .shared import ModelHolder


class PlotsPanel:
    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    def build(self) -> None:
        gr.Markdown("## Why it moved")
        with gr.Row():
            self.axis = gr.Dropdown([], label="Axis to plot", elem_id="plot-axis")
            self.layer = gr.Slider(0, self.holder.lm.num_layers - 1, value=0, step=1, label="Layer")
            self.trajectory = gr.Checkbox(
                label="Token trajectories", value=False, elem_id="plot-trajectory",
                info="off: each answer's mean position with its spread",
            )  # fmt: skip
        with gr.Row():
            self.projection = gr.Plot(plots.projection_figure(None, 0), elem_id="projection")
            self.spectrum = gr.Plot(plots.spectrum_figure(None), elem_id="spectrum")
        self.overlap = gr.Plot(plots.overlap_figure([]), elem_id="overlap")
        self.budget_note = gr.Markdown(elem_id="budget-note")  # the last answer's shared budget

    def axes_outputs(self) -> list:
        return [self.axis, self.layer, self.projection, self.spectrum, self.overlap]

    def axes_view(self, session: StudioSession, focus: AxisPack | None) -> dict:
        layer = best_layer(focus) if focus else 0
        return {
            self.axis: gr.update(choices=session.names(), value=focus.name if focus else None),
            self.layer: gr.update(value=layer, maximum=self.holder.lm.num_layers - 1),
            self.projection: plots.projection_figure(focus, layer),
            self.spectrum: plots.spectrum_figure(focus),
            self.overlap: plots.overlap_figure(list(session.axes.values())),
        }

    def on_plot(self, name: str | None, layer, trajectory: bool, session: StudioSession):
        pack = session.axes.get(name) if name else None
        layer = int(layer or 0)
        if pack is not None and layer >= pack.num_layers:
            layer = 0
        traces = session.last_traces  # the last answer's states, if traced at this axis and layer
        if traces.get("axis") != name or traces.get("layer") != layer:
            traces = {}
        return (
            plots.projection_figure(pack, layer, traces, bool(trajectory)),
            plots.spectrum_figure(pack),
        )
