"""The two-axes pad: the plane of two sliders, its fluent cells shaded, a click sets both.

The region is measured on demand (`alignez_core.fitting.region`, about a minute on a 2-core CPU)
and kept in the session per pair of packs; the pad then follows the sliders without the model.
"""

from __future__ import annotations

import gradio as gr

from alignez_core import AlignEZError
from alignez_core.fitting.region import REGION_QUERIES, REGION_TOKENS, REGION_VALUES, CleanRegion
from ui.session import StudioSession

from .axes_panel import AxesPanel
from .render import status
from .shared import ModelHolder
from .sliders import apply_sliders

SIZE = len(REGION_VALUES)
HELP = (
    "Columns: the first axis from −2 (left) to +2; rows: the second from +2 (top) to −2. "
    f"Measured on {REGION_QUERIES} of the axes' own fit queries at {REGION_TOKENS} tokens: "
    "✓ fluent (perplexity within the calibration bar, no more looping than base), ✗ not; "
    "● where the sliders are now. Click a cell to set both sliders."
)


def pad_cells(
    region: CleanRegion | None, first: float, second: float
) -> list[tuple[str, list[str]]]:
    """Label and CSS classes of every pad cell, row by row from the top (second axis +2)."""
    current = region.nearest(first, second) if region else None
    cells = []
    for b in reversed(REGION_VALUES):
        for a in REGION_VALUES:
            label, classes = f"{a:+g} · {b:+g}", ["pad-cell"]
            if region is not None:
                cell = region.cell(a, b)
                label = ("✓ " if cell.clean else "✗ ") + label
                classes.append("pad-clean" if cell.clean else "pad-loops")
                if cell == current:
                    label = "● " + label
                    classes.append("pad-current")
            cells.append((label, classes))
    return cells


def cell_values(index: int) -> tuple[float, float]:
    """The (first, second) slider values of pad cell `index` (row by row from the top)."""
    row, column = divmod(index, SIZE)
    return REGION_VALUES[column], REGION_VALUES[SIZE - 1 - row]


class PadPanel:
    def __init__(self, holder: ModelHolder, axes: AxesPanel) -> None:
        self.holder = holder
        self.axes = axes  # its sliders, in axis order, are the ones a click sets

    @property
    def sliders(self) -> list:
        return self.axes.sliders

    def build(self) -> None:
        with gr.Group(visible=False, elem_id="pad") as self.group:
            gr.Markdown("### Two axes together: where the combination stays fluent")
            with gr.Row():
                self.first = gr.Dropdown([], label="First axis (columns)", elem_id="pad-first")
                self.second = gr.Dropdown([], label="Second axis (rows)", elem_id="pad-second")
            self.map_button = gr.Button("Map the clean region (about a minute)", elem_id="pad-map")
            self.status = gr.Markdown(HELP, elem_id="pad-status")
            self.cells = []
            for row in range(SIZE):
                with gr.Row(equal_height=True):
                    for column in range(SIZE):
                        label, classes = pad_cells(None, 0.0, 0.0)[row * SIZE + column]
                        self.cells.append(
                            gr.Button(
                                label,
                                size="sm",
                                elem_classes=classes,
                                elem_id=f"pad-{row * SIZE + column}",
                            )
                        )

    def axes_outputs(self) -> list:
        return [self.group, self.first, self.second, *self.cells]

    def axes_view(self, session: StudioSession, focus) -> dict:
        names = session.names()
        first, second = [*names, None, None][:2]
        view: dict = {
            self.group: gr.update(visible=len(names) >= 2),
            self.first: gr.update(choices=names, value=first),
            self.second: gr.update(choices=names, value=second),
        }
        view.update(self._cells_view(session, first, second))
        return view

    def _cells_view(self, session: StudioSession, first, second, values=None) -> dict:
        """The pad for two axes at the sliders' values (`values`: name → slider, else the
        session's)."""
        strengths = dict(session.strengths) | (values or {})
        region = session.region(first, second) if first != second else None
        cells = pad_cells(region, strengths.get(first, 0.0), strengths.get(second, 0.0))
        return {
            button: gr.update(value=label, elem_classes=classes)
            for button, (label, classes) in zip(self.cells, cells, strict=True)
        }

    def _slider_values(self, session: StudioSession, sliders) -> dict[str, float]:
        return {
            name: float(value)
            for name, value in zip(session.names(), sliders, strict=False)
            if value is not None
        }

    # --- handlers -------------------------------------------------------------------------

    def on_pick(self, first, second, session: StudioSession, *sliders):
        view = self._cells_view(session, first, second, self._slider_values(session, sliders))
        return [view[c] for c in self.cells]

    def on_map(self, first, second, session: StudioSession, *sliders, progress=gr.Progress()):
        from alignez_core.fitting.region import clean_region

        try:
            if not first or not second or first == second:
                raise AlignEZError("Pick two different axes for the pad.")
            packs = session.axes[first], session.axes[second]
            region = session.region(first, second) or clean_region(
                self.holder.lm,
                *packs,
                progress=lambda stage, done, total: progress((done, total), desc=stage),
            )
        except (AlignEZError, KeyError) as exc:
            message = str(exc) if isinstance(exc, AlignEZError) else f"No axis named {exc}."
            return [session, status(message, "error"), *[gr.update() for _ in self.cells]]
        session.regions[packs] = region
        clean = sum(c.clean for c in region.cells)
        done = status(
            f"{clean} of {len(region.cells)} slider pairs stay fluent for {first} with {second} "
            f"(measured in {region.seconds:.0f} s). {HELP}",
            "ok",
        )
        view = self._cells_view(session, first, second, self._slider_values(session, sliders))
        return [session, done, *[view[c] for c in self.cells]]

    def cell_handler(self, index: int):
        """A click on one cell: both sliders jump to its values (the others keep theirs)."""

        def on_cell(first, second, session: StudioSession, *sliders):
            names = session.names()
            if first not in names or second not in names or first == second:
                message = status("Pick two different axes for the pad first.", "error")
                return [session, message, *[gr.update() for _ in self.sliders],
                        *[gr.update() for _ in self.cells]]  # fmt: skip
            a, b = cell_values(index)
            values = self._slider_values(session, sliders) | {first: a, second: b}
            apply_sliders(session, [values.get(name) for name in names])
            updates = [
                gr.update(value=values[names[i]]) if i < len(names) else gr.update()
                for i in range(len(self.sliders))
            ]
            view = self._cells_view(session, first, second, values)
            note = status(f"{first} {a:+g}, {second} {b:+g}. {HELP}", "info")
            return [session, note, *updates, *[view[c] for c in self.cells]]

        return on_cell
